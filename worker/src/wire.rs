//! The frames workers of a topology exchange, as MessagePack bytes written
//! and read with `rmp`'s primitives rather than through serde:
//! - a batch of tuples: exactly what rmp-serde writes for `Vec<TupleMsg>`
//!   (each tuple the array `[dest, source, stream, values, message id]`,
//!   values untagged), but reading skips serde's per-field dispatch, which
//!   dominated a worker's receive thread;
//! - a batch of ack-protocol messages, `{"acks": [[dest, source, stream,
//!   kind, root, val?], …]}` (the parts of [`AckMsg::to_parts`]): a third
//!   of an ack tuple's bytes in memory, and no values to build and parse;
//! - a backpressure status, `{"backpressure": [task, …]}`.
//!
//! A sending executor encodes its batches for another worker itself
//! ([`crate::message::Encoded`]); the receiving worker reads only a
//! frame's [`head`] to find the executor it is for, and that executor
//! decodes it: a bolt executor reads each tuple straight into the tuple
//! it delivers ([`decode_into`]: for a batch of words, a fifth fewer
//! instructions than building each message and moving it in), a spout
//! takes its acks one by one ([`decode_each`]).
//!
//! The forms nearly every tuple is made of (arrays under 16, integers,
//! strings under 32 bytes) are read and written inline, without `rmp`'s
//! generic readers: decoding a batch of words costs a third of what it did
//! through them. The head of a tuple with small task ids and under 16 values,
//! and a message id in one tree with 64-bit ids, are each written in one
//! fixed-size write and read in one match (a batch of words: 16.6 to 11
//! ns a tuple to encode).
//!
//! Reading never panics on bad bytes: every length is checked against the
//! bytes left, nesting is capped at [`MAX_DEPTH`], and any error names
//! what was wrong.

use crate::acking::{AckMsg, AckTo};
use crate::message::TupleMsg;
use compact_str::CompactString;
use rmp::decode::RmpRead;
use rmp::encode;
use rmp::Marker;
use smallvec::SmallVec;
use squall_topology_api::{MessageId, TaskId, Value, Values};
use std::collections::BTreeMap;

/// Deepest nesting of lists and maps a tuple value may have on the wire.
pub const MAX_DEPTH: usize = 64;

/// Why a batch could not be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("bad tuple batch: {0}")]
pub struct WireError(String);

fn bad(what: impl std::fmt::Display) -> WireError {
    WireError(what.to_string())
}

/// Appends an unsigned integer in its shortest MessagePack form (as
/// `rmp::encode::write_uint` does), inline.
#[inline]
fn put_uint(out: &mut Vec<u8>, v: u64) {
    if v < 0x80 {
        out.push(v as u8);
    } else if v <= u64::from(u8::MAX) {
        out.extend_from_slice(&[0xcc, v as u8]);
    } else if v <= u64::from(u16::MAX) {
        out.push(0xcd);
        out.extend_from_slice(&(v as u16).to_be_bytes());
    } else if v <= u64::from(u32::MAX) {
        out.push(0xce);
        out.extend_from_slice(&(v as u32).to_be_bytes());
    } else {
        out.push(0xcf);
        out.extend_from_slice(&v.to_be_bytes());
    }
}

/// Appends an array header (as `rmp::encode::write_array_len`), a short
/// one inline.
#[inline]
fn put_array_len(out: &mut Vec<u8>, len: usize) {
    if len < 16 {
        out.push(0x90 | len as u8);
    } else {
        let _ = encode::write_array_len(out, len as u32);
    }
}

/// Appends the MessagePack encoding of `batch` to `out`.
pub fn encode_batch(batch: &[TupleMsg], out: &mut Vec<u8>) {
    // Writes to a Vec cannot fail; the results are ignored for that reason.
    put_array_len(out, batch.len());
    for t in batch {
        let (dest, source, stream, k) = (t.dest.0, t.source.0, t.stream, t.values.len());
        if dest < 0x80 && source < 0x80 && stream < 0x80 && k < 16 {
            // The common head (small tasks and stream, few values) in one
            // fixed-size write.
            out.extend_from_slice(&[0x95, dest as u8, source as u8, stream as u8, 0x90 | k as u8]);
        } else {
            put_array_len(out, 5);
            put_uint(out, u64::from(dest));
            put_uint(out, u64::from(source));
            put_uint(out, u64::from(stream));
            put_array_len(out, k);
        }
        for v in t.values.iter() {
            encode_value(v, out);
        }
        match t.message_id.0.as_slice() {
            // One tree, ids over 32 bits (all but 1 in 2^31 random ones):
            // `[[root, edge]]` in one fixed-size write.
            &[(root, edge)] if root > u64::from(u32::MAX) && edge > u64::from(u32::MAX) => {
                let (r, e) = (root.to_be_bytes(), edge.to_be_bytes());
                out.extend_from_slice(&[
                    0x91, 0x92, 0xcf, r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], 0xcf, e[0],
                    e[1], e[2], e[3], e[4], e[5], e[6], e[7],
                ]);
            }
            ids => {
                put_array_len(out, ids.len());
                for &(root, edge) in ids {
                    put_array_len(out, 2);
                    put_uint(out, root);
                    put_uint(out, edge);
                }
            }
        }
    }
}

