//! The time a topology runs on (Storm's `Time`): the system's, or a
//! simulated time that moves only when told to ([`TopologyClock::advance`],
//! Storm's `Time.simulating` and `advanceClusterTime`), so tests of
//! timeouts, ticks and windows run at once and give the same result every
//! run. Executors read it for message timeouts, tick tuples and acker
//! rotation; components through [`TopologyContext::clock`](crate::TopologyContext::clock).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long a thread may block at most under simulated time before it
/// looks at the clock again (a real wait, ms).
const SIMULATED_POLL: Duration = Duration::from_millis(2);

#[derive(Debug)]
struct Simulated {
    /// The real instant and Unix time the simulation started at.
    base: Instant,
    base_unix_ms: u64,
    /// Simulated time elapsed since, ns.
    offset_ns: AtomicU64,
}

/// A topology's clock; clones share it. The default is the system clock.
///
/// ```
/// use squall_topology_api::TopologyClock;
/// use std::time::Duration;
/// let clock = TopologyClock::simulated();
/// let (t0, ms0) = (clock.now(), clock.now_ms());
/// clock.advance(Duration::from_secs(30));
/// assert_eq!(clock.now() - t0, Duration::from_secs(30));
/// assert_eq!(clock.now_ms() - ms0, 30_000);
/// ```
#[derive(Debug, Clone, Default)]
pub struct TopologyClock {
    simulated: Option<Arc<Simulated>>,
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl TopologyClock {
    /// The system clock.
    pub fn system() -> Self {
        Self::default()
    }

    /// A simulated clock reading the current time, frozen until advanced.
    pub fn simulated() -> Self {
        Self {
            simulated: Some(Arc::new(Simulated {
                base: Instant::now(),
                base_unix_ms: unix_ms(),
                offset_ns: AtomicU64::new(0),
            })),
        }
    }

    /// Whether this clock is simulated.
    pub fn is_simulated(&self) -> bool {
        self.simulated.is_some()
    }

    fn offset(s: &Simulated) -> Duration {
        Duration::from_nanos(s.offset_ns.load(Ordering::Acquire))
    }

    /// Now, as an [`Instant`] (for durations and deadlines).
    pub fn now(&self) -> Instant {
        match &self.simulated {
            None => Instant::now(),
            Some(s) => s.base + Self::offset(s),
        }
    }

    /// Now, given `real`, a reading of the system clock the caller has
    /// just taken: `real` itself on the system clock (no second read),
    /// simulated time otherwise.
    pub fn now_at(&self, real: Instant) -> Instant {
        match &self.simulated {
            None => real,
            Some(s) => s.base + Self::offset(s),
        }
    }

    /// Now, ms since the Unix epoch (for timestamps).
    pub fn now_ms(&self) -> u64 {
        match &self.simulated {
            None => unix_ms(),
            Some(s) => s.base_unix_ms + Self::offset(s).as_millis() as u64,
        }
    }

    /// Moves simulated time forward by `d`; a no-op on the system clock.
    pub fn advance(&self, d: Duration) {
        if let Some(s) = &self.simulated {
            s.offset_ns.fetch_add(d.as_nanos() as u64, Ordering::AcqRel);
        }
    }

    /// How long a thread waiting `d` of this clock's time may block: `d`
    /// on the system clock, a couple of real ms under simulation (it must
    /// look again, as the time may have been advanced).
    pub fn wait(&self, d: Duration) -> Duration {
        if self.simulated.is_some() {
            d.min(SIMULATED_POLL)
        } else {
            d
        }
    }
}
