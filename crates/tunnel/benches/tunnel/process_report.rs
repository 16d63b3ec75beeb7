//! The process phases' tables: throughput, ratios and CPU per end, budgets beside them.

use std::time::Duration;

use crate::iperf::{Direction, Length};
use crate::processes::{HOP_ALONE, HOP_WINDOW, Results, Row, SOCAT, TUNNEL, TUNNEL_OVER_HOP};
use crate::table::{Table, verdict};

/// The tunnel through real processes: at least this share of the two socat relays
/// (issue 15 §5).
const MIN_SOCAT_RATIO: f64 = 0.70;
/// …and at most this many CPU seconds per GiB at each end.
const MAX_SECS_PER_GIB: f64 = 0.8;
/// Over a hop with latency: at least this share of the hop alone (issue 15 §6).
const MIN_HOP_RATIO: f64 = 0.80;

fn rate_of(rows: &[Row], direction: Direction, path: &str) -> f64 {
    rows.iter()
        .find(|row| row.direction == direction && row.path == path)
        .map_or(f64::NAN, |row| row.run.mbit_s())
}

fn end_cell(row: &Row, end: usize) -> String {
    row.ends.as_ref().map_or_else(String::new, |ends| {
        format!("{:.2} {}", ends.secs_per_gib[end], ends.names[end])
    })
}

/// The loopback table and its note.
pub(crate) fn print_loopback(results: &Results) {
    let Some(length) = results.loopback_length else {
        return;
    };
    loopback_table(results).print();
    println!(
        "  iperf3 -t {}, one TCP connection, median of {} interleaved round(s); every tunnel \
         run is a fresh launch (portal Connect, portcullis-launcher running tcp-linux.js, \
         Ctrl-C after). CPU = user+system seconds of that process per GiB received \
         (/proc/PID/stat; socat: its forked relays).",
        length.secs, results.rounds
    );
}

/// The table of one delay and its note.
pub(crate) fn print_hop(delay: Duration, length: Length, rows: &[Row], rounds: usize) {
    let mut table_rows = Vec::new();
    for row in rows {
        let ratio = row.run.mbit_s() / rate_of(rows, row.direction, HOP_ALONE);
        let budget = if row.path == TUNNEL_OVER_HOP {
            verdict(
                ratio >= MIN_HOP_RATIO,
                &format!("≥ {MIN_HOP_RATIO:.2} of the hop alone"),
            )
        } else {
            String::new()
        };
        table_rows.push(vec![
            row.direction.label().into(),
            row.path.into(),
            format!("{:.0}", row.run.mbit_s()),
            format!("{ratio:.2}"),
            budget,
        ]);
    }
    Table {
        title: format!(
            "over a hop with {} ms each way ({} ms round trip, at most {} MiB in flight per \
             direction), one connection",
            delay.as_millis(),
            2 * delay.as_millis(),
            HOP_WINDOW / (1024 * 1024)
        ),
        header: &["direction", "path", "Mbit/s", "vs hop", "budget"],
        rows: table_rows,
    }
    .print();
    println!(
        "  iperf3 -t {} -O {} (the first {} s, slow start and window growth, left out), \
         median of {rounds} round(s).",
        length.secs, length.omit_secs, length.omit_secs
    );
}

fn loopback_table(results: &Results) -> Table {
    let rows = &results.loopback;
    let table_rows =
        rows.iter()
            .map(|row| {
                let ratio = row.run.mbit_s() / rate_of(rows, row.direction, SOCAT);
                let budget = if row.path == TUNNEL {
                    let cpu_ok = row.ends.as_ref().is_some_and(|ends| {
                        ends.secs_per_gib.iter().all(|s| *s <= MAX_SECS_PER_GIB)
                    });
                    verdict(
                        ratio >= MIN_SOCAT_RATIO && cpu_ok,
                        &format!(
                            "≥ {MIN_SOCAT_RATIO:.2} of socat, ≤ {MAX_SECS_PER_GIB} s/GiB each end"
                        ),
                    )
                } else {
                    String::new()
                };
                vec![
                    row.direction.label().into(),
                    row.path.into(),
                    format!("{:.0}", row.run.mbit_s()),
                    format!("{ratio:.2}"),
                    end_cell(row, 0),
                    end_cell(row, 1),
                    budget,
                ]
            })
            .collect();
    Table {
        title: "throughput with real processes on loopback, one connection each way".into(),
        header: &[
            "direction",
            "path",
            "Mbit/s",
            "vs socat",
            "CPU s/GiB client end",
            "CPU s/GiB server end",
            "budget",
        ],
        rows: table_rows,
    }
}
