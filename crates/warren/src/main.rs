//! The `warren` binary: one executable for every role (server, lb, vrrp, ctl, perf, up).
//!
//! `lb` and `vrrp` take HAProxy's and keepalived's own flags (`-db`, `-sf PID...`), which do
//! not fit a clap grammar, so their arguments are handed over untouched. Every role builds its
//! own tokio runtime because daemonising (`fork`) must happen before any runtime thread
//! exists.

mod app;
mod config;
mod ctl;
mod daemon;
mod perf;
mod server;
mod up;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "warren",
    version,
    about = "A RabbitMQ-compatible message broker, with an HAProxy-compatible load balancer and a keepalived-compatible VRRP speaker"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a broker node (like `rabbitmq-server`).
    Server(server::ServerArgs),
    /// Operate a node, like rabbitmqctl (`warren ctl list_queues`).
    Ctl {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
    /// A local cluster (3 nodes) with the load balancer on 5672 and the management UI; with
    /// --netns (root) the full topology in network namespaces: 3 hosts, 2 LB/VRRP hosts, a VIP.
    Up(up::UpArgs),
    /// Load generator with RabbitMQ PerfTest's flags (`warren perf -x 1 -y 1 -z 10`).
    #[command(disable_help_flag = true)]
    Perf(Box<perf::PerfArgs>),
    /// Run the load balancer with HAProxy's flags (`warren lb -f haproxy.cfg`).
    Lb {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
    /// Run the VRRP speaker with keepalived's flags (`warren vrrp -f keepalived.conf`).
    Vrrp {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
}

/// glibc's allocator serves blocks above its adaptive mmap threshold with fresh mappings, and
/// gives the top of its heaps back to the kernel once more than twice that threshold is free.
/// Message bodies live in read buffers of several large frames (up to ~1 MiB), so a stream of
/// 64 KiB messages mapped and faulted memory in and out continuously: 110,000 page faults a
/// second (`perf stat -e page-faults`), about a fifth of the broker's CPU (`perf record`: 16% in
/// page faults, 3% in madvise). Fixed thresholds keep such buffers in the heap and reuse them
/// (550 faults a second); what stays cached is bounded by the trim threshold.
fn tune_allocator() {
    // SAFETY: mallopt only sets allocator parameters; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 32 << 20);
    }
}

fn main() -> ExitCode {
    tune_allocator();
    let mut args: Vec<OsString> = std::env::args_os().collect();
    // Pass-through roles first, so that their flags never meet clap.
    match args.get(1).and_then(|a| a.to_str()) {
        Some("lb") => return warren_lb::main(args.split_off(2)),
        Some("ctl") => return ctl::main(args.split_off(2)),
        Some("vrrp") => return warren_vrrp::main(args.split_off(2)),
        _ => {}
    }
    // `rabbitmq-server -detached` uses a single dash; accept it as RabbitMQ users type it.
    for a in args.iter_mut() {
        if a == "-detached" {
            *a = OsString::from("--detached");
        }
    }
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 64 } else { 0 });
        }
    };
    match cli.command {
        Command::Server(a) => server::run(a),
        Command::Perf(a) => perf::main(*a),
        Command::Lb { args } => warren_lb::main(args),
        Command::Vrrp { args } => warren_vrrp::main(args),
        Command::Ctl { args } => ctl::main(args),
        Command::Up(a) => up::main(a),
    }
}
