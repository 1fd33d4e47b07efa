//! The JavaScript, Python and C chat plugins (`plugins/{js,py,c}-chat`), built from source by
//! `scripts/build-<lang>-plugin.sh` for the tests that run them through the gateway.
//! [`build_source`] builds any plugin folder the same way: the benchmark's smoke test
//! (`bench/tests/smoke.rs`) includes this module for its JavaScript and Python echo plugins.
//!
//! Each component is built at most once per test binary (a `OnceCell` per language and
//! version), into `<target>/tmp/lang-plugins/`, named after a hash of everything the build
//! reads (the plugin's folder, the build scripts, `wit/`): a later run whose sources did not
//! change reuses the file, so only the first run pays the builds (Python ~20 s). A missing
//! toolchain is an error carrying `scripts/toolchains.sh <lang> --check`'s own message: the
//! tests fail, they never skip (`scripts/test.sh` installs the toolchains first).
//!
//! Version 2 of a plugin is built from a copy of its folder whose default version (the `version`
//! event's answer when the init config names none) is `"2"` instead of `"1"`: a different
//! component, as a deployment of new code would be.
#![allow(dead_code)]

use std::collections::hash_map::DefaultHasher;
use std::hash::Hasher;
use std::path::{Path, PathBuf};
use std::process::Command;

use tokio::sync::OnceCell;

/// A guest language with a chat plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// `plugins/js-chat`, QuickJS through componentize-qjs.
    Js,
    /// `plugins/py-chat`, CPython through componentize-py.
    Python,
    /// `plugins/c-chat`, clang + wasi-libc + wit-bindgen c.
    C,
}

impl Lang {
    fn index(self) -> usize {
        match self {
            Lang::Js => 0,
            Lang::Python => 1,
            Lang::C => 2,
        }
    }

    /// The plugin's name: its folder under `plugins/`, its file `<name>.wasm`, the system it
    /// serves.
    pub fn plugin(self) -> &'static str {
        match self {
            Lang::Js => "js-chat",
            Lang::Python => "py-chat",
            Lang::C => "c-chat",
        }
    }

    /// The argument of `scripts/toolchains.sh` for this language.
    pub fn toolchain(self) -> &'static str {
        match self {
            Lang::Js => "js",
            Lang::Python => "python",
            Lang::C => "c",
        }
    }

    /// The build script, relative to the repository.
    fn script(self) -> &'static str {
        match self {
            Lang::Js => "scripts/build-js-plugin.sh",
            Lang::Python => "scripts/build-py-plugin.sh",
            Lang::C => "scripts/build-c-plugin.sh",
        }
    }

    /// The plugin's answer to the text frame `hello`.
    pub fn hello(self) -> &'static str {
        match self {
            Lang::Js => "hello from javascript",
            Lang::Python => "hello from python",
            Lang::C => "hello from c",
        }
    }

    /// Where the plugin's source says its default version, and what version 2 says instead.
    fn version_patch(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Lang::Js => (
                "plugin.js",
                "let configVersion = \"1\";",
                "let configVersion = \"2\";",
            ),
            Lang::Python => ("app.py", "_version = \"1\"", "_version = \"2\""),
            Lang::C => (
                "plugin.c",
                "g_version ? g_version : \"1\"",
                "g_version ? g_version : \"2\"",
            ),
        }
    }
}

/// The repository's root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".."))
}

/// Where built components are kept between runs: `<target>/tmp/lang-plugins`.
/// `CARGO_TARGET_TMPDIR` exists for integration tests; other targets (the measuring example)
/// find `<target>/tmp` from `OUT_DIR`, which is `<target>/<profile>/build/<pkg>-<hash>/out`.
pub fn build_root() -> PathBuf {
    let tmp = match (option_env!("CARGO_TARGET_TMPDIR"), option_env!("OUT_DIR")) {
        (Some(t), _) => PathBuf::from(t),
        (None, Some(out)) => Path::new(out)
            .ancestors()
            .nth(4)
            .map(|t| t.join("tmp"))
            .unwrap_or_else(|| repo().join("target/tmp")),
        (None, None) => repo().join("target/tmp"),
    };
    tmp.join("lang-plugins")
}

