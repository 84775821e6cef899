//! Storm's multilang wire format (docs `Multilang-protocol.md`, Storm's
//! `JsonSerializer`): every message is one JSON document followed by a line
//! holding only `end`, on the subprocess's stdin and stdout.

use serde::{Deserialize, Serialize};
use squall_topology_api::Value;
use std::io::{BufRead, Read, Write};

/// The longest message read from a subprocess, in bytes. A child writing
/// more than this without an `end` line is broken (or writing garbage).
pub const MAX_MESSAGE_BYTES: usize = 16 << 20;

/// Why a subprocess's output could not be read as protocol messages.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// The subprocess closed its stdout (it exited, or closed the pipe).
    #[error("the subprocess closed its stdout{}", partial_note(.partial))]
    Closed {
        /// What was read of an unfinished message, if anything.
        partial: String,
    },
    /// A message grew past [`MAX_MESSAGE_BYTES`] with no `end` line.
    #[error("the subprocess wrote more than {MAX_MESSAGE_BYTES} bytes without an `end` line; it starts: {excerpt:?}")]
    TooLong {
        /// The first bytes of the message.
        excerpt: String,
    },
    /// A message is not the JSON the protocol expects.
    #[error("malformed message from the subprocess ({detail}): {excerpt:?}")]
    Malformed {
        /// What the JSON reader said.
        detail: String,
        /// The first bytes of the message.
        excerpt: String,
    },
    /// A well-formed message the protocol does not allow here (an emit
    /// anchored to a tuple the child does not hold, an unknown spout
    /// command, an emit id that is no value).
    #[error("the subprocess broke the protocol: {0}")]
    Violation(String),
    /// Reading the pipe failed.
    #[error("reading the subprocess's stdout: {0}")]
    Io(#[from] std::io::Error),
}

/// `" in the middle of a message: …"` when `partial` is not empty.
pub(crate) fn partial_note(partial: &str) -> String {
    if partial.is_empty() {
        String::new()
    } else {
        format!(" in the middle of a message: {partial:?}")
    }
}

/// The first 200 characters of `bytes`, lossily decoded, for error messages.
pub fn excerpt(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut s: String = text.chars().take(200).collect();
    if text.chars().nth(200).is_some() {
        s.push('…');
    }
    s
}

/// Reads one message's bytes (the lines before `end`, joined with `\n`)
/// into `msg`, reusing `line` as scratch.
///
/// Errors: [`ProtocolError::Closed`] at end of input,
/// [`ProtocolError::TooLong`] past [`MAX_MESSAGE_BYTES`].
pub fn read_message(
    input: &mut impl BufRead,
    line: &mut Vec<u8>,
    msg: &mut Vec<u8>,
) -> Result<(), ProtocolError> {
    msg.clear();
    loop {
        line.clear();
        let n = Read::take(&mut *input, (MAX_MESSAGE_BYTES + 2) as u64).read_until(b'\n', line)?;
        if n == 0 {
            return Err(ProtocolError::Closed {
                partial: excerpt(msg),
            });
        }
        let mut text: &[u8] = line;
        if let Some(t) = text.strip_suffix(b"\n") {
            text = t;
        }
        if let Some(t) = text.strip_suffix(b"\r") {
            text = t;
        }
        if text == b"end" {
            return Ok(());
        }
        if !msg.is_empty() {
            msg.push(b'\n');
        }
        msg.extend_from_slice(text);
        if msg.len() > MAX_MESSAGE_BYTES {
            return Err(ProtocolError::TooLong {
                excerpt: excerpt(msg),
            });
        }
    }
}

/// Appends `value` as one protocol message (JSON, then `\nend\n`) to `out`.
pub fn encode(out: &mut Vec<u8>, value: &impl Serialize) {
    serde_json::to_writer(&mut *out, value).expect("protocol messages serialize");
    out.extend_from_slice(b"\nend\n");
}

/// Writes one message to `out` (no flush).
pub fn write_message(out: &mut impl Write, value: &impl Serialize) -> std::io::Result<()> {
    let mut buf = Vec::new();
    encode(&mut buf, value);
    out.write_all(&buf)
}

