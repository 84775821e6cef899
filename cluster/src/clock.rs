//! The time seam of the control plane: daemons read the time through a
//! [`Clock`], so a simulation can run them on simulated time (Storm's
//! `Time.simulating`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A source of the time, ms since the Unix epoch.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Now, ms since the Unix epoch.
    fn now_ms(&self) -> u64;
}

/// A clock shared by a daemon's parts.
pub type SharedClock = Arc<dyn Clock>;

/// The system's wall clock ([`crate::now_ms`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        crate::now_ms()
    }
}

/// The system clock, shared.
pub fn system_clock() -> SharedClock {
    Arc::new(SystemClock)
}

/// A clock that moves only when told to; clones share the time.
///
/// ```
/// use squall_cluster::{Clock, SimulatedClock};
/// use std::time::Duration;
/// let clock = SimulatedClock::at(1_000);
/// clock.advance(Duration::from_millis(250));
/// assert_eq!(clock.now_ms(), 1_250);
/// ```
#[derive(Debug, Clone, Default)]
pub struct SimulatedClock {
    ms: Arc<AtomicU64>,
}

impl SimulatedClock {
    /// A clock reading `ms`.
    pub fn at(ms: u64) -> Self {
        Self {
            ms: Arc::new(AtomicU64::new(ms)),
        }
    }

    /// Moves the time forward by `d`.
    pub fn advance(&self, d: Duration) {
        self.ms.fetch_add(d.as_millis() as u64, Ordering::AcqRel);
    }
}

impl Clock for SimulatedClock {
    fn now_ms(&self) -> u64 {
        self.ms.load(Ordering::Acquire)
    }
}

/// A clock `offset_ms` ahead of (or behind, when negative) another: one
/// host's skewed view of a shared time.
#[derive(Debug, Clone)]
pub struct SkewedClock {
    /// The clock it follows.
    pub base: SharedClock,
    /// Its skew, ms.
    pub offset_ms: i64,
}

impl Clock for SkewedClock {
    fn now_ms(&self) -> u64 {
        self.base.now_ms().saturating_add_signed(self.offset_ms)
    }
}
