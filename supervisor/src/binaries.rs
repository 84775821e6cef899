//! Topology binaries on a supervisor's disk: each missing binary is
//! downloaded by its own thread from any Nimbus in `nimbus.seeds` (all
//! serve downloads), checked against its sha256 and stored under
//! `<storm.local.dir>/supervisor/binaries/<sha256>`, so a slow or failing
//! download never holds up the slots that do not need it.

use squall_cluster::rpc::download_from_any;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

/// Wait after a failed download before the next attempt, ms.
const RETRY_MS: u64 = 2_000;

enum Download {
    Running(JoinHandle<Result<usize, String>>),
    Failed { retry_at_ms: u64 },
}

/// The local binaries and the downloads in progress.
pub(crate) struct Binaries {
    dir: PathBuf,
    nimbus: Vec<String>,
    max_frame_bytes: usize,
    downloads: BTreeMap<String, Download>,
}

impl Binaries {
    /// Binaries kept in `dir`, downloaded from `nimbus` (`host:port`).
    pub(crate) fn new(dir: PathBuf, nimbus: Vec<String>, max_frame_bytes: usize) -> Self {
        Self {
            dir,
            nimbus,
            max_frame_bytes,
            downloads: BTreeMap::new(),
        }
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
        match self.downloads.remove(sha256) {
            Some(Download::Running(h)) if !h.is_finished() => {
                self.downloads
                    .insert(sha256.to_owned(), Download::Running(h));
            }
            Some(Download::Running(h)) => {
                let outcome = h.join().unwrap_or_else(|_| Err("download panicked".into()));
                match outcome {
                    Ok(bytes) => {
                        tracing::info!(binary = %sha256, bytes, "downloaded topology binary");
                        return true;
                    }
                    Err(e) => {
                        tracing::error!(binary = %sha256, "cannot download topology binary: {e}");
                        self.downloads.insert(
                            sha256.to_owned(),
                            Download::Failed {
                                retry_at_ms: now_ms + RETRY_MS,
                            },
                        );
                    }
                }
            }
            Some(Download::Failed { retry_at_ms }) if now_ms < retry_at_ms => {
                self.downloads
                    .insert(sha256.to_owned(), Download::Failed { retry_at_ms });
            }
            Some(Download::Failed { .. }) | None => self.start(sha256),
        }
        false
    }

    fn start(&mut self, sha256: &str) {
        let (nimbus, max, target) = (self.nimbus.clone(), self.max_frame_bytes, self.path(sha256));
        let hash = sha256.to_owned();
        let spawned = std::thread::Builder::new()
            .name("supervisor-download".into())
            .spawn(move || {
                let data = download_from_any(&nimbus, &hash, max).map_err(|e| e.to_string())?;
                store(&target, &data)
                    .map_err(|e| format!("cannot store {}: {e}", target.display()))?;
                Ok(data.len())
            });
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

/// Writes an executable file atomically (a `.part` file renamed).
fn store(target: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = target.with_extension("part");
    std::fs::write(&tmp, data)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))?;
    }
    std::fs::rename(&tmp, target)
}
