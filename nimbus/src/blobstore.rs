//! Nimbus's blob store: topology binaries on local disk, named by their
//! sha256, written through upload sessions that check size and hash.
//! Sessions are capped in total and per client, and hold no open file
//! between chunks; a download answers at most one chunk per request.

use sha2::{Digest, Sha256};
use squall_cluster::rpc::{hex, BlobSink, ErrorKind, RpcError, CHUNK_BYTES};
use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub use squall_cluster::rpc::MAX_BLOB_BYTES;

/// Upload sessions one client (one connection) may hold at once.
pub const MAX_SESSIONS_PER_CLIENT: usize = 8;

struct Upload {
    /// The partial file, removed when the session is dropped.
    path: tempfile::TempPath,
    /// The client that opened it (its address).
    owner: String,
    hasher: Sha256,
    size: u64,
    received: u64,
    sha256: String,
    touched: Instant,
}

/// Binaries under `<dir>/<sha256>`; uploads go to `<dir>/tmp` first.
pub struct BlobStore {
    dir: PathBuf,
    sessions: Mutex<HashMap<String, Upload>>,
    expiry: Duration,
    max_sessions: usize,
}

fn internal(e: impl std::fmt::Display) -> RpcError {
    RpcError::new(ErrorKind::Internal, format!("blob store: {e}"))
}

