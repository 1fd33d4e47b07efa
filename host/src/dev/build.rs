//! Building a plugin with its language's documented command.
//!
//! - Rust: `cargo build --target wasm32-wasip2 --release --manifest-path <dir>/Cargo.toml`; the
//!   component is `<target dir>/wasm32-wasip2/release/<lib name>.wasm`, both read from
//!   `cargo metadata` (so `CARGO_TARGET_DIR`, a workspace the crate belongs to, and a lib name
//!   other than the package name all work).
//! - JavaScript, Python, C: `scripts/build-{js,py,c}-plugin.sh <dir> <out.wasm>`, the scripts the
//!   README documents (they install or check their toolchain under `$WASMGATE_TOOLCHAINS`).
//!
//! The compiler's output goes straight to the terminal (inherited stdout/stderr), so an author
//! sees the errors as the compiler prints them, colours included.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::Value;
use tokio::process::Command;

use super::DevError;
use super::detect::{self, Language};

/// The scripts of the repository `wasmgate dev` builds JavaScript, Python and C plugins with.
const PROBE: &str = "build-js-plugin.sh";

/// How to build one plugin source folder.
#[derive(Debug, Clone)]
pub struct Recipe {
    /// The source folder.
    pub src: PathBuf,
    /// The plugin's name (`<name>.wasm` in the plugins folder).
    pub name: String,
    how: How,
}

#[derive(Debug, Clone)]
enum How {
    Cargo {
        manifest: PathBuf,
        artifact: PathBuf,
    },
    Script {
        script: PathBuf,
        out: PathBuf,
    },
}

impl Recipe {
    /// Work out how to build `src` (written in `language`), checking the toolchain first so a
    /// missing one is one clear error instead of a failed build. `scripts` is the folder of the
    /// build scripts (needed for JavaScript, Python and C only); script builds write their
    /// output into `work`.
    pub async fn new(
        src: &Path,
        language: Language,
        name: Option<&str>,
        scripts: Option<&Path>,
        work: &Path,
    ) -> Result<Recipe, DevError> {
        match language.script() {
            None => {
                check_rust(src).await?;
                let (package, artifact) = cargo_metadata(src).await?;
                let name = match name {
                    Some(n) => detect::check_name(n)?,
                    None => detect::check_name(&package)?,
                };
                Ok(Recipe {
                    src: src.to_owned(),
                    name,
                    how: How::Cargo {
                        manifest: src.join("Cargo.toml"),
                        artifact,
                    },
                })
            }
            Some(script) => {
                let dir = find_scripts(scripts)?;
                let name = match name {
                    Some(n) => detect::check_name(n)?,
                    None => detect::name_from_dir(src)?,
                };
                Ok(Recipe {
                    src: src.to_owned(),
                    how: How::Script {
                        script: dir.join(script),
                        out: work.join(format!("{name}.wasm")),
                    },
                    name,
                })
            }
        }
    }

