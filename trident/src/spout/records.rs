//! [`RecordSpout`]: batches of records of files: lines of text files
//! ([`RecordSpout::lines`]) or rows of a CSV file ([`RecordSpout::csv`]). A batch is a
//! range of record numbers, stored as the batch's metadata.

use super::{meta_range, range_meta, BatchCoordinator, Emitter, SpoutKind, TransactionalSpout};
use crate::tuple::{BatchId, TridentCollector};
use squall_topology_api::{ExecuteError, Fields, TopologyContext, Value, Values};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How far a [`RecordSpout`]'s batches have committed, seen from the
/// process running the master coordinator.
#[derive(Debug, Default)]
pub struct Progress {
    committed: AtomicU64,
    latencies: Mutex<Vec<Duration>>,
}

impl Progress {
    /// Records up to which all batches committed.
    pub fn committed(&self) -> u64 {
        self.committed.load(Ordering::Acquire)
    }

    /// For each committed batch, the time from its start (the coordinator
    /// deciding it) to its commit, in commit order.
    pub fn commit_latencies(&self) -> Vec<Duration> {
        self.latencies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

#[derive(Debug)]
enum Source {
    Lines(Vec<PathBuf>),
    Csv { path: PathBuf, columns: Vec<usize> },
}

/// The records of the source, in memory: the text and each record's byte
/// range.
struct Loaded {
    texts: Vec<String>,
    /// (text, start, end) of each record.
    records: Vec<(u32, usize, usize)>,
}

/// A spout over the records of files: each batch is the next
/// `batch_size` records (fewer at the end), split between the emitter
/// tasks in contiguous parts. Transactional by default: the files must not
/// change while a topology reads them. [`opaque`](Self::opaque) reads the
/// files again at each batch, so appended records are picked up and a
/// replayed batch may hold more of them.
#[derive(Clone)]
pub struct RecordSpout {
    source: Arc<Source>,
    fields: Fields,
    batch_size: u64,
    kind: SpoutKind,
    cache: Arc<Mutex<Option<Arc<Loaded>>>>,
    progress: Arc<Progress>,
}

impl RecordSpout {
    /// A spout of the lines of text files, field `line`: lines of `inputs` (files, or folders whose regular files are read in
    /// name order), `batch_lines` per batch.
    ///
    /// # Errors
    /// A message naming an input that cannot be listed, or no files.
    pub fn lines(inputs: &[PathBuf], batch_lines: u64) -> Result<RecordSpout, String> {
        let mut files = Vec::new();
        for input in inputs {
            if input.is_dir() {
                let mut inside: Vec<PathBuf> = std::fs::read_dir(input)
                    .map_err(|e| format!("{}: {e}", input.display()))?
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.is_file())
                    .collect();
                inside.sort();
                files.extend(inside);
            } else {
                files.push(input.clone());
            }
        }
        if files.is_empty() {
            return Err(format!("no input files in {inputs:?}"));
        }
        Ok(RecordSpout::new(
            Source::Lines(files),
            ["line"].into(),
            batch_lines,
        ))
    }
}

impl RecordSpout {
    /// A spout of the rows of a CSV file with a header line: rows of
    /// `path`, `batch_rows` per batch, with the fields `columns` (header
    /// names; all when empty). Values are typed: ints, floats, `NA` or
    /// empty as null, else strings.
    ///
    /// # Errors
    /// A message naming the file when it cannot be read, or a column
    /// missing from its header.
    pub fn csv(path: &Path, columns: &[&str], batch_rows: u64) -> Result<RecordSpout, String> {
        let mut reader =
            csv::Reader::from_path(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let header: Vec<String> = reader
            .headers()
            .map_err(|e| format!("{}: {e}", path.display()))?
            .iter()
            .map(str::to_owned)
            .collect();
        let names: Vec<String> = if columns.is_empty() {
            header.clone()
        } else {
            columns.iter().map(|c| (*c).to_owned()).collect()
        };
        let mut indexes = Vec::new();
        for n in &names {
            let i = header.iter().position(|h| h == n).ok_or_else(|| {
                format!("{}: no column {n:?} (columns: {header:?})", path.display())
            })?;
            indexes.push(i);
        }
        Ok(RecordSpout::new(
            Source::Csv {
                path: path.to_owned(),
                columns: indexes,
            },
            names.into(),
            batch_rows,
        ))
    }
}

/// A CSV field as a value: int, float, null (`NA` or empty) or string.
pub fn csv_value(s: &str) -> Value {
    if s.is_empty() || s == "NA" {
        Value::Null
    } else if let Ok(i) = s.parse::<i64>() {
        Value::Int(i)
    } else if let Ok(f) = s.parse::<f64>() {
        Value::Float(f)
    } else {
        Value::from(s)
    }
}

impl RecordSpout {
    fn new(source: Source, fields: Fields, batch_size: u64) -> Self {
        Self {
            source: Arc::new(source),
            fields,
            batch_size: batch_size.max(1),
            kind: SpoutKind::Transactional,
            cache: Arc::default(),
            progress: Arc::default(),
        }
    }

    /// How many records there are (reads the input if not yet read).
    ///
    /// # Errors
    /// A message naming an input that cannot be read.
    pub fn records(&self) -> Result<u64, String> {
        Ok(self.loaded(false)?.records.len() as u64)
    }

    /// The commit progress of this spout's batches.
    pub fn progress(&self) -> Arc<Progress> {
        self.progress.clone()
    }

    /// The same spout, opaque: files are read again at each batch.
    pub fn opaque(mut self) -> Self {
        self.kind = SpoutKind::Opaque;
        self
    }

