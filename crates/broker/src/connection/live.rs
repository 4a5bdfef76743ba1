//! The part of a running connection that the rest of the node may reach: its open channels
//! (for `list_channels`, `/api/channels`, consumers' channel details) and a way to close it
//! from outside (`close_connection`, `DELETE /api/connections/{name}`).
//!
//! The connection's reader task owns its channels; this handle only keeps weak references to
//! their links, so a listing never keeps a closed channel alive and the reader never has to
//! unregister anything: closed links drop out (their `open` flag is cleared on shutdown).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::watch;

use crate::channel::link::ChannelLink;

pub struct LiveConnection {
    channels: Mutex<BTreeMap<u16, Weak<ChannelLink>>>,
    /// `Some(reason)` once someone asked the connection to close.
    close: watch::Sender<Option<String>>,
}

impl std::fmt::Debug for LiveConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveConnection")
            .field("channels", &self.channels().len())
            .finish()
    }
}

impl Default for LiveConnection {
    fn default() -> Self {
        LiveConnection {
            channels: Mutex::new(BTreeMap::new()),
            close: watch::channel(None).0,
        }
    }
}

impl LiveConnection {
    /// The channels open now, by channel number.
    pub fn channels(&self) -> Vec<Arc<ChannelLink>> {
        let mut map = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, w| w.strong_count() > 0);
        map.values()
            .filter_map(Weak::upgrade)
            .filter(|l| l.state().open)
            .collect()
    }

    /// Asks the connection to close with 320 CONNECTION_FORCED and `reason` as reply text.
    pub fn close(&self, reason: &str) {
        let _ = self.close.send(Some(reason.to_string()));
    }

    pub(crate) fn add_channel(&self, link: &Arc<ChannelLink>) {
        self.channels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(link.id, Arc::downgrade(link));
    }

    pub(crate) fn close_requests(&self) -> watch::Receiver<Option<String>> {
        self.close.subscribe()
    }
}
