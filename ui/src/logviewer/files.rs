//! The log viewer's files, with no HTTP: which names may be read (a
//! worker's files under `<storm.local.dir>/logs/<topology id>/`, never
//! anything outside), a byte range of one, a search through one, and the
//! list of a topology's. Shapes and defaults follow Storm's logviewer
//! (`LogviewerLogPageHandler`, `LogviewerLogSearchHandler`).

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// The daemons whose logs (`<daemon>.log`, rotated `.log.<n>`) a log
/// directory holds beside the topologies' folders.
pub const DAEMONS: [&str; 3] = ["nimbus", "supervisor", "ui"];

/// Bytes a page shows when the request names no `length` (Storm's
/// logviewer default).
pub const DEFAULT_LENGTH: u64 = 51_200;
/// Most bytes one request may read.
pub const MAX_LENGTH: u64 = 1024 * 1024;
/// Longest search string, bytes (Storm's `GREP_MAX_SEARCH_SIZE`).
pub const MAX_SEARCH_BYTES: usize = 1024;
/// Bytes of context either side of a match (Storm's
/// `GREP_CONTEXT_SIZE`).
pub const CONTEXT_BYTES: usize = 128;
/// Most matches one search returns.
pub const MAX_MATCHES: usize = 1000;
/// Bytes read from the file at a time while searching.
const BLOCK: usize = 1024 * 1024;

/// Why a log request cannot be answered.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The request is malformed (answered 400).
    #[error("{0}")]
    Invalid(String),
    /// No such log file (answered 404).
    #[error("no log file {0:?}")]
    NotFound(String),
    /// The file could not be read (answered 500).
    #[error("cannot read log file {file:?}: {error}")]
    Io {
        /// The file's name.
        file: String,
        /// The OS error.
        error: std::io::Error,
    },
}

/// A log's name as requests give it (Storm's `file` parameter): a
/// worker's `<topology id>/<file>`, where the file is `worker-<port>.log`,
/// one of its rotated files `worker-<port>.log.<n>`, the process's output
/// `worker-<port>.out`, or its sampled events `events-<port>.log` (and
/// their rotated files); or a daemon's `<daemon>.log[.<n>]` (see
/// [`DAEMONS`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogName {
    topology: String,
    file: String,
}

fn plain(part: &str) -> bool {
    !part.is_empty()
        && part != "."
        && part != ".."
        && part
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

impl LogName {
    /// Parses `name`.
    ///
    /// # Errors
    /// [`FileError::Invalid`] naming what is wrong: not two parts, a part
    /// with a character other than letters, digits, `.`, `_`, `-`, or a
    /// file that is not a worker's.
    pub fn parse(name: &str) -> Result<Self, FileError> {
        let bad = |why: &str| FileError::Invalid(format!("file {name:?}: {why}"));
        let daemon = DAEMONS.iter().any(|d| {
            name.strip_prefix(*d).is_some_and(|rest| {
                rest == ".log"
                    || rest
                        .strip_prefix(".log.")
                        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            })
        });
        if daemon {
            return Ok(Self {
                topology: String::new(),
                file: name.to_owned(),
            });
        }
        let (topology, file) = name.split_once('/').ok_or_else(|| {
            bad("expected <topology id>/worker-<port>.log, or a daemon's log (supervisor.log)")
        })?;
        if !plain(topology) || !plain(file) {
            return Err(bad(
                "each part must be letters, digits, '.', '_' or '-', and not '.' or '..'",
            ));
        }
        let rest = file
            .strip_prefix("worker-")
            .or_else(|| file.strip_prefix("events-"))
            .ok_or_else(|| bad("not a worker's log (worker-<port>.log)"))?;
        let (port, kind) = rest
            .split_once('.')
            .ok_or_else(|| bad("not a worker's log (worker-<port>.log)"))?;
        let rotated = kind
            .strip_prefix("log.")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        let out = kind == "out" && file.starts_with("worker-");
        if port.parse::<u16>().is_err() || !(kind == "log" || out || rotated) {
            return Err(bad(
                "not a worker's log (worker-<port>.log, .log.<n> or .out)",
            ));
        }
        Ok(Self {
            topology: topology.to_owned(),
            file: file.to_owned(),
        })
    }

    /// The topology id whose log this is; `None` for a daemon's.
    pub fn topology(&self) -> Option<&str> {
        (!self.topology.is_empty()).then_some(self.topology.as_str())
    }

    /// The file's path under the log directory `root`.
    pub fn path(&self, root: &Path) -> PathBuf {
        root.join(&self.topology).join(&self.file)
    }

    /// The name as requests give it.
    pub fn as_string(&self) -> String {
        match self.topology() {
            Some(t) => format!("{t}/{}", self.file),
            None => self.file.clone(),
        }
    }
}

/// A byte range of a log file (`/api/v1/log`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Chunk {
    /// The file's name.
    pub file: String,
    /// The first byte's offset.
    pub start: u64,
    /// Bytes read.
    pub length: u64,
    /// The file's size when read, bytes.
    pub size: u64,
    /// The bytes, as UTF-8 (invalid sequences replaced).
    pub data: String,
}

