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

#[cfg(test)]
mod tests {
    use super::*;

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
