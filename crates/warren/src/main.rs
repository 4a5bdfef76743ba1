//! The `warren` binary: one executable for every role (server, ctl, lb, vrrp, perf, up).
//!
//! `lb` and `vrrp` take HAProxy's and keepalived's own flags (`-db`, `-sf PID...`), which do not
//! fit a clap grammar, so their arguments are handed over untouched. Every role builds its own
//! tokio runtime because daemonising (`fork`) must happen before any runtime thread exists.

use std::ffi::OsString;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args: Vec<OsString> = std::env::args_os().collect();
    match args.get(1).and_then(|a| a.to_str()) {
        Some("lb") => warren_lb::main(args.split_off(2)),
        Some("vrrp") => warren_vrrp::main(args.split_off(2)),
        _ => {
            eprintln!("usage: warren <server|lb|vrrp> ...");
            ExitCode::from(64)
        }
    }
}
