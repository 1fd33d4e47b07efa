//! Which language a plugin source folder is written in, and what its plugin is called.
//!
//! The markers are the ones each language's build already needs: `Cargo.toml` (a Rust crate
//! built with `cargo build --target wasm32-wasip2 --release`), `package.json` or `plugin.js` (a
//! JavaScript plugin whose entry is `plugin.js`; the template has no `package.json`),
//! `pyproject.toml` or `app.py` (a Python plugin whose entry is `app.py`), `*.c` files (a C
//! plugin). They are tried in that order, so a Rust crate with a `package.json` for its web
//! assets is still Rust.

use std::fmt;
use std::path::Path;

use super::DevError;
use crate::plugin::valid_plugin_name;

/// A plugin language `wasmgate dev` can build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    /// A cargo crate (`Cargo.toml`).
    Rust,
    /// A JavaScript plugin (`package.json` or `plugin.js`, entry `plugin.js`).
    JavaScript,
    /// A Python plugin (`pyproject.toml` or `app.py`, entry `app.py`).
    Python,
    /// A C plugin (`*.c` files).
    C,
}

impl Language {
    /// The build script of `scripts/` for the languages built by one (Rust is built by cargo).
    pub fn script(self) -> Option<&'static str> {
        match self {
            Language::Rust => None,
            Language::JavaScript => Some("build-js-plugin.sh"),
            Language::Python => Some("build-py-plugin.sh"),
            Language::C => Some("build-c-plugin.sh"),
        }
    }
}

impl fmt::Display for Language {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Language::Rust => "Rust",
            Language::JavaScript => "JavaScript",
            Language::Python => "Python",
            Language::C => "C",
        })
    }
}

/// The language of the plugin whose sources are in `dir`.
pub fn detect(dir: &Path) -> Result<Language, DevError> {
    if !dir.is_dir() {
        return Err(DevError::NotADirectory(dir.to_owned()));
    }
    let has = |file: &str| dir.join(file).is_file();
    if has("Cargo.toml") {
        return Ok(Language::Rust);
    }
    if has("package.json") || has("plugin.js") {
        return Ok(Language::JavaScript);
    }
    if has("pyproject.toml") || has("app.py") {
        return Ok(Language::Python);
    }
    let entries = std::fs::read_dir(dir).map_err(|e| DevError::io(dir, e))?;
    let has_c = entries
        .filter_map(Result::ok)
        .any(|e| e.path().extension().is_some_and(|x| x == "c") && e.path().is_file());
    if has_c {
        return Ok(Language::C);
    }
    Err(DevError::UnknownLanguage(dir.to_owned()))
}

/// The plugin name for a folder built by a script: the folder's name, made a valid plugin file
/// stem (`my plugin` → `my-plugin`). Rust plugins are named after their package instead.
pub fn name_from_dir(dir: &Path) -> Result<String, DevError> {
    let raw = dir
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| DevError::BadName(dir.display().to_string()))?;
    let name: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .collect();
    check_name(&name)
}

/// `name` if it can name a plugin file (`<name>.wasm` in the plugins folder).
pub fn check_name(name: &str) -> Result<String, DevError> {
    if valid_plugin_name(name) && name.len() <= 250 {
        Ok(name.to_owned())
    } else {
        Err(DevError::BadName(name.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(files: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        for f in files {
            std::fs::write(dir.path().join(f), b"").expect("write");
        }
        dir
    }

    #[test]
    fn each_language_is_found_by_its_marker() {
        let cases: &[(&[&str], Language)] = &[
            (&["Cargo.toml", "README.md"], Language::Rust),
            (&["package.json", "plugin.js"], Language::JavaScript),
            (&["plugin.js", "jsconfig.json"], Language::JavaScript),
            (&["pyproject.toml", "app.py"], Language::Python),
            (&["app.py"], Language::Python),
            (&["plugin.c", "util.h"], Language::C),
            // Cargo.toml wins over a package.json of web assets.
            (&["Cargo.toml", "package.json"], Language::Rust),
        ];
        for (files, want) in cases {
            let dir = folder(files);
            assert_eq!(detect(dir.path()).expect("detect"), *want, "{files:?}");
        }
    }

    #[test]
    fn a_folder_without_a_marker_is_refused() {
        let dir = folder(&["notes.txt", "plugin.h", "index.js"]);
        let err = detect(dir.path()).expect_err("no language");
        assert!(matches!(err, DevError::UnknownLanguage(_)), "{err}");
        let missing = detect(&dir.path().join("nope")).expect_err("missing");
        assert!(matches!(missing, DevError::NotADirectory(_)), "{missing}");
    }

    #[test]
    fn script_plugins_are_named_after_their_folder() {
        assert_eq!(
            name_from_dir(Path::new("/src/js-hello")).expect("name"),
            "js-hello"
        );
        assert_eq!(
            name_from_dir(Path::new("/src/my plugin")).expect("name"),
            "my-plugin"
        );
        assert!(name_from_dir(Path::new("/src/.hidden")).is_err());
        assert!(check_name("a/b").is_err());
    }
}
