//! IP networks for `trusted_proxies`: an address (`192.0.2.7`, `::1`) or a network in CIDR
//! notation (`10.0.0.0/8`, `fd00::/8`).

use core::fmt;
use core::str::FromStr;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Deserializer};

/// An IP network: every address whose first `prefix` bits equal those of `network`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct IpNet {
    network: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// Whether `addr` is in the network. An IPv4 address written as IPv6 (`::ffff:a.b.c.d`,
    /// how a dual-stack socket reports IPv4 peers) counts as the IPv4 address.
    pub fn contains(&self, addr: IpAddr) -> bool {
        match (self.network, addr.to_canonical()) {
            (IpAddr::V4(network), IpAddr::V4(addr)) => {
                masked(u128::from(u32::from(addr)), self.prefix, 32)
                    == u128::from(u32::from(network))
            }
            (IpAddr::V6(network), IpAddr::V6(addr)) => {
                masked(u128::from(addr), self.prefix, 128) == u128::from(network)
            }
            _ => false,
        }
    }
}

/// `bits` (an address of `width` bits) with all but its first `prefix` bits cleared.
fn masked(bits: u128, prefix: u8, width: u8) -> u128 {
    let host_bits = u32::from(width - prefix);
    bits.checked_shr(host_bits)
        .and_then(|network| network.checked_shl(host_bits))
        .unwrap_or(0)
}

impl FromStr for IpNet {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr = addr
            .parse()
            .map_err(|_| format!("{text:?} is not an IP address or network (like 10.0.0.0/8)"))?;
        let network = network.to_canonical();
        let width: u8 = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => width,
            Some(prefix) => prefix
                .parse::<u8>()
                .ok()
                .filter(|prefix| *prefix <= width)
                .ok_or_else(|| format!("{text:?}: the prefix length must be 0 to {width}"))?,
        };
        let bits = match network {
            IpAddr::V4(addr) => u128::from(u32::from(addr)),
            IpAddr::V6(addr) => u128::from(addr),
        };
        if masked(bits, prefix, width) != bits {
            // `10.0.0.1/8` is most likely a typo; say what it would mean.
            let base = masked(bits, prefix, width);
            let base = match network {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(u32::try_from(base).unwrap_or(0))),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(base)),
            };
            return Err(format!(
                "{text:?} has bits set after the prefix; write {base}/{prefix} for the network"
            ));
        }
        Ok(Self { network, prefix })
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl<'de> Deserialize<'de> for IpNet {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn addresses_and_networks() {
        let one: IpNet = "192.0.2.7".parse().unwrap();
        assert!(one.contains(ip("192.0.2.7")));
        assert!(!one.contains(ip("192.0.2.8")));
        assert!(one.contains(ip("::ffff:192.0.2.7")), "IPv4-mapped peers");

        let net: IpNet = "10.0.0.0/8".parse().unwrap();
        assert!(net.contains(ip("10.255.1.2")));
        assert!(!net.contains(ip("11.0.0.1")));
        assert!(!net.contains(ip("::1")));

        let v6: IpNet = "fd00::/8".parse().unwrap();
        assert!(v6.contains(ip("fd12::1")));
        assert!(!v6.contains(ip("fe80::1")));
        assert!(!v6.contains(ip("10.0.0.1")));

        let everything: IpNet = "0.0.0.0/0".parse().unwrap();
        assert!(everything.contains(ip("203.0.113.9")));
        assert_eq!(everything.to_string(), "0.0.0.0/0");
        assert_eq!("::1".parse::<IpNet>().unwrap().to_string(), "::1/128");
    }

    #[test]
    fn mistakes_are_explained() {
        let error = "10.0.0.1/8".parse::<IpNet>().unwrap_err();
        assert!(error.contains("write 10.0.0.0/8"), "{error}");
        let error = "10.0.0.0/33".parse::<IpNet>().unwrap_err();
        assert!(error.contains("0 to 32"), "{error}");
        let error = "proxy.example".parse::<IpNet>().unwrap_err();
        assert!(error.contains("not an IP address"), "{error}");
        assert!(
            "fd00::1/8"
                .parse::<IpNet>()
                .unwrap_err()
                .contains("fd00::/8")
        );
    }
}
