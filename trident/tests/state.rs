//! Storm's `StateTest` cases: transactional and opaque values and maps when
//! a txid is replayed, newer, or older (an error).

use squall_topology_api::Value;
use squall_trident::state::{MemoryBackingMap, OpaqueValue, RedbBackingMap, SemanticMap};
use squall_trident::{Key, MapState, Semantics, State, StateError};

fn key(k: &str) -> Vec<Key> {
    vec![Key::from([k])]
}

fn get(map: &mut dyn MapState, k: &str) -> Option<Value> {
    map.multi_get(&key(k)).unwrap().remove(0)
}

/// Adds `amt` (Storm's `CombinerValueUpdater` with `Count`'s combine).
fn update(map: &mut dyn MapState, k: &str, amt: i64) -> Value {
    map.multi_update(&key(k), &mut |_, old| {
        Value::Int(old.and_then(|v| v.as_i64()).unwrap_or(0) + amt)
    })
    .unwrap()
    .remove(0)
}

fn map(semantics: Semantics, name: &str) -> SemanticMap<MemoryBackingMap> {
    MemoryBackingMap::clear(name);
    SemanticMap::new(semantics, MemoryBackingMap::open(name, 0))
}

#[test]
fn opaque_value() {
    let v = OpaqueValue {
        curr_txid: 8,
        curr: "v1".into(),
        prev: Some("v0".into()),
    };
    let same = v.update(8, "v2".into()).unwrap();
    let newer = v.update(9, "v2".into()).unwrap();
    assert_eq!(v.get(None).unwrap(), Some(&Value::from("v1")));
    assert_eq!(v.get(Some(100)).unwrap(), Some(&Value::from("v1")));
    assert_eq!(v.get(Some(9)).unwrap(), Some(&Value::from("v1")));
    assert_eq!(v.get(Some(8)).unwrap(), Some(&Value::from("v0")));
    assert_eq!(
        v.get(Some(7)),
        Err(StateError::BehindBatch { batch: 7, state: 8 })
    );
    // A replay of txid 8 keeps the value before it.
    assert_eq!(
        (same.prev.clone(), same.curr.clone()),
        (Some("v0".into()), "v2".into())
    );
    assert_ne!(same, v);
    // A newer txid moves curr to prev.
    assert_eq!(
        (newer.prev.clone(), newer.curr.clone()),
        (Some("v1".into()), "v2".into())
    );
    assert_ne!(newer, v);
    assert!(matches!(
        v.update(7, "x".into()),
        Err(StateError::BehindBatch { .. })
    ));
}

#[test]
fn opaque_map() {
    let mut m = map(Semantics::Opaque, "state-test-opaque");
    m.begin_commit(1).unwrap();
    assert_eq!(get(&mut m, "a"), None);
    // Intra-batch caching: a second update builds on the first.
    assert_eq!(update(&mut m, "a", 1), Value::Int(1));
    assert_eq!(get(&mut m, "a"), Some(Value::Int(1)));
    assert_eq!(update(&mut m, "a", 2), Value::Int(3));
    assert_eq!(get(&mut m, "a"), Some(Value::Int(3)));
    m.commit(1).unwrap();
    // Replayed txid 1 (an opaque batch may differ): applied to the previous value.
    m.begin_commit(1).unwrap();
    assert_eq!(get(&mut m, "a"), None);
    assert_eq!(update(&mut m, "a", 2), Value::Int(2));
    m.commit(1).unwrap();
    // Newer txid.
    m.begin_commit(2).unwrap();
    assert_eq!(get(&mut m, "a"), Some(Value::Int(2)));
    assert_eq!(update(&mut m, "a", 3), Value::Int(5));
    assert_eq!(update(&mut m, "a", 1), Value::Int(6));
    m.commit(2).unwrap();
    // Older txid: an error, nothing written.
    m.begin_commit(1).unwrap();
    let e = m
        .multi_update(&key("a"), &mut |_, _| Value::Int(0))
        .unwrap_err();
    assert_eq!(e, StateError::BehindBatch { batch: 1, state: 2 });
    m.commit(1).unwrap();
    assert_eq!(get(&mut m, "a"), Some(Value::Int(6)));
}

