//! Builds the WebAssembly components the end-to-end tests load: the test guests under
//! `tests/guests/`, the example plugins `plugins/chat` and `plugins/quiz`, and the `versioned`
//! guest twice (versions 1 and 2, distinct binaries) for hot-reload tests.
//!
//! Runs `cargo build --target wasm32-wasip2 --release` with its own target folder
//! (`<target>/guests`): the outer cargo holds the lock of the main target folder while build
//! scripts run, so sharing it would deadlock. Each component is copied into `OUT_DIR` and its path
//! exported as `GUEST_<NAME>` (`GUEST_VERSIONED_1`, `GUEST_VERSIONED_2` for the two versions).
#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// Packages built once, exported as `GUEST_<NAME>`.
const PACKAGES: &[&str] = &[
    "hostcalls",
    "looper",
    "hog",
    "panicker",
    "spammer",
    "badinit",
    "chat",
    "quiz",
    "rt-inittrap",
    "rt-connecttrap",
    "legacy01",
    "contract02",
];

/// Environment a build script gets that must not leak into the nested cargo: flags meant for
/// the host target, wrappers of `cargo clippy`, the outer jobserver and target folder.
const SCRUB: &[&str] = &[
    "CARGO_ENCODED_RUSTFLAGS",
    "RUSTFLAGS",
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET",
    "CARGO_BUILD_RUSTFLAGS",
    "CARGO_MAKEFLAGS",
    "MAKEFLAGS",
    "MFLAGS",
    "RUSTC_WORKSPACE_WRAPPER",
    "CARGO_PRIMARY_PACKAGE",
    "WASMGATE_TEST_VERSION",
];

fn cargo_build(root: &Path, target_dir: &Path, packages: &[&str], version: Option<&str>) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root)
        .args(["build", "--release", "--target", "wasm32-wasip2"])
        .arg("--target-dir")
        .arg(target_dir);
    for p in packages {
        cmd.args(["-p", p]);
    }
    for var in SCRUB {
        cmd.env_remove(var);
    }
    if let Some(v) = version {
        cmd.env("WASMGATE_TEST_VERSION", v);
    }
    let out = cmd.output().expect("run cargo for the test guests");
    if !out.status.success() {
        panic!(
            "building test guests {packages:?} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn export(built: &Path, out_dir: &Path, package: &str, var: &str, file: &str) {
    let src = built.join(format!("{}.wasm", package.replace('-', "_")));
    let dst = out_dir.join(file);
    std::fs::copy(&src, &dst)
        .unwrap_or_else(|e| panic!("copy {} to {}: {e}", src.display(), dst.display()));
    println!("cargo:rustc-env={var}={}", dst.display());
}

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest.parent().unwrap().to_path_buf();
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    // OUT_DIR is <target>/<profile>/build/<pkg>-<hash>/out.
    let target_dir = out_dir
        .ancestors()
        .nth(4)
        .map(|t| t.join("guests"))
        .unwrap_or_else(|| root.join("target/guests"));
    for watched in [
        "tests/guests",
        "guest-sdk",
        "wit",
        "plugins/chat",
        "plugins/quiz",
        "Cargo.lock",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    let built = target_dir.join("wasm32-wasip2/release");

    cargo_build(&root, &target_dir, PACKAGES, None);
    for p in PACKAGES {
        let var = format!("GUEST_{}", p.to_uppercase().replace('-', "_"));
        export(&built, &out_dir, p, &var, &format!("{p}.wasm"));
    }
    for v in ["1", "2"] {
        cargo_build(&root, &target_dir, &["versioned"], Some(v));
        export(
            &built,
            &out_dir,
            "versioned",
            &format!("GUEST_VERSIONED_{v}"),
            &format!("versioned-{v}.wasm"),
        );
    }
}
