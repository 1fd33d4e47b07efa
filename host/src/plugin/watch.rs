//! Watching the plugins folder: file events become the names of plugins to sync.
//!
//! What an event means decides when the plugin is synced:
//! - the file is complete — closed after writing (`IN_CLOSE_WRITE`, what `cp` ends with), renamed
//!   into place (`IN_MOVED_TO`, the atomic deploy), renamed away or removed: sync at once (a
//!   cached Rust plugin then serves its new version in a few ms instead of after a debounce);
//! - the file is being written in place (created, data modified, not yet closed): wait until its
//!   writes have stopped for `reload_debounce`, so a half-written file is never loaded while its
//!   writer is still busy (a writer that keeps its file open loads once, at its close);
//! - anything else (the file was opened, read, its metadata touched): ignore. Reading a file
//!   raises open/access events, and the loader reads every file it syncs: reacting to those
//!   made an idle gateway re-read every plugin every 200 ms forever (~90 MB/s with an 18 MB
//!   Python plugin), and retry and log a bad file in the same loop.
//!
//! Whether a name means load, reload or unload is decided by looking at the disk when it is
//! handled, so a burst of events settles on the final state of the folder.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind};
use notify::{RecommendedWatcher, RecursiveMode, Watcher as _};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::warn;

/// The running watcher; dropping it stops watching (and ends its settle task).
pub(crate) struct Watcher {
    _inner: RecommendedWatcher,
}

/// The plugin name of `path` if it is a `*.wasm` file directly inside `dir`.
pub(crate) fn plugin_name(dir: &Path, path: &Path) -> Option<String> {
    if path.parent()? != dir || path.extension()? != "wasm" {
        return None;
    }
    let name = path.file_stem()?.to_str()?;
    valid_name(name).then(|| name.to_owned())
}

/// Whether `name` may name a plugin: a plain, visible file stem.
pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// What a file event asks of the plugin it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    /// The file is complete (or gone): sync now.
    Now,
    /// The file is being written: sync once its writes have settled.
    Settle,
    /// Nothing changed on disk (an open, a read, a metadata change).
    Ignore,
}

fn action(kind: &EventKind) -> Action {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write))
        | EventKind::Modify(ModifyKind::Name(_))
        | EventKind::Remove(_) => Action::Now,
        EventKind::Create(_)
        | EventKind::Modify(ModifyKind::Data(_) | ModifyKind::Any | ModifyKind::Other)
        | EventKind::Any
        | EventKind::Other => Action::Settle,
        EventKind::Access(_) | EventKind::Modify(ModifyKind::Metadata(_)) => Action::Ignore,
    }
}

/// Watch `dir` (not recursively) and send the name of every plugin whose file changed,
/// appeared or disappeared, when the change is complete (see the module docs).
pub(crate) fn watch(
    dir: PathBuf,
    settle: Duration,
    tx: mpsc::UnboundedSender<String>,
) -> Result<Watcher, String> {
    let (raw_tx, raw_rx) = mpsc::unbounded_channel::<(String, Action)>();
    let root = dir.clone();
    let mut watcher =
        notify::recommended_watcher(move |res: notify::Result<notify::Event>| match res {
            Ok(event) => {
                let act = action(&event.kind);
                if act == Action::Ignore {
                    return;
                }
                for name in event.paths.iter().filter_map(|p| plugin_name(&root, p)) {
                    let _ = raw_tx.send((name, act));
                }
            }
            Err(e) => warn!(cause = %e, "plugin folder watcher error"),
        })
        .map_err(|e| format!("watcher: {e}"))?;
    watcher
        .watch(&dir, RecursiveMode::NonRecursive)
        .map_err(|e| format!("watching {}: {e}", dir.display()))?;
    tokio::spawn(settle_loop(raw_rx, settle, tx));
    Ok(Watcher { _inner: watcher })
}

