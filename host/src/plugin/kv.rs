//! A plugin's key-value store: in memory, persisted to one JSON file per plugin.
//!
//! Why a JSON file and not an embedded database: the stores are small by construction (quotas
//! below), a plugin's store is touched by one actor at a time, and a human-readable file is easy
//! to inspect, back up and edit while the gateway is stopped. The file is rewritten atomically
//! (temporary file, fsync, rename) by a write-behind flusher at most every
//! [`FLUSH_INTERVAL`](super::FLUSH_INTERVAL), on unload and on shutdown — not once per write,
//! which would cap a plugin at a few hundred writes per second. The price: a crash (not a
//! graceful stop) can lose the writes of the last interval. Reloads and traps lose nothing: the
//! store lives outside the instance.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tracing::warn;

use super::bindings::WitError;
use super::rules;

/// Longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;
/// Largest value, in bytes.
pub const MAX_VALUE_BYTES: usize = 1024 * 1024;
/// Most keys in one plugin's store.
pub const MAX_KEYS: usize = 100_000;
/// Most bytes (keys plus values) in one plugin's store.
pub const MAX_TOTAL_BYTES: usize = 16 * 1024 * 1024;

/// How a value is written in the file: text when it is UTF-8, else hex.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum Stored {
    /// A UTF-8 value.
    Text(String),
    /// Any other value.
    Hex {
        /// The bytes, two lowercase hex digits each.
        hex: String,
    },
}

/// The file's layout.
#[derive(Serialize, Deserialize, Default)]
struct File {
    /// Layout version, for future changes.
    version: u32,
    /// Every entry.
    entries: BTreeMap<String, Stored>,
}

#[derive(Default)]
struct Inner {
    map: BTreeMap<String, Vec<u8>>,
    /// Keys plus values, against [`MAX_TOTAL_BYTES`].
    bytes: usize,
    /// Changed since the last flush.
    dirty: bool,
}