/// Built components, per language and version (1 or 2).
static BUILDS: [[OnceCell<Result<PathBuf, String>>; 2]; 3] =
    [const { [const { OnceCell::const_new() }; 2] }; 3];

/// The component of `lang`'s chat plugin, version `version` (1 or 2), built if needed.
/// Panics with the build's (or the toolchain check's) output when it cannot be built.
pub async fn component(lang: Lang, version: u8) -> PathBuf {
    assert!(version == 1 || version == 2, "versions are 1 and 2");
    let cell = &BUILDS[lang.index()][usize::from(version - 1)];
    let built = cell
        .get_or_init(|| async move {
            tokio::task::spawn_blocking(move || build(lang, version, &build_root()))
                .await
                .unwrap_or_else(|e| Err(format!("build task: {e}")))
        })
        .await;
    match built {
        Ok(path) => path.clone(),
        Err(e) => panic!(
            "{} version {version} could not be built:\n{e}",
            lang.plugin()
        ),
    }
}

/// Hash every file under `dir` (sorted by path; `__pycache__`, `.bindings` and `*.wasm`
/// skipped: build by-products) into `h`.
fn hash_dir(h: &mut DefaultHasher, root: &Path, dir: &Path) -> Result<(), String> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| format!("read {}: {e}", dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name == "__pycache__" || name == ".bindings" || name.ends_with(".wasm") {
            continue;
        }
        if path.is_dir() {
            hash_dir(h, root, &path)?;
        } else {
            let rel = path.strip_prefix(root).unwrap_or(&path);
            h.write(rel.to_string_lossy().as_bytes());
            h.write_u8(0);
            let bytes =
                std::fs::read(&path).map_err(|e| format!("read {}: {e}", path.display()))?;
            h.write(&bytes);
            h.write_u64(bytes.len() as u64);
        }
    }
    Ok(())
}

/// The cache key of a build: the plugin's folder, the scripts the build runs, the WIT.
fn source_hash(lang: Lang, source: &Path, repo: &Path) -> Result<u64, String> {
    let mut h = DefaultHasher::new();
    hash_dir(&mut h, source, source)?;
    let wit = repo.join("wit");
    hash_dir(&mut h, &wit, &wit)?;
    for script in [
        lang.script(),
        "scripts/check-plugin.sh",
        "scripts/toolchains.sh",
        "scripts/js-toolchain/package-lock.json",
    ] {
        let path = repo.join(script);
        let bytes = std::fs::read(&path).map_err(|e| format!("read {}: {e}", path.display()))?;
        h.write(&bytes);
    }
    Ok(h.finish())
}

