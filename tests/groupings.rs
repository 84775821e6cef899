//! Groupings: which task gets each tuple (run to completion, then read what
//! a task-tagging bolt emitted).

mod common;

use common::*;
use squall::testing::{complete_topology, FixedTupleSpout, MockedSources};
use squall::*;
use std::collections::{BTreeMap, BTreeSet};

/// Runs `spout -> tag` with `grouping` on `tasks` tag tasks over `input`
/// and returns, per tag task, the values it received.
fn deliveries(grouping: GroupingSpec, tasks: u32, input: Vec<Values>) -> BTreeMap<i64, Vec<Value>> {
    let mut b = TopologyBuilder::new();
    b.set_spout("spout", || FixedTupleSpout::declaring(["k"]), 1);
    b.set_bolt("tag", TaskTagger::default, tasks)
        .grouping("spout", grouping);
    let topology = b.create_topology().unwrap();
    let result = complete_topology(
        &topology,
        &config(30),
        MockedSources::new().add("spout", input),
    )
    .unwrap();
    let mut by_task: BTreeMap<i64, Vec<Value>> = BTreeMap::new();
    for v in result.emitted("tag") {
        by_task
            .entry(v[0].as_i64().unwrap())
            .or_default()
            .push(v[1].clone());
    }
    by_task
}

fn keys(n: usize, distinct: usize, bytes: bool) -> Vec<Values> {
    (0..n)
        .map(|i| {
            let k = format!("key-{}", i % distinct);
            if bytes {
                values![k.into_bytes()]
            } else {
                values![k]
            }
        })
        .collect()
}

fn check_fields_grouping(bytes: bool) {
    let by_task = deliveries(
        GroupingSpec::Fields(Fields::new(["k"])),
        5,
        keys(2000, 50, bytes),
    );
    let mut owner: BTreeMap<String, i64> = BTreeMap::new();
    for (task, vals) in &by_task {
        for v in vals {
            let k = format!("{v:?}");
            let prev = owner.insert(k.clone(), *task);
            assert!(
                prev.is_none() || prev == Some(*task),
                "key {k} went to tasks {prev:?} and {task}"
            );
        }
    }
    assert_eq!(owner.len(), 50);
    assert!(
        by_task.len() >= 3,
        "50 keys should spread over several of 5 tasks: {by_task:?}"
    );
    assert_eq!(by_task.values().map(Vec::len).sum::<usize>(), 2000);
}

#[test]
fn fields_grouping_puts_equal_string_keys_on_one_task() {
    check_fields_grouping(false)
}

#[test]
fn fields_grouping_puts_equal_byte_string_keys_on_one_task() {
    check_fields_grouping(true)
}

#[test]
fn fields_grouping_on_several_fields_uses_all_of_them() {
    let mut b = TopologyBuilder::new();
    b.set_spout("spout", || FixedTupleSpout::declaring(["a", "b"]), 1);
    b.set_bolt("tag", TaskTagger::default, 4)
        .fields_grouping("spout", ["a", "b"]);
    let topology = b.create_topology().unwrap();
    let input: Vec<Values> = (0..400).map(|i| values![i % 2, (i / 2) % 10]).collect();
    let result = complete_topology(
        &topology,
        &config(30),
        MockedSources::new().add("spout", input),
    )
    .unwrap();
    assert_eq!(result.emitted("tag").len(), 400);
}

#[test]
fn all_grouping_delivers_every_tuple_to_every_task() {
    let input: Vec<Values> = (0..100).map(|i| values![i]).collect();
    let by_task = deliveries(GroupingSpec::All, 4, input);
    assert_eq!(by_task.len(), 4);
    for vals in by_task.values() {
        let got: BTreeSet<i64> = vals.iter().map(|v| v.as_i64().unwrap()).collect();
        assert_eq!(got, (0..100).collect());
    }
}

