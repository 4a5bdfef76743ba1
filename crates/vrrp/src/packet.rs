//! VRRP advertisement wire format (RFC 3768 v2, RFC 5798 v3, IPv4 only).
//!
//! Owns: encoding and decoding of the VRRP payload and the IPv4 header we send and receive, and
//! the Internet checksum. Guarantees: `decode` never panics and rejects (with a reason) anything
//! that is not a well-formed advertisement: short packets, wrong version/type, bad checksum (v3
//! covers the IPv4 pseudo-header, v2 only the VRRP message), address count larger than the data.
//! Policy checks (TTL 255, VRID, authentication) belong to the caller, which knows the instance.

use std::net::Ipv4Addr;

pub const IPPROTO_VRRP: u8 = 112;
pub const VRRP_GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
/// v2 authentication types.
pub const AUTH_NONE: u8 = 0;
pub const AUTH_PASS: u8 = 1;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advert {
    pub version: u8,
    pub vrid: u8,
    pub priority: u8,
    /// v2: whole seconds ×100; v3: centiseconds. Always centiseconds here.
    pub interval_cs: u16,
    /// v2 only (ignored for v3): AUTH_NONE or AUTH_PASS and its 8 octets.
    pub auth_type: u8,
    pub auth_data: [u8; 8],
    pub addrs: Vec<Ipv4Addr>,
}

/// One's-complement sum of 16-bit words, folded (RFC 1071).
pub fn checksum_add(mut sum: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum = sum.wrapping_add(u32::from(u16::from_be_bytes([c[0], c[1]])));
    }
    if let [last] = chunks.remainder() {
        sum = sum.wrapping_add(u32::from(*last) << 8);
    }
    sum
}

pub fn checksum_fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn pseudo_sum(src: Ipv4Addr, dst: Ipv4Addr, len: usize) -> u32 {
    let mut p = [0u8; 12];
    p[0..4].copy_from_slice(&src.octets());
    p[4..8].copy_from_slice(&dst.octets());
    p[9] = IPPROTO_VRRP;
    p[10..12].copy_from_slice(&(len as u16).to_be_bytes());
    checksum_add(0, &p)
}

impl Advert {
    /// The VRRP message (no IP header). `src`/`dst` feed the v3 pseudo-header checksum.
    pub fn encode(&self, src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
        let n = self.addrs.len().min(255);
        let mut b = Vec::with_capacity(8 + 4 * n + 8);
        b.push((self.version << 4) | 1);
        b.push(self.vrid);
        b.push(self.priority);
        b.push(n as u8);
        if self.version == 2 {
            b.push(self.auth_type);
            b.push((self.interval_cs / 100).clamp(1, 255) as u8);
        } else {
            let i = self.interval_cs & 0x0fff;
            b.extend_from_slice(&i.to_be_bytes());
        }
        b.extend_from_slice(&[0, 0]);
        for a in self.addrs.iter().take(n) {
            b.extend_from_slice(&a.octets());
        }
        if self.version == 2 {
            b.extend_from_slice(&self.auth_data);
        }
        let sum = if self.version == 3 {
            checksum_fold(checksum_add(pseudo_sum(src, dst, b.len()), &b))
        } else {
            checksum_fold(checksum_add(0, &b))
        };
        b[6..8].copy_from_slice(&sum.to_be_bytes());
        b
    }

