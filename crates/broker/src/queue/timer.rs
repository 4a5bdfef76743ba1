//! The per-queue timer task: expires messages at the head when their TTL passes (so a
//! TTL + dead-letter "delay queue" fires on time even with no consumer), and deletes the
//! queue when it has been unused for `x-expires`.

use std::sync::{Arc, Weak};

use tokio::sync::Notify;

use super::Queue;

pub(super) async fn run(queue: Weak<Queue>, wake: Arc<Notify>) {
    loop {
        let notified = wake.notified();
        let next = {
            let Some(q) = queue.upgrade() else { return };
            if q.is_deleted() {
                return;
            }
            let (next, expired) = q.on_timer();
            if expired {
                if let Some(v) = q.vhost_ref.upgrade() {
                    tracing::info!(
                        "queue '{}' in vhost '{}' expired (x-expires)",
                        q.name,
                        q.vhost
                    );
                    v.delete_queue(&q);
                }
                return;
            }
            next
        };
        match next {
            Some(at) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(at.into()) => {}
                    _ = notified => {}
                }
            }
            None => notified.await,
        }
    }
}
