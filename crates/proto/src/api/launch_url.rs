//! The launch URL the portal hands to the launcher: `udssv2://<host>/<ticket>/<scrambler>`.

use core::fmt;

use zeroize::Zeroizing;

use crate::{Error, Scrambler, TicketId};

/// The URL scheme the launcher registers.
pub const LAUNCH_URL_SCHEME: &str = "udssv2";

/// Longest accepted host (with its optional `:port`).
pub const MAX_HOST_LEN: usize = 255;

/// A parsed launch URL: `udssv2://<host>/<ticket48>/<scrambler>`.
///
/// `host` is the broker's host name or address, with an optional `:port` (IPv6 addresses
/// in brackets); the launcher reaches the broker at `https://<host>`. The URL carries the
/// client ticket, a bearer credential: `Debug` and `Display` show only its first
/// 8 characters, and [`LaunchUrl::expose`] gives the whole URL.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct LaunchUrl {
    host: String,
    ticket: TicketId,
    scrambler: Scrambler,
}

impl LaunchUrl {
    /// Makes a launch URL, checking the host.
    pub fn new(host: &str, ticket: TicketId, scrambler: Scrambler) -> Result<Self, Error> {
        check_host(host)?;
        Ok(Self {
            host: host.to_owned(),
            ticket,
            scrambler,
        })
    }

    /// Parses a launch URL.
    ///
    /// The scheme is matched without regard to case. Refused: another scheme, an empty or
    /// malformed host (user info, spaces, anything but `A-Z a-z 0-9 . - _ : [ ]`), a query
    /// or fragment, a path that is not exactly `/<ticket>/<scrambler>`, a bad ticket id or
    /// scrambler. One trailing `/` is tolerated, since some systems append it to URLs they
    /// pass to protocol handlers.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let (scheme, rest) = text
            .split_once("://")
            .ok_or(invalid("not a udssv2:// URL"))?;
        if !scheme.eq_ignore_ascii_case(LAUNCH_URL_SCHEME) {
            return Err(invalid("the scheme must be udssv2"));
        }
        if rest.contains(['?', '#']) {
            return Err(invalid("a query or fragment is not allowed"));
        }
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let mut parts = rest.split('/');
        let (Some(host), Some(ticket), Some(scrambler), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid("the path must be exactly /<ticket>/<scrambler>"));
        };
        check_host(host)?;
        Ok(Self {
            host: host.to_owned(),
            ticket: TicketId::parse(ticket)?,
            scrambler: Scrambler::parse(scrambler)?,
        })
    }

    /// The broker host, with its optional port.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The client ticket.
    pub fn ticket(&self) -> &TicketId {
        &self.ticket
    }

    /// The scrambler.
    pub fn scrambler(&self) -> &Scrambler {
        &self.scrambler
    }

    /// The whole URL, ticket included, in a buffer zeroized on drop. Never log it.
    pub fn expose(&self) -> Zeroizing<String> {
        let mut url = String::with_capacity(
            LAUNCH_URL_SCHEME.len() + 5 + self.host.len() + TicketId::LEN + Scrambler::MAX_LEN,
        );
        for part in [
            LAUNCH_URL_SCHEME,
            "://",
            &self.host,
            "/",
            self.ticket.expose(),
            "/",
            self.scrambler.as_str(),
        ] {
            url.push_str(part);
        }
        Zeroizing::new(url)
    }
}

/// Shows the URL with the ticket shortened to its first 8 characters, safe to log.
impl fmt::Display for LaunchUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{LAUNCH_URL_SCHEME}://{}/{}/{}",
            self.host, self.ticket, self.scrambler
        )
    }
}

fn invalid(reason: &'static str) -> Error {
    Error::Invalid {
        what: "launch URL",
        reason,
    }
}

