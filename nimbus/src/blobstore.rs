//! Nimbus's blob store: topology binaries on local disk, named by their
//! sha256, written through upload sessions that check size and hash.

use sha2::{Digest, Sha256};
use squall_cluster::rpc::{hex, ErrorKind, RpcError};
use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Largest binary accepted, in bytes.
pub const MAX_BLOB_BYTES: u64 = 2 * 1024 * 1024 * 1024;

struct Upload {
    file: tempfile::NamedTempFile,
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
    /// expire after `expiry` (`nimbus.file.copy.expiration.secs`).
    pub fn open(dir: &Path, expiry: Duration) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir.join("tmp"))?;
        Ok(Self {
            dir: dir.to_owned(),
            sessions: Mutex::new(HashMap::new()),
            expiry,
        })
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, Upload>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether blob `sha256` is stored.
    pub fn contains(&self, sha256: &str) -> bool {
        is_sha256(sha256) && self.dir.join(sha256).is_file()
    }

    /// Opens an upload of `size` bytes hashing to `sha256`.
    pub fn begin(&self, size: u64, sha256: &str) -> Result<String, RpcError> {
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
        let file = tempfile::NamedTempFile::new_in(self.dir.join("tmp")).map_err(internal)?;
        let session = hex(&rand::random::<[u8; 16]>());
        self.sessions().insert(
            session.clone(),
            Upload {
                file,
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
        up.file.write_all(data).map_err(internal)?;
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
        up.file.as_file().sync_all().map_err(internal)?;
        up.file
            .persist(self.dir.join(&got))
            .map_err(|e| internal(e.error))?;
        Ok(got)
    }

    /// Stores `data` as blob `sha256` (a copy from another Nimbus),
    /// checking size and hash as an upload does.
    ///
    /// # Errors
    /// As [`BlobStore::begin`] and [`BlobStore::finish`].
    pub fn put(&self, sha256: &str, data: &[u8]) -> Result<(), RpcError> {
        let session = self.begin(data.len() as u64, sha256)?;
        self.chunk(&session, data)?;
        self.finish(&session).map(|_| ())
    }

    /// Reads up to `len` bytes of blob `sha256` from `offset`, with the
    /// blob's total size.
    pub fn read(&self, sha256: &str, offset: u64, len: u32) -> Result<(Vec<u8>, u64), RpcError> {
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
        let mut data = Vec::with_capacity(len.min(4 << 20) as usize);
        f.take(u64::from(len))
            .read_to_end(&mut data)
            .map_err(internal)?;
        Ok((data, total))
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
        let store = BlobStore::open(dir.path(), Duration::from_secs(60)).unwrap();
        let data = b"binary bytes".to_vec();
        let sha = sha256_hex(&data);
        let s = store.begin(data.len() as u64, &sha).unwrap();
        store.chunk(&s, &data[..4]).unwrap();
        store.chunk(&s, &data[4..]).unwrap();
        assert_eq!(store.finish(&s).unwrap(), sha);
        assert_eq!(store.read(&sha, 2, 3).unwrap(), (b"nar".to_vec(), 12));

        let wrong = sha256_hex(b"other");
        let s = store.begin(data.len() as u64, &wrong).unwrap();
        store.chunk(&s, &data).unwrap();
        let e = store.finish(&s).unwrap_err();
        assert_eq!(e.kind, ErrorKind::HashMismatch);
        assert!(e.message.contains("not the announced"), "{e}");
        assert!(!store.contains(&wrong));
    }

    #[test]
    fn idle_sessions_expire() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path(), Duration::ZERO).unwrap();
        let s = store.begin(3, &sha256_hex(b"abc")).unwrap();
        store.expire();
        assert_eq!(
            store.chunk(&s, b"abc").unwrap_err().kind,
            ErrorKind::NotFound
        );
    }
}
