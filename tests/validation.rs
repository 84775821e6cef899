//! `create_topology` and `TopologySpec::validate` reject bad topologies with
//! an error naming the component, stream or field.

mod common;

use common::*;
use squall::spec::{ComponentConfig, ComponentKind, ComponentSpec, InputSpec};
use squall::testing::FixedTupleSpout;
use squall::*;
use std::collections::BTreeMap;

fn spout() -> FixedTupleSpout {
    FixedTupleSpout::declaring(["word"])
}

/// Builds with `f` and checks the error message.
fn check(f: impl FnOnce(&mut TopologyBuilder), expected: &str) {
    let mut b = TopologyBuilder::new();
    f(&mut b);
    let err = b.create_topology().expect_err("topology should be invalid");
    assert_eq!(err.to_string(), expected);
}

#[test]
fn unknown_component() {
    check(
        |b| {
            b.set_spout("spout", spout, 1);
            b.set_bolt("count", || AckAll, 1)
                .shuffle_grouping("splitter");
        },
        r#"component "count" subscribes to unknown component "splitter""#,
    );
}

#[test]
fn unknown_stream() {
    check(
        |b| {
            b.set_spout("spout", spout, 1);
            b.set_bolt("count", || AckAll, 1)
                .shuffle_grouping(("spout", "errors"));
        },
        r#"component "count" subscribes to stream "errors" of "spout", which declares only ["default"]"#,
    );
}

#[test]
fn unknown_field() {
    check(
        |b| {
            b.set_spout("spout", spout, 1);
            b.set_bolt("count", || AckAll, 1)
                .fields_grouping("spout", ["wrd"]);
        },
        r#"fields grouping of "count" on "spout":"default" names field "wrd", not in [word]"#,
    );
    check(
        |b| {
            b.set_spout("spout", spout, 1);
            b.set_bolt("count", || AckAll, 1)
                .partial_key_grouping("spout", ["w"]);
        },
        r#"partial_key grouping of "count" on "spout":"default" names field "w", not in [word]"#,
    );
}

#[test]
fn duplicate_component_id() {
    check(
        |b| {
            b.set_spout("spout", spout, 1);
            b.set_bolt("spout", || AckAll, 1).shuffle_grouping("spout");
        },
        r#"duplicate component id "spout""#,
    );
}

#[test]
fn reserved_ids() {
    check(
        |b| {
            b.set_spout("__spout", spout, 1);
        },
        r#"component id "__spout" is reserved: ids starting with "__" belong to the system"#,
    );
    struct SystemStream;
    impl Bolt for SystemStream {
        fn execute(&mut self, _: &Tuple, _: &mut OutputCollector<'_>) {}
        fn declare_output_fields(&self, d: &mut OutputFieldsDeclarer) {
            d.declare_stream("__mine", ["x"]);
        }
    }
    check(
        |b| {
            b.set_spout("spout", spout, 1);
            b.set_bolt("b", || SystemStream, 1)
                .shuffle_grouping("spout");
        },
        r#"stream id "__mine" is reserved: ids starting with "__" belong to the system"#,
    );
}

#[test]
fn zero_parallelism_and_zero_tasks() {
    check(
        |b| {
            b.set_spout("spout", spout, 0);
        },
        r#"component "spout" has parallelism 0; it needs at least one executor"#,
    );
    check(
        |b| {
            b.set_spout("spout", spout, 1);
            b.set_bolt("b", || AckAll, 1)
                .shuffle_grouping("spout")
                .set_num_tasks(0);
        },
        r#"component "b" has 0 tasks; it needs at least one"#,
    );
}

#[test]
fn no_spout() {
    check(|_| {}, "topology has no spout; at least one is needed");
}

#[test]
fn spout_with_inputs() {
    // Spout declarers have no grouping methods, but a spec from the wire can
    // still say so.
    let mut spec = TopologySpec::default();
    let mut streams = BTreeMap::new();
    streams.insert(
        StreamId::from("default"),
        StreamDef {
            fields: Fields::new(["x"]),
            direct: false,
        },
    );
    for (id, inputs) in [("a", vec![]), ("b", vec!["a"])] {
        spec.components.insert(
            id.into(),
            ComponentSpec {
                kind: ComponentKind::Spout,
                parallelism: 1,
                num_tasks: 1,
                inputs: inputs
                    .into_iter()
                    .map(|s| InputSpec {
                        component: s.into(),
                        stream: "default".into(),
                        grouping: GroupingSpec::Shuffle,
                    })
                    .collect(),
                streams: streams.clone(),
                config: ComponentConfig::default(),
            },
        );
    }
    assert_eq!(
        spec.validate().unwrap_err().to_string(),
        r#"spout "b" has inputs; only bolts may subscribe to streams"#
    );
}

#[test]
fn direct_grouping_on_a_non_direct_stream() {
    check(
        |b| {
            b.set_spout("spout", spout, 1);
            b.set_bolt("b", || AckAll, 1).direct_grouping("spout");
        },
        r#"component "b" uses direct grouping on "spout":"default", which is not a direct stream"#,
    );
}

#[test]
fn duplicate_stream_declaration() {
    struct Twice;
    impl Bolt for Twice {
        fn execute(&mut self, _: &Tuple, _: &mut OutputCollector<'_>) {}
        fn declare_output_fields(&self, d: &mut OutputFieldsDeclarer) {
            d.declare(["x"]);
            d.declare(["y"]);
        }
    }
    check(
        |b| {
            b.set_spout("spout", spout, 1);
            b.set_bolt("b", || Twice, 1).shuffle_grouping("spout");
        },
        r#"component "b" declares stream "default" twice"#,
    );
}

#[test]
fn valid_topology_passes() {
    let mut b = TopologyBuilder::new();
    b.set_spout("spout", spout, 2).set_num_tasks(4);
    b.set_bolt("b", || AckAll, 2)
        .fields_grouping("spout", ["word"]);
    let t = b.create_topology().unwrap();
    assert_eq!(t.spec().components["spout"].num_tasks, 4);
}

#[test]
fn local_cluster_refuses_bad_names_and_duplicates() {
    let mut b = TopologyBuilder::new();
    b.set_spout("spout", spout, 1);
    let t = b.create_topology().unwrap();
    let cluster = LocalCluster::new();
    for bad in ["a/b", "..", "a:b", ""] {
        let e = cluster
            .submit_topology(bad, &Config::new(), t.clone())
            .unwrap_err();
        assert!(e.to_string().starts_with("topology name"), "{e}");
    }
    cluster
        .submit_topology("ok", &Config::new(), t.clone())
        .unwrap();
    let e = cluster
        .submit_topology("ok", &Config::new(), t)
        .unwrap_err();
    assert_eq!(e.to_string(), r#"a topology named "ok" is already running"#);
    assert_eq!(
        cluster.kill_topology("nope").unwrap_err().to_string(),
        r#"no topology named "nope" is running"#
    );
    cluster.shutdown();
}