fn encode_value(v: &Value, out: &mut Vec<u8>) {
    let _ = match v {
        Value::Str(s) if s.len() < 32 => {
            out.push(0xa0 | s.len() as u8);
            out.extend_from_slice(s.as_bytes());
            Ok(())
        }
        Value::Null => encode::write_nil(out).map_err(drop),
        Value::Bool(b) => encode::write_bool(out, *b).map_err(drop),
        Value::Int(i) => encode::write_sint(out, *i).map(drop).map_err(drop),
        Value::Float(f) => encode::write_f64(out, *f).map_err(drop),
        Value::Str(s) => encode::write_str(out, s).map_err(drop),
        Value::Bytes(b) => encode::write_bin(out, b).map_err(drop),
        Value::List(l) => {
            put_array_len(out, l.len());
            l.iter().for_each(|v| encode_value(v, out));
            Ok(())
        }
        Value::Map(m) => {
            let _ = encode::write_map_len(out, m.len() as u32);
            for (k, v) in m {
                let _ = encode::write_str(out, k);
                encode_value(v, out);
            }
            Ok(())
        }
    };
}

/// Reads a batch's tuples in order, handing each to `f` as it is read;
/// stops at the first malformed one (those before it were handed over).
fn batch_each(rd: &mut &[u8], mut f: impl FnMut(TupleMsg)) -> Result<(), WireError> {
    let n = array_len(rd, "batch")?;
    for _ in 0..n {
        f(tuple(rd)?);
    }
    Ok(())
}

/// Where [`decode_into`] puts a frame's messages: each tuple is decoded
/// straight into the values and ids of the tuple its receiver delivers.
pub trait Deliver {
    /// The values and ids, emptied, to decode the tuple for task `dest`
    /// from task `source` on stream index `stream` into; `None` drops
    /// the tuple.
    fn slot(
        &mut self,
        dest: TaskId,
        source: TaskId,
        stream: u32,
    ) -> Option<(&mut Values, &mut MessageId)>;

    /// Runs the tuple just decoded into the slot given for task `dest` on
    /// stream index `stream`.
    fn run(&mut self, dest: TaskId, stream: u32);

    /// Takes an ack-protocol message of an ack frame.
    fn ack(&mut self, ack: AckTo);
}

/// Reads a batch or ack frame's messages in order into `to` (see
/// [`Deliver`]), so that no message is built apart from where it is
/// delivered: a bolt executor decodes a frame from a peer worker this way.
///
/// # Errors
/// As [`decode_each`]; the tuple being read when the error was found is
/// not run.
pub fn decode_into(mut bytes: &[u8], to: &mut impl Deliver) -> Result<(), WireError> {
    let rd = &mut bytes;
    match kind(rd)? {
        Kind::Batch => {
            let n = array_len(rd, "batch")?;
            for _ in 0..n {
                let (dest, source, stream, k) = tuple_head(rd)?;
                match to.slot(dest, source, stream) {
                    Some((values, id)) => {
                        fill(rd, k, values, id)?;
                        to.run(dest, stream);
                    }
                    None => fill(rd, k, &mut Values::new(), &mut MessageId::untracked())?,
                }
            }
        }
        Kind::Acks => acks_each(rd, |a| to.ack(a))?,
        Kind::Backpressure => return Err(bad("a backpressure frame holds no messages")),
    }
    done(rd, "frame")
}

/// Reads a tuple's `k` values into `values` and its message id into `id`.
#[inline]
fn fill(
    rd: &mut &[u8],
    k: usize,
    values: &mut Values,
    id: &mut MessageId,
) -> Result<(), WireError> {
    if k > values.0.inline_size() {
        values.0.reserve_exact(k);
    }
    for _ in 0..k {
        push_value(rd, values)?;
    }
    *id = message_id(rd)?;
    Ok(())
}

/// Reads one tuple, `[dest, source, stream, values, message id]`.
#[inline]
fn tuple(rd: &mut &[u8]) -> Result<TupleMsg, WireError> {
    let (dest, source, stream, k) = tuple_head(rd)?;
    // `SmallVec::new` rather than `with_capacity`: the latter's result,
    // moved through the stack, stalled on every tuple.
    let mut values = Values(SmallVec::new());
    let mut message_id = MessageId::untracked();
    fill(rd, k, &mut values, &mut message_id)?;
    Ok(TupleMsg {
        dest,
        source,
        stream,
        values,
        message_id,
    })
}

/// Reads a tuple's array header and its first three fields, up to its
/// values' array header: `(dest, source, stream, number of values)`.
/// Always inlined: called once per tuple, its call alone was a third of
/// its instructions.
#[inline(always)]
fn tuple_head(rd: &mut &[u8]) -> Result<(TaskId, TaskId, u32, usize), WireError> {
    // The common head (small tasks and stream, under 16 values) in one
    // match, as `encode_batch` writes it.
    let bytes: &[u8] = rd;
    if let [0x95, d @ 0..=0x7f, s @ 0..=0x7f, st @ 0..=0x7f, k @ 0x90..=0x9f, ref rest @ ..] =
        *bytes
    {
        *rd = rest;
        let k = fits(rd, usize::from(k & 0x0f), "values")?;
        return Ok((TaskId(u32::from(d)), TaskId(u32::from(s)), u32::from(st), k));
    }
    if array_len(rd, "tuple")? != 5 {
        return Err(bad(
            "a tuple is not [dest, source, stream, values, message id]",
        ));
    }
    let dest = TaskId(uint(rd, "dest task")?);
    let source = TaskId(uint(rd, "source task")?);
    let stream = uint(rd, "stream")?;
    Ok((dest, source, stream, array_len(rd, "values")?))
}

