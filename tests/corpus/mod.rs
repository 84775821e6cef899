//! The Shakespeare corpus, the `word_count` example binary and the
//! reference count, shared by the word count tests.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

pub fn corpus() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let shared = root.join("../shared/data/shakespeare");
    if shared.is_dir() {
        return shared;
    }
    let status = Command::new(root.join("scripts/fetch-data"))
        .status()
        .expect("run scripts/fetch-data");
    assert!(status.success(), "scripts/fetch-data failed");
    root.join("data/shakespeare")
}

/// The example binary cargo built next to this test's own binary (`cargo
/// test` builds examples; a run of this test alone builds it here).
pub fn example() -> PathBuf {
    example_named("word_count")
}

/// The example binary `name`, built if missing.
pub fn example_named(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let bin = dir
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--example", name]);
        if dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        assert!(
            cmd.status().expect("run cargo build").success(),
            "building the example failed"
        );
    }
    bin
}

/// The reference: a word is a maximal run of alphanumeric characters,
/// lowercased.
pub fn plain_count(dir: &Path) -> HashMap<String, u64> {
    let mut counts = HashMap::new();
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for f in files {
        let text = String::from_utf8_lossy(&std::fs::read(f).unwrap()).into_owned();
        for w in text
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
        {
            *counts.entry(w.to_lowercase()).or_insert(0) += 1;
        }
    }
    counts
}

/// Four of the corpus's shorter texts (about 11,500 lines) copied into
/// `into`: for tests that run slow paths in debug builds.
pub fn small_corpus(into: &Path) -> PathBuf {
    let dir = into.join("small-corpus");
    std::fs::create_dir_all(&dir).unwrap();
    for name in [
        "sonnets_gut.txt",
        "comedy_of_errors_gut.txt",
        "midsummer_nights_dream_gut.txt",
        "rape_of_lucrece_gut.txt",
    ] {
        std::fs::copy(corpus().join(name), dir.join(name)).unwrap();
    }
    dir
}

/// Asserts `got` equals `expected`, reporting totals and a few differing
/// words rather than both maps.
pub fn assert_same_counts(got: &HashMap<String, u64>, expected: &HashMap<String, u64>) {
    let total = |m: &HashMap<String, u64>| m.values().sum::<u64>();
    let mut differ: Vec<(&String, u64, u64)> = expected
        .iter()
        .map(|(w, n)| (w, got.get(w).copied().unwrap_or(0), *n))
        .filter(|(_, g, e)| g != e)
        .collect();
    differ.sort();
    assert!(
        differ.is_empty() && got.len() == expected.len(),
        "counts differ: {} words counted, {} expected; {} of {} distinct words differ, e.g. (word, got, expected) {:?}",
        total(got),
        total(expected),
        differ.len(),
        expected.len(),
        &differ[..differ.len().min(8)]
    );
}

/// Reads `word<TAB>count` lines.
pub fn read_counts(path: &Path) -> HashMap<String, u64> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let (w, n) = l.split_once('\t').unwrap();
            (w.to_owned(), n.parse().unwrap())
        })
        .collect()
}