/// The handshake's reply: the child's pid.
#[derive(Debug, Deserialize)]
pub struct PidReply {
    /// The subprocess's process id.
    pub pid: u32,
}

/// Parses the handshake reply `{"pid": N}`.
pub fn parse_pid(bytes: &[u8]) -> Result<u32, ProtocolError> {
    serde_json::from_slice::<PidReply>(bytes)
        .map(|r| r.pid)
        .map_err(|e| ProtocolError::Malformed {
            detail: format!("expected the handshake reply {{\"pid\": N}}: {e}"),
            excerpt: excerpt(bytes),
        })
}

/// A message from a subprocess (Storm's `ShellMsg`): a command with the
/// fields that command uses.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ShellMsg {
    /// `emit`, `ack`, `fail`, `log`, `error`, `metrics` or `sync`.
    pub command: String,
    /// The tuple id (`ack`, `fail`, a bolt's input ids) or a spout emit's
    /// message id: a string or a number.
    #[serde(default)]
    pub id: Option<serde_json::Value>,
    /// The input tuple ids an emit is anchored to (one string is accepted
    /// for one anchor, as Storm does).
    #[serde(default)]
    pub anchors: Option<AnchorIds>,
    /// The stream of an emit (default `"default"`).
    #[serde(default)]
    pub stream: Option<String>,
    /// The task of a direct emit.
    #[serde(default)]
    pub task: Option<i64>,
    /// An emit's values.
    #[serde(default)]
    pub tuple: Option<Vec<Value>>,
    /// Whether an emit wants the task ids it went to (default true, as
    /// Storm; pystorm sends `false` unless asked).
    #[serde(default)]
    pub need_task_ids: Option<bool>,
    /// The text of a `log` or `error`.
    #[serde(default)]
    pub msg: Option<String>,
    /// A `log` level: 0 trace, 1 debug, 2 info (default), 3 warn, 4 error.
    #[serde(default)]
    pub level: Option<i64>,
    /// A `metrics` command's metric name.
    #[serde(default)]
    pub name: Option<String>,
    /// A `metrics` command's parameters.
    #[serde(default)]
    pub params: Option<serde_json::Value>,
}

/// An emit's `anchors`: one id or a list of ids.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum AnchorIds {
    /// A list of ids.
    Many(Vec<serde_json::Value>),
    /// A single id.
    One(serde_json::Value),
}

impl AnchorIds {
    /// The ids as a slice.
    pub fn ids(&self) -> &[serde_json::Value] {
        match self {
            AnchorIds::One(v) => std::slice::from_ref(v),
            AnchorIds::Many(v) => v,
        }
    }
}

/// Parses a command message.
pub fn parse_shell_msg(bytes: &[u8]) -> Result<ShellMsg, ProtocolError> {
    serde_json::from_slice(bytes).map_err(|e| ProtocolError::Malformed {
        detail: e.to_string(),
        excerpt: excerpt(bytes),
    })
}

/// The input tuple id a bolt subprocess names: Squall sends ids as decimal
/// strings (as Storm does); some clients echo them as numbers.
pub fn tuple_id(id: &serde_json::Value) -> Option<u64> {
    match id {
        serde_json::Value::String(s) => s.parse().ok(),
        serde_json::Value::Number(n) => n.as_u64(),
        _ => None,
    }
}

/// A tuple sent to a bolt subprocess (Storm's `BoltMsg`).
#[derive(Debug, Serialize)]
pub struct BoltTuple<'a> {
    /// The tuple's id, as a string.
    pub id: &'a str,
    /// The source component.
    pub comp: &'a str,
    /// The source stream.
    pub stream: &'a str,
    /// The source task (-1 for system tuples: ticks and heartbeats).
    pub task: i64,
    /// The values.
    pub tuple: &'a [Value],
}