/// One plugin's store.
pub(crate) struct Kv {
    /// The file it persists to.
    path: PathBuf,
    inner: Mutex<Inner>,
    /// Flushes take turns, so an older snapshot never overwrites a newer one.
    write_turn: Mutex<()>,
    /// Woken on every change, so the runtime flushes when something changed instead of
    /// checking every store on a timer (an idle gateway must not wake up at all).
    changed: Option<Arc<Notify>>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

impl Kv {
    /// Open the store persisted at `path` (empty if there is no file). A file that cannot be
    /// parsed is moved aside (`.corrupt`) and logged, never silently overwritten.
    pub(crate) fn open(path: PathBuf) -> Self {
        let mut inner = Inner::default();
        match std::fs::read(&path) {
            Ok(raw) => match serde_json::from_slice::<File>(&raw) {
                Ok(file) => {
                    for (k, v) in file.entries {
                        let value = match v {
                            Stored::Text(t) => t.into_bytes(),
                            Stored::Hex { hex } => match unhex(&hex) {
                                Some(b) => b,
                                None => {
                                    warn!(key = %k, path = %path.display(), "bad hex value skipped");
                                    continue;
                                }
                            },
                        };
                        inner.bytes += k.len() + value.len();
                        inner.map.insert(k, value);
                    }
                }
                Err(e) => {
                    let aside = path.with_extension("json.corrupt");
                    warn!(path = %path.display(), cause = %e, aside = %aside.display(),
                        "unreadable key-value file moved aside; starting empty");
                    let _ = std::fs::rename(&path, &aside);
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => warn!(path = %path.display(), cause = %e, "key-value file unreadable"),
        }
        Self {
            path,
            inner: Mutex::new(inner),
            write_turn: Mutex::new(()),
            changed: None,
        }
    }

    fn check_key(key: &str) -> Result<(), WitError> {
        Ok(rules::kv_key(key)?)
    }

    /// The value of `key`.
    pub(crate) fn get(&self, key: &str) -> Result<Option<Vec<u8>>, WitError> {
        Self::check_key(key)?;
        Ok(self.inner.lock().map.get(key).cloned())
    }

    /// Set `key`, within the quotas.
    pub(crate) fn set(&self, key: &str, value: Vec<u8>) -> Result<(), WitError> {
        let mut inner = self.inner.lock();
        let old = inner.map.get(key).map(|v| key.len() + v.len()).unwrap_or(0);
        let bytes = rules::kv_set(key, value.len(), inner.map.len(), inner.bytes, old)?;
        inner.bytes = bytes;
        inner.map.insert(key.to_owned(), value);
        inner.dirty = true;
        drop(inner);
        self.changed();
        Ok(())
    }

    /// Delete `key`; whether it existed.
    pub(crate) fn delete(&self, key: &str) -> Result<bool, WitError> {
        Self::check_key(key)?;
        let mut inner = self.inner.lock();
        match inner.map.remove(key) {
            Some(v) => {
                inner.bytes -= key.len() + v.len();
                inner.dirty = true;
                drop(inner);
                self.changed();
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Add `delta` to the decimal integer at `key` (missing counts as 0).
    pub(crate) fn incr(&self, key: &str, delta: i64) -> Result<i64, WitError> {
        let raw = self.inner.lock().map.get(key).cloned();
        let next = rules::kv_incr(key, raw.as_deref(), delta)?;
        // The actor is the only writer of its store, so nothing changed the key meanwhile.
        self.set(key, next.to_string().into_bytes())?;
        Ok(next)
    }

    /// Every key starting with `prefix`, sorted.
    pub(crate) fn keys(&self, prefix: &str) -> Vec<String> {
        let inner = self.inner.lock();
        inner
            .map
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Write the file if anything changed since the last flush. Blocking (file I/O).
    pub(crate) fn flush(&self) -> std::io::Result<()> {
        let _turn = self.write_turn.lock();
        let data = {
            let mut inner = self.inner.lock();
            if !inner.dirty {
                return Ok(());
            }
            inner.dirty = false;
            let entries = inner
                .map
                .iter()
                .map(|(k, v)| {
                    let stored = match std::str::from_utf8(v) {
                        Ok(t) => Stored::Text(t.to_owned()),
                        Err(_) => Stored::Hex { hex: hex(v) },
                    };
                    (k.clone(), stored)
                })
                .collect();
            serde_json::to_vec(&File {
                version: 1,
                entries,
            })
            .map_err(std::io::Error::other)?
        };
        let result = write_atomically_to(&self.path, &data);
        if result.is_err() {
            self.inner.lock().dirty = true;
            self.changed();
        }
        result
    }

    /// Wake `changed` on every change from now on.
    pub(crate) fn notify_changes(mut self, changed: Arc<Notify>) -> Self {
        self.changed = Some(changed);
        self
    }

    fn changed(&self) {
        if let Some(n) = &self.changed {
            n.notify_one();
        }
    }

    /// Where the store persists.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

/// Replace `path` with `data` atomically: a temporary file beside it, fsync, rename.
fn write_atomically_to(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{:08x}.tmp", rand::random::<u32>()));
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(data)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_quotas_and_persistence() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("p.json");
        let kv = Kv::open(path.clone());
        assert_eq!(kv.get("a").ok(), Some(None));
        assert!(kv.set("a", b"hello".to_vec()).is_ok());
        assert!(kv.set("bin", vec![0, 159, 255]).is_ok());
        assert_eq!(kv.incr("n", 5).ok(), Some(5));
        assert_eq!(kv.incr("n", -7).ok(), Some(-2));
        assert!(matches!(kv.incr("a", 1), Err(WitError::InvalidArgument(_))));
        assert!(matches!(kv.get(""), Err(WitError::InvalidArgument(_))));
        assert!(matches!(
            kv.set("big", vec![0; MAX_VALUE_BYTES + 1]),
            Err(WitError::QuotaExceeded(_))
        ));
        assert_eq!(kv.keys(""), vec!["a", "bin", "n"]);
        assert_eq!(kv.keys("b"), vec!["bin"]);
        assert_eq!(kv.delete("a").ok(), Some(true));
        assert_eq!(kv.delete("a").ok(), Some(false));
        kv.flush().expect("flush");
        let again = Kv::open(path);
        assert_eq!(again.get("bin").ok(), Some(Some(vec![0, 159, 255])));
        assert_eq!(again.get("n").ok(), Some(Some(b"-2".to_vec())));
        assert_eq!(again.get("a").ok(), Some(None));
    }

    #[test]
    fn a_corrupt_file_is_moved_aside() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("p.json");
        std::fs::write(&path, b"{not json").expect("write");
        let kv = Kv::open(path.clone());
        assert_eq!(kv.keys(""), Vec::<String>::new());
        assert!(dir.path().join("p.json.corrupt").is_file());
    }
}
