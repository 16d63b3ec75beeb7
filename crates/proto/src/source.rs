//! The principal a client address counts as in per-address budgets: the tunnel server's
//! connection and handshake limits (docs/protocol.md §8.15) and the broker's sign-in limits
//! (docs/broker.md) key by it, so that both servers agree on who "one address" is.

use core::fmt;
use std::net::IpAddr;

/// A source address as a budget key: an IPv4 address itself, an IPv6 address by its /64
/// (which one host typically owns whole, so its other addresses are the same principal).
/// An IPv4 address written as IPv6 (`::ffff:a.b.c.d`, how a dual-stack socket reports
/// IPv4 peers) is that IPv4 address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct SourceKey(IpAddr);

impl SourceKey {
    /// The key of `address`.
    pub fn of(address: IpAddr) -> Self {
        match address.to_canonical() {
            IpAddr::V6(v6) => Self(IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into())),
            v4 => Self(v4),
        }
    }

    /// The address or network it stands for: the IPv4 address, or the first address of
    /// the IPv6 /64.
    pub fn network(&self) -> IpAddr {
        self.0
    }
}

impl fmt::Display for SourceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(v4) => write!(f, "{v4}"),
            IpAddr::V6(v6) => write!(f, "{v6}/64"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(text: &str) -> SourceKey {
        SourceKey::of(text.parse().unwrap())
    }

    #[test]
    fn ipv6_addresses_count_by_their_64_and_ipv4_as_themselves() {
        assert_eq!(key("2001:db8:1:2:aaaa::1"), key("2001:db8:1:2:bbbb::2"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("2001:db8:1:2:aaaa::1").to_string(), "2001:db8:1:2::/64");
        assert_eq!(key("::ffff:192.0.2.1"), key("192.0.2.1"));
        assert_ne!(key("192.0.2.1"), key("192.0.2.2"));
        assert_eq!(key("192.0.2.1").to_string(), "192.0.2.1");
        assert_eq!(
            key("192.0.2.1").network(),
            "192.0.2.1".parse::<IpAddr>().unwrap()
        );
    }
}