/// `scripts/toolchains.sh <lang> --check`: installs nothing, says what is missing.
fn check_toolchain(lang: Lang, repo: &Path) -> Result<(), String> {
    let out = Command::new(repo.join("scripts/toolchains.sh"))
        .args([lang.toolchain(), "--check"])
        .current_dir(repo)
        .output()
        .map_err(|e| format!("run scripts/toolchains.sh: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "the {} toolchain is missing; install it with `scripts/toolchains.sh {}`:\n{}{}",
        lang.toolchain(),
        lang.toolchain(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}

/// A copy of the plugin's folder answering `version` with `"2"`.
fn version_2_source(lang: Lang, repo: &Path, into: &Path) -> Result<PathBuf, String> {
    let source = repo.join("plugins").join(lang.plugin());
    let copy = into.join(lang.plugin());
    std::fs::create_dir_all(&copy).map_err(|e| format!("create {}: {e}", copy.display()))?;
    for entry in std::fs::read_dir(&source)
        .map_err(|e| format!("read {}: {e}", source.display()))?
        .filter_map(Result::ok)
    {
        let path = entry.path();
        if path.is_file() {
            let dst = copy.join(entry.file_name());
            std::fs::copy(&path, &dst).map_err(|e| format!("copy {}: {e}", path.display()))?;
        }
    }
    let (file, from, to) = lang.version_patch();
    let path = copy.join(file);
    let text =
        std::fs::read_to_string(&path).map_err(|e| format!("read {}: {e}", path.display()))?;
    if !text.contains(from) {
        return Err(format!(
            "{}/{file} no longer contains `{from}`: update version_patch in tests/tests/lang/mod.rs",
            source.display()
        ));
    }
    std::fs::write(&path, text.replace(from, to))
        .map_err(|e| format!("write {}: {e}", path.display()))?;
    Ok(copy)
}

/// Build `lang`'s chat plugin, version `version`, into `root` unless an up-to-date build is
/// there.
pub fn build(lang: Lang, version: u8, root: &Path) -> Result<PathBuf, String> {
    let repo = repo();
    let name = format!("{}-v{version}", lang.plugin());
    if version == 1 {
        return build_source(lang, &repo.join("plugins").join(lang.plugin()), &name, root);
    }
    std::fs::create_dir_all(root).map_err(|e| format!("create {}: {e}", root.display()))?;
    let scratch = tempfile::tempdir_in(root).map_err(|e| format!("scratch folder: {e}"))?;
    let source = version_2_source(lang, &repo, scratch.path())?;
    build_source(lang, &source, &name, root)
}

/// Build the `lang` plugin whose sources are in `source` with the language's build script, into
/// `root` as `<name>-<hash of the inputs>.wasm`, unless that file exists. Older builds under
/// `name` are removed. Also used by the benchmark's smoke test for its echo plugins.
pub fn build_source(lang: Lang, source: &Path, name: &str, root: &Path) -> Result<PathBuf, String> {
    let repo = repo();
    let hash = source_hash(lang, source, &repo)?;
    let prefix = format!("{name}-");
    let out = root.join(format!("{prefix}{hash:016x}.wasm"));
    if out.is_file() {
        return Ok(out);
    }
    std::fs::create_dir_all(root).map_err(|e| format!("create {}: {e}", root.display()))?;
    check_toolchain(lang, &repo)?;
    let scratch = tempfile::tempdir_in(root).map_err(|e| format!("scratch folder: {e}"))?;
    let tmp = scratch.path().join("out.wasm");
    let started = std::time::Instant::now();
    let result = Command::new(repo.join(lang.script()))
        .arg(source)
        .arg(&tmp)
        .current_dir(&repo)
        .output()
        .map_err(|e| format!("run {}: {e}", lang.script()))?;
    if !result.status.success() {
        return Err(format!(
            "{} {} failed ({}):\n{}{}",
            lang.script(),
            source.display(),
            result.status,
            String::from_utf8_lossy(&result.stdout),
            String::from_utf8_lossy(&result.stderr)
        ));
    }
    std::fs::rename(&tmp, &out).map_err(|e| format!("rename to {}: {e}", out.display()))?;
    note(&format!(
        "built {} in {:.1?}",
        out.display(),
        started.elapsed()
    ));
    // Older builds of the same plugin and version are stale: drop them (Python's are 18 MB).
    if let Ok(entries) = std::fs::read_dir(root) {
        for e in entries.filter_map(Result::ok) {
            let file = e.file_name().to_string_lossy().into_owned();
            if file.starts_with(&prefix) && file.ends_with(".wasm") && e.path() != out {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    Ok(out)
}

/// Say on the test's stderr (captured by the test harness, shown on failure) what was built.
#[allow(clippy::print_stderr)]
fn note(what: &str) {
    eprintln!("lang-plugins: {what}");
}
