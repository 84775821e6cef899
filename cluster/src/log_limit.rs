//! [`LogLimiter`]: one log line per interval for a repeated event (an
//! accept loop out of file descriptors, connections over a cap), so a
//! flood of trouble never floods the log.

use std::time::{Duration, Instant};

/// Decides when a repeated event is worth a log line: the first one, then
/// at most one per interval, carrying the count since the last line.
#[derive(Debug)]
pub struct LogLimiter {
    every: Duration,
    last: Option<Instant>,
    unlogged: u64,
}

impl LogLimiter {
    /// A limiter allowing one line per `every`.
    pub fn new(every: Duration) -> Self {
        Self {
            every,
            last: None,
            unlogged: 0,
        }
    }

    /// The event happened at `now`: `Some(n)` when a line is due, `n`
    /// being how many events it stands for.
    pub fn note(&mut self, now: Instant) -> Option<u64> {
        self.unlogged += 1;
        let due = self
            .last
            .is_none_or(|t| now.saturating_duration_since(t) >= self.every);
        if due {
            self.last = Some(now);
            Some(std::mem::take(&mut self.unlogged))
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_event_is_logged_once_per_interval_with_its_count() {
        let mut l = LogLimiter::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(l.note(t0), Some(1));
        for i in 1..1000 {
            assert_eq!(l.note(t0 + Duration::from_millis(i)), None);
        }
        assert_eq!(l.note(t0 + Duration::from_secs(10)), Some(1000));
        assert_eq!(l.note(t0 + Duration::from_secs(11)), None);
    }
}
