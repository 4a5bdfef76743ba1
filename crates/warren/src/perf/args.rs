//! PerfTest's command-line flags.

use clap::Args;

#[derive(Args, Debug, Clone)]
pub struct PerfArgs {
    /// Broker URI (repeat for a cluster; producers and consumers are spread over them).
    #[arg(
        short = 'h',
        long = "uri",
        default_value = "amqp://guest:guest@localhost:5672/%2f"
    )]
    pub uri: Vec<String>,
    /// Number of producers.
    #[arg(short = 'x', long = "producers", default_value_t = 1)]
    pub producers: usize,
    /// Number of consumers.
    #[arg(short = 'y', long = "consumers", default_value_t = 1)]
    pub consumers: usize,
    /// Message body size in bytes (at least 12: sequence and timestamp).
    #[arg(short = 's', long = "size", default_value_t = 12)]
    pub size: usize,
    /// Queue name (default: one server-named exclusive queue, as PerfTest).
    #[arg(short = 'u', long = "queue")]
    pub queue: Option<String>,
    /// Queue name pattern for many queues, e.g. `perf-test-%d` (with --queue-pattern-from/-to).
    #[arg(long = "queue-pattern")]
    pub queue_pattern: Option<String>,
    #[arg(long = "queue-pattern-from", default_value_t = 1)]
    pub queue_pattern_from: usize,
    #[arg(long = "queue-pattern-to", default_value_t = 1)]
    pub queue_pattern_to: usize,
    /// Exchange name.
    #[arg(short = 'e', long = "exchange", default_value = "direct")]
    pub exchange: String,
    /// Exchange type.
    #[arg(short = 't', long = "type", default_value = "direct")]
    pub exchange_type: String,
    /// Routing key (default: a random one per run, as PerfTest).
    #[arg(short = 'k', long = "routing-key")]
    pub routing_key: Option<String>,
    /// Flags: `persistent`, `mandatory` (repeatable).
    #[arg(short = 'f', long = "flag")]
    pub flags: Vec<String>,
    /// Outstanding publisher confirms per producer (enables confirms).
    #[arg(short = 'c', long = "confirm")]
    pub confirm: Option<usize>,
    /// Consumer prefetch (basic.qos).
    #[arg(short = 'q', long = "qos", default_value_t = 0)]
    pub qos: u16,
    /// Consumers auto-ack.
    #[arg(short = 'a', long = "autoack")]
    pub autoack: bool,
    /// Ack every N messages with multiple=true.
    #[arg(short = 'A', long = "multi-ack-every", default_value_t = 0)]
    pub multi_ack_every: u64,
    /// Run time in seconds (0 = until message counts are reached).
    #[arg(short = 'z', long = "time", default_value_t = 0)]
    pub time: u64,
    /// Producer rate limit, messages per second per producer (0 = unlimited).
    #[arg(short = 'r', long = "rate", default_value_t = 0)]
    pub rate: u64,
    /// Consumer rate limit, messages per second per consumer (0 = unlimited).
    #[arg(short = 'R', long = "consumer-rate", default_value_t = 0)]
    pub consumer_rate: u64,
    /// Messages per producer (0 = unlimited).
    #[arg(short = 'C', long = "pmessages", default_value_t = 0)]
    pub pmessages: u64,
    /// Messages per consumer (0 = unlimited).
    #[arg(short = 'D', long = "cmessages", default_value_t = 0)]
    pub cmessages: u64,
    /// Queue arguments, `k=v,k2=v2` (integers are sent as numbers).
    #[arg(long = "queue-args")]
    pub queue_args: Option<String>,
    /// Declare queues durable (PerfTest's `-f persistent` alone does not).
    #[arg(long = "auto-delete", default_value_t = true)]
    pub auto_delete: bool,
    /// Test id printed on every line.
    #[arg(long = "id")]
    pub id: Option<String>,
    /// Instead of a throughput test: open this many idle connections (handshake done, one
    /// channel open) and hold them for `-z` seconds, to measure the broker's memory per
    /// connection.
    #[arg(long = "idle-connections")]
    pub idle_connections: Option<usize>,
    /// Print help (`-h` is PerfTest's URI flag, so help is `--help` only).
    #[arg(long = "help", action = clap::ArgAction::Help)]
    pub help: Option<bool>,
    /// Only print the summary.
    #[arg(long = "quiet-seconds")]
    pub quiet: bool,
}

impl PerfArgs {
    pub fn persistent(&self) -> bool {
        self.flags.iter().any(|f| f == "persistent")
    }

    pub fn mandatory(&self) -> bool {
        self.flags.iter().any(|f| f == "mandatory")
    }

    /// The queues to consume from and publish to.
    pub fn queue_names(&self) -> Vec<Option<String>> {
        if let Some(p) = &self.queue_pattern {
            return (self.queue_pattern_from..=self.queue_pattern_to)
                .map(|i| Some(p.replace("%d", &i.to_string())))
                .collect();
        }
        vec![self.queue.clone()]
    }
}