/// Reads a tuple's message id, `[[root, edge], …]`.
#[inline]
fn message_id(rd: &mut &[u8]) -> Result<MessageId, WireError> {
    // One tree with 64-bit ids (nearly every tracked tuple) in one match;
    // its id is made in one step from the two integers: pushed into a
    // `SmallVec` and then moved, it was read back 16 bytes at once from
    // the 8-byte stores that had just written it, and stalled on every
    // tuple.
    let bytes: &[u8] = rd;
    if let [0x91, 0x92, 0xcf, r0, r1, r2, r3, r4, r5, r6, r7, 0xcf, e0, e1, e2, e3, e4, e5, e6, e7, ref rest @ ..] =
        *bytes
    {
        *rd = rest;
        return Ok(MessageId::single(
            u64::from_be_bytes([r0, r1, r2, r3, r4, r5, r6, r7]),
            u64::from_be_bytes([e0, e1, e2, e3, e4, e5, e6, e7]),
        ));
    }
    Ok(match array_len(rd, "message id")? {
        0 => MessageId::untracked(),
        1 => {
            let (root, edge) = id_pair(rd)?;
            MessageId::single(root, edge)
        }
        m => {
            let mut ids: SmallVec<[(u64, u64); 1]> = SmallVec::with_capacity(m);
            for _ in 0..m {
                ids.push(id_pair(rd)?);
            }
            MessageId(ids)
        }
    })
}

/// Reads a message id entry, `[root, edge]`.
#[inline]
fn id_pair(rd: &mut &[u8]) -> Result<(u64, u64), WireError> {
    if array_len(rd, "message id pair")? != 2 {
        return Err(bad("a message id entry is not [root, edge]"));
    }
    Ok((uint(rd, "root")?, uint(rd, "edge")?))
}

/// An error unless every byte was read.
fn done(rd: &[u8], what: &str) -> Result<(), WireError> {
    if rd.is_empty() {
        Ok(())
    } else {
        Err(bad(format!("{} bytes after the {what}", rd.len())))
    }
}

/// The key of a backpressure frame: the map `{"backpressure": [task…]}`,
/// which no batch (an array) starts like.
const BACKPRESSURE_KEY: &str = "backpressure";
/// The key of an ack frame: the map `{"acks": [ack…]}`.
const ACKS_KEY: &str = "acks";

/// Appends an ack frame holding `acks` to `out`: each ack the array
/// `[dest, source, stream, kind, root]`, with `val` after `root` for the
/// kinds that have one ([`AckMsg::to_parts`]).
pub fn encode_acks(acks: &[AckTo], out: &mut Vec<u8>) {
    let _ = encode::write_map_len(out, 1);
    let _ = encode::write_str(out, ACKS_KEY);
    put_array_len(out, acks.len());
    for a in acks {
        let (kind, root, val) = a.msg.to_parts();
        put_array_len(out, if val.is_some() { 6 } else { 5 });
        put_uint(out, u64::from(a.dest.0));
        put_uint(out, u64::from(a.source.0));
        put_uint(out, u64::from(a.stream));
        put_uint(out, u64::from(kind));
        put_uint(out, root);
        if let Some(val) = val {
            put_uint(out, val);
        }
    }
}

/// Reads the list of an ack frame, after its key, handing each ack to
/// `f` as it is read; stops at the first malformed one.
fn acks_each(rd: &mut &[u8], mut f: impl FnMut(AckTo)) -> Result<(), WireError> {
    let n = array_len(rd, "acks")?;
    for _ in 0..n {
        f(ack(rd)?);
    }
    Ok(())
}

/// Reads one ack, `[dest, source, stream, kind, root, val?]`.
fn ack(rd: &mut &[u8]) -> Result<AckTo, WireError> {
    let len = array_len(rd, "ack")?;
    if !(5..=6).contains(&len) {
        return Err(bad(
            "an ack is not [dest, source, stream, kind, root, val?]",
        ));
    }
    let dest = TaskId(uint(rd, "ack dest task")?);
    let source = TaskId(uint(rd, "ack source task")?);
    let stream = uint(rd, "ack stream")?;
    let kind = uint(rd, "ack kind")?;
    let root = uint(rd, "ack root")?;
    let val = if len == 6 {
        Some(uint(rd, "ack val")?)
    } else {
        None
    };
    let msg = AckMsg::from_parts(kind, root, val, source).ok_or_else(|| {
        bad(format!(
            "ack kind {kind} with {} values is not an ack message",
            len - 4
        ))
    })?;
    Ok(AckTo {
        dest,
        source,
        stream,
        msg,
    })
}

/// Appends a backpressure frame naming `tasks` to `out`.
pub fn encode_backpressure(tasks: &[u32], out: &mut Vec<u8>) {
    let _ = encode::write_map_len(out, 1);
    let _ = encode::write_str(out, BACKPRESSURE_KEY);
    put_array_len(out, tasks.len());
    for &t in tasks {
        put_uint(out, u64::from(t));
    }
}

/// The kinds of frame.
enum Kind {
    Batch,
    Acks,
    Backpressure,
}

/// Reads which kind of frame `rd` starts, and for a map frame its key.
fn kind(rd: &mut &[u8]) -> Result<Kind, WireError> {
    let is_map = matches!(
        rd.first().map(|&b| Marker::from_u8(b)),
        Some(Marker::FixMap(_) | Marker::Map16 | Marker::Map32)
    );
    if !is_map {
        return Ok(Kind::Batch);
    }
    let m = marker(rd, "frame")?;
    if container_len(rd, m, "frame")? != 1 {
        return Err(bad("a map frame has more than one key"));
    }
    match string(rd, "frame key")? {
        ACKS_KEY => Ok(Kind::Acks),
        BACKPRESSURE_KEY => Ok(Kind::Backpressure),
        key => Err(bad(format!(
            "a map frame's key is {key:?}, not \"acks\" or \"backpressure\""
        ))),
    }
}

/// Reads a backpressure frame's tasks, after its key.
fn backpressure(rd: &mut &[u8]) -> Result<Vec<u32>, WireError> {
    let n = array_len(rd, "backpressured tasks")?;
    let mut tasks = Vec::with_capacity(n);
    for _ in 0..n {
        tasks.push(uint(rd, "backpressured task")?);
    }
    Ok(tasks)
}

