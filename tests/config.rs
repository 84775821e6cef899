//! Config: Storm key names from YAML and `key=value` overrides; bad keys and
//! values are errors naming the key.

use squall::*;

#[test]
fn yaml_sets_known_keys_and_keeps_user_keys() {
    let c = Config::from_yaml(
        "topology.workers: 3\ntopology.message.timeout.secs: 10\ntopology.max.spout.pending: 500\n\
         topology.debug: true\ntopology.acker.executors: 0\nwordcount.input: data\n",
    )
    .unwrap();
    assert_eq!(c.workers, 3);
    assert_eq!(c.message_timeout_secs, 10);
    assert_eq!(c.max_spout_pending, Some(500));
    assert!(c.debug);
    assert_eq!(c.effective_ackers(), 0);
    assert_eq!(c.user["wordcount.input"], Value::from("data"));
}

#[test]
fn defaults_follow_storm() {
    let c = Config::new();
    assert_eq!(c.message_timeout_secs, 30);
    assert_eq!(c.max_spout_pending, None);
    assert_eq!(c.effective_ackers(), 1, "one acker per worker");
    assert_eq!(c.tick_tuple_freq_secs, None);
    assert!(c.acker_spout_thread, "ackers run in spout threads");
}

#[test]
fn the_ackers_thread_is_a_setting() {
    let mut c = Config::new();
    c.apply_override("topology.acker.spout.thread=false")
        .unwrap();
    assert!(!c.acker_spout_thread);
    assert_eq!(
        c.to_storm_map()["topology.acker.spout.thread"],
        Value::Bool(false)
    );
    check(
        || Config::from_yaml("topology.acker.spout.thread: 1"),
        r#"config key "topology.acker.spout.thread" wants true or false, got "1""#,
    );
}

#[test]
fn overrides_parse_values_as_yaml() {
    let mut c = Config::new();
    c.apply_override("topology.workers=2").unwrap();
    c.apply_override("topology.tick.tuple.freq.secs=5").unwrap();
    c.apply_override("topology.max.spout.pending=null").unwrap();
    assert_eq!(
        (c.workers, c.tick_tuple_freq_secs, c.max_spout_pending),
        (2, Some(5), None)
    );
}

fn check(f: impl FnOnce() -> Result<Config, ConfigError>, expected: &str) {
    assert_eq!(f().unwrap_err().to_string(), expected);
}

#[test]
fn bad_keys_and_values_are_named() {
    check(
        || Config::from_yaml("topology.wrokers: 2"),
        r#"unknown config key "topology.wrokers""#,
    );
    check(
        || Config::from_yaml("topology.workers: two"),
        r#"config key "topology.workers" wants a positive integer, got "\"two\"""#,
    );
    check(
        || Config::from_yaml("topology.message.timeout.secs: 0"),
        r#"config key "topology.message.timeout.secs" wants a positive integer, got "0""#,
    );
    check(
        || Config::from_yaml("topology.debug: 3"),
        r#"config key "topology.debug" wants true or false, got "3""#,
    );
    check(
        || Config::from_yaml("topology.stats.sample.rate: 2.5"),
        r#"config key "topology.stats.sample.rate" wants a number from 0 to 1, got "2.5""#,
    );
    check(
        || Config::from_yaml("- a\n- b"),
        "config is not a YAML map of keys to values: top level is - a\n- b",
    );
    check(
        || {
            let mut c = Config::new();
            c.apply_override("topology.workers").map(|_| c)
        },
        r#"config override "topology.workers" is not of the form key=value"#,
    );
}

#[test]
fn load_config_reads_a_file_then_applies_overrides() {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    std::io::Write::write_all(&mut file, b"topology.workers: 2\ntopology.debug: true\n").unwrap();
    let c = load_config(Some(file.path()), &["topology.workers=4".to_owned()]).unwrap();
    assert_eq!((c.workers, c.debug), (4, true));

    std::io::Write::write_all(&mut file, b"topology.wrokers: 2\n").unwrap();
    let e = load_config(Some(file.path()), &[]).unwrap_err().to_string();
    assert!(
        e.ends_with(r#": unknown config key "topology.wrokers""#),
        "{e}"
    );
    assert!(e.starts_with("config file "), "{e}");

    let e = load_config(Some(std::path::Path::new("/no/such/squall.yaml")), &[]).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("cannot read config file /no/such/squall.yaml"),
        "{e}"
    );
}
