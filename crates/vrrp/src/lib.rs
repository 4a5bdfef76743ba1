//! `warren vrrp`: a VRRP speaker that reads keepalived configuration files.
//!
//! Not built yet (issue 9): `main` refuses with a clear error instead of pretending.

use std::ffi::OsString;
use std::process::ExitCode;

/// Entry point for `warren vrrp ARGS...` (keepalived's flags: `-f`, `-n`, `-l`, `-t`, ...).
pub fn main(_args: Vec<OsString>) -> ExitCode {
    eprintln!("warren vrrp: the VRRP speaker is not implemented yet (issue 9)");
    ExitCode::from(1)
}
