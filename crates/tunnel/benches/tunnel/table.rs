//! The printed report: one table per phase, numbers and budgets side by side.

use std::time::Duration;

use portcullis_testkit::Percentiles;

use crate::measure::{mib, ms};
use crate::throughput::{CHAIN, Direction, PATHS, RELAY};
use crate::{Plan, Report};

/// Tunnel throughput at least this share of the plain relay's (issue 8 §6).
const MIN_RELAY_RATIO: f64 = 0.60;
/// Open latency budgets on loopback, broker on SQLite.
const OPEN_P50: Duration = Duration::from_millis(5);
const OPEN_P99: Duration = Duration::from_millis(20);
/// Resident memory per idle connection.
const IDLE_BYTES: f64 = 64.0 * 1024.0;
/// RSS after the aborted handshakes, in percent of where it started.
const RSS_DRIFT_PERCENT: f64 = 5.0;

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
const MIB: f64 = 1024.0 * 1024.0;

pub(crate) struct Table {
    pub(crate) title: String,
    pub(crate) header: &'static [&'static str],
    pub(crate) rows: Vec<Vec<String>>,
}

impl Table {
    pub(crate) fn print(&self) {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        println!("{}", self.title);
        let line = |cells: &mut dyn Iterator<Item = &str>| {
            let mut text = String::from(" ");
            for (index, (cell, width)) in cells.zip(&widths).enumerate() {
                let pad = " ".repeat(width - cell.chars().count());
                if index == 0 || index + 1 == widths.len() {
                    text.push_str(&format!(" {cell}{pad} "));
                } else {
                    text.push_str(&format!(" {pad}{cell} "));
                }
            }
            println!("{}", text.trim_end());
        };
        line(&mut self.header.iter().copied());
        for row in &self.rows {
            line(&mut row.iter().map(String::as_str));
        }
    }
}

pub(crate) fn verdict(ok: bool, budget: &str) -> String {
    format!("{} ({budget})", if ok { "ok" } else { "MISSED" })
}

impl Report {
    pub(crate) fn print(&self, plan: &Plan) {
        self.throughput_table(plan).print();
        println!(
            "  median of {} interleaved round(s); CPU = user+system seconds of the whole process \
             (bench client and target included) per GiB moved; plain relay = \
             tokio::io::copy_bidirectional (8 KiB buffers).",
            self.throughput.rounds
        );
        let rate = |direction: Direction, path: usize| {
            self.throughput
                .rows
                .iter()
                .find(|(d, p, _)| *d == direction && *p == path)
                .map_or(f64::NAN, |(_, _, t)| 1.0 / t.secs)
        };
        let tunnel = PATHS.len() - 1;
        println!(
            "  tunnel vs 2 plain relays (same hop count, so the cost of crypto and protocol alone): \
             upload {:.2}, download {:.2}.",
            rate(Direction::Upload, tunnel) / rate(Direction::Upload, CHAIN),
            rate(Direction::Download, tunnel) / rate(Direction::Download, CHAIN),
        );
        println!(
            "  the record layer alone (AES-256-GCM seal at the launcher + open at the server, \
             16 KiB records, in place, one thread, no I/O): {:.2} CPU s/GiB.",
            self.records_secs_per_gib
        );
        println!();
        self.latency_table().print();
        println!(
            "  local TCP connect at the forwarder → first byte read by the target; open = fresh \
             ticket and forwarder (broker start over HTTP, SQLite), attach = the same session's \
             second connection."
        );
        println!();
        self.idle_table().print();
        println!(
            "  (RSS after − RSS before) / connections of the whole process, which also holds the \
             forwarder's side, the echo target and the bench's sockets: an upper bound for the \
             tunnel server alone. {} links relaying at the reading; RSS {} right after the \
             echoes, {} after {} s idle; opened in {:.1} s, all closed and sessions ended in \
             {:.1} s.",
            self.idle.relaying,
            mib(self.idle.rss_opened),
            mib(self.idle.rss_after),
            crate::idle::IDLE.as_secs(),
            self.idle.open_secs,
            self.idle.close_secs
        );
        println!();
        self.aborted_table().print();
        println!(
            "  half an Open hello or a whole one (unknown ticket), then close; after a warm-up \
             round of {}. Budget: 0 sessions, gauge 0, RSS within {RSS_DRIFT_PERCENT} %.",
            plan.aborted_warmup
        );
    }

