//! `warren lb`: a TCP load balancer that reads HAProxy configuration files.
//!
//! Not built yet (issue 8): `main` refuses with a clear error instead of pretending.

use std::ffi::OsString;
use std::process::ExitCode;

/// Entry point for `warren lb ARGS...` (HAProxy's flags: `-f`, `-c`, `-D`, `-db`, ...).
pub fn main(_args: Vec<OsString>) -> ExitCode {
    eprintln!("warren lb: the load balancer is not implemented yet (issue 8)");
    ExitCode::from(1)
}
