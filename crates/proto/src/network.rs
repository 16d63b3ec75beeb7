//! Allow-lists of addresses in configuration files: an address (`192.0.2.7`, `::1`) or a
//! network in CIDR notation (`10.0.0.0/8`, `fd00::/8`), on the `ipnet` crate's networks.
//! The broker's `trusted_proxies` and the tunnel server's `proxy_protocol_trusted` use it.

use core::fmt;
use core::str::FromStr;
use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net};
use serde::{Deserialize, Deserializer};

/// Every address of a network, or one address: a reverse proxy whose `X-Forwarded-For` is
/// believed, a load balancer whose PROXY v2 header is.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct IpNetwork(IpNet);

impl IpNetwork {
    /// Whether `addr` is in the network. An IPv4 address written as IPv6 (`::ffff:a.b.c.d`,
    /// how a dual-stack socket reports IPv4 peers) counts as the IPv4 address.
    pub fn contains(&self, addr: IpAddr) -> bool {
        self.0.contains(&addr.to_canonical())
    }

    /// The network.
    pub fn network(&self) -> IpNet {
        self.0
    }
}

impl FromStr for IpNetwork {
    type Err = String;

    /// Parses an address (a network of one) or a network; refuses a network with bits set
    /// after its prefix (`10.0.0.1/8`: most likely a typo), saying what it would mean.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let net = match text.parse::<IpAddr>() {
            Ok(addr) => IpNet::from(addr),
            Err(_) => text.parse::<IpNet>().map_err(|_| {
                format!(
                    "{text:?} is not an IP address or network (like 10.0.0.0/8, with a prefix \
                     length of 0 to 32 for IPv4 and 0 to 128 for IPv6)"
                )
            })?,
        };
        if net.trunc() != net {
            return Err(format!(
                "{text:?} has bits set after the prefix; write {} for the network",
                net.trunc()
            ));
        }
        Ok(Self(canonical(net)))
    }
}

/// `::ffff:a.b.c.d/n` (n ≥ 96) as the IPv4 network it is.
fn canonical(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
            Some(v4) => Ipv4Net::new(v4, v6.prefix_len() - 96).map_or(net, IpNet::V4),
            None => net,
        },
        other => other,
    }
}

impl fmt::Display for IpNetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<'de> Deserialize<'de> for IpNetwork {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn proxy(text: &str) -> IpNetwork {
        text.parse().unwrap()
    }

    #[test]
    fn addresses_and_networks() {
        let one = proxy("192.0.2.7");
        assert!(one.contains(ip("192.0.2.7")));
        assert!(!one.contains(ip("192.0.2.8")));
        assert!(one.contains(ip("::ffff:192.0.2.7")), "IPv4-mapped peers");
        assert_eq!(proxy("::ffff:192.0.2.7"), one);

        let net = proxy("10.0.0.0/8");
        assert!(net.contains(ip("10.255.1.2")));
        assert!(!net.contains(ip("11.0.0.1")));
        assert!(!net.contains(ip("::1")));

        let v6 = proxy("fd00::/8");
        assert!(v6.contains(ip("fd12::1")));
        assert!(!v6.contains(ip("fe80::1")));
        assert!(!v6.contains(ip("10.0.0.1")));

        let everything = proxy("0.0.0.0/0");
        assert!(everything.contains(ip("203.0.113.9")));
        assert_eq!(everything.to_string(), "0.0.0.0/0");
        assert_eq!(proxy("::1").to_string(), "::1/128");
    }

    #[test]
    fn mistakes_are_explained() {
        let error = "10.0.0.1/8".parse::<IpNetwork>().unwrap_err();
        assert!(error.contains("write 10.0.0.0/8"), "{error}");
        let error = "10.0.0.0/33".parse::<IpNetwork>().unwrap_err();
        assert!(error.contains("0 to 32"), "{error}");
        let error = "proxy.example".parse::<IpNetwork>().unwrap_err();
        assert!(error.contains("not an IP address"), "{error}");
        let error = "fd00::1/8".parse::<IpNetwork>().unwrap_err();
        assert!(error.contains("fd00::/8"), "{error}");
    }
}
