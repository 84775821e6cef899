//! Word count's cluster mode: state that survives a worker restart.
//!
//! - The spout checkpoints, every 200 ms, the position below which every
//!   line is acked (`lines-<task>.progress`); a restarted spout resumes
//!   there, so lines acked after that point are counted again (at least
//!   once: counts are never below the exact ones).
//! - The count bolt holds the tuples it counted and acks them only after
//!   its counts are written (`counts-<task>.tsv`, every 100 ms or 1000
//!   tuples, and on tick tuples), so a count lost with a killed worker is
//!   replayed. Files are replaced by rename: safe against a killed process,
//!   not against a machine crash (no fsync).

use anyhow::{Context, Result};
use rustc_hash::FxHashMap;
use squall::*;
use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A line's position: (pass, file, line); message ids are this triple.
pub type Position = (u64, usize, usize);

/// A spout's durable progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SpoutProgress {
    /// Every line before this position is acked.
    pub watermark: Position,
    /// Lines acked by this spout process (replays and restarts included).
    pub acked: u64,
    /// Whether every line was emitted and acked.
    pub done: bool,
}

impl SpoutProgress {
    fn parse(text: &str) -> Option<Self> {
        let f: Vec<&str> = text.split_whitespace().collect();
        if f.len() != 5 {
            return None;
        }
        Some(Self {
            watermark: (f[0].parse().ok()?, f[1].parse().ok()?, f[2].parse().ok()?),
            acked: f[3].parse().ok()?,
            done: f[4] == "done",
        })
    }

    /// Reads a progress file.
    pub fn read(path: &Path) -> Option<Self> {
        Self::parse(&std::fs::read_to_string(path).ok()?)
    }
}

/// Takes the exclusive lock of `path` (a `.lock` file), waiting while
/// another process holds it: a worker cut off from its supervisor keeps
/// running until it sees its reassignment, and must not write the same
/// task's files as the worker that replaced it. The lock is released when
/// the process ends.
fn own(path: &Path) -> Option<std::fs::File> {
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path.with_extension("lock"))
        .ok()?;
    lock.lock().ok()?;
    Some(lock)
}

/// Writes `text` to `path` atomically (temporary file, then rename).
fn write_atomic(path: &Path, text: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::File::create(&tmp)?.write_all(text)?;
    std::fs::rename(tmp, path)
}

/// The spout side: pending positions and the checkpoint file.
pub struct Checkpoint {
    _lock: Option<std::fs::File>,
    dir: PathBuf,
    path: PathBuf,
    pending: BTreeSet<Position>,
    acked: u64,
    written: Instant,
}

impl Checkpoint {
    /// A checkpoint in `dir` (not yet bound to a task).
    pub fn new(dir: PathBuf) -> Self {
        Self {
            _lock: None,
            path: dir.clone(),
            dir,
            pending: BTreeSet::new(),
            acked: 0,
            written: Instant::now(),
        }
    }

    /// Binds to the spout task and returns where to resume.
    pub fn open(&mut self, task: TaskId) -> Position {
        self.path = self.dir.join(format!("lines-{}.progress", task.0));
        self._lock = own(&self.path);
        SpoutProgress::read(&self.path)
            .map(|p| p.watermark)
            .unwrap_or_default()
    }

    /// A line was emitted for the first time.
    pub fn emitted(&mut self, p: Position) {
        self.pending.insert(p);
    }

    /// A line was acked.
    pub fn acked(&mut self, p: Position) {
        if self.pending.remove(&p) {
            self.acked += 1;
        }
    }

    /// Whether no emitted line waits for its ack.
    pub fn all_acked(&self) -> bool {
        self.pending.is_empty()
    }

    /// Writes the checkpoint if 200 ms passed or `force`; `next` is the
    /// position the spout would emit next.
    pub fn maybe_write(&mut self, next: Position, done_emitting: bool, force: bool) {
        if !force && self.written.elapsed() < Duration::from_millis(200) {
            return;
        }
        self.written = Instant::now();
        let w = self.pending.first().copied().unwrap_or(next);
        let done = done_emitting && self.pending.is_empty();
        let text = format!(
            "{} {} {} {} {}\n",
            w.0,
            w.1,
            w.2,
            self.acked,
            if done { "done" } else { "running" }
        );
        if let Err(e) = write_atomic(&self.path, text.as_bytes()) {
            tracing::warn!("cannot write {}: {e}", self.path.display());
        }
    }
}

