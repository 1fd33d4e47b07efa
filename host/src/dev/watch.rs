//! Watching a plugin's source folder: edits become build requests, one per save burst.
//!
//! Only changes count (a file written, created, renamed or removed), never opens or reads: the
//! build itself reads every source, and reacting to that would rebuild forever. Build outputs and
//! tool folders (`target/`, `node_modules/`, `__pycache__/`, `.git/`, …), `Cargo.lock` (cargo
//! writes it on the first build) and editor scratch files are ignored.

use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind};
use notify::{RecommendedWatcher, RecursiveMode, Watcher as _};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::DevError;

/// Folders whose contents are never sources.
const IGNORED_DIRS: &[&str] = &[
    "target",
    "node_modules",
    "__pycache__",
    ".git",
    ".hg",
    ".svn",
    ".idea",
    ".vscode",
    ".bindings",
    ".mypy_cache",
    ".pytest_cache",
];

/// The running watcher; dropping it stops watching.
pub struct SourceWatcher {
    _inner: RecommendedWatcher,
    rx: mpsc::UnboundedReceiver<Instant>,
}

/// Whether a change of `path` (inside `root`) can change the plugin.
pub fn is_source(root: &Path, path: &Path) -> bool {
    let Ok(rel) = path.strip_prefix(root) else {
        return false;
    };
    if rel.as_os_str().is_empty() {
        return false;
    }
    let ignored_dir = rel.components().any(|c| match c {
        Component::Normal(s) => s.to_str().is_some_and(|s| IGNORED_DIRS.contains(&s)),
        _ => false,
    });
    if ignored_dir {
        return false;
    }
    let file = rel.file_name().and_then(|f| f.to_str()).unwrap_or_default();
    // Cargo.lock: written by cargo itself; *.wasm: build outputs; the rest: editor scratch
    // (vim's swap files and its `4913` probe, emacs' `#x#` and `.#x` locks, backups `x~`).
    !(file == "Cargo.lock"
        || file == "4913"
        || file.ends_with(".wasm")
        || file.ends_with('~')
        || file.ends_with(".swp")
        || file.ends_with(".swx")
        || file.starts_with(".#")
        || (file.starts_with('#') && file.ends_with('#')))
}

fn is_change(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) | EventKind::Modify(ModifyKind::Metadata(_)) => false,
        EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_) => true,
        EventKind::Any | EventKind::Other => true,
    }
}

impl SourceWatcher {
    /// Watch `root` recursively.
    pub fn new(root: &Path) -> Result<SourceWatcher, DevError> {
        let (tx, rx) = mpsc::unbounded_channel();
        let base: PathBuf = root.to_owned();
        let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            let Ok(event) = res else { return };
            if is_change(&event.kind) && event.paths.iter().any(|p| is_source(&base, p)) {
                let _ = tx.send(Instant::now());
            }
        })
        .map_err(|e| DevError::Watch(e.to_string()))?;
        watcher
            .watch(root, RecursiveMode::Recursive)
            .map_err(|e| DevError::Watch(format!("{}: {e}", root.display())))?;
        Ok(SourceWatcher {
            _inner: watcher,
            rx,
        })
    }

    /// Wait for the next save burst: returns when a change came and then no other change for
    /// `settle`, with the time of the burst's first change (the save).
    pub async fn next_burst(&mut self, settle: Duration) -> Option<Instant> {
        let first = self.rx.recv().await?;
        self.settle(first, settle).await
    }

    /// Changes that came while a build ran: `Some(first change)` if there were any (then
    /// settled like a burst), `None` if the sources did not change.
    pub async fn pending(&mut self, settle: Duration) -> Option<Instant> {
        let first = self.rx.try_recv().ok()?;
        self.settle(first, settle).await
    }

    async fn settle(&mut self, first: Instant, settle: Duration) -> Option<Instant> {
        loop {
            match tokio::time::timeout(settle, self.rx.recv()).await {
                Ok(Some(_)) => continue,
                Ok(None) => return None,
                Err(_) => return Some(first),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_and_scratch_files_are_not_sources() {
        let root = Path::new("/p");
        for yes in [
            "/p/src/lib.rs",
            "/p/Cargo.toml",
            "/p/plugin.js",
            "/p/app.py",
        ] {
            assert!(is_source(root, Path::new(yes)), "{yes}");
        }
        for no in [
            "/p",
            "/p/target/release/x.wasm",
            "/p/node_modules/a/index.js",
            "/p/pkg/__pycache__/app.cpython-312.pyc",
            "/p/.git/index",
            "/p/Cargo.lock",
            "/p/src/.lib.rs.swp",
            "/p/src/4913",
            "/p/src/lib.rs~",
            "/p/out.wasm",
            "/elsewhere/lib.rs",
        ] {
            assert!(!is_source(root, Path::new(no)), "{no}");
        }
    }

    #[tokio::test]
    async fn a_save_burst_is_one_build_and_reads_are_none() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = std::fs::canonicalize(dir.path()).expect("canonical");
        std::fs::write(root.join("app.py"), b"x = 1\n").expect("write");
        let mut w = SourceWatcher::new(&root).expect("watch");
        for i in 0..5 {
            std::fs::write(root.join("app.py"), format!("x = {i}\n")).expect("write");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let settle = Duration::from_millis(150);
        let burst = tokio::time::timeout(Duration::from_secs(5), w.next_burst(settle)).await;
        assert!(matches!(burst, Ok(Some(_))), "one burst: {burst:?}");
        // Reading the sources (what a build does) is not a change.
        for _ in 0..3 {
            let _ = std::fs::read(root.join("app.py")).expect("read");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(w.pending(settle).await.is_none(), "reads are not changes");
        let again = tokio::time::timeout(Duration::from_millis(400), w.next_burst(settle)).await;
        assert!(again.is_err(), "the burst built once: {again:?}");
    }
}
