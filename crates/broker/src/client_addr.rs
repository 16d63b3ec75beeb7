//! The client's address: the TCP peer, or behind a trusted reverse proxy the address the
//! proxies recorded in `X-Forwarded-For`. Unknown when the router is driven without a socket.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::HeaderMap;
use axum::http::request::Parts;

use crate::config::TrustedProxy;
use crate::state::AppState;

/// The header reverse proxies append the address of the connection they received to.
const FORWARDED_FOR: &str = "x-forwarded-for";

/// The client's address, if known.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub Option<IpAddr>);

impl FromRequestParts<Arc<AppState>> for ClientAddr {
    type Rejection = core::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self(parts.extensions.get::<ConnectInfo<SocketAddr>>().map(
            |ConnectInfo(peer)| {
                client_behind(peer.ip(), &parts.headers, &state.config.trusted_proxies)
            },
        )))
    }
}

impl ClientAddr {
    /// The address as text for the audit log (`"unknown"` when not known).
    pub fn describe(&self) -> String {
        self.0
            .map_or_else(|| "unknown".to_owned(), |ip| ip.to_string())
    }
}

/// The client of a request that arrived from `peer`.
///
/// Only a trusted proxy's `X-Forwarded-For` is read, from its end: each proxy appends the
/// address it received the request from, so the entries right of the first untrusted one
/// were written by trusted proxies, and anything left of it may be the client's invention.
/// The answer is the last entry that is not a trusted proxy; if an entry there cannot be
/// read, the proxy that recorded it (the entry to its right, or `peer`); if every entry is
/// a trusted proxy, the first.
fn client_behind(peer: IpAddr, headers: &HeaderMap, trusted: &[TrustedProxy]) -> IpAddr {
    let is_trusted = |addr: IpAddr| trusted.iter().any(|net| net.contains(addr));
    let peer = peer.to_canonical();
    if !is_trusted(peer) {
        return peer;
    }
    let mut client = peer;
    // Several header lines count as one list, in order.
    for line in headers.get_all(FORWARDED_FOR).iter().rev() {
        let Ok(line) = line.to_str() else {
            return client;
        };
        for entry in line.rsplit(',') {
            let Some(addr) = parse_entry(entry) else {
                return client;
            };
            client = addr;
            if !is_trusted(addr) {
                return addr;
            }
        }
    }
    client
}

/// One `X-Forwarded-For` entry: an IP address, possibly with a port (`192.0.2.1:4711`,
/// `[2001:db8::1]:4711`), which some proxies add.
fn parse_entry(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    entry
        .parse::<IpAddr>()
        .or_else(|_| entry.parse::<SocketAddr>().map(|addr| addr.ip()))
        .ok()
        .map(|addr| addr.to_canonical())
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn headers(lines: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for line in lines {
            headers.append(FORWARDED_FOR, HeaderValue::from_str(line).unwrap());
        }
        headers
    }

    fn trusted() -> Vec<TrustedProxy> {
        vec!["10.0.0.0/8".parse().unwrap(), "::1".parse().unwrap()]
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_claims() {
        let forged = headers(&["198.51.100.7"]);
        assert_eq!(
            client_behind(ip("203.0.113.5"), &forged, &trusted()),
            ip("203.0.113.5")
        );
        assert_eq!(
            client_behind(ip("10.0.0.2"), &forged, &[]),
            ip("10.0.0.2"),
            "no proxy is trusted by default"
        );
    }

    #[test]
    fn behind_trusted_proxies_the_last_untrusted_entry_is_the_client() {
        let peer = ip("10.0.0.2");
        assert_eq!(
            client_behind(peer, &headers(&["198.51.100.7"]), &trusted()),
            ip("198.51.100.7")
        );
        // The client forged the first entry; the proxies appended the rest.
        assert_eq!(
            client_behind(
                peer,
                &headers(&["1.2.3.4, 198.51.100.7, 10.0.0.9"]),
                &trusted()
            ),
            ip("198.51.100.7")
        );
        // Several header lines are one list; ports and IPv4-mapped addresses are read.
        assert_eq!(
            client_behind(
                ip("::1"),
                &headers(&["1.2.3.4", "[2001:db8::7]:4711, ::ffff:10.1.1.1"]),
                &trusted()
            ),
            ip("2001:db8::7")
        );
        assert_eq!(
            client_behind(
                ip("::ffff:10.0.0.2"),
                &headers(&["198.51.100.7:80"]),
                &trusted()
            ),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn garbage_and_gaps_fall_back_to_the_proxy_that_recorded_them() {
        let peer = ip("10.0.0.2");
        assert_eq!(client_behind(peer, &HeaderMap::new(), &trusted()), peer);
        assert_eq!(
            client_behind(peer, &headers(&["unknown, 10.0.0.9"]), &trusted()),
            ip("10.0.0.9")
        );
        assert_eq!(client_behind(peer, &headers(&[""]), &trusted()), peer);
        assert_eq!(
            client_behind(peer, &headers(&["10.0.0.7, 10.0.0.9"]), &trusted()),
            ip("10.0.0.7"),
            "all trusted: the first"
        );
    }
}
