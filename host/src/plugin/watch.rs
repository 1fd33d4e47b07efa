//! Watching the plugins folder: debounced file events become the names of plugins to sync.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify_debouncer_full::notify::RecursiveMode;
use notify_debouncer_full::{DebounceEventResult, Debouncer, RecommendedCache, new_debouncer};
use tokio::sync::mpsc;
use tracing::warn;

/// The running watcher; dropping it stops watching.
pub(crate) type Watcher =
    Debouncer<notify_debouncer_full::notify::RecommendedWatcher, RecommendedCache>;

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

/// Watch `dir` (not recursively); every batch of settled changes sends the names of the plugins
/// whose files changed, appeared or disappeared. Whether a name means load, reload or unload is
/// decided by looking at the disk when it is handled, so a burst of events settles on the final
/// state of the folder.
pub(crate) fn watch(
    dir: PathBuf,
    debounce: Duration,
    tx: mpsc::UnboundedSender<String>,
) -> Result<Watcher, String> {
    let root = dir.clone();
    let mut debouncer = new_debouncer(debounce, None, move |res: DebounceEventResult| match res {
        Ok(events) => {
            let names: BTreeSet<String> = events
                .iter()
                .flat_map(|e| e.paths.iter())
                .filter_map(|p| plugin_name(&root, p))
                .collect();
            for name in names {
                let _ = tx.send(name);
            }
        }
        Err(errors) => {
            for e in errors {
                warn!(cause = %e, "plugin folder watcher error");
            }
        }
    })
    .map_err(|e| format!("watcher: {e}"))?;
    debouncer
        .watch(&dir, RecursiveMode::NonRecursive)
        .map_err(|e| format!("watching {}: {e}", dir.display()))?;
    Ok(debouncer)
}

#[cfg(test)]
mod tests {
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

    #[tokio::test]
    async fn a_new_file_is_reported_once_settled() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = std::fs::canonicalize(dir.path()).expect("canonical");
        let (tx, mut rx) = mpsc::unbounded_channel();
        let _w = watch(root.clone(), Duration::from_millis(50), tx).expect("watch");
        std::fs::write(root.join("notes.txt"), b"x").expect("write");
        std::fs::write(root.join("echo.wasm"), b"x").expect("write");
        let name = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await;
        assert_eq!(name.ok().flatten().as_deref(), Some("echo"));
    }
}