impl FileError {
    /// The error of opening or reading `name`: [`FileError::NotFound`]
    /// when it does not exist.
    pub fn from_open(name: &LogName, error: std::io::Error) -> Self {
        io(name, error)
    }
}

fn io(name: &LogName, error: std::io::Error) -> FileError {
    if error.kind() == std::io::ErrorKind::NotFound {
        FileError::NotFound(name.as_string())
    } else {
        FileError::Io {
            file: name.as_string(),
            error,
        }
    }
}

/// Up to `length` bytes (at most [`MAX_LENGTH`]) of `name` under `root`
/// from `start`; without `start`, the last `length` bytes (Storm's
/// default: the tail). A `start` past the end reads nothing.
///
/// # Errors
/// [`FileError::NotFound`], or [`FileError::Io`] naming the file.
pub fn read_chunk(
    root: &Path,
    name: &LogName,
    start: Option<u64>,
    length: u64,
) -> Result<Chunk, FileError> {
    let mut f = std::fs::File::open(name.path(root)).map_err(|e| io(name, e))?;
    let size = f.metadata().map_err(|e| io(name, e))?.len();
    let length = length.min(MAX_LENGTH);
    let start = start.unwrap_or(size.saturating_sub(length)).min(size);
    f.seek(SeekFrom::Start(start)).map_err(|e| io(name, e))?;
    let mut bytes = Vec::new();
    f.take(length)
        .read_to_end(&mut bytes)
        .map_err(|e| io(name, e))?;
    Ok(Chunk {
        file: name.as_string(),
        start,
        length: bytes.len() as u64,
        size,
        data: String::from_utf8_lossy(&bytes).into_owned(),
    })
}

/// One search match, in Storm's shape.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Match {
    /// The match's offset in the file, bytes.
    pub byte_offset: u64,
    /// Up to [`CONTEXT_BYTES`] before it.
    pub before_string: String,
    /// Up to [`CONTEXT_BYTES`] after it.
    pub after_string: String,
    /// The match itself.
    pub match_string: String,
}

/// What a search found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The matches, in file order.
    pub matches: Vec<Match>,
    /// Where to continue when `num_matches` were found before the end.
    pub next_byte_offset: Option<u64>,
}

