//! `wasmgate dev <plugin source folder>`: the plugin author's edit loop.
//!
//! Detect the language ([`detect`]), build with its documented command ([`build`]), install the
//! component into the gateway's plugins folder atomically (a temporary file in that folder, then
//! a rename: the gateway loads a renamed file at once), confirm through `GET /api/plugins` that
//! the new version serves ([`gateway`]), and do it again on every save ([`watch`]). A build or
//! load that fails is reported and the previous version keeps serving.
//!
//! This is a terminal tool: what it prints is its user interface, so it writes to stdout (the
//! gateway itself only logs through `tracing`).

mod build;
mod detect;
mod gateway;
mod watch;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::time::Instant;

pub use build::find_scripts;
pub use detect::{Language, detect};

use build::Recipe;
use gateway::{Gateway, Outcome};
use watch::SourceWatcher;

/// `wasmgate dev`'s arguments.
#[derive(Debug, clap::Args)]
pub struct DevArgs {
    /// The plugin's source folder (a cargo crate; a folder with package.json or plugin.js; with
    /// pyproject.toml or app.py; or with *.c files).
    pub src: PathBuf,
    /// The local gateway to hot-reload into; if nothing answers there, one is started on that
    /// address (and stopped when `wasmgate dev` exits).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub gateway: String,
    /// The gateway's plugins folder (created if missing); the plugin is installed there as
    /// `<name>.wasm`.
    #[arg(long, default_value = "plugins")]
    pub plugins: PathBuf,
    /// The plugin's name [default: the cargo package name, or the source folder's name].
    #[arg(long)]
    pub name: Option<String>,
    /// Folder of the build scripts for JavaScript, Python and C [default: the `scripts/` of
    /// the wasmgate checkout the binary was built in, or above the current folder].
    #[arg(long, env = "WASMGATE_SCRIPTS")]
    pub scripts: Option<PathBuf>,
    /// API token of an attached gateway that has `api_token` set.
    #[arg(long, env = "WASMGATE_API_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Configuration file for a gateway `wasmgate dev` starts.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Quiet time after the last change before building, in ms: an editor's save burst
    /// (write, rename, chmod of a backup) builds once.
    #[arg(long, default_value_t = 100)]
    pub settle_ms: u64,
    /// How long to wait for an installed version to serve, in seconds (a cold compile of an
    /// 18 MB Python component takes tens of seconds on a busy machine).
    #[arg(long, default_value_t = 120)]
    pub load_timeout_s: u64,
}

/// Why `wasmgate dev` cannot go on (a failed build is not one: the loop goes on).
#[derive(Debug, thiserror::Error)]
pub enum DevError {
    /// The source folder does not exist.
    #[error("{0} is not a folder")]
    NotADirectory(PathBuf),
    /// No language marker in the folder.
    #[error(
        "{0}: no Cargo.toml (Rust), package.json or plugin.js (JavaScript), pyproject.toml or \
         app.py (Python) or *.c file (C)"
    )]
    UnknownLanguage(PathBuf),
    /// The plugin name cannot name a plugin file.
    #[error(
        "{0:?} cannot name a plugin: ASCII letters, digits, '-', '_' and '.', not starting with \
         '.' (pass --name)"
    )]
    BadName(String),
    /// A toolchain is missing or broken.
    #[error("{0}")]
    Toolchain(String),
    /// The build scripts were not found.
    #[error("build scripts: {0}")]
    Scripts(String),
    /// The compiler refused the sources (its errors are on the terminal).
    #[error("the build failed (exit status {0:?})")]
    BuildFailed(Option<i32>),
    /// The source watcher could not start.
    #[error("watching the sources: {0}")]
    Watch(String),
    /// Nothing answers at the gateway's address.
    #[error("nothing answers at {0}")]
    Unreachable(String),
    /// The gateway answered something unexpected, or could not be started.
    #[error("gateway: {0}")]
    Gateway(String),
    /// A file operation failed.
    #[error("{}: {cause}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The error (in the message, not a separate cause: said once).
        cause: std::io::Error,
    },
}

impl DevError {
    fn io(path: &Path, cause: std::io::Error) -> DevError {
        DevError::Io {
            path: path.to_owned(),
            cause,
        }
    }
}

/// Print one line for the author, flushed at once (the terminal, or a test reading the pipe).
#[allow(clippy::print_stdout)]
pub(crate) fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Run the loop until Ctrl-C or SIGTERM.
pub async fn run(args: DevArgs) -> Result<(), DevError> {
    let src = std::fs::canonicalize(&args.src).map_err(|e| DevError::io(&args.src, e))?;
    let language = detect(&src)?;
    let plugins = gateway::plugins_dir(&args.plugins)?;
    let work = std::env::temp_dir().join(format!("wasmgate-dev-{}", std::process::id()));
    std::fs::create_dir_all(&work).map_err(|e| DevError::io(&work, e))?;
    let result = run_in(&args, &src, language, &plugins, &work).await;
    let _ = std::fs::remove_dir_all(&work);
    result
}

