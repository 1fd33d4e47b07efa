//! Compiling plugins in a child process: `wasmgate compile-plugin --cache-dir <cache_dir>` reads
//! a component on standard input, compiles it into the disk cache with the gateway's engine
//! settings and prints where the code came from; the gateway then loads the entry as a cache
//! hit (`engine.rs`, `Runtime::compile`, says why: the compiler's memory never becomes the
//! gateway's).
//!
//! Failure handling: a child that cannot be started, or that does not know the subcommand (a
//! different binary at the path), makes the gateway compile in process and say so in the log;
//! a child that fails to compile fails that load with its message; a child that runs past
//! [`COMPILE_TIMEOUT`] is killed and the load fails.
//!
//! The cache folder: wasmtime prunes its cache in the process that wrote an entry, on a worker
//! thread, and a child exits before that runs, so the gateway prunes the folder itself after
//! each compile by a child ([`prune_cache`]).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

use tracing::{debug, warn};

use super::engine::{CodeSource, compile_into_cache, engine_config};

/// Longest a compile may take before its child is killed. Why 10 minutes: the largest example
/// (the 18.5 MB Python chat) compiles in ~6 s with a release gateway and in minutes with a
/// debug one; a compile that takes longer is stuck, and holds every other compile meanwhile.
pub(crate) const COMPILE_TIMEOUT: Duration = Duration::from_secs(600);

/// Size the cache folder is brought back under after a compile; wasmtime's own default soft
/// limit. The oldest files go first.
pub(crate) const CACHE_MAX_BYTES: u64 = 512 << 20;

/// The executable that compiles plugins in child processes; unset, compilation happens in the
/// gateway's process.
static COMPILER: OnceLock<PathBuf> = OnceLock::new();

/// The compiler executable, when set.
pub(super) fn executable() -> Option<&'static Path> {
    COMPILER.get().map(PathBuf::as_path)
}

/// Compile plugins in child processes running the gateway's own binary: `/proc/self/exe` where
/// there is one (the running image, even after its file was replaced or deleted by a deploy),
/// else the path it was started from. The `wasmgate` binary calls this at startup; a gateway
/// embedded as a library (the tests) compiles in process.
pub fn compile_in_child_processes() {
    let own = Path::new("/proc/self/exe");
    let exe = if own.exists() {
        Some(own.to_path_buf())
    } else {
        std::env::current_exe().ok()
    };
    if let Some(exe) = exe {
        let _ = COMPILER.set(exe);
    }
}

/// The `compile-plugin` subcommand: read a component from standard input, compile it into the
/// disk cache of `cache_dir` with the gateway's engine settings, and answer where its code came
/// from (`compiler` or `disk-cache`).
pub fn compile_plugin_command(cache_dir: &Path) -> Result<&'static str, String> {
    let mut bytes = Vec::new();
    std::io::stdin()
        .read_to_end(&mut bytes)
        .map_err(|e| format!("compile: reading the component from standard input: {e}"))?;
    std::fs::create_dir_all(cache_dir)
        .map_err(|e| format!("compile: cache folder {}: {e}", cache_dir.display()))?;
    let (config, cache) = engine_config(cache_dir)?;
    Ok(compile_into_cache(&config, &cache, &bytes)?.as_str())
}

