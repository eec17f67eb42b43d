//! Which resolved addresses the fetcher may connect to: no private, loopback, link-local,
//! metadata or otherwise special address unless the operator allows it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// The address rule of one fetcher.
#[derive(Debug, Clone, Default)]
pub struct AddressPolicy {
    /// Allow every address (`--allow-private-addresses`).
    pub allow_all: bool,
    /// Networks allowed even though they are special (`--allow-cidr 127.0.0.1/32`).
    pub allowed: Vec<IpNet>,
}

impl AddressPolicy {
    /// Whether the fetcher may connect to `ip`.
    pub fn permits(&self, ip: IpAddr) -> bool {
        if self.allow_all || self.allowed.iter().any(|net| net.contains(&ip)) {
            return true;
        }
        is_public(ip)
    }
}

/// Whether `ip` is an ordinary public unicast address.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let octets = v4.octets();
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local() // 169.254.0.0/16, the metadata address included
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || octets[0] == 0
                || (octets[0] == 100 && (octets[1] & 0xc0) == 64) // 100.64.0.0/10 carrier NAT
                || (octets[0] == 192 && octets[1] == 0 && octets[2] == 0) // 192.0.0.0/24
                || (octets[0] == 198 && (octets[1] & 0xfe) == 18) // 198.18.0.0/15 benchmarks
                || octets[0] >= 240)
        }
        IpAddr::V6(v6) => {
            // Addresses that carry an IPv4 address are judged by it: a NAT64 gateway or a 6to4
            // relay would forward to that address, private ones included.
            if let Some(embedded) = embedded_ipv4(v6) {
                return is_public(IpAddr::V4(embedded));
            }
            let segments = v6.segments();
            let first = segments[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || segments[..6] == [0; 6] // ::/96, IPv4-compatible (deprecated), never public
                || segments[..4] == [0x100, 0, 0, 0] // 100::/64 discard-only
                || segments[..3] == [0x64, 0xff9b, 1] // 64:ff9b:1::/48 local-use NAT64
                || (first & 0xfe00) == 0xfc00 // unique local (AWS's fd00:ec2::254 included)
                || (first & 0xffc0) == 0xfe80 // link local
                || (first & 0xffc0) == 0xfec0 // site local (deprecated)
                || (first == 0x2001 && segments[1] == 0) // Teredo 2001::/32
                || (first == 0x2001 && segments[1] == 0xdb8))
        }
    }
}

/// The IPv4 address inside an IPv4-mapped (`::ffff:a.b.c.d`), IPv4-translated
/// (`::ffff:0:a.b.c.d`, SIIT, RFC 2765), NAT64 (`64:ff9b::a.b.c.d`, RFC 6052) or 6to4
/// (`2002:aabb:ccdd::`, RFC 3056) address.
fn embedded_ipv4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(mapped) = v6.to_ipv4_mapped() {
        return Some(mapped);
    }
    let segments = v6.segments();
    let octets = v6.octets();
    if segments[..6] == [0, 0, 0, 0, 0xffff, 0] {
        return Some(Ipv4Addr::new(
            octets[12], octets[13], octets[14], octets[15],
        ));
    }
    if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return Some(Ipv4Addr::new(
            octets[12], octets[13], octets[14], octets[15],
        ));
    }
    if segments[0] == 0x2002 {
        return Some(Ipv4Addr::new(octets[2], octets[3], octets[4], octets[5]));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_addresses_are_refused_unless_allowed() {
        let policy = AddressPolicy::default();
        for text in [
            "10.0.0.1",
            "172.16.5.4",
            "192.168.1.1",
            "127.0.0.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:0:127.0.0.1",
            "::ffff:0:169.254.169.254",
            "::127.0.0.1",
            "::a00:1",
            "64:ff9b::10.0.0.1",
            "64:ff9b::169.254.169.254",
            "64:ff9b:1::8.8.8.8",
            "2002:a00:1::1",
            "2002:7f00:1::",
            "2002:a9fe:a9fe::1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "fec0::1",
            "100::1",
            "fd00:ec2::254",
        ] {
            let ip: IpAddr = text.parse().expect("ip");
            assert!(!policy.permits(ip), "{text} must be refused");
        }
        for text in [
            "93.184.216.34",
            "2606:4700::1111",
            "1.1.1.1",
            // Public IPv4 behind NAT64 (an IPv6-only node with DNS64) and 6to4.
            "64:ff9b::93.184.216.34",
            "2002:5db8:d822::1",
            "::ffff:1.1.1.1",
            "::ffff:0:1.1.1.1",
        ] {
            let ip: IpAddr = text.parse().expect("ip");
            assert!(policy.permits(ip), "{text} is public");
        }
        let loopback_only = AddressPolicy {
            allow_all: false,
            allowed: vec!["127.0.0.1/32".parse().expect("net")],
        };
        assert!(loopback_only.permits("127.0.0.1".parse().expect("ip")));
        assert!(!loopback_only.permits("127.0.0.2".parse().expect("ip")));
        assert!(!loopback_only.permits("169.254.169.254".parse().expect("ip")));
    }
}