#[test]
fn transactional_map() {
    let mut m = map(Semantics::Transactional, "state-test-transactional");
    m.begin_commit(1).unwrap();
    assert_eq!(get(&mut m, "a"), None);
    assert_eq!(update(&mut m, "a", 1), Value::Int(1));
    assert_eq!(update(&mut m, "a", 2), Value::Int(3));
    m.commit(1).unwrap();
    // Replayed txid 1: already applied, skipped (even twice in the batch).
    m.begin_commit(1).unwrap();
    assert_eq!(get(&mut m, "a"), Some(Value::Int(3)));
    assert_eq!(update(&mut m, "a", 1), Value::Int(3));
    assert_eq!(update(&mut m, "a", 2), Value::Int(3));
    m.commit(1).unwrap();
    // Newer txid.
    m.begin_commit(2).unwrap();
    assert_eq!(get(&mut m, "a"), Some(Value::Int(3)));
    assert_eq!(update(&mut m, "a", 3), Value::Int(6));
    assert_eq!(update(&mut m, "a", 1), Value::Int(7));
    m.commit(2).unwrap();
    // Older txid: an error.
    m.begin_commit(1).unwrap();
    assert_eq!(
        m.multi_get(&key("a")).unwrap_err(),
        StateError::BehindBatch { batch: 1, state: 2 }
    );
    assert!(m
        .multi_update(&key("a"), &mut |_, _| Value::Int(0))
        .is_err());
    m.commit(1).unwrap();
    assert_eq!(get(&mut m, "a"), Some(Value::Int(7)));
}

#[test]
fn non_transactional_map_applies_replays_again() {
    let mut m = map(Semantics::NonTransactional, "state-test-plain");
    for _ in 0..2 {
        m.begin_commit(1).unwrap();
        update(&mut m, "a", 5);
        m.commit(1).unwrap();
    }
    assert_eq!(get(&mut m, "a"), Some(Value::Int(10)));
}

#[test]
fn a_map_opened_with_other_semantics_is_refused() {
    let mut m = map(Semantics::Transactional, "state-test-kind");
    m.begin_commit(1).unwrap();
    update(&mut m, "a", 1);
    m.commit(1).unwrap();
    let mut o = SemanticMap::new(
        Semantics::Opaque,
        MemoryBackingMap::open("state-test-kind", 0),
    );
    let e = o.multi_get(&key("a")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "the state holds transactional values but was opened as opaque"
    );
}

#[test]
fn redb_state_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    {
        let backing = RedbBackingMap::open(dir.path(), "s", 0).unwrap();
        let mut m = SemanticMap::new(Semantics::Opaque, backing);
        m.begin_commit(1).unwrap();
        update(&mut m, "a", 4);
        m.commit(1).unwrap();
    }
    let backing = RedbBackingMap::open(dir.path(), "s", 0).unwrap();
    let mut m = SemanticMap::new(Semantics::Opaque, backing);
    m.begin_commit(1).unwrap();
    // Replay of txid 1 after a restart: applied to the value before it.
    assert_eq!(update(&mut m, "a", 2), Value::Int(2));
    m.commit(1).unwrap();
    m.begin_commit(2).unwrap();
    assert_eq!(update(&mut m, "a", 3), Value::Int(5));
    m.commit(2).unwrap();
    drop(m);
    let all = RedbBackingMap::read_all(dir.path(), "s").unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].1.current(), &Value::Int(5));
    // A second open of a file in use is a clear error naming the file.
    let _held = RedbBackingMap::open(dir.path(), "s", 0).unwrap();
    let e = RedbBackingMap::open(dir.path(), "s", 0).err().unwrap();
    assert!(e.to_string().contains("s-0.redb"), "{e}");
}
