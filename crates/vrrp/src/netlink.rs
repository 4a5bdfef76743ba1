//! Virtual address add/remove through rtnetlink.
//!
//! Owns: the rtnetlink connection (its task runs on our runtime) and the two operations VRRP
//! needs. Guarantees: adding an address that is already there and removing one that is already
//! gone both succeed (takeover and release must be idempotent: a restart may find our own VIP
//! still configured); labels are set as `IFA_LABEL` like `ip addr add ... label L`.
//! rtnetlink hands back an unbounded receiver for unsolicited messages; we subscribe to no
//! multicast groups, so nothing is ever queued on it, and we drop it.

use std::net::{IpAddr, Ipv4Addr};

use futures::TryStreamExt;
use netlink_packet_route::address::AddressAttribute;
use rtnetlink::Handle;

#[derive(Clone)]
pub struct Netlink {
    handle: Handle,
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
        Ok(Netlink { handle })
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
        match req.execute().await {
            Ok(()) => Ok(()),
            Err(e) if errno(&e) == Some(libc::EEXIST) || errno(&e) == Some(-libc::EEXIST) => Ok(()),
            Err(e) => Err(format!("adding {addr}/{prefix}: {e}")),
        }
    }

    pub async fn del(&self, ifindex: u32, addr: Ipv4Addr, prefix: u8) -> Result<(), String> {
        let mut found = self
            .handle
            .address()
            .get()
            .set_link_index_filter(ifindex)
            .set_address_filter(IpAddr::V4(addr))
            .set_prefix_length_filter(prefix)
            .execute();
        let mut msgs = Vec::new();
        while let Some(m) = found
            .try_next()
            .await
            .map_err(|e| format!("listing {addr}/{prefix}: {e}"))?
        {
            msgs.push(m);
        }
        for m in msgs {
            match self.handle.address().del(m).execute().await {
                Ok(()) => {}
                Err(e)
                    if errno(&e) == Some(libc::EADDRNOTAVAIL)
                        || errno(&e) == Some(-libc::EADDRNOTAVAIL) => {}
                Err(e) => return Err(format!("removing {addr}/{prefix}: {e}")),
            }
        }
        Ok(())
    }
}
