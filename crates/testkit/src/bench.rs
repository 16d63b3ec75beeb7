//! How much a benchmark runs, the same way in every bench target.

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