/// Run `exe compile-plugin --cache-dir dir` on `bytes`. `Ok(None)`: no child could do it (it
/// did not start, or does not know the subcommand), compile in process instead.
pub(super) fn compile_in_child(
    exe: &Path,
    dir: &Path,
    bytes: &[u8],
) -> Result<Option<CodeSource>, String> {
    let mut child = match Command::new(exe)
        .arg("compile-plugin")
        .arg("--cache-dir")
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) => {
            warn!(exe = %exe.display(), error = %e,
                "cannot start the compiler process: compiling in the gateway");
            return Ok(None);
        }
    };
    let (stdin, mut stdout, mut stderr) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take());
    let deadline = Instant::now() + COMPILE_TIMEOUT;
    // Input and both outputs on their own threads: nothing the child does (reading slowly,
    // writing a lot) can block the gateway's side of a pipe.
    let (status, out, err) = std::thread::scope(|s| {
        s.spawn(move || {
            if let Some(mut stdin) = stdin {
                // A child that exits early closes the pipe: its status says why.
                let _ = stdin.write_all(bytes);
            }
        });
        let out = s.spawn(move || read_all(stdout.as_mut()));
        let err = s.spawn(move || read_all(stderr.as_mut()));
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Ok(status),
                Ok(None) if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break Err(format!(
                        "compile: stopped after {} s (the compile timeout)",
                        COMPILE_TIMEOUT.as_secs()
                    ));
                }
                // Every 20 ms, and only while a compile runs: an idle gateway polls nothing.
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => break Err(format!("compile: waiting for the compiler process: {e}")),
            }
        };
        (
            status,
            out.join().unwrap_or_default(),
            err.join().unwrap_or_default(),
        )
    });
    let status = status?;
    // Exit status 2 is the argument parser's: a binary that has no `compile-plugin`.
    if status.code() == Some(2) {
        warn!(exe = %exe.display(), "the compiler process does not know compile-plugin: compiling in the gateway");
        return Ok(None);
    }
    if !status.success() {
        let why = err.lines().next().unwrap_or("").trim();
        return Err(match why {
            "" => format!("compile: the compiler process failed ({status})"),
            why if why.starts_with("compile:") => why.to_owned(),
            why => format!("compile: {why}"),
        });
    }
    let said = out.trim();
    debug!(source = said, "plugin compiled by a child process");
    match said {
        "compiler" => Ok(Some(CodeSource::Compiler)),
        "disk-cache" => Ok(Some(CodeSource::DiskCache)),
        other => Err(format!("compile: the compiler process answered {other:?}")),
    }
}

fn read_all(pipe: Option<&mut impl Read>) -> String {
    let mut buf = String::new();
    if let Some(pipe) = pipe {
        let _ = pipe.read_to_string(&mut buf);
    }
    buf
}

/// Delete the least recently written files of the cache folder `dir` until it holds at most
/// `max` bytes; nothing when it already does. Errors are ignored (it is only a cache: a missing
/// entry is compiled again).
pub(crate) fn prune_cache(dir: &Path, max: u64) {
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            if meta.is_dir() {
                dirs.push(entry.path());
            } else if meta.is_file() {
                let written = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                files.push((written, meta.len(), entry.path()));
            }
        }
    }
    let mut total: u64 = files.iter().map(|f| f.1).sum();
    if total <= max {
        return;
    }
    files.sort_by_key(|f| f.0);
    let mut removed = 0usize;
    for (_, len, path) in files {
        if total <= max {
            break;
        }
        if std::fs::remove_file(&path).is_ok() {
            total = total.saturating_sub(len);
            removed += 1;
        }
    }
    debug!(dir = %dir.display(), removed, bytes = total, "plugin cache pruned");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, len: usize, age_secs: u64) {
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, vec![0u8; len]).expect("write");
        let t = SystemTime::now() - Duration::from_secs(age_secs);
        let f = std::fs::File::options()
            .write(true)
            .open(path)
            .expect("open");
        f.set_modified(t).expect("set mtime");
    }

    #[test]
    fn pruning_removes_the_oldest_files_until_the_folder_fits() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (old, mid, new) = (
            dir.path().join("a/old"),
            dir.path().join("b/c/mid"),
            dir.path().join("new"),
        );
        write(&old, 400, 300);
        write(&mid, 400, 200);
        write(&new, 400, 100);
        prune_cache(dir.path(), 1200);
        assert!(
            old.exists() && mid.exists() && new.exists(),
            "under the limit: kept"
        );
        prune_cache(dir.path(), 900);
        assert!(!old.exists(), "the oldest goes first");
        assert!(mid.exists() && new.exists());
        prune_cache(dir.path(), 100);
        assert!(!mid.exists() && !new.exists(), "down to the limit");
    }

    #[test]
    fn a_missing_compiler_means_compiling_in_process() {
        let dir = tempfile::tempdir().expect("tempdir");
        let none = Path::new("/nonexistent/wasmgate-compiler");
        assert_eq!(compile_in_child(none, dir.path(), b"x").ok(), Some(None));
        // `false` exits 1 without a word: a failed compile, with its status.
        let failed = compile_in_child(Path::new("false"), dir.path(), b"x");
        assert!(
            failed.as_ref().is_err_and(|e| e.starts_with("compile:")),
            "{failed:?}"
        );
    }
}
