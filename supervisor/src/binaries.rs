//! Topology binaries on a supervisor's disk: each missing binary is
//! downloaded by its own thread from any Nimbus in `nimbus.seeds` (all
//! serve downloads; through a [`BlobFetch`]), checked against its sha256
//! and stored under `<storm.local.dir>/supervisor/binaries/<sha256>`, so a
//! slow or failing download never holds up the slots that do not need it.

use squall_cluster::rpc::{BlobFetch, BlobSink};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

/// Wait after a failed download before the next attempt, ms.
const RETRY_MS: u64 = 2_000;

enum Download {
    Running(JoinHandle<Result<u64, String>>),
    /// Finished, not yet reported (inline downloads).
    Done(Result<u64, String>),
    Failed {
        retry_at_ms: u64,
    },
}

/// The local binaries and the downloads in progress.
pub(crate) struct Binaries {
    dir: PathBuf,
    fetch: Arc<dyn BlobFetch>,
    /// Download on the calling thread (a simulation, which must stay
    /// deterministic) instead of a thread per binary.
    inline: bool,
    downloads: BTreeMap<String, Download>,
}

impl Binaries {
    /// Binaries kept in `dir`, downloaded through `fetch`.
    pub(crate) fn new(dir: PathBuf, fetch: Arc<dyn BlobFetch>) -> Self {
        Self {
            dir,
            fetch,
            inline: false,
            downloads: BTreeMap::new(),
        }
    }

    /// Downloads through `fetch` on the calling thread from now on.
    pub(crate) fn inline(&mut self, fetch: Arc<dyn BlobFetch>) {
        self.fetch = fetch;
        self.inline = true;
    }

    /// Where binary `sha256` is kept.
    pub(crate) fn path(&self, sha256: &str) -> PathBuf {
        self.dir.join(sha256)
    }

    /// Whether binary `sha256` is local; if not, makes sure a download is
    /// running (or retries a failed one after [`RETRY_MS`]).
    pub(crate) fn ensure(&mut self, sha256: &str, now_ms: u64) -> bool {
        if self.path(sha256).is_file() {
            return true;
        }
        let outcome = match self.downloads.remove(sha256) {
            Some(Download::Running(h)) if !h.is_finished() => {
                self.downloads
                    .insert(sha256.to_owned(), Download::Running(h));
                return false;
            }
            Some(Download::Running(h)) => {
                h.join().unwrap_or_else(|_| Err("download panicked".into()))
            }
            Some(Download::Done(outcome)) => outcome,
            Some(Download::Failed { retry_at_ms }) if now_ms < retry_at_ms => {
                self.downloads
                    .insert(sha256.to_owned(), Download::Failed { retry_at_ms });
                return false;
            }
            Some(Download::Failed { .. }) | None => {
                self.start(sha256);
                return false;
            }
        };
        match outcome {
            Ok(bytes) => {
                tracing::info!(binary = %sha256, bytes, "downloaded topology binary");
                true
            }
            Err(e) => {
                tracing::error!(binary = %sha256, "cannot download topology binary: {e}");
                self.downloads.insert(
                    sha256.to_owned(),
                    Download::Failed {
                        retry_at_ms: now_ms + RETRY_MS,
                    },
                );
                false
            }
        }
    }

    fn start(&mut self, sha256: &str) {
        let (fetch, target) = (self.fetch.clone(), self.path(sha256));
        let hash = sha256.to_owned();
        let download = move || {
            let mut part = PartFile::new(&target);
            let fetched = fetch.fetch(&hash, &mut part);
            let stored = fetched.and_then(|size| {
                part.keep()
                    .map(|()| size)
                    .map_err(|e| format!("cannot store {}: {e}", target.display()))
            });
            if stored.is_err() {
                part.discard();
            }
            stored
        };
        if self.inline {
            // Reported by the next `ensure`, as a thread's would be.
            self.downloads
                .insert(sha256.to_owned(), Download::Done(download()));
            return;
        }
        let spawned = std::thread::Builder::new()
            .name("supervisor-download".into())
            .spawn(download);
        match spawned {
            Ok(h) => {
                self.downloads
                    .insert(sha256.to_owned(), Download::Running(h));
            }
            Err(e) => tracing::error!("cannot start a download thread: {e}"),
        }
    }

    /// Removes local binaries other than `keep` (finished downloads of
    /// binaries no longer needed included).
    pub(crate) fn retain(&mut self, keep: &std::collections::BTreeSet<&str>) {
        self.downloads
            .retain(|h, d| keep.contains(h.as_str()) || matches!(d, Download::Running(_)));
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let hash = name.split('.').next().unwrap_or_default();
                if !keep.contains(hash) && !self.downloads.contains_key(hash) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }
}

/// A binary being downloaded to `<target>.part` (its folder made if it
/// went missing), renamed to `target`, executable, once its hash checks
/// out: a supervisor holds one chunk of it in memory at a time.
struct PartFile {
    target: PathBuf,
    part: PathBuf,
    file: Option<std::fs::File>,
}

impl PartFile {
    fn new(target: &Path) -> Self {
        Self {
            target: target.to_owned(),
            part: target.with_extension("part"),
            file: None,
        }
    }

    /// Makes the downloaded binary `target`, executable.
    fn keep(&mut self) -> std::io::Result<()> {
        let file = self
            .file
            .take()
            .ok_or_else(|| std::io::Error::other("nothing was downloaded"))?;
        file.sync_all()?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(std::fs::Permissions::from_mode(0o755))?;
        }
        drop(file);
        std::fs::rename(&self.part, &self.target)
    }

    /// Removes what a failed download left.
    fn discard(&mut self) {
        self.file = None;
        let _ = std::fs::remove_file(&self.part);
    }
}

impl BlobSink for PartFile {
    fn begin(&mut self, _total: u64) -> Result<(), String> {
        let create = || {
            if let Some(dir) = self.part.parent() {
                std::fs::create_dir_all(dir)?;
            }
            std::fs::File::create(&self.part)
        };
        let file = create().map_err(|e| format!("cannot write {}: {e}", self.part.display()))?;
        self.file = Some(file);
        Ok(())
    }

    fn write(&mut self, chunk: &[u8]) -> Result<(), String> {
        use std::io::Write;
        let file = self
            .file
            .as_mut()
            .ok_or("a chunk before the binary began")?;
        file.write_all(chunk)
            .map_err(|e| format!("cannot write {}: {e}", self.part.display()))
    }
}