/// Forward complete changes at once, in-place writes once they settled. Sleeps only while a
/// write is pending: an idle folder costs nothing. Ends when the watcher is dropped.
async fn settle_loop(
    mut raw: mpsc::UnboundedReceiver<(String, Action)>,
    settle: Duration,
    tx: mpsc::UnboundedSender<String>,
) {
    let mut pending: HashMap<String, Instant> = HashMap::new();
    loop {
        let next = pending.values().min().copied();
        tokio::select! {
            event = raw.recv() => match event {
                Some((name, Action::Now)) => {
                    pending.remove(&name);
                    let _ = tx.send(name);
                }
                Some((name, _)) => {
                    pending.insert(name, Instant::now() + settle);
                }
                None => return,
            },
            () = sleep_until(next), if next.is_some() => {
                let now = Instant::now();
                let due: Vec<String> = pending
                    .iter()
                    .filter(|(_, t)| **t <= now)
                    .map(|(n, _)| n.clone())
                    .collect();
                for name in due {
                    pending.remove(&name);
                    let _ = tx.send(name);
                }
            }
        }
    }
}

async fn sleep_until(t: Option<Instant>) {
    if let Some(t) = t {
        tokio::time::sleep_until(t).await;
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn only_wasm_files_directly_inside_count() {
        let dir = Path::new("/p");
        assert_eq!(
            plugin_name(dir, Path::new("/p/quiz.wasm")).as_deref(),
            Some("quiz")
        );
        assert_eq!(plugin_name(dir, Path::new("/p/.cache/x.wasm")), None);
        assert_eq!(plugin_name(dir, Path::new("/p/quiz.cwasm")), None);
        assert_eq!(plugin_name(dir, Path::new("/p/.hidden.wasm")), None);
        assert_eq!(plugin_name(dir, Path::new("/p/quiz.wasm.tmp")), None);
        assert!(!valid_name("../x"));
        assert!(valid_name("chat-v2"));
    }

    fn watched(
        settle: Duration,
    ) -> (
        tempfile::TempDir,
        PathBuf,
        Watcher,
        mpsc::UnboundedReceiver<String>,
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = std::fs::canonicalize(dir.path()).expect("canonical");
        let (tx, rx) = mpsc::unbounded_channel();
        let w = watch(root.clone(), settle, tx).expect("watch");
        (dir, root, w, rx)
    }

    #[tokio::test]
    async fn a_new_file_is_reported_once_complete() {
        let (_d, root, _w, mut rx) = watched(Duration::from_secs(30));
        std::fs::write(root.join("notes.txt"), b"x").expect("write");
        std::fs::write(root.join("echo.wasm"), b"x").expect("write");
        // Closed after writing: reported at once, long before the 30 s settle time.
        let name = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await;
        assert_eq!(name.ok().flatten().as_deref(), Some("echo"));
    }

    #[tokio::test]
    async fn a_rename_into_place_is_reported_at_once() {
        let (_d, root, _w, mut rx) = watched(Duration::from_secs(30));
        let tmp = root.join("quiz.wasm.tmp");
        std::fs::write(&tmp, b"x").expect("write");
        std::fs::rename(&tmp, root.join("quiz.wasm")).expect("rename");
        let name = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await;
        assert_eq!(name.ok().flatten().as_deref(), Some("quiz"));
    }

    #[tokio::test]
    async fn reading_a_file_reports_nothing() {
        let (_d, root, _w, mut rx) = watched(Duration::from_millis(20));
        let path = root.join("echo.wasm");
        std::fs::write(&path, b"x").expect("write");
        let first = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await;
        assert_eq!(first.ok().flatten().as_deref(), Some("echo"));
        for _ in 0..5 {
            assert_eq!(std::fs::read(&path).expect("read"), b"x");
        }
        let again = tokio::time::timeout(Duration::from_millis(500), rx.recv()).await;
        assert!(
            again.is_err(),
            "a read must not look like a change: {again:?}"
        );
    }

    #[tokio::test]
    async fn an_open_in_place_write_waits_for_its_close() {
        let (_d, root, _w, mut rx) = watched(Duration::from_millis(300));
        let mut f = std::fs::File::create(root.join("big.wasm")).expect("create");
        for _ in 0..5 {
            f.write_all(b"chunk").expect("write");
            f.flush().expect("flush");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Writes 50 ms apart never settle for 300 ms: nothing yet.
        assert!(rx.try_recv().is_err());
        drop(f);
        let name = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await;
        assert_eq!(name.ok().flatten().as_deref(), Some("big"));
        let again = tokio::time::timeout(Duration::from_millis(600), rx.recv()).await;
        assert!(again.is_err(), "one complete write is one sync: {again:?}");
    }
}
