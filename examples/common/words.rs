//! How the word count examples split a line into words: maximal runs of
//! alphanumeric characters, lowercased (the plain count in the tests
//! splits the same way).

use squall::{CompactString, Value};

/// `word` lowercased, as a tuple value (no allocation for a short ASCII
/// word).
pub fn lowercase(word: &str) -> Value {
    if word.is_ascii() {
        let mut w = CompactString::from(word);
        if word.bytes().any(|b| b.is_ascii_uppercase()) {
            w.make_ascii_lowercase();
        }
        Value::Str(w)
    } else {
        Value::from(word.to_lowercase())
    }
}

/// Calls `f` on each maximal run of alphanumeric characters of `line`
/// (ASCII bytes are classified without decoding).
pub fn for_each_word(line: &str, mut f: impl FnMut(&str)) {
    let bytes = line.as_bytes();
    let mut start = None;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let (alnum, len) = if b.is_ascii() {
            (b.is_ascii_alphanumeric(), 1)
        } else {
            let c = line[i..].chars().next().unwrap_or(' ');
            (c.is_alphanumeric(), c.len_utf8())
        };
        if alnum {
            start.get_or_insert(i);
        } else if let Some(s) = start.take() {
            f(&line[s..i]);
        }
        i += len;
    }
    if let Some(s) = start {
        f(&line[s..]);
    }
}
