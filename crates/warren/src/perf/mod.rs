//! `warren perf`: a load generator with RabbitMQ PerfTest's flags and output, built on Warren's own codec.
//!
//! PerfTest (Java) cannot be fetched on our machines, and users read its numbers fluently, so
//! this speaks its dialect over a minimal client of its own (`client`, see why there): `-x` producers, `-y` consumers, `-s` size, `-z` seconds, `--confirm`,
//! `-q` prefetch, `-a` auto-ack, `-f persistent|mandatory`, ... Each producer and consumer has
//! its own connection, as PerfTest does. Every body starts with a send timestamp so that
//! consumers measure end-to-end latency.

mod args;
mod run;
mod stats;

pub use args::PerfArgs;

use std::process::ExitCode;

pub fn main(args: PerfArgs) -> ExitCode {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("warren perf: cannot start runtime: {e}");
            return ExitCode::from(70);
        }
    };
    match rt.block_on(run::run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("warren perf: {e}");
            ExitCode::from(69)
        }
    }
}