/// The first `num_matches` (at most [`MAX_MATCHES`]) occurrences of
/// `needle` in `name` at or after `start_byte_offset`, each with its
/// context. The file is read a block at a time, so memory stays bounded
/// whatever its size.
///
/// # Errors
/// [`FileError::Invalid`] for an empty needle or one over
/// [`MAX_SEARCH_BYTES`]; [`FileError::NotFound`], or [`FileError::Io`].
pub fn search(
    root: &Path,
    name: &LogName,
    needle: &str,
    num_matches: usize,
    start_byte_offset: u64,
) -> Result<Found, FileError> {
    if needle.is_empty() || needle.len() > MAX_SEARCH_BYTES {
        return Err(FileError::Invalid(format!(
            "search-string must be 1 to {MAX_SEARCH_BYTES} bytes, not {}",
            needle.len()
        )));
    }
    let wanted = num_matches.clamp(1, MAX_MATCHES);
    let mut f = std::fs::File::open(name.path(root)).map_err(|e| io(name, e))?;
    f.seek(SeekFrom::Start(start_byte_offset))
        .map_err(|e| io(name, e))?;
    let finder = memchr::memmem::Finder::new(needle.as_bytes());
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    // `data` holds the file from offset `base`; positions before `scan`
    // were searched already.
    let (mut data, mut base, mut scan) = (Vec::<u8>::new(), start_byte_offset, 0usize);
    let mut matches = Vec::new();
    let mut block = vec![0u8; BLOCK];
    loop {
        let n = f.read(&mut block).map_err(|e| io(name, e))?;
        let eof = n == 0;
        data.extend_from_slice(&block[..n]);
        // A match starting before `limit` has its whole context in `data`.
        let limit = if eof {
            data.len()
        } else {
            data.len().saturating_sub(needle.len() + CONTEXT_BYTES)
        };
        let mut next = scan;
        while next < limit {
            let Some(p) = finder.find(&data[next..]).map(|i| next + i) else {
                break;
            };
            if p >= limit {
                break;
            }
            if matches.len() == wanted {
                return Ok(Found {
                    matches,
                    next_byte_offset: Some(base + p as u64),
                });
            }
            let end = p + needle.len();
            matches.push(Match {
                byte_offset: base + p as u64,
                before_string: text(&data[p.saturating_sub(CONTEXT_BYTES)..p]),
                after_string: text(&data[end..(end + CONTEXT_BYTES).min(data.len())]),
                match_string: needle.to_owned(),
            });
            next = p + 1;
        }
        if eof {
            return Ok(Found {
                matches,
                next_byte_offset: None,
            });
        }
        scan = limit;
        let cut = limit.saturating_sub(CONTEXT_BYTES);
        data.drain(..cut);
        base += cut as u64;
        scan -= cut;
    }
}