/// Counts words durably; acks what it counted once the counts are written.
pub struct DurableCountBolt {
    _lock: Option<std::fs::File>,
    dir: PathBuf,
    path: PathBuf,
    counts: FxHashMap<CompactString, u64>,
    held: Vec<Tuple>,
    flushed: Instant,
    ack_first: bool,
    delay: Duration,
}

/// Busy-waits `d` (a slow sink; sleeping would round up to the timer's
/// resolution).
pub fn spin(d: Duration) {
    if d.is_zero() {
        return;
    }
    let until = Instant::now() + d;
    while Instant::now() < until {
        std::hint::spin_loop();
    }
}

/// Most tuples a count task holds before writing its counts.
const HOLD_TUPLES: usize = 1000;
/// Longest a count task holds tuples before writing its counts.
const HOLD_TIME: Duration = Duration::from_millis(100);

impl DurableCountBolt {
    /// A count bolt keeping its files in `dir`. With `ack_first` it acks at
    /// once and writes its counts only on ticks (faster; a killed worker
    /// loses up to a tick of counts).
    pub fn new(dir: PathBuf, ack_first: bool) -> Self {
        Self {
            _lock: None,
            path: dir.clone(),
            dir,
            counts: FxHashMap::default(),
            held: Vec::new(),
            flushed: Instant::now(),
            ack_first,
            delay: Duration::ZERO,
        }
    }

    /// The bolt spending `delay` on each word.
    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Writes every count to the task's file.
    fn write(&self) -> std::io::Result<()> {
        let mut text = String::with_capacity(self.counts.len() * 12);
        for (w, c) in &self.counts {
            text.push_str(w);
            text.push('\t');
            text.push_str(&c.to_string());
            text.push('\n');
        }
        write_atomic(&self.path, text.as_bytes())
    }

    fn flush(&mut self, out: &mut OutputCollector<'_>) {
        self.flushed = Instant::now();
        match self.write() {
            Ok(()) => {
                for t in self.held.drain(..) {
                    out.ack(&t);
                }
            }
            Err(e) => out.report_error(&format!("cannot write {}: {e}", self.path.display())),
        }
    }
}

impl Bolt for DurableCountBolt {
    fn prepare(&mut self, ctx: &TopologyContext) {
        self.path = self
            .dir
            .join(format!("counts-{}.tsv", ctx.this_task_id().0));
        self._lock = own(&self.path);
        if let Ok(text) = std::fs::read_to_string(&self.path) {
            for line in text.lines() {
                if let Some((w, c)) = line.split_once('\t') {
                    if let Ok(c) = c.parse::<u64>() {
                        self.counts.insert(CompactString::from(w), c);
                    }
                }
            }
        }
    }

    fn execute(&mut self, tuple: &Tuple, out: &mut OutputCollector<'_>) {
        if tuple.is_tick() {
            return self.flush(out);
        }
        spin(self.delay);
        if let Some(Value::Str(w)) = tuple.get(0) {
            match self.counts.get_mut(w.as_str()) {
                Some(c) => *c += 1,
                None => {
                    self.counts.insert(w.clone(), 1);
                }
            }
        }
        if self.ack_first {
            return out.ack(tuple);
        }
        self.held.push(tuple.clone());
        if self.held.len() >= HOLD_TUPLES || self.flushed.elapsed() >= HOLD_TIME {
            self.flush(out);
        }
    }

    /// A graceful stop (topology killed, worker stopped) writes the
    /// counts not yet on disk, so fast acks lose nothing then. Counts of
    /// held tuples stay unwritten: those tuples were not acked and replay.
    fn cleanup(&mut self) {
        if !self.held.is_empty() {
            return tracing::info!(
                "count task {} closed: {} held tuples replay",
                self.path.display(),
                self.held.len()
            );
        }
        match self.write() {
            Ok(()) => tracing::info!(
                "count task {} closed: {} words written",
                self.path.display(),
                self.counts.len()
            ),
            Err(e) => tracing::warn!("cannot write {}: {e}", self.path.display()),
        }
    }

    fn declare_output_fields(&self, _d: &mut OutputFieldsDeclarer) {}
}

/// Sums every `counts-*.tsv` of `dir` into one table.
pub fn merge_counts(dir: &Path) -> Result<FxHashMap<String, u64>> {
    let mut total: FxHashMap<String, u64> = FxHashMap::default();
    for e in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = e?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if !(name.starts_with("counts-") && name.ends_with(".tsv")) {
            continue;
        }
        let text = std::fs::read_to_string(&path)?;
        for line in text.lines() {
            if let Some((w, c)) = line.split_once('\t') {
                *total.entry(w.to_owned()).or_default() += c.parse::<u64>().unwrap_or(0);
            }
        }
    }
    Ok(total)
}