/// Whether `s` is a sha256 in lower-case hex.
pub fn is_sha256(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl BlobStore {
    /// A store in `dir` (created if missing) whose idle upload sessions
    /// expire after `expiry` (`nimbus.file.copy.expiration.secs`), with at
    /// most `max_sessions` open at once (`nimbus.upload.max.sessions`) and
    /// [`MAX_SESSIONS_PER_CLIENT`] per client.
    pub fn open(dir: &Path, expiry: Duration, max_sessions: usize) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir.join("tmp"))?;
        Ok(Self {
            dir: dir.to_owned(),
            sessions: Mutex::new(HashMap::new()),
            expiry,
            max_sessions: max_sessions.max(1),
        })
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, Upload>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether blob `sha256` is stored.
    pub fn contains(&self, sha256: &str) -> bool {
        is_sha256(sha256) && self.dir.join(sha256).is_file()
    }

    /// Every stored blob: (sha256, size in bytes, modified in ms since
    /// the Unix epoch), by hash.
    ///
    /// # Errors
    /// [`ErrorKind::Internal`] when the folder cannot be read.
    pub fn list(&self) -> Result<Vec<(String, u64, u64)>, RpcError> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(&self.dir).map_err(internal)? {
            let e = e.map_err(internal)?;
            let name = e.file_name().to_string_lossy().into_owned();
            let Ok(meta) = e.metadata() else { continue };
            if !is_sha256(&name) || !meta.is_file() {
                continue;
            }
            let modified = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_millis() as u64);
            out.push((name, meta.len(), modified));
        }
        out.sort();
        Ok(out)
    }

    /// Opens an upload of `size` bytes hashing to `sha256` for `client`.
    ///
    /// # Errors
    /// [`ErrorKind::Invalid`] for a bad hash or size; [`ErrorKind::Busy`]
    /// when the store or this client holds as many sessions as allowed.
    pub fn begin(&self, client: &str, size: u64, sha256: &str) -> Result<String, RpcError> {
        if !is_sha256(sha256) {
            return Err(RpcError::new(
                ErrorKind::Invalid,
                format!("{sha256:?} is not a sha256 in lower-case hex"),
            ));
        }
        if size == 0 || size > MAX_BLOB_BYTES {
            return Err(RpcError::new(
                ErrorKind::Invalid,
                format!("binary of {size} bytes: must be 1 to {MAX_BLOB_BYTES} bytes"),
            ));
        }
        self.expire();
        let mut sessions = self.sessions();
        if sessions.len() >= self.max_sessions {
            return Err(RpcError::new(
                ErrorKind::Busy,
                format!(
                    "{} uploads are open (nimbus.upload.max.sessions); try again later",
                    sessions.len()
                ),
            ));
        }
        let mine = sessions.values().filter(|u| u.owner == client).count();
        if mine >= MAX_SESSIONS_PER_CLIENT {
            return Err(RpcError::new(
                ErrorKind::Busy,
                format!("{client} has {mine} uploads open, the most one client may hold"),
            ));
        }
        let path = tempfile::NamedTempFile::new_in(self.dir.join("tmp"))
            .map_err(internal)?
            .into_temp_path();
        let session = hex(&rand::random::<[u8; 16]>());
        sessions.insert(
            session.clone(),
            Upload {
                path,
                owner: client.to_owned(),
                hasher: Sha256::new(),
                size,
                received: 0,
                sha256: sha256.to_owned(),
                touched: Instant::now(),
            },
        );
        Ok(session)
    }

    /// Appends a chunk to an upload.
    pub fn chunk(&self, session: &str, data: &[u8]) -> Result<(), RpcError> {
        let mut sessions = self.sessions();
        let up = sessions
            .get_mut(session)
            .ok_or_else(|| no_session(session))?;
        if up.received + data.len() as u64 > up.size {
            sessions.remove(session);
            return Err(RpcError::new(
                ErrorKind::HashMismatch,
                "upload is longer than announced; session closed",
            ));
        }
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&up.path)
            .map_err(internal)?;
        f.write_all(data).map_err(internal)?;
        up.hasher.update(data);
        up.received += data.len() as u64;
        up.touched = Instant::now();
        Ok(())
    }

    /// Ends an upload: stores the blob if size and hash match, else drops it.
    pub fn finish(&self, session: &str) -> Result<String, RpcError> {
        let up = self
            .sessions()
            .remove(session)
            .ok_or_else(|| no_session(session))?;
        if up.received != up.size {
            return Err(RpcError::new(
                ErrorKind::HashMismatch,
                format!("upload ended after {} of {} bytes", up.received, up.size),
            ));
        }
        let got = hex(&up.hasher.finalize());
        if got != up.sha256 {
            return Err(RpcError::new(
                ErrorKind::HashMismatch,
                format!(
                    "uploaded binary hashes to {got}, not the announced {}; refused",
                    up.sha256
                ),
            ));
        }
        std::fs::File::open(&up.path)
            .and_then(|f| f.sync_all())
            .map_err(internal)?;
        up.path
            .persist(self.dir.join(&got))
            .map_err(|e| internal(e.error))?;
        Ok(got)
    }

    /// Stores `data` as blob `sha256`, checking size and hash as an
    /// upload does.
    ///
    /// # Errors
    /// As [`BlobStore::begin`] and [`BlobStore::finish`].
    pub fn put(&self, sha256: &str, data: &[u8]) -> Result<(), RpcError> {
        let session = self.begin("put", data.len() as u64, sha256)?;
        self.chunk(&session, data)?;
        self.finish(&session).map(|_| ())
    }

    /// Drops an upload and its partial file (an upload that failed on the
    /// sending side); nothing when there is no such session.
    pub fn abort(&self, session: &str) {
        self.sessions().remove(session);
    }

    /// A sink that stores blob `sha256` as it is fetched from another
    /// Nimbus, through an upload session (size and hash checked as for an
    /// upload): see [`Replica::finish`].
    pub fn replica<'a>(&'a self, sha256: &'a str) -> Replica<'a> {
        Replica {
            store: self,
            sha256,
            session: None,
        }
    }

    /// Reads up to `len` bytes (at most [`CHUNK_BYTES`]) of blob `sha256`
    /// from `offset`, with the blob's total size: a request for more gets
    /// one chunk, so no request makes Nimbus hold a whole binary.
    pub fn read(&self, sha256: &str, offset: u64, len: u32) -> Result<(Vec<u8>, u64), RpcError> {
        let len = len.min(CHUNK_BYTES as u32);
        if !is_sha256(sha256) {
            return Err(RpcError::new(
                ErrorKind::Invalid,
                format!("{sha256:?} is not a sha256 in lower-case hex"),
            ));
        }
        let mut f = std::fs::File::open(self.dir.join(sha256)).map_err(|_| {
            RpcError::new(
                ErrorKind::NotFound,
                format!("no binary {sha256} in the blob store"),
            )
        })?;
        let total = f.metadata().map_err(internal)?.len();
        f.seek(SeekFrom::Start(offset.min(total)))
            .map_err(internal)?;
        let mut data = Vec::with_capacity(len as usize);
        f.take(u64::from(len))
            .read_to_end(&mut data)
            .map_err(internal)?;
        Ok((data, total))
    }

    /// Drops the upload sessions `client` opened (its connection closed).
    pub fn drop_sessions_of(&self, client: &str) {
        self.sessions().retain(|_, up| up.owner != client);
    }

    /// Drops upload sessions idle for longer than the expiry.
    pub fn expire(&self) {
        let expiry = self.expiry;
        self.sessions().retain(|id, up| {
            let keep = up.touched.elapsed() < expiry;
            if !keep {
                tracing::info!(session = %id, "upload session expired");
            }
            keep
        });
    }
}

