//! Latency distributions: nearest-rank percentiles over recorded samples.

use serde::{Deserialize, Serialize};

/// Summary of a set of durations, in milliseconds.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Dist {
    /// Number of samples.
    pub count: usize,
    /// Smallest sample.
    pub min_ms: f64,
    /// Median (nearest rank).
    pub p50_ms: f64,
    /// 99th percentile (nearest rank).
    pub p99_ms: f64,
    /// Largest sample.
    pub max_ms: f64,
}

impl Dist {
    /// Summarizes samples given in microseconds (sorted in place). `None` when empty.
    pub fn from_us(samples: &mut [u32]) -> Option<Dist> {
        let ns: Vec<u64> = samples.iter().map(|&us| u64::from(us) * 1000).collect();
        Dist::from_ns_vec(ns)
    }

    /// Summarizes samples given in nanoseconds. `None` when empty.
    pub fn from_ns_vec(mut ns: Vec<u64>) -> Option<Dist> {
        if ns.is_empty() {
            return None;
        }
        ns.sort_unstable();
        let ms = |v: u64| v as f64 / 1e6;
        Some(Dist {
            count: ns.len(),
            min_ms: ms(ns[0]),
            p50_ms: ms(ns[rank(ns.len(), 0.50)]),
            p99_ms: ms(ns[rank(ns.len(), 0.99)]),
            max_ms: ms(ns[ns.len() - 1]),
        })
    }
}

/// Index of the nearest-rank percentile `p` (0..=1) in a sorted slice of `len` > 0 items.
pub fn rank(len: usize, p: f64) -> usize {
    let r = (p * len as f64).ceil() as usize;
    r.clamp(1, len) - 1
}

/// Median of `values` (the mean of the two middle ones for an even count); `None` when empty.
/// Over runs, the median is what the report quotes: one slow or fast run does not move it.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    })
}

/// `a[i] ÷ b[i]` run by run: `None` where either side has no number or the divisor is 0. The
/// ratio is taken inside each run (both servers measured minutes apart under the same machine
/// load), never as a ratio of medians taken from different runs.
pub fn per_run_ratios(a: &[Option<f64>], b: &[Option<f64>]) -> Vec<Option<f64>> {
    a.iter()
        .zip(b)
        .map(|(x, y)| match (x, y) {
            (Some(x), Some(y)) if *y != 0.0 => Some(x / y),
            _ => None,
        })
        .collect()
}

/// Smallest and largest of the numbers present; `None` when there are none.
pub fn min_max(values: &[Option<f64>]) -> Option<(f64, f64)> {
    values.iter().flatten().fold(None, |acc, &v| match acc {
        None => Some((v, v)),
        Some((lo, hi)) => Some((f64::min(lo, v), f64::max(hi, v))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0]), Some(3.0));
        assert_eq!(median(&[5.0, 1.0, 4.0, 2.0, 3.0]), Some(3.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        // One wild run does not move it.
        assert_eq!(median(&[10.0, 11.0, 9.0, 1000.0, 10.5]), Some(10.5));
    }

    #[test]
    fn ratios_are_taken_per_run() {
        let a = [Some(10.0), Some(30.0), None, Some(8.0), Some(1.0)];
        let b = [Some(5.0), Some(10.0), Some(4.0), None, Some(0.0)];
        let r = per_run_ratios(&a, &b);
        assert_eq!(r, vec![Some(2.0), Some(3.0), None, None, None]);
        assert_eq!(min_max(&r), Some((2.0, 3.0)));
        assert_eq!(min_max(&[None, None]), None);
        // The median of per-run ratios is not the ratio of the medians: the per-run ratios
        // are 0.25, 2 and 2 (median 2) while the columns' medians are 2 and 2 (ratio 1).
        let a = [Some(1.0), Some(2.0), Some(4.0)];
        let b = [Some(4.0), Some(1.0), Some(2.0)];
        let r: Vec<f64> = per_run_ratios(&a, &b).into_iter().flatten().collect();
        assert_eq!(median(&r), Some(2.0));
        assert_eq!(median(&[1.0, 2.0, 4.0]), median(&[4.0, 1.0, 2.0]));
    }

    #[test]
    fn nearest_rank_percentiles() {
        let mut v: Vec<u32> = (1..=100).rev().map(|x| x * 1000).collect();
        let d = Dist::from_us(&mut v).expect("non-empty");
        assert_eq!(d.count, 100);
        assert_eq!(d.min_ms, 1.0);
        assert_eq!(d.p50_ms, 50.0);
        assert_eq!(d.p99_ms, 99.0);
        assert_eq!(d.max_ms, 100.0);
        assert_eq!(Dist::from_us(&mut []), None);
        assert_eq!(rank(1, 0.99), 0);
    }
}