/// What a frame is for, read from its head: a receiving worker hands a
/// frame of messages to an executor without decoding it (the executor
/// does, see [`decode_each`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Head {
    /// Tuples or acks: how many, and the first one's task (a sender
    /// batches by executor: every message is for that task's executor).
    Messages {
        /// The first message's receiving task.
        task: TaskId,
        /// How many messages the frame holds.
        len: usize,
    },
    /// A batch or ack frame with nothing in it.
    Empty,
    /// A backpressure status, read whole: the sender's backpressured
    /// tasks, sorted (empty: none), replacing what it reported before (see
    /// [`crate::backpressure`]).
    Backpressure(Vec<u32>),
}

/// Reads a frame's head (see [`Head`]): its kind, its length and its
/// first message's task, or a backpressure frame whole. The rest of a
/// frame of messages is checked when it is decoded.
///
/// # Errors
/// [`WireError`] for truncated or malformed bytes in what it reads, a
/// map frame whose key is not `acks` or `backpressure`, or, for a
/// backpressure frame or an empty one, bytes left over.
pub fn head(mut bytes: &[u8]) -> Result<Head, WireError> {
    let rd = &mut bytes;
    let (len, first) = match kind(rd)? {
        Kind::Batch => (array_len(rd, "batch")?, "tuple"),
        Kind::Acks => (array_len(rd, "acks")?, "ack"),
        Kind::Backpressure => {
            let tasks = backpressure(rd)?;
            done(rd, "frame")?;
            return Ok(Head::Backpressure(tasks));
        }
    };
    if len == 0 {
        done(rd, "frame")?;
        return Ok(Head::Empty);
    }
    array_len(rd, first)?;
    let task = TaskId(uint(rd, "dest task")?);
    Ok(Head::Messages { task, len })
}

/// One message of a frame, as [`decode_each`] hands it over.
#[derive(Debug)]
pub enum Message {
    /// A tuple of a batch frame.
    Tuple(TupleMsg),
    /// An ack-protocol message of an ack frame.
    Ack(AckTo),
}

/// Reads a batch or ack frame's messages in order, handing each to `f`
/// as it is read, so that no batch is built: an executor decodes a
/// frame from a peer worker this way.
///
/// # Errors
/// [`WireError`] for truncated or malformed bytes, a value of an unknown
/// type, nesting deeper than [`MAX_DEPTH`], an ack that is not one
/// ([`AckMsg::from_parts`]), bytes left over, or a backpressure frame;
/// the messages read before the error were handed over, the rest of the
/// frame is not read.
pub fn decode_each(mut bytes: &[u8], mut f: impl FnMut(Message)) -> Result<(), WireError> {
    let rd = &mut bytes;
    match kind(rd)? {
        Kind::Batch => batch_each(rd, |t| f(Message::Tuple(t)))?,
        Kind::Acks => acks_each(rd, |a| f(Message::Ack(a)))?,
        Kind::Backpressure => return Err(bad("a backpressure frame holds no messages")),
    }
    done(rd, "frame")
}

#[inline]
fn marker(rd: &mut &[u8], what: &str) -> Result<Marker, WireError> {
    match rd.split_first() {
        Some((&b, rest)) => {
            *rd = rest;
            Ok(Marker::from_u8(b))
        }
        None => Err(cut_short(what)),
    }
}

#[cold]
#[inline(never)]
fn cut_short(what: &str) -> WireError {
    bad(format!("{what}: cut short"))
}

fn cut(
    what: &str,
) -> impl Fn(rmp::decode::ValueReadError<std::io::Error>) -> WireError + Copy + '_ {
    move |_| bad(format!("{what}: cut short"))
}

/// Reads an array header; its length must fit in the bytes left (each
/// element takes at least one byte), so a hostile length cannot make a
/// large allocation. A short array (under 16) is read inline.
#[inline]
fn array_len(rd: &mut &[u8], what: &str) -> Result<usize, WireError> {
    let bytes: &[u8] = rd;
    if let [b @ 0x90..=0x9f, ref rest @ ..] = *bytes {
        *rd = rest;
        return fits(rd, usize::from(b & 0x0f), what);
    }
    long_array_len(rd, what)
}

#[inline(never)]
fn long_array_len(rd: &mut &[u8], what: &str) -> Result<usize, WireError> {
    match marker(rd, what)? {
        m @ (Marker::FixArray(_) | Marker::Array16 | Marker::Array32) => container_len(rd, m, what),
        m => Err(bad(format!("{what}: expected an array, found {m:?}"))),
    }
}

/// The element count after an array or map marker (checked to fit).
fn container_len(rd: &mut &[u8], m: Marker, what: &str) -> Result<usize, WireError> {
    let len = match m {
        Marker::FixArray(n) | Marker::FixMap(n) => usize::from(n),
        Marker::Array16 | Marker::Map16 => usize::from(rd.read_data_u16().map_err(cut(what))?),
        _ => rd.read_data_u32().map_err(cut(what))? as usize,
    };
    fits(rd, len, what)
}

#[inline]
fn fits(rd: &[u8], len: usize, what: &str) -> Result<usize, WireError> {
    if len > rd.len() {
        return Err(over(len, rd.len(), what));
    }
    Ok(len)
}

#[cold]
#[inline(never)]
fn over(len: usize, left: usize, what: &str) -> WireError {
    bad(format!(
        "{what}: length {len} is over the {left} bytes left"
    ))
}

