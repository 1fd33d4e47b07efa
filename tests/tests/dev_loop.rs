//! `wasmgate dev` as an author runs it: the real binary on a copy of the Rust template in a temp
//! folder, with its own plugins folder and a free port. It starts a gateway; the first build
//! serves (a real WebSocket client gets the plugin's answer); an edit serves the new behaviour to
//! the same, still connected client; a syntax error prints the compiler's error and the old
//! version keeps serving; the fix serves again; SIGINT stops dev and the gateway it started.
#![allow(clippy::unwrap_used, clippy::print_stdout)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Client, wasmgate_bin};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The repository root.
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// A free port on 127.0.0.1.
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A copy of `templates/rust` as an outside author has it: its own workspace, the SDK by path.
fn template_copy(root: &Path) -> PathBuf {
    let src = root.join("devhello");
    std::fs::create_dir_all(src.join("src")).unwrap();
    std::fs::copy(
        repo().join("templates/rust/src/lib.rs"),
        src.join("src/lib.rs"),
    )
    .unwrap();
    let sdk = repo().join("guest-sdk");
    std::fs::write(
        src.join("Cargo.toml"),
        format!(
            "[package]\nname = \"devhello\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\
             publish = false\n\n[lib]\ncrate-type = [\"cdylib\"]\n\n[dependencies]\n\
             wasmgate-guest = {{ path = {:?} }}\nserde_json = \"1\"\n\n[workspace]\n",
            sdk.display().to_string()
        ),
    )
    .unwrap();
    // The repository's lock file (same dependency versions, no registry look-up) and toolchain.
    std::fs::copy(repo().join("Cargo.lock"), src.join("Cargo.lock")).unwrap();
    std::fs::copy(
        repo().join("rust-toolchain.toml"),
        src.join("rust-toolchain.toml"),
    )
    .unwrap();
    src
}

/// Everything `wasmgate dev` printed so far (stdout and stderr, line by line).
#[derive(Clone, Default)]
struct Output(Arc<Mutex<Vec<String>>>);

impl Output {
    fn follow(&self, child: &mut Child) {
        let out = child.stdout.take().unwrap();
        let err = child.stderr.take().unwrap();
        for stream in [
            Box::new(out) as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
            Box::new(err),
        ] {
            let lines = self.0.clone();
            tokio::spawn(async move {
                let mut reader = BufReader::new(stream).lines();
                while let Ok(Some(line)) = reader.next_line().await {
                    println!("dev| {line}");
                    lines.lock().unwrap().push(line);
                }
            });
        }
    }

    fn count(&self, needle: &str) -> usize {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }

    /// Wait until `needle` has been printed `n` times.
    async fn wait(&self, needle: &str, n: usize, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        while self.count(needle) < n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "wasmgate dev did not print {needle:?} {n} times within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The `<ms>` of the last `serving <name> (<ms> ms after save)` line.
    fn last_ms(&self) -> u64 {
        let lines = self.0.lock().unwrap();
        let line = lines
            .iter()
            .rev()
            .find(|l| l.contains("ms after save"))
            .unwrap();
        let inner = line.split('(').nth(1).unwrap();
        inner.split(' ').next().unwrap().parse().unwrap()
    }
}

/// Ask `hello` and return the greeting the plugin answers.
async fn greeting(client: &mut Client) -> String {
    client
        .send_text(r#"{"event":"hello","data":{"name":"ann"}}"#)
        .await;
    loop {
        let frame = client.recv_json().await;
        if frame["event"] == "hello" {
            return frame["data"]["greeting"].as_str().unwrap().to_owned();
        }
    }
}

/// Rewrite the template's greeting.
fn edit(src: &Path, from: &str, to: &str) {
    let path = src.join("src/lib.rs");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "{from:?} not in lib.rs");
    std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_builds_serves_and_hot_reloads_a_rust_plugin() {
    let bin = wasmgate_bin();
    let tmp = tempfile::tempdir().unwrap();
    let src = template_copy(tmp.path());
    let plugins = tmp.path().join("plugins");
    let port = free_port();
    let exe = std::env::current_exe().unwrap();
    // A target folder of its own, kept between runs: the first run compiles the SDK for wasm.
    let target = exe.ancestors().nth(3).unwrap().join("dev-loop");

    let mut dev = Command::new(&bin)
        .arg("dev")
        .arg(&src)
        .arg("--plugins")
        .arg(&plugins)
        .arg("--gateway")
        .arg(format!("http://127.0.0.1:{port}"))
        .env("CARGO_TARGET_DIR", &target)
        .env("CARGO_TERM_COLOR", "never")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let out = Output::default();
    out.follow(&mut dev);

    // First build: cold, it may compile the SDK and its dependencies.
    out.wait("started a gateway", 1, Duration::from_secs(60))
        .await;
    out.wait("serving devhello", 1, Duration::from_secs(900))
        .await;
    let url = format!("ws://127.0.0.1:{port}/api/websocket/ws?systemId=devhello");
    let mut client = Client::connect(&url).await;
    assert_eq!(greeting(&mut client).await, "hello ann");

    // An edit serves the new behaviour to the same connection.
    edit(
        &src,
        "format!(\"hello {name}\")",
        "format!(\"howdy {name}\")",
    );
    out.wait("serving devhello", 2, Duration::from_secs(120))
        .await;
    let first_edit_ms = out.last_ms();
    assert_eq!(greeting(&mut client).await, "howdy ann");

    // A syntax error: the compiler's error is printed, the old version keeps serving.
    edit(&src, "fn shout(", "fn shout( {");
    out.wait(
        "build failed: devhello keeps serving its previous version",
        1,
        Duration::from_secs(120),
    )
    .await;
    assert!(
        out.count("error") >= 2 && out.count("src/lib.rs") >= 1,
        "the compiler's error (with its file) is printed"
    );
    assert_eq!(greeting(&mut client).await, "howdy ann");

    // The fix serves again, still on the same connection.
    edit(&src, "fn shout( {", "fn shout(");
    edit(&src, "format!(\"howdy {name}\")", "format!(\"hey {name}\")");
    out.wait("serving devhello", 3, Duration::from_secs(120))
        .await;
    let fix_ms = out.last_ms();
    assert_eq!(greeting(&mut client).await, "hey ann");
    println!("save -> serving: edit {first_edit_ms} ms, fix {fix_ms} ms");

    // SIGINT (Ctrl-C) stops dev and the gateway it started.
    let pid = dev.id().unwrap();
    let status = std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = tokio::time::timeout(Duration::from_secs(20), dev.wait())
        .await
        .expect("dev exits after SIGINT")
        .unwrap();
    assert!(exit.success(), "dev exit status {exit}");
    let probe = tokio::net::TcpStream::connect(("127.0.0.1", port)).await;
    assert!(probe.is_err(), "the gateway dev started is stopped");
}
