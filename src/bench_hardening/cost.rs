//! What one variant costs over another: the median of their per-round differences, with a
//! bootstrap 95% interval, since a busy host's noise can be as large as the cost itself;
//! and whether that is within a budget, over it, or not yet told apart from it.

use crate::bench::stats_ms;

/// Resamples drawn for the interval.
const RESAMPLES: usize = 2000;

/// A cost in ms: the median of per-round differences and its 95% interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cost {
    pub median: f64,
    pub low: f64,
    pub high: f64,
}

impl Cost {
    /// The cost of `with` over `without`, whose i-th samples were taken in the same round.
    pub fn paired(with: &[f64], without: &[f64]) -> Option<Cost> {
        let differences: Vec<f64> = with.iter().zip(without).map(|(a, b)| a - b).collect();
        if differences.is_empty() {
            return None;
        }
        let median = stats_ms(differences.clone()).0;
        // The bootstrap: the spread of the median over resamples (with replacement) of the
        // differences. A fixed seed: the same samples give the same interval.
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        let mut medians: Vec<f64> = (0..RESAMPLES)
            .map(|_| {
                let resample = (0..differences.len())
                    .map(|_| differences[rng.below(differences.len())])
                    .collect();
                stats_ms(resample).0
            })
            .collect();
        medians.sort_by(f64::total_cmp);
        let at = |q: f64| medians[((RESAMPLES - 1) as f64 * q).round() as usize];
        Some(Cost {
            median,
            low: at(0.025),
            high: at(0.975),
        })
    }

    /// The mean of the per-round differences and its 95% interval (normal, ±1.96 standard
    /// errors): medians move in the steps of the host's ~4 ms exit ticks, means do not.
    pub fn paired_mean(with: &[f64], without: &[f64]) -> Option<Cost> {
        let differences: Vec<f64> = with.iter().zip(without).map(|(a, b)| a - b).collect();
        let n = differences.len() as f64;
        if differences.len() < 2 {
            return None;
        }
        let mean = differences.iter().sum::<f64>() / n;
        let variance = differences.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / (n - 1.0);
        let half = 1.96 * (variance / n).sqrt();
        Some(Cost {
            median: mean,
            low: mean - half,
            high: mean + half,
        })
    }

    /// Against `budget` ms: within it only when the whole interval is.
    pub fn verdict(&self, budget: f64) -> &'static str {
        if self.high <= budget {
            "within"
        } else if self.low > budget {
            "OVER"
        } else {
            "not told apart from"
        }
    }
}

/// xorshift64: enough to draw resample indices; no crate needed for that.
struct XorShift(u64);

impl XorShift {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cost_is_the_median_of_per_round_differences() {
        // A slow round (the third) slows both; the pairing cancels it.
        let cost = Cost::paired(&[10.5, 10.6, 30.4], &[10.0, 10.0, 30.0]).unwrap();
        assert!((cost.median - 0.5).abs() < 1e-9, "{cost:?}");
        assert!(
            cost.low <= cost.median && cost.median <= cost.high,
            "{cost:?}"
        );
    }

    #[test]
    fn a_steady_cost_has_a_narrow_interval_and_a_noisy_one_a_wide_one() {
        let without: Vec<f64> = (0..200).map(|i| 40.0 + f64::from(i % 7)).collect();
        let steady: Vec<f64> = without.iter().map(|w| w + 0.3).collect();
        let cost = Cost::paired(&steady, &without).unwrap();
        assert!((cost.high - cost.low).abs() < 1e-9, "{cost:?}");
        assert_eq!(cost.verdict(1.0), "within");
        let noisy: Vec<f64> = without
            .iter()
            .enumerate()
            .map(|(i, w)| w + 0.9 + if i % 2 == 0 { 3.0 } else { -3.0 })
            .collect();
        let cost = Cost::paired(&noisy, &without).unwrap();
        assert!(cost.low < 1.0 && cost.high > 1.0, "{cost:?}");
        assert_eq!(cost.verdict(1.0), "not told apart from");
    }

    #[test]
    fn the_mean_cost_has_a_normal_interval_around_the_mean_difference() {
        let without = [10.0, 10.0, 10.0, 10.0];
        let cost = Cost::paired_mean(&[11.0, 13.0, 11.0, 13.0], &without).unwrap();
        assert!((cost.median - 2.0).abs() < 1e-9, "{cost:?}");
        // sd 1.1547, n 4: ±1.96 × 0.57735.
        assert!((cost.high - cost.median - 1.1316).abs() < 1e-3, "{cost:?}");
        assert_eq!(Cost::paired_mean(&[1.0], &[0.0]), None);
    }

    #[test]
    fn a_cost_whose_whole_interval_is_past_the_budget_is_over_it() {
        let without: Vec<f64> = (0..100).map(|i| 40.0 + f64::from(i % 5)).collect();
        let with: Vec<f64> = without.iter().map(|w| w + 4.0).collect();
        assert_eq!(Cost::paired(&with, &without).unwrap().verdict(1.0), "OVER");
        assert_eq!(Cost::paired(&[], &[]), None);
    }
}