async fn run_in(
    args: &DevArgs,
    src: &Path,
    language: Language,
    plugins: &Path,
    work: &Path,
) -> Result<(), DevError> {
    let recipe = Recipe::new(
        src,
        language,
        args.name.as_deref(),
        args.scripts.as_deref(),
        work,
    )
    .await?;
    say(&format!(
        "wasmgate dev: {language} plugin {} from {} -> {}",
        recipe.name,
        src.display(),
        plugins.join(format!("{}.wasm", recipe.name)).display()
    ));
    let mut gw = Gateway::attach_or_start(
        &args.gateway,
        args.token.clone(),
        plugins,
        args.config.as_deref(),
        &recipe.name,
    )
    .await?;
    // Watching starts before the first build, so a save during that build is not missed.
    let mut watcher = SourceWatcher::new(src)?;
    let settle = Duration::from_millis(args.settle_ms);
    let dev = Dev {
        recipe,
        plugins: plugins.to_owned(),
        load_timeout: Duration::from_secs(args.load_timeout_s),
    };
    let stop = crate::server::shutdown_signal();
    tokio::pin!(stop);
    let mut next = Some(Instant::now());
    let result = loop {
        let save = match next.take() {
            Some(save) => save,
            None => tokio::select! {
                () = &mut stop => break Ok(()),
                status = gw.exited() => {
                    break Err(DevError::Gateway(format!("the gateway exited ({status})")));
                }
                burst = watcher.next_burst(settle) => match burst {
                    Some(save) => save,
                    None => break Err(DevError::Watch("the watcher stopped".into())),
                },
            },
        };
        tokio::select! {
            () = &mut stop => break Ok(()),
            r = dev.cycle(&gw, save) => {
                if let Err(e) = r {
                    say(&format!("error: {e}"));
                }
            }
        }
        next = watcher.pending(settle).await;
        if next.is_none() {
            say("watching for changes (Ctrl-C stops)");
        }
    };
    gw.stop().await;
    say("wasmgate dev: stopped");
    result
}

struct Dev {
    recipe: Recipe,
    plugins: PathBuf,
    load_timeout: Duration,
}

impl Dev {
    /// Build, install and confirm one version. Only errors talking to the gateway are returned;
    /// a failed build or load is reported and the loop goes on.
    async fn cycle(&self, gw: &Gateway, save: Instant) -> Result<(), DevError> {
        let name = &self.recipe.name;
        say(&format!("building {name} ..."));
        let artifact = match self.recipe.build().await {
            Ok(path) => path,
            Err(DevError::BuildFailed(_)) => {
                let before = gw.state(name).await?;
                say(&match before.version {
                    Some(v) => format!(
                        "build failed: {name} keeps serving its previous version ({})",
                        short(&v)
                    ),
                    None => format!("build failed: {name} has no version serving yet"),
                });
                return Ok(());
            }
            Err(e) => {
                say(&format!("build failed: {e}"));
                return Ok(());
            }
        };
        let bytes = std::fs::read(&artifact).map_err(|e| DevError::io(&artifact, e))?;
        let hash = blake3::hash(&bytes).to_hex().to_string();
        let before = gw.state(name).await?;
        if before.version.as_deref() == Some(hash.as_str()) {
            say(&format!(
                "unchanged: {name} already serves this build ({})",
                short(&hash)
            ));
            return Ok(());
        }
        install(&self.plugins, name, &bytes)?;
        match gw
            .wait_serving(name, &hash, before.last_error.as_deref(), self.load_timeout)
            .await?
        {
            Outcome::Served => say(&format!(
                "serving {name} ({} ms after save)",
                save.elapsed().as_millis()
            )),
            Outcome::Failed(e) => say(&format!(
                "load failed, the previous version (if any) keeps serving: {e}"
            )),
            Outcome::TimedOut => say(&format!(
                "{name} ({}) is not serving after {} s: is the gateway watching {}?",
                short(&hash),
                self.load_timeout.as_secs(),
                self.plugins.display()
            )),
        }
        Ok(())
    }
}

fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

/// Put `bytes` in place as `<plugins>/<name>.wasm` atomically: written to a hidden temporary
/// file of the same folder (the gateway ignores it), then renamed over the old file, which the
/// gateway loads at once (`IN_MOVED_TO`), never half-written.
pub fn install(plugins: &Path, name: &str, bytes: &[u8]) -> Result<PathBuf, DevError> {
    let tmp = plugins.join(format!(".{name}.wasm.dev-tmp"));
    let dst = plugins.join(format!("{name}.wasm"));
    std::fs::write(&tmp, bytes).map_err(|e| DevError::io(&tmp, e))?;
    std::fs::rename(&tmp, &dst).map_err(|e| DevError::io(&dst, e))?;
    Ok(dst)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_replaces_the_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("hello.wasm"), b"v1").expect("write");
        let dst = install(dir.path(), "hello", b"v2").expect("install");
        assert_eq!(std::fs::read(dst).expect("read"), b"v2");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, ["hello.wasm"]);
    }
}