    fn throughput_table(&self, plan: &Plan) -> Table {
        let results = &self.throughput;
        let rate = |direction: Direction, path: usize| {
            results
                .rows
                .iter()
                .find(|(d, p, _)| *d == direction && *p == path)
                .map(|(_, _, t)| results.bytes as f64 / MIB / t.secs)
                .unwrap()
        };
        let rows = results
            .rows
            .iter()
            .map(|(direction, path, transfer)| {
                let mib_s = results.bytes as f64 / MIB / transfer.secs;
                let ratio = mib_s / rate(*direction, RELAY);
                let budget = if PATHS[*path] == "tunnel" {
                    verdict(
                        ratio >= MIN_RELAY_RATIO,
                        &format!("≥ {MIN_RELAY_RATIO:.2} of relay"),
                    )
                } else {
                    String::new()
                };
                vec![
                    match direction {
                        Direction::Upload => "upload (client → target)".into(),
                        Direction::Download => "download (target → client)".into(),
                    },
                    PATHS[*path].into(),
                    format!("{mib_s:.0}"),
                    format!("{ratio:.2}"),
                    format!("{:.2}", transfer.cpu / (results.bytes as f64 / GIB)),
                    budget,
                ]
            })
            .collect();
        Table {
            title: format!("throughput, one connection, {} each way", mib(plan.bytes)),
            header: &[
                "direction",
                "path",
                "MiB/s",
                "vs relay",
                "CPU s/GiB",
                "budget",
            ],
            rows,
        }
    }

    fn latency_table(&self) -> Table {
        let row = |name: &str, samples: &[Duration]| {
            let p = Percentiles::of(samples);
            let ok = p.p50 <= OPEN_P50 && p.p99 <= OPEN_P99;
            vec![
                name.into(),
                samples.len().to_string(),
                ms(p.p50),
                ms(p.p99),
                ms(p.max),
                verdict(ok, "p50 ≤ 5 ms, p99 ≤ 20 ms"),
            ]
        };
        Table {
            title: "open latency".into(),
            header: &["handshake", "samples", "p50", "p99", "max", "budget"],
            rows: vec![
                row("open (broker start)", &self.latency.open),
                row("attach", &self.latency.attach),
            ],
        }
    }

    fn idle_table(&self) -> Table {
        let idle = &self.idle;
        let per = idle.per_connection();
        Table {
            title: "memory per idle connection".into(),
            header: &[
                "connections",
                "sessions",
                "RSS before",
                "RSS after",
                "per connection",
                "budget",
            ],
            rows: vec![vec![
                idle.connections.to_string(),
                idle.sessions.to_string(),
                mib(idle.rss_before),
                mib(idle.rss_after),
                format!("{:.1} KiB", per / 1024.0),
                verdict(per <= IDLE_BYTES, "≤ 64 KiB"),
            ]],
        }
    }

    fn aborted_table(&self) -> Table {
        let a = &self.aborted;
        Table {
            title: "aborted handshakes".into(),
            header: &[
                "handshakes",
                "sessions left",
                "connections gauge",
                "held by limits",
                "RSS start",
                "RSS end",
                "change",
                "budget",
            ],
            rows: vec![vec![
                a.handshakes.to_string(),
                a.sessions_left.to_string(),
                a.connections_gauge.to_string(),
                a.connections_held.to_string(),
                mib(a.rss_start),
                mib(a.rss_end),
                format!("{:+.2} %", a.rss_change()),
                verdict(a.ok(), "0 left, RSS ±5 %"),
            ]],
        }
    }
}