/// A command to a spout subprocess (Storm's `SpoutMsg`): `next`, `ack`,
/// `fail`, `activate` or `deactivate`, with the message id for ack and fail
/// (`""` otherwise, as Storm sends).
#[derive(Debug, Serialize)]
pub struct SpoutCommand<'a> {
    /// The command.
    pub command: &'a str,
    /// The message id.
    pub id: &'a serde_json::Value,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::io::Cursor;

    fn read_all(bytes: &[u8]) -> Vec<Result<Vec<u8>, String>> {
        let mut input = Cursor::new(bytes.to_vec());
        let (mut line, mut msg) = (Vec::new(), Vec::new());
        let mut out = Vec::new();
        loop {
            match read_message(&mut input, &mut line, &mut msg) {
                Ok(()) => out.push(Ok(msg.clone())),
                Err(ProtocolError::Closed { partial }) if partial.is_empty() => return out,
                Err(e) => {
                    out.push(Err(e.to_string()));
                    return out;
                }
            }
        }
    }

    #[test]
    fn messages_end_at_end_lines_and_may_span_lines() {
        let got = read_all(b"{\"a\":\n1}\nend\r\n{\"command\":\"sync\"}\nend\n");
        assert_eq!(got[0].as_deref().unwrap(), b"{\"a\":\n1}");
        assert_eq!(got[1].as_deref().unwrap(), b"{\"command\":\"sync\"}");
        assert_eq!(got.len(), 2);
    }

    #[test]
    fn a_closed_pipe_mid_message_says_what_was_read() {
        let got = read_all(b"{\"command\":");
        let e = got[0].as_ref().unwrap_err();
        assert!(e.contains("closed its stdout in the middle"), "{e}");
        assert!(e.contains("command"), "{e}");
    }

    #[test]
    fn shell_msgs_parse_as_storm_sends_them() {
        let m = parse_shell_msg(
            br#"{"command":"emit","anchors":"7","tuple":["a",1,2.5,null,[true]],"need_task_ids":false}"#,
        )
        .unwrap();
        assert_eq!(m.command, "emit");
        let many = parse_shell_msg(br#"{"command":"emit","anchors":["7","8"]}"#).unwrap();
        assert_eq!(
            many.anchors.unwrap().ids(),
            &[serde_json::json!("7"), serde_json::json!("8")]
        );
        assert_eq!(m.anchors.unwrap().ids(), &[serde_json::json!("7")]);
        assert_eq!(
            m.tuple.unwrap(),
            vec![
                Value::from("a"),
                Value::Int(1),
                Value::Float(2.5),
                Value::Null,
                Value::List(vec![Value::Bool(true)])
            ]
        );
        assert_eq!(m.need_task_ids, Some(false));
        let e = parse_shell_msg(b"not json").unwrap_err().to_string();
        assert!(e.contains("malformed") && e.contains("not json"), "{e}");
        let e = parse_shell_msg(br#"{"id":"1"}"#).unwrap_err().to_string();
        assert!(e.contains("command"), "{e}");
        assert_eq!(parse_pid(br#"{"pid": 4321}"#).unwrap(), 4321);
        assert!(parse_pid(br#"{"command":"sync"}"#).is_err());
    }

    #[test]
    fn tuple_ids_read_from_strings_and_numbers() {
        assert_eq!(tuple_id(&serde_json::json!("12")), Some(12));
        assert_eq!(tuple_id(&serde_json::json!(12)), Some(12));
        assert_eq!(tuple_id(&serde_json::json!([1])), None);
    }

    proptest! {
        #[test]
        fn encoded_messages_read_back(texts in proptest::collection::vec(".*", 0..8)) {
            let mut bytes = Vec::new();
            for t in &texts {
                encode(&mut bytes, &serde_json::json!({"command": "log", "msg": t}));
            }
            let got = read_all(&bytes);
            prop_assert_eq!(got.len(), texts.len());
            for (g, t) in got.iter().zip(&texts) {
                let m = parse_shell_msg(g.as_ref().unwrap()).unwrap();
                prop_assert_eq!(m.msg.as_deref(), Some(t.as_str()));
            }
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            for m in read_all(&bytes).into_iter().flatten() {
                let _ = parse_shell_msg(&m);
            }
        }
    }
}
