//! [`WindowManager`]: which events make each window, as a pure step over
//! timestamps (Storm's `WindowManager` with its trigger and eviction
//! policies, see Apache Storm `storm-client/.../windowing/`).
//!
//! One model serves event time and processing time: every event has a
//! timestamp (its event time, or its arrival time on the executor's clock)
//! and windows fire as a reference time, the watermark (or the clock),
//! passes their end. A window is the half-open range `[end - length, end)`
//! of timestamps for a duration length, or the last `n` events before
//! `end` for a count length. Duration windows end on multiples of the
//! sliding interval (since the Unix epoch), so a 1-hour tumbling window
//! is a clock hour; count-sliding windows end after every `n` events.

use super::Length;
use std::collections::VecDeque;

/// One event in a window: its timestamp (ms) and the item.
#[derive(Debug, Clone)]
pub struct Event<T> {
    /// Event time, or arrival time for processing-time windows, in ms.
    pub ts: i64,
    /// The last window (by fire number) that held this event; 0 for none.
    fired: u64,
    /// The item (a tuple).
    pub item: T,
}

impl<T> Event<T> {
    /// Whether window number `window` is the first to hold this event
    /// since it left the previous window (Storm's "new" events: not in the
    /// window fired just before).
    pub fn is_new_in(&self, window: u64) -> bool {
        window <= 1 || self.fired + 1 != window
    }
}

/// One window as it fires: its events (sorted by timestamp), the events
/// that left since the previous window, and its bounds.
#[derive(Debug)]
pub struct Fired<'a, T> {
    /// The window's events, oldest first.
    pub events: &'a [Event<T>],
    /// The window's number: 1 for the first window fired, and so on.
    pub number: u64,
    /// The events that left every window since the previous fire; after
    /// this window they are gone (acked by the windowed bolt).
    pub expired: Vec<T>,
    /// The window's first timestamp (inclusive, ms) for duration windows.
    pub start: Option<i64>,
    /// The window's end (exclusive, ms).
    pub end: i64,
}

impl<T> Fired<'_, T> {
    /// The events that were in no earlier window (Storm's `getNew`).
    pub fn new_events(&self) -> impl Iterator<Item = &Event<T>> + '_ {
        self.events.iter().filter(|e| e.is_new_in(self.number))
    }
}

/// Tracks the events of one windowed task and fires its windows.
///
/// ```
/// use squall_state::window::{Length, WindowManager};
/// let mut m = WindowManager::new(Length::Count(2), Length::Count(2));
/// let mut sizes = Vec::new();
/// for ts in 0..5 {
///     m.add(ts, ts);
///     m.advance(ts + 1, |w| sizes.push(w.events.len()));
/// }
/// assert_eq!(sizes, [2, 2]);
/// ```
#[derive(Debug)]
pub struct WindowManager<T> {
    length: Length,
    sliding: Length,
    events: VecDeque<Event<T>>,
    /// Events that left since the last fire, reported with the next one.
    expired: Vec<T>,
    fires: u64,
    /// The end of the next duration-sliding window, once an event came.
    next_end: Option<i64>,
    /// The highest reference time seen (the watermark, or the clock).
    reference: Option<i64>,
    /// Count sliding: how many events at the front were counted towards
    /// a fired window. Events that are not late land after them (their
    /// timestamps are below the reference), so they stay a prefix.
    counted: usize,
}

/// The first multiple of `step` strictly after `ts`.
fn align_after(ts: i64, step: i64) -> i64 {
    ts.div_euclid(step).saturating_add(1).saturating_mul(step)
}

impl<T> WindowManager<T> {
    /// A manager for windows of `length` sliding by `sliding` (equal for
    /// tumbling windows). Zero counts and durations are taken as 1.
    pub fn new(length: Length, sliding: Length) -> Self {
        Self {
            length: length.at_least_one(),
            sliding: sliding.at_least_one(),
            events: VecDeque::new(),
            expired: Vec::new(),
            fires: 0,
            next_end: None,
            reference: None,
            counted: 0,
        }
    }

    /// How many events are held (the window's memory).
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Whether no event is held.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// The highest reference time passed to [`advance`](Self::advance):
    /// events older than this are late.
    pub fn reference(&self) -> Option<i64> {
        self.reference
    }

    /// Whether an event at `ts` is late: its windows may have fired.
    pub fn is_late(&self, ts: i64) -> bool {
        self.reference.is_some_and(|r| ts < r)
    }

    /// Adds an event at `ts` (ms). Events are kept sorted by timestamp;
    /// out-of-order events cost a shift of the younger ones.
    pub fn add(&mut self, ts: i64, item: T) {
        let at = self.events.partition_point(|e| e.ts <= ts);
        self.events.insert(at, Event { ts, fired: 0, item });
        if let Length::Duration(step) = self.sliding {
            let first = align_after(ts, step);
            if self.next_end.is_none_or(|n| first < n) && !self.is_late(ts) {
                self.next_end = Some(first);
            }
        }
    }

    /// Moves the reference time (the watermark, or the clock) to `to`
    /// (ms) and fires, oldest first, every window whose end it passed:
    /// duration-sliding windows whose end is at most `to`, count-sliding
    /// windows for every `n` events before `to`. `on_window` gets each
    /// one, and also empty ones into which events expired (their `events`
    /// is then empty). A `to` below an earlier one does nothing.
    pub fn advance(&mut self, to: i64, mut on_window: impl FnMut(Fired<'_, T>)) {
        if self.reference.is_some_and(|r| to < r) {
            return;
        }
        self.reference = Some(to);
        match self.sliding {
            Length::Duration(step) => {
                while let Some(end) = self.next_end.filter(|e| *e <= to) {
                    let upto = self.events.partition_point(|e| e.ts < end);
                    self.fire(upto, end, &mut on_window);
                    // The next window ends a step later, or, past a gap,
                    // where the oldest event left is first in a window.
                    self.next_end = self
                        .events
                        .front()
                        .map(|e| align_after(e.ts, step).max(end.saturating_add(step)));
                }
            }
            Length::Count(n) => loop {
                let last = self.counted + n as usize - 1;
                if self.events.get(last).is_none_or(|e| e.ts >= to) {
                    break;
                }
                self.counted = last + 1;
                let end = self.events[last].ts.saturating_add(1);
                self.fire(last + 1, end, &mut on_window);
            },
        }
    }

    /// Evicts what no later window holds, then fires the window of the
    /// first `upto` events, ending at `end`.
    fn fire(&mut self, upto: usize, end: i64, on_window: &mut impl FnMut(Fired<'_, T>)) {
        let keep_from = match self.length {
            Length::Duration(len) => {
                let start = end.saturating_sub(len);
                self.events.partition_point(|e| e.ts < start)
            }
            Length::Count(n) => upto.saturating_sub(n as usize),
        };
        self.expired
            .extend(self.events.drain(..keep_from).map(|e| e.item));
        self.counted = self.counted.saturating_sub(keep_from);
        let upto = upto - keep_from;
        if upto == 0 && self.expired.is_empty() {
            return;
        }
        let number = if upto > 0 {
            self.fires += 1;
            self.fires
        } else {
            self.fires
        };
        let start = match self.length {
            Length::Duration(len) => Some(end.saturating_sub(len)),
            Length::Count(_) => None,
        };
        let window = &mut self.events.make_contiguous()[..upto];
        on_window(Fired {
            events: window,
            number,
            expired: std::mem::take(&mut self.expired),
            start,
            end,
        });
        if upto > 0 {
            for e in window.iter_mut() {
                e.fired = number;
            }
        }
    }
}

#[cfg(test)]
mod tests;
