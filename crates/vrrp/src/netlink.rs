//! Virtual address add/remove through rtnetlink.
//!
//! Owns: the rtnetlink connection (its task runs on our runtime) and the two operations VRRP
//! needs. Guarantees: adding an address that is already there and removing one that is already
//! gone both succeed (takeover and release must be idempotent: a restart may find our own VIP
//! still configured); requests are serialised (one connection shared by all instances); labels are set as `IFA_LABEL` like `ip addr add ... label L`.
//! rtnetlink hands back an unbounded receiver for unsolicited messages; we subscribe to no
//! multicast groups, so nothing is ever queued on it, and we drop it.

use std::net::{IpAddr, Ipv4Addr};

use std::sync::Arc;

use netlink_packet_route::address::AddressAttribute;
use rtnetlink::{AddressMessageBuilder, Handle};

#[derive(Clone)]
pub struct Netlink {
    handle: Handle,
    /// Every instance shares this connection; requests go one at a time so that the replies
    /// of one never interleave with another's (and a future dump never meets EBUSY).
    lock: Arc<tokio::sync::Mutex<()>>,
}

fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => Some(-m.raw_code()),
        _ => None,
    }
}

impl Netlink {
    /// Must be called inside the tokio runtime.
    pub fn new() -> std::io::Result<Netlink> {
        let (conn, handle, _unsolicited) = rtnetlink::new_connection()?;
        tokio::spawn(conn);
        Ok(Netlink {
            handle,
            lock: Arc::new(tokio::sync::Mutex::new(())),
        })
    }

    pub async fn add(
        &self,
        ifindex: u32,
        addr: Ipv4Addr,
        prefix: u8,
        label: Option<&str>,
    ) -> Result<(), String> {
        let mut req = self.handle.address().add(ifindex, IpAddr::V4(addr), prefix);
        if let Some(l) = label {
            req.message_mut()
                .attributes
                .push(AddressAttribute::Label(l.to_string()));
        }
        let _one_at_a_time = self.lock.lock().await;
        match req.execute().await {
            Ok(()) => Ok(()),
            Err(e) if errno(&e) == Some(libc::EEXIST) => Ok(()),
            Err(e) => Err(format!("adding {addr}/{prefix}: {e}")),
        }
    }

    /// Removes `addr/prefix` from `ifindex`, like `ip addr del`: the request names the address
    /// directly (no dump first: concurrent dumps on one netlink socket fail with EBUSY).
    pub async fn del(&self, ifindex: u32, addr: Ipv4Addr, prefix: u8) -> Result<(), String> {
        let _one_at_a_time = self.lock.lock().await;
        let msg = AddressMessageBuilder::<Ipv4Addr>::new()
            .index(ifindex)
            .address(addr, prefix)
            .build();
        match self.handle.address().del(msg).execute().await {
            Ok(()) => Ok(()),
            Err(e) if errno(&e) == Some(libc::EADDRNOTAVAIL) => Ok(()),
            Err(e) => Err(format!("removing {addr}/{prefix}: {e}")),
        }
    }
}