/// Reads an unsigned integer of any width, each read inline.
#[inline]
fn uint<T: TryFrom<u64>>(rd: &mut &[u8], what: &str) -> Result<T, WireError> {
    let bytes: &[u8] = rd;
    let (v, rest) = match *bytes {
        [b @ 0..=0x7f, ref rest @ ..] => (u64::from(b), rest),
        [0xcc, b, ref rest @ ..] => (u64::from(b), rest),
        [0xcd, a, b, ref rest @ ..] => (u64::from(u16::from_be_bytes([a, b])), rest),
        [0xce, a, b, c, d, ref rest @ ..] => (u64::from(u32::from_be_bytes([a, b, c, d])), rest),
        [0xcf, a, b, c, d, e, f, g, h, ref rest @ ..] => {
            (u64::from_be_bytes([a, b, c, d, e, f, g, h]), rest)
        }
        _ => return Err(not_uint(rd, what)),
    };
    *rd = rest;
    T::try_from(v).map_err(|_| bad(format!("{what}: {v} is out of range")))
}

/// Why the bytes at `rd` are not an unsigned integer.
#[cold]
#[inline(never)]
fn not_uint(rd: &[u8], what: &str) -> WireError {
    match rd.first().map(|&b| Marker::from_u8(b)) {
        None | Some(Marker::U8 | Marker::U16 | Marker::U32 | Marker::U64) => cut_short(what),
        Some(m) => bad(format!("{what}: expected an unsigned integer, found {m:?}")),
    }
}

#[inline]
fn take<'a>(rd: &mut &'a [u8], len: usize, what: &str) -> Result<&'a [u8], WireError> {
    fits(rd, len, what)?;
    let (head, tail) = rd.split_at(len);
    *rd = tail;
    Ok(head)
}

#[inline]
fn text<'a>(rd: &mut &'a [u8], len: usize, what: &str) -> Result<&'a str, WireError> {
    std::str::from_utf8(take(rd, len, what)?).map_err(|e| bad(format!("{what}: {e}")))
}

fn string<'a>(rd: &mut &'a [u8], what: &str) -> Result<&'a str, WireError> {
    let len = match marker(rd, what)? {
        Marker::FixStr(n) => usize::from(n),
        Marker::Str8 => usize::from(rd.read_data_u8().map_err(cut(what))?),
        m => return Err(bad(format!("{what}: expected a short string, found {m:?}"))),
    };
    text(rd, len, what)
}

/// Reads a tuple's value into `values`; a short string (under 32 bytes,
/// a word) is built in place, inline: moving a decoded `Result<Value, _>`
/// through the stack stalled on every tuple.
#[inline]
fn push_value(rd: &mut &[u8], values: &mut Values) -> Result<(), WireError> {
    let bytes: &[u8] = rd;
    if let [b @ 0xa0..=0xbf, ref rest @ ..] = *bytes {
        *rd = rest;
        let s = text(rd, usize::from(b & 0x1f), "value")?;
        values.0.push(Value::Str(CompactString::from(s)));
    } else {
        values.0.push(value(rd, 0)?);
    }
    Ok(())
}

