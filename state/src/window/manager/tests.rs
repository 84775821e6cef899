//! Storm's `WindowManagerTest` cases, on explicit timestamps (windows are
//! `[end - length, end)`; Storm's are `(end - length, end]`, which changes
//! no case below but the ones on a boundary, marked).

use super::*;

#[derive(Debug, Clone, Copy)]
enum Op {
    /// An event whose timestamp is also its value.
    Add(i64),
    /// The watermark (or clock) moves to this.
    To(i64),
}
use Op::{Add, To};

#[derive(Debug, PartialEq)]
struct Seen {
    events: Vec<i64>,
    new: Vec<i64>,
    expired: Vec<i64>,
    end: i64,
}

fn run(length: Length, sliding: Length, ops: &[Op]) -> Vec<Seen> {
    let mut m = WindowManager::new(length, sliding);
    let mut seen = Vec::new();
    for op in ops {
        match *op {
            Add(ts) => m.add(ts, ts),
            To(to) => m.advance(to, |w| {
                if w.events.is_empty() {
                    return;
                }
                seen.push(Seen {
                    events: w.events.iter().map(|e| e.item).collect(),
                    new: w.new_events().map(|e| e.item).collect(),
                    expired: w.expired.clone(),
                    end: w.end,
                })
            }),
        }
    }
    seen
}

fn windows(seen: &[Seen]) -> Vec<Vec<i64>> {
    seen.iter().map(|s| s.events.clone()).collect()
}

/// Adds events 1..=n, each followed by the clock moving past it (how the
/// executor drives count windows on processing time).
fn counted(n: i64) -> Vec<Op> {
    (1..=n).flat_map(|ts| [Add(ts), To(ts + 1)]).collect()
}

#[test]
fn count_based_window() {
    // Storm: testCountBasedWindow (length 5, sliding 2).
    let seen = run(Length::Count(5), Length::Count(2), &counted(10));
    assert_eq!(
        windows(&seen),
        vec![
            vec![1, 2],
            vec![1, 2, 3, 4],
            vec![2, 3, 4, 5, 6],
            vec![4, 5, 6, 7, 8],
            vec![6, 7, 8, 9, 10],
        ]
    );
    assert_eq!(seen[2].new, [5, 6]);
    assert_eq!(seen[2].expired, [1]);
    assert_eq!(seen[3].expired, [2, 3]);
}

#[test]
fn count_based_tumbling_window() {
    // Storm: testCountBasedTumblingWindow (length 3, sliding 3).
    let seen = run(Length::Count(3), Length::Count(3), &counted(9));
    assert_eq!(
        windows(&seen),
        vec![vec![1, 2, 3], vec![4, 5, 6], vec![7, 8, 9]]
    );
    assert_eq!(seen[1].new, [4, 5, 6]);
    assert_eq!(seen[1].expired, [1, 2, 3]);
}

#[test]
fn count_windows_with_equal_timestamps_count_every_event() {
    // Storm: testCountBasedTriggerWithEventTs's same-timestamp case: many
    // events in one millisecond still make windows of exactly `n`.
    let mut ops = Vec::new();
    for _ in 0..7 {
        ops.push(Add(5));
        ops.push(To(6));
    }
    let seen = run(Length::Count(3), Length::Count(3), &ops);
    assert_eq!(windows(&seen), vec![vec![5, 5, 5], vec![5, 5, 5]]);
}

#[test]
fn time_based_sliding_window() {
    // Storm: testTimeBasedWindow (length 1 s, sliding 100 ms) on a clock.
    let ops = [
        Add(1_050),
        Add(1_150),
        To(1_200),
        Add(1_950),
        Add(2_060),
        To(2_100),
    ];
    let seen = run(Length::Duration(1_000), Length::Duration(100), &ops);
    assert_eq!(seen[0].events, [1_050]);
    assert_eq!(seen[0].end, 1_100);
    assert_eq!(seen[1].events, [1_050, 1_150]);
    let last = seen.last().unwrap();
    assert_eq!(last.end, 2_100);
    assert_eq!(last.events, [1_150, 1_950, 2_060], "window [1100, 2100)");
    assert!(seen.iter().any(|s| s.expired == [1_050]));
}

#[test]
fn time_based_window_expires_everything_once_time_passes() {
    // Storm: testTimeBasedWindowExpiry.
    let mut m = WindowManager::new(Length::Duration(100), Length::Duration(100));
    let mut expired = Vec::new();
    for ts in [10, 20, 30] {
        m.add(ts, ts);
    }
    m.advance(100, |w| expired.extend(w.expired));
    assert_eq!(m.len(), 3, "still in the window [0, 100)");
    m.advance(1_000, |w| expired.extend(w.expired));
    assert_eq!(expired, [10, 20, 30]);
    assert!(m.is_empty());
}

