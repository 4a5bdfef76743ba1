//! Interface facts from the kernel: index, up/running, IPv4 addresses, MAC.
//!
//! Owns: the one `getifaddrs(3)` walk that everything else uses to learn about an interface.
//! Guarantees: returns `None` for an interface that does not exist (never panics), and frees the
//! list it got from libc on every path.

use std::ffi::CStr;
use std::net::Ipv4Addr;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IfInfo {
    pub index: u32,
    /// IFF_UP and IFF_RUNNING (carrier): what `track_interface` means by "up".
    pub up: bool,
    pub ipv4: Vec<Ipv4Addr>,
    pub mac: [u8; 6],
}

pub fn lookup(name: &str) -> Option<IfInfo> {
    let cname = std::ffi::CString::new(name).ok()?;
    // SAFETY: if_nametoindex reads a NUL-terminated string.
    let index = unsafe { libc::if_nametoindex(cname.as_ptr()) };
    if index == 0 {
        return None;
    }
    let mut info = IfInfo {
        index,
        ..IfInfo::default()
    };
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we free below with freeifaddrs.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Some(info);
    }
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list returned by getifaddrs, valid until freeifaddrs.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        if ifa.ifa_name.is_null() || ifa.ifa_addr.is_null() {
            continue;
        }
        // SAFETY: ifa_name is a NUL-terminated C string owned by the list.
        let n = unsafe { CStr::from_ptr(ifa.ifa_name) };
        if n.to_bytes() != name.as_bytes() {
            continue;
        }
        // SAFETY: ifa_addr is non-null; sa_family tells which sockaddr it is.
        let family = i32::from(unsafe { (*ifa.ifa_addr).sa_family });
        match family {
            libc::AF_INET => {
                // SAFETY: AF_INET entries point at a sockaddr_in.
                let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
                info.ipv4
                    .push(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)));
            }
            libc::AF_PACKET => {
                // SAFETY: AF_PACKET entries point at a sockaddr_ll.
                let sll = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_ll) };
                if sll.sll_halen == 6 {
                    info.mac.copy_from_slice(&sll.sll_addr[..6]);
                }
                let f = ifa.ifa_flags;
                info.up = f & libc::IFF_UP as u32 != 0 && f & libc::IFF_RUNNING as u32 != 0;
            }
            _ => {}
        }
    }
    // SAFETY: `head` came from getifaddrs and is freed exactly once.
    unsafe { libc::freeifaddrs(head) };
    Some(info)
}

#[cfg(test)]
mod tests {
    #[test]
    fn loopback_exists_and_missing_does_not() {
        let lo = super::lookup("lo").expect("lo");
        assert!(lo.index > 0);
        assert!(super::lookup("wvr-no-such-if0").is_none());
        assert!(super::lookup("bad\0name").is_none());
    }
}
