//! `warren vrrp`: a VRRP (v2/v3, IPv4) speaker that reads keepalived configuration files.
//!
//! Owns the process lifecycle of the role: flags → configuration → (fork) → runtime →
//! supervisor. The fork happens before the tokio runtime exists (forking a threaded process
//! keeps only one thread). Exit codes: 0 success (and `-t` on a valid file), 1 invalid
//! configuration, bad flags or a failure to start.

use std::ffi::OsString;
use std::process::ExitCode;

pub mod arp;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod iface;
pub mod instance;
pub mod netlink;
pub mod packet;
pub mod run;
pub mod socket;
pub mod sync_group;
pub mod track;

/// Entry point for `warren vrrp ARGS...` (keepalived's flags: `-f`, `-n`, `-l`, `-t`, ...).
pub fn main(args: Vec<OsString>) -> ExitCode {
    let opts = match cli::parse(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("warren vrrp: {e}\n{}", cli::USAGE);
            return ExitCode::from(1);
        }
    };
    if opts.help {
        println!("{}", cli::USAGE);
        return ExitCode::SUCCESS;
    }
    if opts.version {
        println!(
            "warren vrrp {} (keepalived configuration compatible)",
            env!("CARGO_PKG_VERSION")
        );
        return ExitCode::SUCCESS;
    }
    let loaded = match config::parse::load_file(&opts.config) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("warren vrrp: configuration error: {e}");
            return ExitCode::from(1);
        }
    };
    if opts.config_test {
        for w in &loaded.warnings {
            eprintln!("warren vrrp: warning: {w}");
        }
        let tracked = loaded.config.scripts.iter().filter(|s| {
            loaded
                .config
                .instances
                .iter()
                .any(|i| i.track_scripts.iter().any(|t| t.name == s.name))
        });
        for s in tracked {
            let prog = s.script.split_whitespace().next().unwrap_or("");
            if prog.starts_with('/') && !std::path::Path::new(prog).exists() {
                eprintln!(
                    "warren vrrp: warning: {}: script {prog} does not exist (it will count as failing)",
                    s.loc
                );
            }
        }
        eprintln!(
            "warren vrrp: configuration {} is valid",
            opts.config.display()
        );
        return ExitCode::SUCCESS;
    }
    let mut pid_paths = vec![opts.pid_file.as_path()];
    if let Some(r) = &opts.vrrp_pid_file {
        pid_paths.push(r.as_path());
    }
    // Checked before forking, so that these mistakes reach the terminal and the exit status.
    if let Err(e) = daemon::PidFiles::check(&pid_paths) {
        eprintln!("warren vrrp: {e}");
        return ExitCode::from(1);
    }
    for i in &loaded.config.instances {
        if iface::lookup(&i.interface).is_none() {
            eprintln!(
                "warren vrrp: {}: (vrrp_instance {}) interface {} does not exist",
                i.loc, i.name, i.interface
            );
            return ExitCode::from(1);
        }
    }
    // Absolute, so that SIGHUP re-reads the same file after daemonising changed directory.
    let config_path = std::fs::canonicalize(&opts.config).unwrap_or_else(|_| opts.config.clone());
    if !opts.dont_fork {
        if let Err(e) = daemon::daemonise(opts.log_console) {
            eprintln!("warren vrrp: cannot fork: {e}");
            return ExitCode::from(1);
        }
    }
    daemon::init_logging(opts.log_console, opts.log_detail);
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
    let _pids = match daemon::PidFiles::create(&pid_paths) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("warren vrrp: {e}");
            return ExitCode::from(1);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let code = rt.block_on(run::run(&config_path, loaded.config));
    ExitCode::from(code)
}
