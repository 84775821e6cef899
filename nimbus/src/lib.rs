//! Squall's master daemon. So far: the even scheduler, a pure function
//! (Storm's `EvenScheduler`). Nimbus never links `squall-worker`.
#![forbid(missing_docs)]

pub mod scheduler;

pub use scheduler::{interleave_slots, schedule_even, ScheduleError};