    /// Build once. `Ok(path)` is the finished component; `Err(BuildFailed)` means the compiler
    /// refused the sources (its errors are already on the terminal).
    pub async fn build(&self) -> Result<PathBuf, DevError> {
        let (mut cmd, output) = match &self.how {
            How::Cargo { manifest, artifact } => {
                let mut cmd = Command::new(cargo());
                cmd.args(["build", "--target", "wasm32-wasip2", "--release"])
                    .arg("--manifest-path")
                    .arg(manifest);
                // Incremental release builds for the loop, unless the author chose: a one-line
                // edit of the template rebuilt in 1.04 s instead of 1.78 s (shared 2-core
                // machine, SCHED_IDLE). Only the crate itself is built incrementally; the first
                // build after switching rebuilds it once.
                if std::env::var_os("CARGO_PROFILE_RELEASE_INCREMENTAL").is_none() {
                    cmd.env("CARGO_PROFILE_RELEASE_INCREMENTAL", "true");
                }
                (cmd, artifact.clone())
            }
            How::Script { script, out } => {
                // A stale output of the previous build must not pass for this one.
                let _ = std::fs::remove_file(out);
                let mut cmd = Command::new("bash");
                cmd.arg(script).arg(&self.src).arg(out);
                (cmd, out.clone())
            }
        };
        cmd.current_dir(&self.src)
            .stdin(Stdio::null())
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        let status = cmd
            .status()
            .await
            .map_err(|e| DevError::Toolchain(format!("could not run the build: {e}")))?;
        if !status.success() {
            return Err(DevError::BuildFailed(status.code()));
        }
        if !output.is_file() {
            return Err(DevError::Toolchain(format!(
                "the build succeeded but wrote no {}",
                output.display()
            )));
        }
        Ok(output)
    }
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// Cargo is there, and so is the wasm32-wasip2 target of the toolchain `src` builds with (its
/// `rust-toolchain.toml`, if any, decides which one).
async fn check_rust(src: &Path) -> Result<(), DevError> {
    let cargo_ok = Command::new(cargo())
        .arg("--version")
        .current_dir(src)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await;
    if !cargo_ok.is_ok_and(|s| s.success()) {
        return Err(DevError::Toolchain(
            "cargo not found: install Rust with rustup (https://rustup.rs)".into(),
        ));
    }
    let Ok(out) = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .current_dir(src)
        .output()
        .await
    else {
        return Ok(()); // no rustup: a distribution's Rust; cargo will say what is missing
    };
    let installed = String::from_utf8_lossy(&out.stdout);
    if out.status.success() && !installed.lines().any(|l| l.trim() == "wasm32-wasip2") {
        return Err(DevError::Toolchain(
            "the Rust target wasm32-wasip2 is not installed: rustup target add wasm32-wasip2"
                .into(),
        ));
    }
    Ok(())
}

/// The package of `src/Cargo.toml` and the path its component is built to.
async fn cargo_metadata(src: &Path) -> Result<(String, PathBuf), DevError> {
    let manifest = src.join("Cargo.toml");
    let out = Command::new(cargo())
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .arg("--manifest-path")
        .arg(&manifest)
        .current_dir(src)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| DevError::Toolchain(format!("cargo metadata: {e}")))?;
    if !out.status.success() {
        return Err(DevError::Toolchain(format!(
            "cargo metadata failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    let meta: Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| DevError::Toolchain(format!("cargo metadata: {e}")))?;
    rust_artifact(&meta, &manifest)
}

/// Pick the package of `manifest` out of `cargo metadata` and the file of its cdylib.
fn rust_artifact(meta: &Value, manifest: &Path) -> Result<(String, PathBuf), DevError> {
    let wanted = std::fs::canonicalize(manifest).unwrap_or_else(|_| manifest.to_owned());
    let packages = meta["packages"].as_array().cloned().unwrap_or_default();
    let is_wanted = |p: &&Value| {
        p["manifest_path"].as_str().is_some_and(|m| {
            std::fs::canonicalize(m).unwrap_or_else(|_| PathBuf::from(m)) == wanted
        })
    };
    let package = packages
        .iter()
        .find(is_wanted)
        .or_else(|| packages.first().filter(|_| packages.len() == 1))
        .ok_or_else(|| DevError::Toolchain(format!("no package in {}", manifest.display())))?;
    let name = package["name"].as_str().unwrap_or_default().to_owned();
    let lib = package["targets"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|t| {
            t["kind"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k == "cdylib"))
        })
        .and_then(|t| t["name"].as_str())
        .ok_or_else(|| {
            DevError::Toolchain(format!(
                "package {name} builds no component: add `[lib] crate-type = [\"cdylib\"]`"
            ))
        })?;
    let target_dir = meta["target_directory"]
        .as_str()
        .ok_or_else(|| DevError::Toolchain("cargo metadata has no target_directory".into()))?;
    let artifact = Path::new(target_dir)
        .join("wasm32-wasip2/release")
        .join(format!("{}.wasm", lib.replace('-', "_")));
    Ok((name, artifact))
}

/// The folder of the build scripts: `explicit` (`--scripts`, `WASMGATE_SCRIPTS`) if given, else
/// the `scripts/` of the repository the binary was built in (`target/<profile>/wasmgate` looks
/// up its ancestors), else the `scripts/` of the current folder or one of its ancestors (a
/// repository checkout). An installed `wasmgate` with no checkout nearby needs `--scripts`.
pub fn find_scripts(explicit: Option<&Path>) -> Result<PathBuf, DevError> {
    if let Some(dir) = explicit {
        return if dir.join(PROBE).is_file() {
            Ok(dir.to_owned())
        } else {
            Err(DevError::Scripts(format!(
                "{} has no {PROBE}",
                dir.display()
            )))
        };
    }
    let exe = std::env::current_exe().ok();
    let cwd = std::env::current_dir().ok();
    let starts = [exe.as_deref().and_then(Path::parent), cwd.as_deref()];
    for start in starts.into_iter().flatten() {
        for dir in start.ancestors() {
            let scripts = dir.join("scripts");
            if scripts.join(PROBE).is_file() {
                return Ok(scripts);
            }
        }
    }
    Err(DevError::Scripts(
        "no scripts/build-*-plugin.sh next to the wasmgate binary or above the current folder: \
         pass --scripts <wasmgate checkout>/scripts (or set WASMGATE_SCRIPTS)"
            .into(),
    ))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_component_is_the_cdylib_under_the_target_dir() {
        let meta = json!({
            "target_directory": "/t",
            "packages": [{
                "name": "my-plugin",
                "manifest_path": "/nowhere/my-plugin/Cargo.toml",
                "targets": [{"name": "my-plugin", "kind": ["cdylib"]}],
            }],
        });
        let (name, artifact) =
            rust_artifact(&meta, Path::new("/nowhere/my-plugin/Cargo.toml")).expect("artifact");
        assert_eq!(name, "my-plugin");
        assert_eq!(
            artifact,
            Path::new("/t/wasm32-wasip2/release/my_plugin.wasm")
        );
    }

    #[test]
    fn a_crate_without_a_cdylib_is_explained() {
        let meta = json!({
            "target_directory": "/t",
            "packages": [{"name": "x", "manifest_path": "/n/x/Cargo.toml",
                          "targets": [{"name": "x", "kind": ["lib"]}]}],
        });
        let err = rust_artifact(&meta, Path::new("/n/x/Cargo.toml")).expect_err("no cdylib");
        assert!(err.to_string().contains("cdylib"), "{err}");
    }

    #[test]
    fn scripts_are_found_in_this_checkout_or_refused_clearly() {
        let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts");
        assert!(find_scripts(Some(&here)).is_ok());
        let err = find_scripts(Some(Path::new("/nonexistent"))).expect_err("no scripts");
        assert!(err.to_string().contains(PROBE), "{err}");
    }
}
