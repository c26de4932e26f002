//! One fuzz target, run within the budget the environment sets (docs/fuzzing.md):
//!
//! - nothing set: the target's own case count, with a fresh random seed; this is the short
//!   run every `cargo test --workspace` makes;
//! - `PROPTEST_CASES=N`: N cases per round instead;
//! - `VMM_FUZZ_SECS=S`: rounds, each with a fresh seed, until S seconds have passed (the
//!   long run);
//! - `VMM_FUZZ_SEED=N`: the first round's seed, to replay a run a failure printed.
//!
//! A failing case is shrunk (for at most `MAX_SHRINK` unless `PROPTEST_MAX_SHRINK_TIME`
//! says otherwise), its seed is appended to the `.proptest-regressions` file beside the
//! harness, which every later run replays first, and the panic message says how to
//! replay the whole run.

use std::fmt::Debug;
use std::hash::{BuildHasher, RandomState};
use std::time::{Duration, Instant};

use proptest::strategy::Strategy;
use proptest::test_runner::{Config, FileFailurePersistence, RngSeed, TestCaseResult, TestRunner};

pub const CASES_VAR: &str = "PROPTEST_CASES";
pub const SECS_VAR: &str = "VMM_FUZZ_SECS";
pub const SEED_VAR: &str = "VMM_FUZZ_SEED";
const SHRINK_TIME_VAR: &str = "PROPTEST_MAX_SHRINK_TIME";
/// Shrinking re-runs the case, which for a device means threads and waits: bounded, so a
/// failure is reported in reasonable time even when its minimal input is far away.
const MAX_SHRINK: Duration = Duration::from_secs(60);

/// How much one target runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Cases per round.
    pub cases: u32,
    /// More rounds, each with a fresh seed, until this much time has passed; `None`: one.
    pub time: Option<Duration>,
    /// The first round's seed; `None`: a random one.
    pub seed: Option<u64>,
}

impl Budget {
    /// The budget the environment sets for a target that runs `default_cases` cases.
    pub fn from_env(default_cases: u32) -> Result<Budget, String> {
        Self::from_vars(default_cases, |name| std::env::var(name).ok())
    }

    fn from_vars(
        default_cases: u32,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Budget, String> {
        fn parse<T: std::str::FromStr>(
            name: &str,
            text: Option<String>,
        ) -> Result<Option<T>, String> {
            text.map(|t| {
                t.trim()
                    .parse()
                    .map_err(|_| format!("{name}={t:?} is not a whole number"))
            })
            .transpose()
        }
        let cases = parse::<u32>(CASES_VAR, var(CASES_VAR))?.unwrap_or(default_cases);
        let secs = parse::<u64>(SECS_VAR, var(SECS_VAR))?;
        let seed = parse::<u64>(SEED_VAR, var(SEED_VAR))?;
        Ok(Budget {
            cases: cases.max(1),
            time: secs.map(Duration::from_secs),
            seed,
        })
    }
}

/// Runs `test` on inputs from `strategy` within the environment's [`Budget`]; panics with
/// the minimal failing input and the seed that replays the run. `source_file` is the
/// harness's `file!()`: the regressions file goes beside it.
pub fn check<S>(
    source_file: &'static str,
    default_cases: u32,
    strategy: S,
    test: impl Fn(S::Value) -> TestCaseResult,
) where
    S: Strategy,
    S::Value: Debug,
{
    let budget = Budget::from_env(default_cases).unwrap_or_else(|e| panic!("{e}"));
    let name = std::thread::current()
        .name()
        .unwrap_or("<this test>")
        .to_string();
    let start = Instant::now();
    let mut seed = budget.seed.unwrap_or_else(random_seed);
    let mut rounds = 0u64;
    loop {
        let mut runner = TestRunner::new(config(source_file, budget.cases, seed));
        if let Err(failure) = runner.run(&strategy, &test) {
            panic!(
                "{failure}\nreplay this run: {SEED_VAR}={seed} {CASES_VAR}={cases} cargo test {name}",
                cases = budget.cases
            );
        }
        rounds += 1;
        match budget.time {
            Some(time) if start.elapsed() < time => seed = random_seed(),
            Some(_) => break,
            None => return,
        }
    }
    // A long run says what it covered (seen with `-- --nocapture`, or when it fails).
    eprintln!("{}", summary(&name, rounds, budget.cases, start.elapsed()));
}

/// What a long run did: `rounds` rounds of `cases` cases each.
fn summary(name: &str, rounds: u64, cases: u32, took: Duration) -> String {
    format!(
        "{name}: {} cases in {rounds} rounds of {cases}, {:.0} s, no failure",
        rounds * u64::from(cases),
        took.as_secs_f64()
    )
}

fn config(source_file: &'static str, cases: u32, seed: u64) -> Config {
    let defaults = Config::default();
    let max_shrink_time = if std::env::var_os(SHRINK_TIME_VAR).is_some() {
        defaults.max_shrink_time
    } else {
        u32::try_from(MAX_SHRINK.as_millis()).unwrap_or(u32::MAX)
    };
    Config {
        cases,
        source_file: Some(source_file),
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        rng_seed: RngSeed::Fixed(seed),
        max_shrink_time,
        ..defaults
    }
}

/// A seed from the process's random hash keys and the clock.
fn random_seed() -> u64 {
    RandomState::new().hash_one(Instant::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(vars: &[(&str, &str)]) -> Result<Budget, String> {
        Budget::from_vars(64, |name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn without_variables_a_target_runs_its_own_case_count_once_with_a_random_seed() {
        assert_eq!(
            budget(&[]),
            Ok(Budget {
                cases: 64,
                time: None,
                seed: None
            })
        );
    }

    #[test]
    fn variables_set_cases_time_and_seed() {
        let b = budget(&[(CASES_VAR, "1000"), (SECS_VAR, "600"), (SEED_VAR, "42")]).unwrap();
        assert_eq!(
            b,
            Budget {
                cases: 1000,
                time: Some(Duration::from_secs(600)),
                seed: Some(42)
            }
        );
    }

    #[test]
    fn a_variable_that_is_not_a_number_is_named_in_the_error() {
        let err = budget(&[(SECS_VAR, "ten")]).unwrap_err();
        assert!(err.contains("VMM_FUZZ_SECS"), "{err}");
    }

    #[test]
    fn a_long_run_summary_counts_every_case_of_every_round() {
        assert_eq!(
            summary("t", 3, 128, Duration::from_secs(61)),
            "t: 384 cases in 3 rounds of 128, 61 s, no failure"
        );
    }

    #[test]
    fn a_fixed_seed_generates_the_same_inputs() {
        use proptest::strategy::ValueTree;
        let draw = |seed| {
            let mut runner = TestRunner::new(config(file!(), 1, seed));
            proptest::collection::vec(proptest::num::u64::ANY, 8)
                .new_tree(&mut runner)
                .unwrap()
                .current()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
    }
}