/// The log files under `root` (names as requests give them, sorted):
/// the workers' (of `topology` only and of port `port` only when given),
/// and the daemons' when neither is given (Storm's `listLogs`).
pub fn list(root: &Path, topology: Option<&str>, port: Option<u16>) -> Vec<String> {
    let mut names = Vec::new();
    let Ok(topologies) = std::fs::read_dir(root) else {
        return names;
    };
    for t in topologies.flatten() {
        let id = t.file_name().to_string_lossy().into_owned();
        if !t.path().is_dir() {
            let daemon = LogName::parse(&id).is_ok_and(|n| n.topology().is_none());
            if daemon && topology.is_none() && port.is_none() {
                names.push(id);
            }
            continue;
        }
        if topology.is_some_and(|want| want != id) {
            continue;
        }
        for f in std::fs::read_dir(t.path()).into_iter().flatten().flatten() {
            let name = format!("{id}/{}", f.file_name().to_string_lossy());
            let Ok(parsed) = LogName::parse(&name) else {
                continue;
            };
            let of_port = port.is_none_or(|p| {
                parsed.file.starts_with(&format!("worker-{p}."))
                    || parsed.file.starts_with(&format!("events-{p}."))
            });
            if of_port {
                names.push(name);
            }
        }
    }
    names.sort();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_with(file: &str, text: &str) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join(file);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
        d
    }

    #[test]
    fn only_worker_files_under_a_topology_are_named() {
        for good in [
            "wc-1-17/worker-6700.log",
            "wc-1-17/worker-6700.log.3",
            "wc-1-17/worker-6700.out",
            "wc-1-17/events-6700.log",
            "wc-1-17/events-6700.log.1",
            "supervisor.log",
            "nimbus.log.2",
        ] {
            assert_eq!(LogName::parse(good).unwrap().as_string(), good);
        }
        for bad in [
            "../etc/passwd",
            "wc/../../x/worker-1.log",
            "wc/worker-1.log/..",
            "/etc/worker-1.log",
            "wc/id",
            "wc/worker-x.log",
            "wc/worker-1.log.",
            "wc/worker-1.logs",
            "wc/events-1.out",
            "supervisor.out",
            "supervisor.log.x",
            "zookeeper.log",
            "..",
            "wc/worker 1.log",
            "",
        ] {
            let e = LogName::parse(bad).unwrap_err();
            assert!(matches!(e, FileError::Invalid(_)), "{bad}: {e}");
            assert!(e.to_string().contains(&format!("{bad:?}")), "{e}");
        }
    }

    #[test]
    fn a_chunk_is_the_tail_by_default_and_a_range_when_asked() {
        let d = dir_with("t/worker-1.log", "0123456789");
        let name = LogName::parse("t/worker-1.log").unwrap();
        let tail = read_chunk(d.path(), &name, None, 4).unwrap();
        assert_eq!((tail.start, tail.length, tail.size), (6, 4, 10));
        assert_eq!(tail.data, "6789");
        let mid = read_chunk(d.path(), &name, Some(2), 3).unwrap();
        assert_eq!(mid.data, "234");
        let past = read_chunk(d.path(), &name, Some(99), 3).unwrap();
        assert_eq!((past.start, past.length), (10, 0));
        let gone = LogName::parse("t/worker-2.log").unwrap();
        assert!(matches!(
            read_chunk(d.path(), &gone, None, 4),
            Err(FileError::NotFound(_))
        ));
    }

    #[test]
    fn search_finds_matches_across_blocks_with_context_and_continues() {
        let mut text = String::new();
        let mut offsets = Vec::new();
        for i in 0..70_000 {
            if i % 15_000 == 3 {
                offsets.push(text.len() as u64 + 5);
                text.push_str(&format!("line NEEDLE {i}\n"));
            } else {
                text.push_str(&format!("line {i:06} padding padding padding\n"));
            }
        }
        assert!(text.len() > 2 * BLOCK);
        let d = dir_with("t/worker-1.log", &text);
        let name = LogName::parse("t/worker-1.log").unwrap();
        let all = search(d.path(), &name, "NEEDLE", 100, 0).unwrap();
        let got: Vec<u64> = all.matches.iter().map(|m| m.byte_offset).collect();
        assert_eq!(got, offsets);
        assert_eq!(all.next_byte_offset, None);
        let m = &all.matches[1];
        assert!(m.after_string.starts_with(" 15003\nline 015004"), "{m:?}");
        assert_eq!(m.before_string.len(), CONTEXT_BYTES);
        assert!(m.before_string.ends_with("line "), "{m:?}");
        let two = search(d.path(), &name, "NEEDLE", 2, 0).unwrap();
        assert_eq!(two.matches.len(), 2);
        assert_eq!(two.next_byte_offset, Some(offsets[2]));
        let rest = search(d.path(), &name, "NEEDLE", 10, offsets[2]).unwrap();
        assert_eq!(rest.matches.len(), offsets.len() - 2);
        assert!(matches!(
            search(d.path(), &name, "", 1, 0),
            Err(FileError::Invalid(_))
        ));
        let long = "x".repeat(MAX_SEARCH_BYTES + 1);
        assert!(matches!(
            search(d.path(), &name, &long, 1, 0),
            Err(FileError::Invalid(_))
        ));
    }

    #[test]
    fn list_names_a_topologys_worker_files() {
        let d = dir_with("t/worker-1.log", "a");
        for f in [
            "t/worker-1.log.1",
            "t/worker-2.log",
            "t/stray",
            "u/worker-1.log",
            "supervisor.log",
            "stray.log",
        ] {
            std::fs::create_dir_all(d.path().join(f).parent().unwrap()).unwrap();
            std::fs::write(d.path().join(f), "b").unwrap();
        }
        assert_eq!(
            list(d.path(), Some("t"), None),
            ["t/worker-1.log", "t/worker-1.log.1", "t/worker-2.log"]
        );
        assert_eq!(
            list(d.path(), Some("t"), Some(1)),
            ["t/worker-1.log", "t/worker-1.log.1"]
        );
        assert_eq!(list(d.path(), None, None).len(), 5);
        assert!(list(d.path(), None, None).contains(&"supervisor.log".to_owned()));
    }
}
