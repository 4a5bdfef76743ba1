//! Listening sockets and the accept loop.
//!
//! RabbitMQ listens on `[::]:5672`, reachable over IPv4 and IPv6; a wildcard IPv6 listener
//! is opened dual-stack for the same effect. Every connection runs in its own task: a panic
//! there ends that connection only.

use std::net::SocketAddr;
use std::sync::Arc;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;

use crate::broker::Broker;
use crate::connection;

/// Binds one listener (dual-stack for `[::]`).
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(false)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}

/// Accepts connections until the broker shuts down.
pub async fn accept_loop(broker: Arc<Broker>, listener: TcpListener) {
    let mut shutdown = broker.shutdown_signal();
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, peer)) => {
                    if broker.paused().borrow().is_some() {
                        // Cut off from the cluster's majority: refuse rather than serve
                        // a side of a partition.
                        drop(stream);
                        continue;
                    }
                    tokio::spawn(connection::serve(broker.clone(), stream, peer));
                }
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            _ = shutdown.changed() => break,
        }
    }
}