fn check_host(host: &str) -> Result<(), Error> {
    if host.is_empty() {
        return Err(invalid("the host is empty"));
    }
    if host.len() > MAX_HOST_LEN {
        return Err(invalid("the host is longer than 255 characters"));
    }
    let allowed =
        |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':' | b'[' | b']');
    if !host.bytes().all(allowed) {
        return Err(invalid("the host may hold only A-Z a-z 0-9 . - _ : [ ]"));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const TICKET: &str = "c6s9FAa5fhb854BVMckqUBJ4hOXg2iE5i1FYPCuktks4eNZD";

    #[test]
    fn parse_and_expose() {
        let text = format!("udssv2://broker.example.com:8443/{TICKET}/Scr4mbler");
        let url = LaunchUrl::parse(&text).unwrap();
        assert_eq!(url.host(), "broker.example.com:8443");
        assert_eq!(url.ticket().expose(), TICKET);
        assert_eq!(url.scrambler().as_str(), "Scr4mbler");
        assert_eq!(url.expose().as_str(), text);
        assert_eq!(LaunchUrl::parse(&format!("{text}/")).unwrap(), url);
        assert_eq!(
            LaunchUrl::parse(&text.replace("udssv2", "UDSSV2")).unwrap(),
            url
        );
        let v6 = LaunchUrl::parse(&format!("udssv2://[::1]:443/{TICKET}/x")).unwrap();
        assert_eq!(v6.host(), "[::1]:443");
    }

    #[test]
    fn debug_and_display_hide_the_ticket() {
        let url = LaunchUrl::parse(&format!("udssv2://h/{TICKET}/s")).unwrap();
        for shown in [format!("{url:?}"), url.to_string()] {
            assert!(!shown.contains(TICKET), "{shown}");
            assert!(shown.contains("c6s9FAa5"), "{shown}");
        }
        assert_eq!(url.to_string(), "udssv2://h/c6s9FAa5…/s");
    }

    #[test]
    fn refusals() {
        let bad = [
            format!("udss://h/{TICKET}/s"),
            format!("https://h/{TICKET}/s"),
            format!("udssv2:/h/{TICKET}/s"),
            format!("udssv2:///{TICKET}/s"),
            format!("udssv2://h/{TICKET}/s/extra"),
            format!("udssv2://h/{TICKET}/s//"),
            format!("udssv2://h/{TICKET}"),
            format!("udssv2://h/{TICKET}/"),
            format!("udssv2://h/{TICKET}/s?x=1"),
            format!("udssv2://h/{TICKET}/s#f"),
            format!("udssv2://user@h/{TICKET}/s"),
            format!("udssv2://h h/{TICKET}/s"),
            format!("udssv2://{}/{TICKET}/s", "h".repeat(256)),
            "udssv2://h/short/s".to_owned(),
            format!("udssv2://h/{TICKET}/bad-scrambler"),
            String::new(),
        ];
        for text in bad {
            assert!(
                matches!(LaunchUrl::parse(&text), Err(Error::Invalid { .. })),
                "{text}"
            );
        }
        let ticket = TicketId::parse(TICKET).unwrap();
        let scrambler = Scrambler::parse("s").unwrap();
        assert!(LaunchUrl::new("", ticket.clone(), scrambler.clone()).is_err());
        assert!(LaunchUrl::new("a/b", ticket.clone(), scrambler.clone()).is_err());
        assert_eq!(LaunchUrl::new("h", ticket, scrambler).unwrap().host(), "h");
    }

    proptest! {
        #[test]
        fn round_trip(
            host in "[a-z0-9]([a-z0-9.-]{0,40})(:[0-9]{1,5})?",
            ticket in "[A-Za-z0-9]{48}",
            scrambler in "[A-Za-z0-9]{1,64}",
        ) {
            let url = LaunchUrl::new(
                &host,
                TicketId::parse(&ticket).unwrap(),
                Scrambler::parse(&scrambler).unwrap(),
            ).unwrap();
            let text = url.expose();
            prop_assert_eq!(text.as_str(), format!("udssv2://{host}/{ticket}/{scrambler}"));
            prop_assert_eq!(LaunchUrl::parse(&text).unwrap(), url);
        }
    }
}