#[test]
fn global_grouping_sends_everything_to_the_lowest_task() {
    let input: Vec<Values> = (0..100).map(|i| values![i]).collect();
    let mut b = TopologyBuilder::new();
    b.set_spout("spout", || FixedTupleSpout::declaring(["k"]), 1);
    b.set_bolt("tag", TaskTagger::default, 4)
        .global_grouping("spout");
    let topology = b.create_topology().unwrap();
    let result = complete_topology(
        &topology,
        &config(30),
        MockedSources::new().add("spout", input),
    )
    .unwrap();
    let layout = TaskLayout::new(topology.spec(), 1);
    let lowest = layout.component_tasks("tag")[0].0 as i64;
    let tasks: BTreeSet<i64> = result
        .emitted("tag")
        .iter()
        .map(|v| v[0].as_i64().unwrap())
        .collect();
    assert_eq!(tasks, BTreeSet::from([lowest]));
}

#[test]
fn shuffle_grouping_is_within_5_percent_of_even_over_100k_tuples() {
    let input: Vec<Values> = (0..100_000).map(|i| values![i]).collect();
    let by_task = deliveries(GroupingSpec::Shuffle, 4, input);
    assert_eq!(by_task.len(), 4);
    for (task, vals) in &by_task {
        let n = vals.len() as f64;
        assert!(
            (n - 25_000.0).abs() <= 1_250.0,
            "task {task} got {n} of 100000"
        );
    }
}

#[test]
fn local_or_shuffle_spreads_over_the_local_tasks() {
    let input: Vec<Values> = (0..3000).map(|i| values![i]).collect();
    let by_task = deliveries(GroupingSpec::LocalOrShuffle, 3, input);
    assert_eq!(by_task.len(), 3, "in LocalCluster every task is local");
    for vals in by_task.values() {
        assert!((vals.len() as i64 - 1000).abs() <= 50);
    }
}

#[test]
fn none_grouping_delivers_like_shuffle() {
    let input: Vec<Values> = (0..400).map(|i| values![i]).collect();
    let by_task = deliveries(GroupingSpec::None, 2, input);
    assert_eq!(by_task.values().map(Vec::len).sum::<usize>(), 400);
    assert_eq!(by_task.len(), 2);
}

#[test]
fn partial_key_grouping_uses_at_most_two_tasks_per_key() {
    let by_task = deliveries(
        GroupingSpec::PartialKey(Fields::new(["k"])),
        6,
        keys(3000, 20, false),
    );
    let mut tasks_of: BTreeMap<String, BTreeSet<i64>> = BTreeMap::new();
    for (task, vals) in &by_task {
        for v in vals {
            tasks_of.entry(v.to_string()).or_default().insert(*task);
        }
    }
    assert_eq!(tasks_of.len(), 20);
    assert!(tasks_of.values().all(|t| t.len() <= 2), "{tasks_of:?}");
    assert!(
        tasks_of.values().any(|t| t.len() == 2),
        "load was never split: {tasks_of:?}"
    );
}

/// Sends every tuple to the last of its target tasks.
struct LastTask(Vec<TaskId>);
impl CustomStreamGrouping for LastTask {
    fn prepare(&mut self, _stream: &StreamId, targets: &[TaskId]) {
        self.0 = targets.to_vec();
    }
    fn choose_tasks(&mut self, _source: TaskId, _values: &Values) -> Vec<TaskId> {
        vec![*self.0.last().unwrap()]
    }
}

#[test]
fn custom_grouping_chooses_the_tasks() {
    let mut b = TopologyBuilder::new();
    b.set_spout("spout", || FixedTupleSpout::declaring(["k"]), 1);
    b.set_bolt("tag", TaskTagger::default, 3)
        .custom_grouping("spout", "last", || LastTask(Vec::new()));
    let topology = b.create_topology().unwrap();
    let input: Vec<Values> = (0..50).map(|i| values![i]).collect();
    let result = complete_topology(
        &topology,
        &config(30),
        MockedSources::new().add("spout", input),
    )
    .unwrap();
    let last = TaskLayout::new(topology.spec(), 1).component_tasks("tag")[2].0 as i64;
    let tasks: BTreeSet<i64> = result
        .emitted("tag")
        .iter()
        .map(|v| v[0].as_i64().unwrap())
        .collect();
    assert_eq!(tasks, BTreeSet::from([last]));
}

