//! The two-phase contract, checked on both stores (Storm's
//! `InMemoryKeyValueStateTest` and `RedisKeyValueStateTest` cases).

use super::*;

fn stores(name: &str) -> (Vec<Box<dyn StateProvider>>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let providers: Vec<Box<dyn StateProvider>> = vec![
        Box::new(MemoryProvider),
        Box::new(RedbProvider::new(dir.path())),
    ];
    MemoryProvider::clear(name);
    (providers, dir)
}

fn kv(k: &str) -> Vec<u8> {
    k.as_bytes().to_vec()
}

#[test]
fn writes_are_committed_only_by_their_checkpoint() {
    let (providers, _dir) = stores("commit-test");
    for p in providers {
        let mut s = TxStore::new(p.open("commit-test", "t-1").unwrap()).unwrap();
        s.put(kv("a"), kv("1"));
        assert_eq!(s.get(b"a"), Some(kv("1")), "reads see own writes");
        s.prepare(1, Vec::new()).unwrap();
        s.put(kv("b"), kv("2"));
        s.commit(1).unwrap();
        assert_eq!(s.entries().unwrap().len(), 2);
        drop(s);
        // The task's successor sees only what committed.
        let fresh = TxStore::new(p.open("commit-test", "t-1").unwrap()).unwrap();
        assert_eq!(fresh.entries().unwrap(), vec![(kv("a"), kv("1"))]);
        assert_eq!(fresh.committed_txid().unwrap(), Some(1));
    }
}

#[test]
fn rollback_returns_to_the_last_commit() {
    let (providers, _dir) = stores("rollback-test");
    for p in providers {
        let mut s = TxStore::new(p.open("rollback-test", "t-1").unwrap()).unwrap();
        s.put(kv("a"), kv("1"));
        s.prepare(1, Vec::new()).unwrap();
        s.commit(1).unwrap();
        s.put(kv("a"), kv("2"));
        s.delete(kv("a"));
        s.put(kv("c"), kv("3"));
        s.prepare(2, Vec::new()).unwrap();
        s.rollback().unwrap();
        assert_eq!(s.get(b"a"), Some(kv("1")));
        assert_eq!(s.get(b"c"), None);
        assert_eq!(s.entries().unwrap(), vec![(kv("a"), kv("1"))]);
    }
}

#[test]
fn a_prepared_set_survives_a_restart_and_commits_once() {
    let (providers, _dir) = stores("restart-test");
    for p in providers {
        {
            let mut s = TxStore::new(p.open("restart-test", "t-2").unwrap()).unwrap();
            s.put(kv("k"), kv("v"));
            s.prepare(7, b"acks".to_vec()).unwrap();
            // The task dies here; COMMIT 7 comes to its successor.
        }
        let mut s = TxStore::new(p.open("restart-test", "t-2").unwrap()).unwrap();
        assert_eq!(s.get(b"k"), Some(kv("v")), "prepared reads through");
        assert_eq!(s.prepared_acks(), Some((7, &b"acks"[..])));
        s.commit(7).unwrap();
        s.commit(7).unwrap();
        assert_eq!(s.committed_txid().unwrap(), Some(7));
        assert_eq!(s.entries().unwrap(), vec![(kv("k"), kv("v"))]);
        // A COMMIT of a txid that is not the prepared one changes nothing.
        s.put(kv("k"), kv("w"));
        s.prepare(8, Vec::new()).unwrap();
        s.commit(9).unwrap();
        assert_eq!(s.committed_txid().unwrap(), Some(7));
        s.rollback().unwrap();
        assert_eq!(s.get(b"k"), Some(kv("v")));
    }
}

#[test]
fn a_read_error_fails_the_next_prepare() {
    let (providers, _dir) = stores("error-test");
    let p = &providers[0];
    let mut s = TxStore::new(p.open("error-test", "t-1").unwrap()).unwrap();
    s.note_error(StateError::Backend("disk gone".into()));
    let e = s.prepare(1, Vec::new()).unwrap_err();
    assert!(e.to_string().contains("disk gone"), "{e}");
    s.prepare(1, Vec::new()).unwrap();
}

#[test]
fn provider_names_are_checked() {
    let mut c = Config::new();
    c.state_provider = "hbase".into();
    let e = provider_for(&c).err().unwrap();
    assert!(e.to_string().contains("hbase"), "{e}");
    c.state_provider = "redb".into();
    c.state_provider_config = Some("/tmp/x".into());
    assert!(provider_for(&c).is_ok());
}

#[test]
fn a_redb_file_in_use_is_refused_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let p = RedbProvider::new(dir.path());
    let _open = p.open("busy", "t-1").unwrap();
    let e = p.open("busy", "t-1").err().unwrap();
    assert!(e.to_string().contains("t-1.redb"), "{e}");
}

#[test]
fn a_commit_keeps_its_acks_for_a_restarted_task() {
    let (providers, _dir) = stores("acks-test");
    for p in providers {
        let mut s = TxStore::new(p.open("acks-test", "t-1").unwrap()).unwrap();
        assert_eq!(s.committed_acks(), None);
        s.put(kv("a"), kv("1"));
        s.prepare(1, kv("acks of 1")).unwrap();
        s.commit(1).unwrap();
        s.put(kv("a"), kv("2"));
        s.prepare(2, kv("acks of 2")).unwrap();
        drop(s);
        let fresh = TxStore::new(p.open("acks-test", "t-1").unwrap()).unwrap();
        assert_eq!(fresh.committed_acks(), Some((1, &b"acks of 1"[..])));
        assert_eq!(fresh.prepared_acks(), Some((2, &b"acks of 2"[..])));
        let mut fresh = fresh;
        fresh.commit(2).unwrap();
        drop(fresh);
        let after = TxStore::new(p.open("acks-test", "t-1").unwrap()).unwrap();
        assert_eq!(after.committed_acks(), Some((2, &b"acks of 2"[..])));
        assert_eq!(after.prepared_acks(), None);
    }
}
