//! How much a benchmark runs, the same way in every bench target, and the percentiles it
//! reports.

use std::time::Duration;

/// What a bench target was started for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum BenchMode {
    /// `cargo bench`: the full measurement.
    Full,
    /// `cargo bench -- --quick`, or `PORTCULLIS_BENCH_QUICK=1 cargo bench`: a short run.
    Quick,
    /// `cargo test --all-targets` (no `--bench` argument): tiny sizes, to prove the code
    /// works.
    Smoke,
}

impl BenchMode {
    /// The mode from this process's arguments and `PORTCULLIS_BENCH_QUICK`.
    pub fn from_args() -> Self {
        let mut bench = false;
        let mut quick = std::env::var("PORTCULLIS_BENCH_QUICK")
            .is_ok_and(|value| !value.is_empty() && value != "0");
        for arg in std::env::args().skip(1) {
            bench |= arg == "--bench";
            quick |= arg == "--quick";
        }
        match (bench, quick) {
            (false, _) => Self::Smoke,
            (true, true) => Self::Quick,
            (true, false) => Self::Full,
        }
    }
}

/// The median, the 99th percentile (nearest rank) and the largest of some samples.
#[derive(Clone, Copy, Debug)]
pub struct Percentiles {
    /// The median.
    pub p50: Duration,
    /// The 99th percentile, nearest rank.
    pub p99: Duration,
    /// The largest sample.
    pub max: Duration,
}

impl Percentiles {
    /// Of `samples`, which must not be empty.
    pub fn of(samples: &[Duration]) -> Self {
        let mut sorted = samples.to_vec();
        sorted.sort();
        let last = sorted.len() - 1;
        // The nearest rank of quantile q: ceil(q·n), counted from 1.
        let rank = |percent: usize| sorted[(percent * sorted.len()).div_ceil(100).max(1) - 1];
        Self {
            p50: rank(50),
            p99: rank(99),
            max: sorted[last],
        }
    }
}
