//! Raw IP sockets for VRRP (IP protocol 112) on one interface.
//!
//! Owns: sending adverts with an IPv4 header we build (IPPROTO_RAW, so the source address is the
//! one the v3 checksum was computed over, and TTL is 255 even for unicast peers) and receiving
//! them (a protocol-112 raw socket bound to the interface, joined to 224.0.0.18 there).
//! Guarantees: both sockets are bound to the interface with SO_BINDTODEVICE, so adverts never
//! leave or enter through another link; receive is async (tokio `AsyncFd`) and never blocks the
//! runtime. The IPPROTO_RAW send socket receives nothing, so no unread queue builds up.

use std::io::{self, Read};
use std::net::{Ipv4Addr, SocketAddrV4};

use socket2::{Domain, InterfaceIndexOrAddress, Protocol, SockAddr, Socket, Type};
use tokio::io::unix::AsyncFd;

use crate::packet::{ipv4_header, IPPROTO_VRRP, VRRP_GROUP};

pub struct VrrpSocket {
    tx: Socket,
    rx: AsyncFd<Socket>,
}

impl VrrpSocket {
    /// `multicast`: join 224.0.0.18 (false when every peer is a `unicast_peer`).
    pub fn open(ifname: &str, ifindex: u32, multicast: bool) -> io::Result<VrrpSocket> {
        let tx = Socket::new(
            Domain::IPV4,
            Type::RAW,
            Some(Protocol::from(libc::IPPROTO_RAW)),
        )?;
        tx.bind_device(Some(ifname.as_bytes()))?;
        tx.set_multicast_loop_v4(false)?;
        let rx = Socket::new(
            Domain::IPV4,
            Type::RAW,
            Some(Protocol::from(i32::from(IPPROTO_VRRP))),
        )?;
        rx.bind_device(Some(ifname.as_bytes()))?;
        if multicast {
            rx.join_multicast_v4_n(&VRRP_GROUP, &InterfaceIndexOrAddress::Index(ifindex))?;
        }
        rx.set_nonblocking(true)?;
        // SAFETY: `rx` is an open socket owned by the AsyncFd from here on, so its descriptor
        // stays valid and unchanged for the AsyncFd's whole life.
        let rx = unsafe { AsyncFd::register_with_interest(rx, tokio::io::Interest::READABLE) }?;
        Ok(VrrpSocket { tx, rx })
    }

    /// Sends one VRRP message from `src` to `dst` (the group or a unicast peer).
    pub fn send(&self, src: Ipv4Addr, dst: Ipv4Addr, vrrp: &[u8]) -> io::Result<()> {
        let mut pkt = Vec::with_capacity(20 + vrrp.len());
        pkt.extend_from_slice(&ipv4_header(src, dst, vrrp.len()));
        pkt.extend_from_slice(vrrp);
        self.tx
            .send_to(&pkt, &SockAddr::from(SocketAddrV4::new(dst, 0)))?;
        Ok(())
    }

    /// Receives one packet, IPv4 header included.
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let mut guard = self.rx.readable().await?;
            match guard.try_io(|s| s.get_ref().read(buf)) {
                Ok(r) => return r,
                Err(_would_block) => continue,
            }
        }
    }
}