#[test]
fn event_time_based_window() {
    // Storm: testEventTimeBasedWindow (length 20, sliding 10).
    let ops = [
        Add(603),
        Add(605),
        Add(607),
        To(609),
        Add(618),
        Add(626),
        Add(636),
        To(631),
    ];
    let seen = run(Length::Duration(20), Length::Duration(10), &ops);
    assert_eq!(
        windows(&seen),
        vec![
            vec![603, 605, 607],
            vec![603, 605, 607, 618],
            vec![618, 626]
        ]
    );
    assert_eq!(seen[0].new, [603, 605, 607]);
    assert_eq!(seen[1].new, [618]);
    assert_eq!(seen[2].new, [626]);
    assert_eq!(seen[2].expired, [603, 605, 607]);
    assert_eq!(
        seen.iter().map(|s| s.end).collect::<Vec<_>>(),
        [610, 620, 630]
    );
}

#[test]
fn event_time_tumbling_window() {
    // Storm: testEventTimeBasedTumblingWindow? (length = sliding = 10).
    let ops = [
        Add(603),
        Add(605),
        Add(607),
        Add(618),
        Add(626),
        Add(636),
        To(631),
    ];
    let seen = run(Length::Duration(10), Length::Duration(10), &ops);
    assert_eq!(
        windows(&seen),
        vec![vec![603, 605, 607], vec![618], vec![626]]
    );
    assert_eq!(seen[1].expired, [603, 605, 607]);
}

#[test]
fn event_time_windows_skip_gaps_without_firing_empty_ones() {
    // Storm: testEventTimeBasedWindowWithGaps? windows with no events are
    // not fired, and a far watermark does not walk every empty window.
    let ops = [Add(5), Add(1_000_005), To(i64::MAX)];
    let seen = run(Length::Duration(10), Length::Duration(10), &ops);
    assert_eq!(windows(&seen), vec![vec![5], vec![1_000_005]]);
    assert_eq!(seen[1].end, 1_000_010);
}

#[test]
fn event_time_window_boundaries_are_half_open() {
    // An event at a window's end belongs to the next window (Storm would
    // put it in this one).
    let ops = [Add(10), Add(19), Add(20), To(30)];
    let seen = run(Length::Duration(10), Length::Duration(10), &ops);
    assert_eq!(windows(&seen), vec![vec![10, 19], vec![20]]);
    assert_eq!(seen[0].end, 20);
}

#[test]
fn out_of_order_events_land_in_their_windows() {
    // Events arrive out of order within the lag: each window still holds
    // exactly the events of its range.
    let ops = [Add(607), Add(603), Add(618), Add(605), Add(626), To(631)];
    let seen = run(Length::Duration(20), Length::Duration(10), &ops);
    assert_eq!(
        windows(&seen),
        vec![
            vec![603, 605, 607],
            vec![603, 605, 607, 618],
            vec![618, 626]
        ]
    );
}

#[test]
fn count_based_window_with_event_time() {
    // Storm: testCountBasedWindowWithEventTs (WatermarkCountTriggerPolicy):
    // count windows fire on watermarks, over events before the watermark.
    let ops = [
        Add(603),
        Add(605),
        Add(607),
        Add(618),
        Add(626),
        Add(636),
        To(610),
        To(631),
    ];
    let seen = run(Length::Count(3), Length::Count(2), &ops);
    assert_eq!(windows(&seen), vec![vec![603, 605], vec![605, 607, 618]]);
    assert_eq!(seen[1].end, 619);
}

#[test]
fn count_length_with_time_sliding() {
    // Mixed: the last 2 events, every 10 ms (Storm's
    // WatermarkCountEvictionPolicy with a time trigger).
    let ops = [Add(1), Add(2), Add(3), Add(12), To(20)];
    let seen = run(Length::Count(2), Length::Duration(10), &ops);
    assert_eq!(windows(&seen), vec![vec![2, 3], vec![3, 12]]);
    assert_eq!(seen[0].expired, [1]);
}

#[test]
fn late_events_are_the_ones_before_the_reference() {
    let mut m = WindowManager::new(Length::Duration(10), Length::Duration(10));
    m.add(5, 5);
    m.advance(15, |_| {});
    assert!(m.is_late(14));
    assert!(!m.is_late(15));
    assert_eq!(m.reference(), Some(15));
    m.advance(12, |_| panic!("a lower reference fires nothing"));
    assert_eq!(m.reference(), Some(15));
}

#[test]
fn a_count_window_holds_at_most_its_length_plus_one_slide() {
    let mut m = WindowManager::new(Length::Count(100), Length::Count(10));
    let mut most = 0;
    for ts in 0..10_000 {
        m.add(ts, ts);
        m.advance(ts + 1, |_| {});
        most = most.max(m.len());
    }
    assert!(most <= 110, "held {most}");
}

#[test]
fn every_event_expires_exactly_once() {
    // Acking depends on it: each event leaves through `expired` once.
    let mut m = WindowManager::new(Length::Duration(30), Length::Duration(10));
    let mut expired = Vec::new();
    for ts in 0..500 {
        m.add(ts * 7 % 500, ts * 7 % 500);
        if ts % 50 == 0 {
            m.advance(ts - 100, |w| expired.extend(w.expired));
        }
    }
    m.advance(i64::MAX, |w| expired.extend(w.expired));
    expired.sort_unstable();
    assert_eq!(expired, (0..500).collect::<Vec<_>>());
}