    /// The records, loaded once per process (again when `reload`).
    fn loaded(&self, reload: bool) -> Result<Arc<Loaded>, String> {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let (Some(l), false) = (&*cache, reload) {
            return Ok(l.clone());
        }
        let l = Arc::new(self.load()?);
        *cache = Some(l.clone());
        Ok(l)
    }

    fn load(&self) -> Result<Loaded, String> {
        let mut loaded = Loaded {
            texts: Vec::new(),
            records: Vec::new(),
        };
        match &*self.source {
            Source::Lines(files) => {
                for f in files {
                    let bytes = std::fs::read(f).map_err(|e| format!("{}: {e}", f.display()))?;
                    let text = String::from_utf8_lossy(&bytes).into_owned();
                    let t = loaded.texts.len() as u32;
                    let mut start = 0;
                    for line in text.split_inclusive('\n') {
                        let body = line.trim_end_matches(['\n', '\r']);
                        loaded.records.push((t, start, start + body.len()));
                        start += line.len();
                    }
                    loaded.texts.push(text);
                }
            }
            Source::Csv { path, .. } => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                let mut starts = Vec::new();
                let mut reader = csv::Reader::from_reader(text.as_bytes());
                let mut record = csv::StringRecord::new();
                loop {
                    match reader.read_record(&mut record) {
                        Ok(true) => starts.push(record.position().map_or(0, |p| p.byte() as usize)),
                        Ok(false) => break,
                        Err(e) => return Err(format!("{}: {e}", path.display())),
                    }
                }
                for (i, &s) in starts.iter().enumerate() {
                    let end = starts.get(i + 1).copied().unwrap_or(text.len());
                    loaded.records.push((0, s, end));
                }
                loaded.texts.push(text);
            }
        }
        Ok(loaded)
    }
}

impl TransactionalSpout for RecordSpout {
    fn output_fields(&self) -> Fields {
        self.fields.clone()
    }

    fn kind(&self) -> SpoutKind {
        self.kind
    }

    fn coordinator(&self, _context: &TopologyContext) -> Box<dyn BatchCoordinator> {
        Box::new(RecordCoordinator {
            spout: self.clone(),
            next: 0,
            open: HashMap::new(),
        })
    }

    fn emitter(&self, _context: &TopologyContext) -> Box<dyn Emitter> {
        Box::new(self.clone())
    }
}

struct RecordCoordinator {
    spout: RecordSpout,
    /// The end of the last batch decided.
    next: u64,
    /// End and start time of each open txid.
    open: HashMap<u64, (u64, Instant)>,
}

impl RecordCoordinator {
    fn count(&self) -> u64 {
        let reload = self.spout.kind == SpoutKind::Opaque;
        match self.spout.loaded(reload) {
            Ok(l) => l.records.len() as u64,
            Err(e) => {
                tracing::error!("trident record spout: {e}");
                0
            }
        }
    }
}

impl BatchCoordinator for RecordCoordinator {
    fn initialize_transaction(&mut self, txid: u64, prev: Option<&Value>) -> Value {
        let start = prev.and_then(meta_range).map_or(0, |(_, e)| e);
        let end = (start + self.spout.batch_size).min(self.count().max(start));
        self.next = self.next.max(end);
        self.open.insert(txid, (end, Instant::now()));
        range_meta(start, end)
    }

    fn is_ready(&mut self, _txid: u64) -> bool {
        self.next < self.count()
    }

    fn success(&mut self, txid: u64) {
        if let Some((end, started)) = self.open.remove(&txid) {
            let p = &self.spout.progress;
            p.committed.fetch_max(end, Ordering::AcqRel);
            p.latencies
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(started.elapsed());
        }
        self.open.retain(|&t, _| t > txid);
    }
}

impl Emitter for RecordSpout {
    fn emit_batch(
        &mut self,
        _batch: BatchId,
        meta: &Value,
        task_index: usize,
        tasks: usize,
        out: &mut TridentCollector,
    ) -> Result<(), ExecuteError> {
        let (start, end) = meta_range(meta).ok_or("record spout: malformed batch metadata")?;
        let mut loaded = self.loaded(false)?;
        if (loaded.records.len() as u64) < end {
            loaded = self.loaded(true)?;
        }
        if (loaded.records.len() as u64) < end {
            return Err(format!(
                "record spout: batch [{start}, {end}) is past the {} records of the input",
                loaded.records.len()
            )
            .into());
        }
        let len = end - start;
        let tasks = tasks.max(1) as u64;
        let lo = (start + len * task_index as u64 / tasks) as usize;
        let hi = (start + len * (task_index as u64 + 1) / tasks) as usize;
        match &*self.source {
            Source::Lines(_) => {
                for &(t, s, e) in &loaded.records[lo..hi] {
                    out.emit(
                        std::iter::once(Value::from(&loaded.texts[t as usize][s..e])).collect(),
                    );
                }
            }
            Source::Csv { columns, .. } => {
                let Some(&(_, s, _)) = loaded.records.get(lo) else {
                    return Ok(());
                };
                let e = loaded.records[hi - 1].2;
                let mut reader = csv::ReaderBuilder::new()
                    .has_headers(false)
                    .from_reader(&loaded.texts[0].as_bytes()[s..e]);
                let mut record = csv::StringRecord::new();
                while reader.read_record(&mut record).map_err(|e| e.to_string())? {
                    out.emit(
                        columns
                            .iter()
                            .map(|&c| csv_value(record.get(c).unwrap_or("")))
                            .collect::<Values>(),
                    );
                }
            }
        }
        Ok(())
    }
}
