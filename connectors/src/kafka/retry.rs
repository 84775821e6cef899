//! [`RetryBackoff`]: when a failed record is emitted again.

/// Exponential backoff for failed records (Storm's
/// `KafkaSpoutRetryExponentialBackoff`): the first retry waits
/// `initial_delay_ms`, the n-th (n ≥ 2) `delay_period_ms ×
/// multiplier^(n−1)`, never more than `max_delay_ms`; after `max_retries`
/// retries a record is given up (acked, counted, and its offset may
/// commit). Storm's defaults: 0 ms, 2 ms, ×2, 10 s, unlimited retries.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryBackoff {
    /// Wait before the first retry, in ms.
    pub initial_delay_ms: u64,
    /// Base wait of later retries, in ms.
    pub delay_period_ms: u64,
    /// Growth factor per retry (Storm: 2).
    pub multiplier: f64,
    /// Longest wait, in ms.
    pub max_delay_ms: u64,
    /// Retries before a record is given up (`u32::MAX`: never).
    pub max_retries: u32,
}

impl Default for RetryBackoff {
    fn default() -> Self {
        Self {
            initial_delay_ms: 0,
            delay_period_ms: 2,
            multiplier: 2.0,
            max_delay_ms: 10_000,
            max_retries: u32::MAX,
        }
    }
}

impl RetryBackoff {
    /// How long to wait, in ms, before emitting a record that has failed
    /// `fails` times (from 1); `None` when it has used up its retries.
    pub fn delay_ms(&self, fails: u32) -> Option<u64> {
        if fails == 0 || fails > self.max_retries {
            return None;
        }
        let delay = if fails == 1 {
            self.initial_delay_ms as f64
        } else {
            let exponent = i32::try_from(fails - 1).unwrap_or(i32::MAX);
            self.delay_period_ms as f64 * self.multiplier.powi(exponent)
        };
        // A NaN or an overflow waits the longest.
        Some(if delay.is_finite() && delay >= 0.0 {
            (delay as u64).min(self.max_delay_ms)
        } else {
            self.max_delay_ms
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_geometrically_up_to_the_cap() {
        let b = RetryBackoff::default();
        let delays: Vec<_> = (1..=5).map(|n| b.delay_ms(n)).collect();
        assert_eq!(delays, [Some(0), Some(4), Some(8), Some(16), Some(32)]);
        assert_eq!(b.delay_ms(40), Some(10_000));
        assert_eq!(b.delay_ms(u32::MAX), Some(10_000), "no overflow");
    }

    #[test]
    fn a_record_is_given_up_after_its_retries() {
        let b = RetryBackoff {
            max_retries: 2,
            ..RetryBackoff::default()
        };
        assert_eq!(b.delay_ms(2), Some(4));
        assert_eq!(b.delay_ms(3), None);
        assert_eq!(
            b.delay_ms(0),
            None,
            "a record that never failed is not retried"
        );
    }
}