/// A blob being copied from another Nimbus into a [`BlobStore`], chunk
/// by chunk (a [`BlobSink`]): a Nimbus holds one chunk of it at a time.
/// Dropped unfinished, its upload session and partial file go with it.
pub struct Replica<'a> {
    store: &'a BlobStore,
    sha256: &'a str,
    session: Option<String>,
}

impl Replica<'_> {
    /// Stores the copied blob (size and hash checked again).
    ///
    /// # Errors
    /// As [`BlobStore::finish`]; [`ErrorKind::Invalid`] when nothing was
    /// copied.
    pub fn finish(mut self) -> Result<(), RpcError> {
        let session = self
            .session
            .take()
            .ok_or_else(|| RpcError::new(ErrorKind::Invalid, "nothing was copied"))?;
        self.store.finish(&session).map(|_| ())
    }
}

impl BlobSink for Replica<'_> {
    fn begin(&mut self, total: u64) -> Result<(), String> {
        if let Some(old) = self.session.take() {
            self.store.abort(&old);
        }
        let session = self
            .store
            .begin("replication", total, self.sha256)
            .map_err(|e| e.to_string())?;
        self.session = Some(session);
        Ok(())
    }

    fn write(&mut self, chunk: &[u8]) -> Result<(), String> {
        let session = self
            .session
            .as_deref()
            .ok_or("a chunk before the blob began")?;
        self.store.chunk(session, chunk).map_err(|e| e.to_string())
    }
}

impl Drop for Replica<'_> {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            self.store.abort(&session);
        }
    }
}