    /// Decodes a VRRP message received from `src` to `dst`.
    pub fn decode(b: &[u8], src: Ipv4Addr, dst: Ipv4Addr) -> Result<Advert, &'static str> {
        if b.len() < 8 {
            return Err("packet too short");
        }
        let version = b[0] >> 4;
        if b[0] & 0x0f != 1 {
            return Err("not an advertisement (type != 1)");
        }
        let count = usize::from(b[3]);
        let need = match version {
            2 => 8 + 4 * count + 8,
            3 => 8 + 4 * count,
            _ => return Err("unsupported VRRP version"),
        };
        if b.len() < need {
            return Err("address count larger than packet");
        }
        let b = &b[..need];
        let ok = if version == 3 {
            checksum_fold(checksum_add(pseudo_sum(src, dst, b.len()), b)) == 0
        } else {
            checksum_fold(checksum_add(0, b)) == 0
        };
        if !ok {
            return Err("bad checksum");
        }
        let addrs = (0..count)
            .map(|i| {
                let o = 8 + 4 * i;
                Ipv4Addr::new(b[o], b[o + 1], b[o + 2], b[o + 3])
            })
            .collect();
        let (auth_type, interval_cs, auth_data) = if version == 2 {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[need - 8..need]);
            (b[4], u16::from(b[5]) * 100, a)
        } else {
            (AUTH_NONE, u16::from_be_bytes([b[4], b[5]]) & 0x0fff, [0; 8])
        };
        Ok(Advert {
            version,
            vrid: b[1],
            priority: b[2],
            interval_cs,
            auth_type,
            auth_data,
            addrs,
        })
    }
}

/// What we need from a received IPv4 header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Info {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub ttl: u8,
    pub protocol: u8,
    pub header_len: usize,
    pub total_len: usize,
}

pub fn parse_ipv4(b: &[u8]) -> Option<Ipv4Info> {
    if b.len() < 20 || b[0] >> 4 != 4 {
        return None;
    }
    let header_len = usize::from(b[0] & 0x0f) * 4;
    let total_len = usize::from(u16::from_be_bytes([b[2], b[3]]));
    if header_len < 20 || b.len() < header_len {
        return None;
    }
    Some(Ipv4Info {
        src: Ipv4Addr::new(b[12], b[13], b[14], b[15]),
        dst: Ipv4Addr::new(b[16], b[17], b[18], b[19]),
        ttl: b[8],
        protocol: b[9],
        header_len,
        // The kernel may hand us fewer bytes than the header claims (truncation): trust the buffer.
        total_len: total_len.min(b.len()),
    })
}

