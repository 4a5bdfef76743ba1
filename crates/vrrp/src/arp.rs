//! Gratuitous ARP on takeover, through an AF_PACKET socket.
//!
//! Owns: building and sending the broadcast ARP request that announces "VIP is at my MAC" (the
//! sender and target protocol addresses are both the VIP, as keepalived sends it), which makes
//! neighbours overwrite the old master's MAC in their ARP caches (Linux treats sip == tip as a
//! gratuitous ARP and overrides its lock time). Guarantees: errors are returned, never panics;
//! the socket is opened with protocol 0 so it never queues received frames.

use std::io;
use std::net::Ipv4Addr;

const ETH_P_ARP: u16 = 0x0806;

pub fn garp_frame(mac: [u8; 6], vip: Ipv4Addr) -> [u8; 60] {
    let mut f = [0u8; 60]; // minimum Ethernet frame (without FCS), zero padded
    f[0..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&ETH_P_ARP.to_be_bytes());
    f[14..16].copy_from_slice(&1u16.to_be_bytes()); // Ethernet
    f[16..18].copy_from_slice(&0x0800u16.to_be_bytes()); // IPv4
    f[18] = 6;
    f[19] = 4;
    f[20..22].copy_from_slice(&1u16.to_be_bytes()); // request
    f[22..28].copy_from_slice(&mac);
    f[28..32].copy_from_slice(&vip.octets());
    f[32..38].copy_from_slice(&[0xff; 6]);
    f[38..42].copy_from_slice(&vip.octets());
    f
}

/// Sends one gratuitous ARP for each address in `vips` out of interface `ifindex`.
pub fn send_garps(ifindex: u32, mac: [u8; 6], vips: &[Ipv4Addr]) -> io::Result<()> {
    // SAFETY: plain socket(2) call; the fd is closed below on every path.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: sockaddr_ll is plain old data; all-zero is a valid starting value.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = ETH_P_ARP.to_be();
    sll.sll_ifindex = ifindex as i32;
    sll.sll_halen = 6;
    sll.sll_addr[..6].copy_from_slice(&[0xff; 6]);
    let mut result = Ok(());
    for vip in vips {
        let frame = garp_frame(mac, *vip);
        // SAFETY: frame and sll are valid for the lengths given.
        let n = unsafe {
            libc::sendto(
                fd,
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if n < 0 {
            result = Err(io::Error::last_os_error());
        }
    }
    // SAFETY: fd is ours and closed once.
    unsafe { libc::close(fd) };
    result
}

#[cfg(test)]
mod tests {
    #[test]
    fn frame_layout() {
        let f = super::garp_frame([2, 0, 0, 0, 0, 1], "198.18.0.100".parse().unwrap());
        assert_eq!(&f[12..14], &[0x08, 0x06]);
        assert_eq!(&f[20..22], &[0, 1]);
        assert_eq!(&f[28..32], &[198, 18, 0, 100]);
        assert_eq!(&f[38..42], &[198, 18, 0, 100]);
        assert_eq!(&f[22..28], &[2, 0, 0, 0, 0, 1]);
    }
}