fn no_session(session: &str) -> RpcError {
    RpcError::new(
        ErrorKind::NotFound,
        format!("no upload session {session:?} (expired or never opened)"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use squall_cluster::rpc::sha256_hex;

    #[test]
    fn upload_round_trip_and_mismatch() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path(), Duration::from_secs(60), 64).unwrap();
        let data = b"binary bytes".to_vec();
        let sha = sha256_hex(&data);
        let s = store.begin("c", data.len() as u64, &sha).unwrap();
        store.chunk(&s, &data[..4]).unwrap();
        store.chunk(&s, &data[4..]).unwrap();
        assert_eq!(store.finish(&s).unwrap(), sha);
        assert_eq!(store.read(&sha, 2, 3).unwrap(), (b"nar".to_vec(), 12));

        let wrong = sha256_hex(b"other");
        let s = store.begin("c", data.len() as u64, &wrong).unwrap();
        store.chunk(&s, &data).unwrap();
        let e = store.finish(&s).unwrap_err();
        assert_eq!(e.kind, ErrorKind::HashMismatch);
        assert!(e.message.contains("not the announced"), "{e}");
        assert!(!store.contains(&wrong));
    }

    /// What is in the store's temporary folder (partial uploads).
    fn partial_files(dir: &Path) -> usize {
        std::fs::read_dir(dir.join("tmp")).map_or(0, |d| d.count())
    }

    #[test]
    fn a_replica_restarts_on_a_new_attempt_and_leaves_nothing_when_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path(), Duration::from_secs(60), 64).unwrap();
        let data = b"binary bytes".to_vec();
        let sha = sha256_hex(&data);

        // A first attempt breaks off after a chunk; the second starts over.
        let mut replica = store.replica(&sha);
        replica.begin(12).unwrap();
        replica.write(b"bina").unwrap();
        replica.begin(12).unwrap();
        assert_eq!(
            store.sessions().len(),
            1,
            "the broken attempt's session is gone"
        );
        replica.write(&data[..5]).unwrap();
        replica.write(&data[5..]).unwrap();
        replica.finish().unwrap();
        assert!(store.contains(&sha));
        assert_eq!(partial_files(dir.path()), 0);

        // Wrong content fails at finish; an unfinished replica leaves no
        // session and no partial file.
        let other = sha256_hex(b"other bytes!");
        let mut replica = store.replica(&other);
        replica.begin(12).unwrap();
        replica.write(&data).unwrap();
        assert_eq!(replica.finish().unwrap_err().kind, ErrorKind::HashMismatch);
        let mut replica = store.replica(&other);
        replica.begin(12).unwrap();
        replica.write(b"other").unwrap();
        assert_eq!(partial_files(dir.path()), 1);
        drop(replica);
        assert!(store.sessions().is_empty());
        assert_eq!(partial_files(dir.path()), 0);
        assert!(!store.contains(&other));
    }

    #[test]
    fn idle_sessions_expire() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path(), Duration::ZERO, 64).unwrap();
        let s = store.begin("c", 3, &sha256_hex(b"abc")).unwrap();
        store.expire();
        assert_eq!(
            store.chunk(&s, b"abc").unwrap_err().kind,
            ErrorKind::NotFound
        );
    }

    #[test]
    fn sessions_are_capped_in_total_and_per_client_and_hold_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path(), Duration::from_secs(60), 10).unwrap();
        let sha = sha256_hex(b"abc");
        let fds = || {
            std::fs::read_dir("/proc/self/fd")
                .map(|d| d.count())
                .unwrap_or(0)
        };
        let before = fds();
        for _ in 0..MAX_SESSIONS_PER_CLIENT {
            store.begin("10.0.0.1:5000", 3, &sha).unwrap();
        }
        let e = store.begin("10.0.0.1:5000", 3, &sha).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Busy);
        assert!(
            e.message.contains("10.0.0.1:5000 has 8 uploads open"),
            "{e}"
        );
        store.begin("10.0.0.2:5000", 3, &sha).unwrap();
        store.begin("10.0.0.3:5000", 3, &sha).unwrap();
        let e = store.begin("10.0.0.4:5000", 3, &sha).unwrap_err();
        assert!(e.message.contains("10 uploads are open"), "{e}");
        // Other threads of the test binary may open files: allow a few.
        assert!(fds() < before + 5, "sessions keep files open");
    }

    #[test]
    fn a_download_answers_one_chunk_at_most() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path(), Duration::from_secs(60), 4).unwrap();
        let data = vec![7u8; CHUNK_BYTES * 3];
        let sha = sha256_hex(&data);
        store.put(&sha, &data).unwrap();
        let (chunk, total) = store.read(&sha, 0, u32::MAX).unwrap();
        assert_eq!((chunk.len(), total), (CHUNK_BYTES, data.len() as u64));
    }
}