/// IPv4 header for a VRRP packet sent through an IPPROTO_RAW socket (we choose the source
/// address, which the v3 checksum covers). TTL 255 as both RFCs require; TOS = internetwork
/// control like keepalived. The kernel fills in the identification and header checksum.
pub fn ipv4_header(src: Ipv4Addr, dst: Ipv4Addr, payload_len: usize) -> [u8; 20] {
    let mut h = [0u8; 20];
    h[0] = 0x45;
    h[1] = 0xc0;
    h[2..4].copy_from_slice(&((20 + payload_len) as u16).to_be_bytes());
    h[6] = 0x40; // don't fragment: adverts are tiny
    h[8] = 255;
    h[9] = IPPROTO_VRRP;
    h[12..16].copy_from_slice(&src.octets());
    h[16..20].copy_from_slice(&dst.octets());
    let sum = checksum_fold(checksum_add(0, &h));
    h[10..12].copy_from_slice(&sum.to_be_bytes());
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);

    /// A VRRPv2 advert as keepalived sends it for the tutorial config (VRID 1, priority 100,
    /// advert_int 1, PASS "1111", VIP 192.168.0.10); checksum 0x56e7 computed independently
    /// (RFC 1071 sum in Python) and matching keepalived 2.2.7 on the wire in the interop tests.
    const V2_TUTORIAL: [u8; 20] = [
        0x21, 0x01, 0x64, 0x01, 0x01, 0x01, 0x56, 0xe7, 0xc0, 0xa8, 0x00, 0x0a, b'1', b'1', b'1',
        b'1', 0, 0, 0, 0,
    ];

    #[test]
    fn v2_known_vector() {
        let a = Advert {
            version: 2,
            vrid: 1,
            priority: 100,
            interval_cs: 100,
            auth_type: AUTH_PASS,
            auth_data: *b"1111\0\0\0\0",
            addrs: vec![Ipv4Addr::new(192, 168, 0, 10)],
        };
        let e = a.encode(SRC, VRRP_GROUP);
        assert_eq!(e, V2_TUTORIAL);
        assert_eq!(Advert::decode(&e, SRC, VRRP_GROUP).unwrap(), a);
    }

    #[test]
    fn v3_known_vector_with_pseudo_header() {
        // VRID 51, priority 150, 0.1 s (10 cs), VIP 198.18.0.100, from 198.18.0.2 to 224.0.0.18.
        let a = Advert {
            version: 3,
            vrid: 51,
            priority: 150,
            interval_cs: 10,
            auth_type: AUTH_NONE,
            auth_data: [0; 8],
            addrs: vec![Ipv4Addr::new(198, 18, 0, 100)],
        };
        let e = a.encode(SRC, VRRP_GROUP);
        // Checksum over pseudo-header (src, dst, 0, 112, len 12) + message, computed independently.
        assert_eq!(
            e,
            vec![0x31, 51, 150, 1, 0x00, 0x0a, 0xcb, 0xa6, 198, 18, 0, 100]
        );
        assert_eq!(Advert::decode(&e, SRC, VRRP_GROUP).unwrap(), a);
        // The same bytes from another source fail: the pseudo-header is covered.
        assert_eq!(
            Advert::decode(&e, Ipv4Addr::new(198, 18, 0, 3), VRRP_GROUP),
            Err("bad checksum")
        );
    }

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// Real packets captured (AF_PACKET, in a test namespace) from keepalived 2.2.7:
    /// VRID 51, priority 150, VIP 198.18.0.100, from 198.18.0.1 — v2 with PASS "1111" and
    /// advert_int 1, v3 with advert_int 0.5. We decode them and re-encode byte for byte.
    #[test]
    fn keepalived_captures_roundtrip() {
        for hex in [
            "45c0002800060000ff70147ac6120001e00000122133960101011ef1c61200643131313100000000",
            "45c0002000040000ff701484c6120001e0000012313396010032cb7fc6120064",
        ] {
            let pkt = unhex(hex);
            let ip = parse_ipv4(&pkt).unwrap();
            assert_eq!(
                (ip.ttl, ip.protocol, ip.src),
                (255, 112, Ipv4Addr::new(198, 18, 0, 1))
            );
            let a = Advert::decode(&pkt[ip.header_len..ip.total_len], ip.src, ip.dst).unwrap();
            assert_eq!((a.vrid, a.priority), (51, 150));
            assert_eq!(a.addrs, vec![Ipv4Addr::new(198, 18, 0, 100)]);
            assert_eq!(a.interval_cs, if a.version == 2 { 100 } else { 50 });
            if a.version == 2 {
                assert_eq!((a.auth_type, &a.auth_data), (AUTH_PASS, b"1111\0\0\0\0"));
            }
            assert_eq!(a.encode(ip.src, ip.dst), &pkt[ip.header_len..ip.total_len]);
        }
    }

    #[test]
    fn rejects_garbage_without_panicking() {
        assert!(Advert::decode(&[], SRC, VRRP_GROUP).is_err());
        assert_eq!(
            Advert::decode(&[0x21, 1, 100, 50, 0, 1, 0, 0], SRC, VRRP_GROUP),
            Err("address count larger than packet")
        );
        assert_eq!(
            Advert::decode(&[0x22, 1, 100, 0, 0, 1, 0, 0], SRC, VRRP_GROUP),
            Err("not an advertisement (type != 1)")
        );
        assert_eq!(
            Advert::decode(&[0x41, 1, 100, 0, 0, 1, 0, 0], SRC, VRRP_GROUP),
            Err("unsupported VRRP version")
        );
        let mut e = V2_TUTORIAL;
        e[2] = 101;
        assert_eq!(Advert::decode(&e, SRC, VRRP_GROUP), Err("bad checksum"));
        for len in 0..64 {
            let junk: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            let _ = Advert::decode(&junk, SRC, VRRP_GROUP);
            let _ = parse_ipv4(&junk);
        }
    }

    #[test]
    fn ip_header_roundtrip() {
        let h = ipv4_header(SRC, VRRP_GROUP, 20);
        assert_eq!(checksum_fold(checksum_add(0, &h)), 0);
        let i = parse_ipv4(&h).unwrap();
        assert_eq!(
            (i.src, i.dst, i.ttl, i.protocol, i.header_len, i.total_len),
            (SRC, VRRP_GROUP, 255, 112, 20, 20)
        );
    }
}