/// Emits each input directly to the target task `value % n`.
#[derive(Default)]
struct Director(Vec<TaskId>);
impl Bolt for Director {
    fn prepare(&mut self, ctx: &TopologyContext) {
        self.0 = ctx.component_tasks("tag").to_vec();
    }
    fn execute(&mut self, t: &Tuple, out: &mut OutputCollector<'_>) {
        let v = t.get_i64(0).unwrap();
        let task = self.0[(v as usize) % self.0.len()];
        out.emit_direct(task, "to-task", t, values![v]);
        out.ack(t);
    }
    fn declare_output_fields(&self, d: &mut OutputFieldsDeclarer) {
        d.declare_direct_stream("to-task", ["v"]);
    }
}

#[test]
fn direct_grouping_delivers_to_the_named_task() {
    let mut b = TopologyBuilder::new();
    b.set_spout("spout", || FixedTupleSpout::declaring(["k"]), 1);
    b.set_bolt("director", Director::default, 2)
        .shuffle_grouping("spout");
    b.set_bolt("tag", TaskTagger::default, 3)
        .direct_grouping(("director", "to-task"));
    let topology = b.create_topology().unwrap();
    let input: Vec<Values> = (0..90).map(|i| values![i]).collect();
    let result = complete_topology(
        &topology,
        &config(30),
        MockedSources::new().add("spout", input),
    )
    .unwrap();
    let tag_tasks = TaskLayout::new(topology.spec(), 1)
        .component_tasks("tag")
        .to_vec();
    let emitted = result.emitted("tag");
    assert_eq!(emitted.len(), 90);
    for v in emitted {
        let (task, value) = (v[0].as_i64().unwrap(), v[1].as_i64().unwrap());
        assert_eq!(task, tag_tasks[(value % 3) as usize].0 as i64);
    }
}

/// Emits directly to a task that does not subscribe, on a stream it does
/// not declare, plainly on its direct stream, and directly on its plain
/// stream.
struct BadDirector;
impl Bolt for BadDirector {
    fn execute(&mut self, t: &Tuple, out: &mut OutputCollector<'_>) {
        out.emit_direct(TaskId(9999), "to-task", t, values![1]);
        out.emit_stream("no-such-stream", values![1]);
        out.emit_stream("to-task", values![2]);
        out.emit_direct(TaskId(1), "default", t, values![3]);
        out.ack(t);
    }
    fn declare_output_fields(&self, d: &mut OutputFieldsDeclarer) {
        d.declare_direct_stream("to-task", ["v"]);
        d.declare(["v"]);
    }
}

#[test]
fn bad_emits_are_dropped_and_reported_not_fatal() {
    let mut b = TopologyBuilder::new();
    b.set_spout("spout", || FixedTupleSpout::declaring(["k"]), 1);
    b.set_bolt("bad", || BadDirector, 1)
        .shuffle_grouping("spout");
    b.set_bolt("tag", TaskTagger::default, 1)
        .direct_grouping(("bad", "to-task"));
    let topology = b.create_topology().unwrap();
    let result = complete_topology(
        &topology,
        &config(30),
        MockedSources::new().add("spout", vec![values![1]]),
    )
    .unwrap();
    assert!(result.emitted("tag").is_empty());
    let errors = result.metrics.component("bad").errors;
    for expected in [
        "emit_direct to task 9999",
        "\"no-such-stream\"",
        "emit on direct stream \"to-task\" needs emit_direct",
        "emit_direct on stream \"default\", which is not a direct stream",
    ] {
        assert!(
            errors.iter().any(|e| e.contains(expected)),
            "{expected}: {errors:?}"
        );
    }
}
