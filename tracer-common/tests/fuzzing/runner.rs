//! Runs one property with proptest, and says how many cases ran and for how long.
//!
//! Shared by the parser properties here and the `tracer` crate's (included there with
//! `#[path]`), so that every property prints the same stats line, which `cargo xtask fuzz`
//! reads to report cases and seconds per property.
//!
//! Cases: `PROPTEST_CASES` when set (long runs), else each property's own default, chosen so
//! that plain `cargo test` stays at a few seconds per property. Each run draws a fresh seed
//! (or takes `PROPTEST_RNG_SEED`), printed on failure so that the run can be repeated.

use std::{
    fmt::Debug,
    hash::{BuildHasher, RandomState},
    sync::atomic::{AtomicU64, Ordering},
    time::Instant,
};

use proptest::{
    strategy::Strategy,
    test_runner::{Config, RngSeed, TestCaseError, TestRunner},
};

/// The prefix of the line `cargo xtask fuzz` parses: `fuzz-stats NAME cases=N seconds=S`.
pub const STATS_PREFIX: &str = "fuzz-stats";

/// Runs `test` on values of `strategy`; panics with the minimal failing input and the seed.
pub fn check<S>(
    name: &str,
    default_cases: u32,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) where
    S: Strategy,
    S::Value: Debug,
{
    // `Config::default()` reads the PROPTEST_* variables (cases, seed, shrink limits).
    let mut config = Config::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = default_cases;
    }
    let seed = match config.rng_seed {
        RngSeed::Fixed(seed) => seed,
        RngSeed::Random => RandomState::new().hash_one(name),
    };
    config.rng_seed = RngSeed::Fixed(seed);
    // Minimal inputs are printed on failure; nothing is written into the source tree.
    config.failure_persistence = None;
    let cases = config.cases;
    let mut runner = TestRunner::new(config);
    let ran = AtomicU64::new(0);
    let start = Instant::now();
    let result = runner.run(&strategy, |value| {
        ran.fetch_add(1, Ordering::Relaxed);
        test(value)
    });
    eprintln!(
        "{STATS_PREFIX} {name} cases={} seconds={:.3}",
        ran.load(Ordering::Relaxed),
        start.elapsed().as_secs_f64()
    );
    if let Err(failure) = result {
        panic!("{name}: {failure}\n(repeat with PROPTEST_RNG_SEED={seed} PROPTEST_CASES={cases})");
    }
}
