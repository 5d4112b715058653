//! A latency histogram shared by every receiver: fixed memory however many samples, lock-free
//! recording, and quantiles within 1/128 (0.8 %) of the true value.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

/// Values below `2 * SUB` get a bucket each; above, every power of two is split into `SUB`.
const SUB_BITS: u32 = 7;
const SUB: u64 = 1 << SUB_BITS;
/// Largest recordable value (about 12.7 days in microseconds); larger ones are clamped.
const MAX_VALUE: u64 = (1 << 40) - 1;
const BUCKETS: usize = bucket_of(MAX_VALUE) + 1;

const fn bucket_of(value: u64) -> usize {
    if value < 2 * SUB {
        return value as usize;
    }
    let exponent = 63 - value.leading_zeros();
    let shift = exponent - SUB_BITS;
    ((shift as u64 + 1) * SUB + (value >> shift) - SUB) as usize
}

/// The largest value that falls in `bucket`.
fn bucket_top(bucket: usize) -> u64 {
    let bucket = bucket as u64;
    if bucket < 2 * SUB {
        return bucket;
    }
    let shift = bucket / SUB - 1;
    let mantissa = bucket % SUB + SUB;
    ((mantissa + 1) << shift) - 1
}

pub struct Histogram {
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    sum: AtomicU64,
    max: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum: AtomicU64::new(0),
            max: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    pub fn record(&self, value: u64) {
        let value = value.min(MAX_VALUE);
        self.buckets[bucket_of(value)].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(value, Ordering::Relaxed);
        self.max.fetch_max(value, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// The smallest recorded value `v` such that a fraction `q` of the samples are `<= v`
    /// (rounded up to its bucket's top, never above the exact maximum); 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        let count = self.count();
        if count == 0 {
            return 0;
        }
        // Products like 0.99 * 100 land a hair off the integer; don't let that move the rank.
        let exact = q * count as f64;
        let rank = if (exact - exact.round()).abs() < 1e-6 {
            exact.round()
        } else {
            exact.ceil()
        };
        let rank = (rank as u64).clamp(1, count);
        let mut seen = 0;
        for (bucket, n) in self.buckets.iter().enumerate() {
            seen += n.load(Ordering::Relaxed);
            if seen >= rank {
                return bucket_top(bucket).min(self.max.load(Ordering::Relaxed));
            }
        }
        self.max.load(Ordering::Relaxed)
    }

    /// Quantiles in milliseconds, for samples recorded in microseconds.
    pub fn summary_ms(&self) -> LatencySummary {
        let ms = |us: u64| us as f64 / 1000.0;
        let count = self.count();
        LatencySummary {
            samples: count,
            mean: if count == 0 {
                0.0
            } else {
                ms(self.sum.load(Ordering::Relaxed)) / count as f64
            },
            p50: ms(self.quantile(0.50)),
            p99: ms(self.quantile(0.99)),
            p999: ms(self.quantile(0.999)),
            max: ms(self.max.load(Ordering::Relaxed)),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct LatencySummary {
    pub samples: u64,
    pub mean: f64,
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_ordered() {
        let mut previous = 0;
        for value in [0, 1, 255, 256, 257, 511, 512, 1_000_000, MAX_VALUE] {
            let bucket = bucket_of(value);
            assert!(bucket >= previous);
            assert!(bucket_top(bucket) >= value, "{value} above its bucket top");
            if bucket > 0 {
                assert!(
                    bucket_top(bucket - 1) < value,
                    "{value} fits an earlier bucket"
                );
            }
            previous = bucket;
        }
        assert_eq!(bucket_of(MAX_VALUE), BUCKETS - 1);
    }

    #[test]
    fn small_values_are_exact() {
        let histogram = Histogram::default();
        for value in 1..=100 {
            histogram.record(value);
        }
        assert_eq!(histogram.quantile(0.5), 50);
        assert_eq!(histogram.quantile(0.99), 99);
        assert_eq!(histogram.quantile(0.999), 100);
        assert_eq!(histogram.quantile(1.0), 100);
        assert_eq!(histogram.quantile(0.0), 1);
    }

    #[test]
    fn large_values_are_within_a_bucket_and_never_above_the_max() {
        let histogram = Histogram::default();
        for value in 1..=10_000u64 {
            histogram.record(value * 1_000);
        }
        for (q, exact) in [(0.5, 5_000_000u64), (0.99, 9_900_000), (0.999, 9_990_000)] {
            let got = histogram.quantile(q);
            assert!(got >= exact, "p{q}: {got} < {exact}");
            assert!(
                (got - exact) as f64 <= exact as f64 / SUB as f64,
                "p{q}: {got} too far from {exact}"
            );
        }
        assert_eq!(histogram.quantile(1.0), 10_000_000);
        let summary = histogram.summary_ms();
        assert_eq!(summary.samples, 10_000);
        assert_eq!(summary.max, 10_000.0);
        assert!((summary.mean - 5_000.5).abs() < 1e-6);
    }

    #[test]
    fn one_slow_sample_in_a_thousand_shows_at_p999_only() {
        let histogram = Histogram::default();
        for _ in 0..999 {
            histogram.record(100);
        }
        histogram.record(50_000);
        assert_eq!(histogram.quantile(0.99), 100);
        assert_eq!(histogram.quantile(0.999), 100);
        assert_eq!(histogram.quantile(0.9995), 50_000);
        assert_eq!(histogram.summary_ms().max, 50.0);
    }

    #[test]
    fn an_empty_histogram_reports_zeros_and_huge_values_are_clamped() {
        let histogram = Histogram::default();
        assert_eq!(histogram.summary_ms().p99, 0.0);
        assert_eq!(histogram.summary_ms().mean, 0.0);
        histogram.record(u64::MAX);
        assert_eq!(histogram.quantile(0.5), MAX_VALUE);
    }
}
