//! Word count on the full Shakespeare corpus equals a plain single-threaded
//! count, run as a black box (the `word_count` example binary).

mod corpus;
mod python;

use corpus::{corpus, example, plain_count};
use std::collections::HashMap;
use std::process::Command;

fn run_word_count(extra: &[&str]) -> (Vec<(String, u64)>, String) {
    let out = tempfile::NamedTempFile::new().unwrap();
    let output = Command::new(example())
        .arg("--input")
        .arg(corpus())
        .arg("--output")
        .arg(out.path())
        .args(extra)
        .output()
        .expect("run the word_count example");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "word_count failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = std::fs::read_to_string(out.path()).unwrap();
    let rows = text
        .lines()
        .map(|l| {
            let (w, c) = l.split_once('\t').expect("word<TAB>count");
            (w.to_owned(), c.parse().unwrap())
        })
        .collect();
    (rows, stdout)
}

fn check_exact(rows: &[(String, u64)]) {
    let expected = plain_count(&corpus());
    let got: HashMap<String, u64> = rows.iter().cloned().collect();
    assert_eq!(got.len(), rows.len(), "a word appears twice in the output");
    assert_eq!(got.len(), expected.len());
    for (w, c) in &expected {
        assert_eq!(got.get(w), Some(c), "count of {w:?}");
    }
    // Sorted by count descending, then word ascending.
    for pair in rows.windows(2) {
        let ((w1, c1), (w2, c2)) = (&pair[0], &pair[1]);
        assert!(
            c1 > c2 || (c1 == c2 && w1 < w2),
            "{w1} {c1} before {w2} {c2}"
        );
    }
}

#[test]
fn word_count_on_the_corpus_equals_a_plain_count() {
    let (rows, stdout) = run_word_count(&["--split-parallelism", "2", "--count-parallelism", "3"]);
    check_exact(&rows);
    assert!(stdout.contains("top 20 words:"), "{stdout}");
    assert!(stdout.contains("0 line failures replayed"), "{stdout}");
}

#[test]
fn word_count_with_injected_failures_replays_and_stays_exact() {
    let (rows, stdout) = run_word_count(&["--fail-rate", "0.05"]);
    check_exact(&rows);
    assert!(
        !stdout.contains(" 0 line failures replayed"),
        "no failure was injected: {stdout}"
    );
}

#[test]
fn word_count_with_a_python_split_bolt_equals_the_rust_only_counts() {
    let (rows, stdout) = run_word_count(&["--python", python::python()]);
    check_exact(&rows);
    assert!(stdout.contains("187182 lines acked"), "{stdout}");
}

#[test]
fn word_count_with_a_python_spout_and_split_equals_the_rust_only_counts() {
    let (rows, stdout) = run_word_count(&["--python", python::python(), "--python-spout"]);
    check_exact(&rows);
    assert!(stdout.contains("187182 lines acked"), "{stdout}");
}
