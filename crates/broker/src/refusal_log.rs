//! The broker's log lines for refused tunnel-server requests, aggregated: a flood of
//! refusals (15,000 in 14 s) must not become a line each.
//!
//! The first refusal of a reason is logged at once; after it, at most one line per reason
//! every [`INTERVAL_MS`], saying how many refusals of that reason came since the previous
//! line. Metrics still count every refusal (`portcullis_tunnel_redemptions_refused_total`).

use std::collections::HashMap;

use parking_lot::Mutex;

use crate::clock::Millis;

/// At most one line per reason this often.
pub const INTERVAL_MS: Millis = 10_000;

#[derive(Debug)]
struct Entry {
    /// When the last line was written.
    logged_at: Millis,
    /// Refusals since then that got no line.
    unlogged: u64,
}

/// Aggregates refusal log lines per reason (a handful of fixed words: bounded memory).
#[derive(Debug, Default)]
pub struct RefusalLog {
    entries: Mutex<HashMap<&'static str, Entry>>,
}

impl RefusalLog {
    /// A refusal for `reason` at `now`: logs it, or counts it for the next line.
    pub fn refused(&self, reason: &'static str, now: Millis) {
        let mut entries = self.entries.lock();
        let entry = entries.entry(reason).or_insert(Entry {
            logged_at: Millis::MIN,
            unlogged: 0,
        });
        let due = entry.logged_at == Millis::MIN
            || now.saturating_sub(entry.logged_at) >= INTERVAL_MS
            || now < entry.logged_at;
        if !due {
            entry.unlogged = entry.unlogged.saturating_add(1);
            return;
        }
        let refusals = entry.unlogged + 1;
        entry.logged_at = now;
        entry.unlogged = 0;
        drop(entries);
        if refusals == 1 {
            tracing::info!(reason, "tunnel API request refused");
        } else {
            tracing::info!(
                reason,
                refusals,
                interval_secs = INTERVAL_MS / 1000,
                "tunnel API requests refused (one line per reason and interval)"
            );
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::io;
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A writer into a shared buffer.
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Lines {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_flood_of_refusals_is_a_line_per_reason_and_interval() {
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        let log = RefusalLog::default();
        tracing::subscriber::with_default(subscriber, || {
            // 15,000 refusals in 14 s, as the flood of issue 15 (a millisecond clock).
            for n in 0..15_000i64 {
                let reason = if n % 3 == 0 {
                    "bad_token"
                } else {
                    "proof_limit"
                };
                log.refused(reason, 1_000_000 + n * 14_000 / 15_000);
            }
        });
        let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        let count = text.lines().count();
        // Each reason: its first refusal, then one line per 10 s.
        assert!(count <= 4, "{count} lines:\n{text}");
        assert!(text.contains("reason=\"proof_limit\"") || text.contains("reason=proof_limit"));
        assert!(text.contains("refusals="), "{text}");
    }

    #[test]
    fn a_quiet_reason_is_logged_at_once() {
        let log = RefusalLog::default();
        log.refused("bad_token", 0);
        log.refused("bad_token", 1);
        let entries = log.entries.lock();
        assert_eq!(entries["bad_token"].unlogged, 1);
        assert_eq!(entries["bad_token"].logged_at, 0);
    }
}