/// Reads a value (nested in a list or map at `depth`).
#[inline(never)]
fn value(rd: &mut &[u8], depth: usize) -> Result<Value, WireError> {
    const W: &str = "value";
    if depth > MAX_DEPTH {
        return Err(bad(format!("value nested deeper than {MAX_DEPTH}")));
    }
    let c = cut(W);
    let int = |i: i64| Ok(Value::Int(i));
    match marker(rd, W)? {
        Marker::Null => Ok(Value::Null),
        Marker::True => Ok(Value::Bool(true)),
        Marker::False => Ok(Value::Bool(false)),
        Marker::FixPos(n) => int(i64::from(n)),
        Marker::FixNeg(n) => int(i64::from(n)),
        Marker::U8 => int(i64::from(rd.read_data_u8().map_err(c)?)),
        Marker::U16 => int(i64::from(rd.read_data_u16().map_err(c)?)),
        Marker::U32 => int(i64::from(rd.read_data_u32().map_err(c)?)),
        Marker::U64 => {
            let v = rd.read_data_u64().map_err(c)?;
            i64::try_from(v)
                .map(Value::Int)
                .map_err(|_| bad(format!("integer {v} is over the 64-bit signed range")))
        }
        Marker::I8 => int(i64::from(rd.read_data_i8().map_err(c)?)),
        Marker::I16 => int(i64::from(rd.read_data_i16().map_err(c)?)),
        Marker::I32 => int(i64::from(rd.read_data_i32().map_err(c)?)),
        Marker::I64 => int(rd.read_data_i64().map_err(c)?),
        Marker::F32 => Ok(Value::Float(f64::from(rd.read_data_f32().map_err(c)?))),
        Marker::F64 => Ok(Value::Float(rd.read_data_f64().map_err(c)?)),
        Marker::FixStr(n) => Ok(Value::Str(CompactString::from(text(
            rd,
            usize::from(n),
            W,
        )?))),
        Marker::Str8 => {
            let n = usize::from(rd.read_data_u8().map_err(c)?);
            Ok(Value::Str(CompactString::from(text(rd, n, W)?)))
        }
        Marker::Str16 => {
            let n = usize::from(rd.read_data_u16().map_err(c)?);
            Ok(Value::Str(CompactString::from(text(rd, n, W)?)))
        }
        Marker::Str32 => {
            let n = rd.read_data_u32().map_err(c)? as usize;
            Ok(Value::Str(CompactString::from(text(rd, n, W)?)))
        }
        Marker::Bin8 => {
            let n = usize::from(rd.read_data_u8().map_err(c)?);
            Ok(Value::Bytes(take(rd, n, W)?.to_vec()))
        }
        Marker::Bin16 => {
            let n = usize::from(rd.read_data_u16().map_err(c)?);
            Ok(Value::Bytes(take(rd, n, W)?.to_vec()))
        }
        Marker::Bin32 => {
            let n = rd.read_data_u32().map_err(c)? as usize;
            Ok(Value::Bytes(take(rd, n, W)?.to_vec()))
        }
        m @ (Marker::FixArray(_) | Marker::Array16 | Marker::Array32) => {
            let n = container_len(rd, m, W)?;
            let mut list = Vec::with_capacity(n);
            for _ in 0..n {
                list.push(value(rd, depth + 1)?);
            }
            Ok(Value::List(list))
        }
        m @ (Marker::FixMap(_) | Marker::Map16 | Marker::Map32) => {
            let n = container_len(rd, m, W)?;
            let mut map = BTreeMap::new();
            for _ in 0..n {
                let key = match marker(rd, W)? {
                    Marker::FixStr(n) => usize::from(n),
                    Marker::Str8 => usize::from(rd.read_data_u8().map_err(cut(W))?),
                    Marker::Str16 => usize::from(rd.read_data_u16().map_err(cut(W))?),
                    Marker::Str32 => rd.read_data_u32().map_err(cut(W))? as usize,
                    m => return Err(bad(format!("map key: expected a string, found {m:?}"))),
                };
                let key = text(rd, key, "map key")?.to_owned();
                map.insert(key, value(rd, depth + 1)?);
            }
            Ok(Value::Map(map))
        }
        m => Err(bad(format!("value: unsupported MessagePack type {m:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Reads a batch written by [`encode_batch`] (or by rmp-serde).
    ///
    /// # Errors
    /// [`WireError`] for truncated or malformed bytes, a value of an unknown
    /// type, nesting deeper than [`MAX_DEPTH`], or bytes left over.
    fn decode_batch(mut rd: &[u8]) -> Result<Vec<TupleMsg>, WireError> {
        let rd = &mut rd;
        let mut batch = Vec::new();
        batch_each(rd, |t| batch.push(t))?;
        done(rd, "batch")?;
        Ok(batch)
    }

    /// What one frame from a peer worker holds.
    #[derive(Debug, Clone)]
    enum Frame {
        /// Tuples (see [`encode_batch`]).
        Batch(Vec<TupleMsg>),
        /// Ack-protocol messages (see [`encode_acks`]).
        Acks(Vec<AckTo>),
        /// The sender's backpressured tasks, sorted (empty: none); replaces
        /// what it reported before (see [`crate::backpressure`]).
        Backpressure(Vec<u32>),
    }

    /// Reads a frame: a batch ([`decode_batch`]), acks ([`encode_acks`]) or
    /// a backpressure status ([`encode_backpressure`]).
    ///
    /// # Errors
    /// As [`decode_batch`]; for a map, a key other than `acks` or
    /// `backpressure`, an ack that is not one ([`AckMsg::from_parts`]), a
    /// task that is not an integer, or bytes left over.
    fn decode_frame(mut bytes: &[u8]) -> Result<Frame, WireError> {
        let rd = &mut bytes;
        let frame = match kind(rd)? {
            Kind::Batch => {
                let mut batch = Vec::new();
                batch_each(rd, |t| batch.push(t))?;
                Frame::Batch(batch)
            }
            Kind::Acks => {
                let mut acks = Vec::new();
                acks_each(rd, |a| acks.push(a))?;
                Frame::Acks(acks)
            }
            Kind::Backpressure => Frame::Backpressure(backpressure(rd)?),
        };
        done(rd, "frame")?;
        Ok(frame)
    }

    fn leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::Int),
            any::<f64>()
                .prop_filter("NaN is not equal to itself", |f| !f.is_nan())
                .prop_map(Value::Float),
            ".{0,40}".prop_map(|s| Value::from(s.as_str())),
            proptest::collection::vec(any::<u8>(), 0..40).prop_map(Value::Bytes),
        ]
    }

    fn value() -> impl Strategy<Value = Value> {
        leaf().prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::List),
                proptest::collection::btree_map(".{0,8}", inner, 0..4).prop_map(Value::Map),
            ]
        })
    }

    /// A task id or stream index: small ones take the encoder's and
    /// decoder's one-step paths, large ones the general ones.
    fn small_or_any() -> impl Strategy<Value = u32> {
        prop_oneof![0..0x80u32, 0x80..0x100u32, any::<u32>()]
    }

    /// A root or edge id: random ones are over 32 bits (the one-step
    /// paths), the others take every shorter integer form.
    fn id() -> impl Strategy<Value = u64> {
        prop_oneof![any::<u64>(), 0..=u64::from(u32::MAX)]
    }

    fn tuple() -> impl Strategy<Value = TupleMsg> {
        (
            small_or_any(),
            small_or_any(),
            small_or_any(),
            proptest::collection::vec(value(), 0..4),
            proptest::collection::vec((id(), id()), 0..3),
        )
            .prop_map(|(d, s, st, values, ids)| TupleMsg {
                dest: TaskId(d),
                source: TaskId(s),
                stream: st,
                values: Values(values.into()),
                message_id: MessageId(ids.into()),
            })
    }

    /// The serde view of a tuple, `[dest, source, stream, values, message
    /// id]`: what rmp-serde writes for it is the reference for the codec.
    struct Serde<'a>(&'a TupleMsg);

    impl serde::Serialize for Serde<'_> {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let t = self.0;
            (t.dest.0, t.source.0, t.stream, &t.values, &t.message_id).serialize(s)
        }
    }

    fn same(a: &[TupleMsg], b: &[TupleMsg]) -> bool {
        a.len() == b.len()
            && a.iter().zip(b).all(|(x, y)| {
                (x.dest, x.source, x.stream) == (y.dest, y.source, y.stream)
                    && x.values == y.values
                    && x.message_id == y.message_id
            })
    }

    fn ack() -> impl Strategy<Value = AckTo> {
        (
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
            0u8..6,
            any::<u64>(),
            any::<u64>(),
        )
            .prop_map(|(d, s, stream, kind, root, val)| {
                let val = (kind < 3).then_some(val);
                AckTo {
                    dest: TaskId(d),
                    source: TaskId(s),
                    stream,
                    msg: AckMsg::from_parts(kind, root, val, TaskId(s)).unwrap(),
                }
            })
    }

    proptest! {
        #[test]
        fn acks_round_trip_and_bad_bytes_give_errors_not_panics(
            acks in proptest::collection::vec(ack(), 0..6),
            cut_at in any::<prop::sample::Index>(),
            flip in any::<(prop::sample::Index, u8)>(),
        ) {
            let mut bytes = Vec::new();
            encode_acks(&acks, &mut bytes);
            match decode_frame(&bytes).unwrap() {
                Frame::Acks(back) => prop_assert_eq!(back, acks),
                other => prop_assert!(false, "not acks: {:?}", other),
            }
            let at = cut_at.index(bytes.len());
            prop_assert!(decode_frame(&bytes[..at]).is_err());
            let i = flip.0.index(bytes.len());
            bytes[i] ^= flip.1.max(1);
            let _ = decode_frame(&bytes);
        }

        #[test]
        fn round_trips_and_matches_rmp_serde(batch in proptest::collection::vec(tuple(), 0..6)) {
            let mut bytes = Vec::new();
            encode_batch(&batch, &mut bytes);
            let reference: Vec<Serde> = batch.iter().map(Serde).collect();
            prop_assert_eq!(&bytes, &rmp_serde::to_vec(&reference).unwrap());
            prop_assert!(same(&decode_batch(&bytes).unwrap(), &batch));
        }

        #[test]
        fn truncated_or_garbled_bytes_give_errors_not_panics(
            batch in proptest::collection::vec(tuple(), 1..4),
            cut_at in any::<prop::sample::Index>(),
            flip in any::<(prop::sample::Index, u8)>(),
        ) {
            let mut bytes = Vec::new();
            encode_batch(&batch, &mut bytes);
            let at = cut_at.index(bytes.len());
            prop_assert!(decode_batch(&bytes[..at]).is_err());
            let i = flip.0.index(bytes.len());
            bytes[i] ^= flip.1.max(1);
            let _ = decode_batch(&bytes);
            let _ = decode_into(&bytes, &mut Collect::new());
        }

        #[test]
        fn decoding_in_place_delivers_what_was_sent_and_skips_dropped_tuples(
            batch in proptest::collection::vec(tuple(), 0..6),
            acks in proptest::collection::vec(ack(), 0..6),
        ) {
            let mut bytes = Vec::new();
            encode_batch(&batch, &mut bytes);
            let mut got = Collect::new();
            decode_into(&bytes, &mut got).unwrap();
            let kept: Vec<TupleMsg> = batch.iter().filter(|t| t.dest.0 % 2 == 0).cloned().collect();
            prop_assert!(same(&got.tuples, &kept), "{:?} against {:?}", got.tuples, kept);
            prop_assert_eq!(got.skipped, batch.len() - kept.len());
            let mut bytes = Vec::new();
            encode_acks(&acks, &mut bytes);
            let mut got = Collect::new();
            decode_into(&bytes, &mut got).unwrap();
            prop_assert_eq!(got.acks, acks);
        }
    }

    /// What [`decode_into`] delivered: the tuples for even tasks (those
    /// for odd ones are dropped at their slot), and the acks.
    struct Collect {
        slot: Option<(TaskId, TaskId, u32)>,
        values: Values,
        id: MessageId,
        tuples: Vec<TupleMsg>,
        skipped: usize,
        acks: Vec<AckTo>,
    }

    impl Collect {
        fn new() -> Self {
            Self {
                slot: None,
                values: Values::from_iter([Value::from("left from the last tuple")]),
                id: MessageId::single(1, 2),
                tuples: Vec::new(),
                skipped: 0,
                acks: Vec::new(),
            }
        }
    }

    impl Deliver for Collect {
        fn slot(
            &mut self,
            dest: TaskId,
            source: TaskId,
            stream: u32,
        ) -> Option<(&mut Values, &mut MessageId)> {
            if dest.0 % 2 == 1 {
                self.skipped += 1;
                return None;
            }
            self.slot = Some((dest, source, stream));
            self.values.0.clear();
            self.id.0.clear();
            Some((&mut self.values, &mut self.id))
        }

        fn run(&mut self, _dest: TaskId, _stream: u32) {
            let (dest, source, stream) = self.slot.take().expect("run after a slot");
            self.tuples.push(TupleMsg {
                dest,
                source,
                stream,
                values: self.values.clone(),
                message_id: self.id.clone(),
            });
        }

        fn ack(&mut self, ack: AckTo) {
            self.acks.push(ack);
        }
    }

    #[test]
    fn a_tuple_cut_short_in_place_is_not_run() {
        let batch: Vec<TupleMsg> = (0..3)
            .map(|i| TupleMsg {
                dest: TaskId(2),
                source: TaskId(1),
                stream: 0,
                values: Values::from_iter([Value::from("word"), Value::from(i)]),
                message_id: MessageId::single(7, 9),
            })
            .collect();
        let mut bytes = Vec::new();
        encode_batch(&batch, &mut bytes);
        let mut got = Collect::new();
        let err = decode_into(&bytes[..bytes.len() - 3], &mut got).unwrap_err();
        assert!(err.to_string().contains("message id"), "{err}");
        assert!(same(&got.tuples, &batch[..2]), "{:?}", got.tuples);
        assert!(got.slot.is_some(), "the third was being read");
        let err = decode_into(
            &[
                0x81, 0xac, b'b', b'a', b'c', b'k', b'p', b'r', b'e', b's', b's', b'u', b'r', b'e',
                0x90,
            ],
            &mut got,
        )
        .unwrap_err();
        assert!(err.to_string().contains("no messages"), "{err}");
    }

    #[test]
    fn errors_name_the_problem() {
        let err = |b: &[u8]| decode_batch(b).unwrap_err().to_string();
        let short = [0x91, 0x93, 1, 1, 1];
        assert!(err(&short).contains("not [dest, source"), "{}", err(&short));
        assert!(err(&[0xdd, 0xff, 0xff, 0xff, 0xff]).contains("over the 0 bytes left"));
        assert!(err(&[0x90, 0x00]).contains("1 bytes after the batch"));
        let mut deep = vec![0x91, 0x95, 1, 1, 1, 0x91];
        deep.extend(std::iter::repeat_n(0x91, MAX_DEPTH + 2));
        deep.push(0xc0);
        deep.push(0x90);
        assert!(
            err(&deep).contains("nested deeper than 64"),
            "{}",
            err(&deep)
        );
        let ext = [0x91, 0x95, 1, 1, 1, 0x91, 0xd4, 0, 0, 0x90];
        assert!(
            err(&ext).contains("unsupported MessagePack type"),
            "{}",
            err(&ext)
        );
    }

    #[test]
    fn an_ack_frame_names_what_is_wrong() {
        let frame = |ack: &[u8]| {
            let mut b = vec![0x81, 0xa4];
            b.extend_from_slice(b"acks");
            b.push(0x91);
            b.extend_from_slice(ack);
            decode_frame(&b).unwrap_err().to_string()
        };
        // [dest, source, stream, kind 6, root]: no such kind.
        assert!(frame(&[0x95, 1, 2, 3, 6, 9]).contains("ack kind 6 with 1 values"));
        // An ack (kind 1) without its val.
        assert!(frame(&[0x95, 1, 2, 3, 1, 9]).contains("ack kind 1 with 1 values"));
        assert!(frame(&[0x93, 1, 2, 3]).contains("an ack is not [dest"));
        assert!(frame(&[0x95, 1, 2, 3, 0xa1, b'x', 9]).contains("ack kind: expected"));
    }

    #[test]
    fn backpressure_frames_round_trip_and_batches_stay_batches() {
        let mut bytes = Vec::new();
        encode_backpressure(&[3, 4, 70_000], &mut bytes);
        let tasks = |b: &[u8]| match decode_frame(b).unwrap() {
            Frame::Backpressure(t) => t,
            other => panic!("not backpressure: {other:?}"),
        };
        assert_eq!(tasks(&bytes), [3, 4, 70_000]);
        let mut none = Vec::new();
        encode_backpressure(&[], &mut none);
        assert!(tasks(&none).is_empty());
        let mut batch = Vec::new();
        encode_batch(&[], &mut batch);
        assert!(matches!(decode_frame(&batch).unwrap(), Frame::Batch(b) if b.is_empty()));
        let err = |b: &[u8]| decode_frame(b).unwrap_err().to_string();
        assert!(err(&[0x81, 0xa1, b'x', 0x90]).contains("key is \"x\", not \"acks\""));
        assert!(err(&[0x82, 0xa1, b'x', 0x90]).contains("more than one key"));
        assert!(err(&[0x81]).contains("cut short") || err(&[0x81]).contains("over the"));
        bytes.push(0);
        assert!(err(&bytes).contains("1 bytes after the frame"));
    }

    #[test]
    fn a_head_names_the_first_task_and_decoding_hands_over_what_it_read() {
        let tuples: Vec<TupleMsg> = (0..3)
            .map(|i| TupleMsg {
                dest: TaskId(7),
                source: TaskId(1),
                stream: 2,
                values: Values::from_iter([Value::from(i as i64)]),
                message_id: MessageId::single(5, 6),
            })
            .collect();
        let mut bytes = Vec::new();
        encode_batch(&tuples, &mut bytes);
        let head_of = |b: &[u8]| head(b).unwrap();
        assert_eq!(
            head_of(&bytes),
            Head::Messages {
                task: TaskId(7),
                len: 3
            }
        );
        let mut seen = Vec::new();
        decode_each(&bytes, |m| match m {
            Message::Tuple(t) => seen.push(t),
            Message::Ack(a) => panic!("not an ack: {a:?}"),
        })
        .unwrap();
        assert!(same(&seen, &tuples));

        let acks = [AckTo {
            dest: TaskId(4),
            source: TaskId(9),
            stream: 1,
            msg: AckMsg::Ack { root: 3, val: 8 },
        }];
        let mut ack_bytes = Vec::new();
        encode_acks(&acks, &mut ack_bytes);
        assert_eq!(
            head_of(&ack_bytes),
            Head::Messages {
                task: TaskId(4),
                len: 1
            }
        );
        let mut empty = Vec::new();
        encode_acks(&[], &mut empty);
        assert_eq!(head_of(&empty), Head::Empty);
        let mut bp = Vec::new();
        encode_backpressure(&[2, 5], &mut bp);
        assert_eq!(head_of(&bp), Head::Backpressure(vec![2, 5]));
        let err = decode_each(&bp, |_| {}).unwrap_err().to_string();
        assert!(
            err.contains("backpressure frame holds no messages"),
            "{err}"
        );

        // A frame cut in its third tuple: the first two were handed over.
        let mut n = 0;
        let err = decode_each(&bytes[..bytes.len() - 2], |_| n += 1).unwrap_err();
        assert_eq!(n, 2);
        assert!(err.to_string().contains("message id pair"), "{err}");
    }
}
