//! The real `wasmgate` binary: configuration from a TOML file, `WASMGATE_*` variables and flags,
//! and a graceful stop on SIGTERM and SIGINT.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Start the binary and wait until it logs that it listens.
fn start(cmd: &mut Command) -> Child {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary starts");
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if line.contains("wasmgate listening") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(20))
        .expect("the gateway logs that it listens");
    child
}

fn signal(child: &Child, sig: &str) {
    let status = Command::new("kill")
        .args([format!("-{sig}"), child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "the gateway did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn config_file_env_and_flags_combine_and_sigterm_closes_clients_with_1001() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("wasmgate.toml");
    std::fs::write(
        &file,
        "[systems.fromfile]\n[systems.other]\nmax_connections = 5\n",
    )
    .unwrap();
    let port = free_port();
    let mut child = start(
        Command::new(env!("CARGO_BIN_EXE_wasmgate"))
            .arg("--config")
            .arg(&file)
            .env("WASMGATE_LISTEN", "127.0.0.1:1") // the flag below must win
            .env("WASMGATE_PING_INTERVAL", "150ms")
            // A variable of some other tool sharing the prefix: not a key, so not an error.
            .env("WASMGATE_ECHO_WASM", "/nowhere/echo.wasm")
            .args(["--listen", &format!("127.0.0.1:{port}")]),
    );
    let url = format!("ws://127.0.0.1:{port}/api/websocket/ws?systemId=fromfile");
    let (mut ws, _) = tokio_tungstenite::connect_async(&url)
        .await
        .expect("connects");
    let welcome = ws.next().await.unwrap().unwrap();
    assert!(welcome.to_text().unwrap().contains("clientId"));
    // WASMGATE_PING_INTERVAL=150ms from the environment: a ping arrives quickly.
    let ping = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            if let Some(Ok(Message::Ping(_))) = ws.next().await {
                return;
            }
        }
    })
    .await;
    assert!(
        ping.is_ok(),
        "server pings at the interval set in the environment"
    );

    signal(&child, "TERM");
    let close = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                Some(Ok(_)) => continue,
                _ => return None,
            }
        }
    })
    .await
    .expect("closed in time");
    assert_eq!(close, Some(1001));
    assert!(wait_exit(&mut child).success());
}

#[test]
fn sigint_stops_cleanly_and_bad_config_fails_with_a_message() {
    let port = free_port();
    let mut child = start(
        Command::new(env!("CARGO_BIN_EXE_wasmgate"))
            .args(["--listen", &format!("127.0.0.1:{port}")]),
    );
    signal(&child, "INT");
    assert!(wait_exit(&mut child).success());

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "ping_interval = 12\nnot_a_key = true\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_wasmgate"))
        .arg("--config")
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("configuration"), "stderr: {stderr}");
}

/// `wasmgate dev` starts its gateway with `--exit-on-stdin-eof` and holds the pipe: when the
/// process holding it goes away, even by SIGKILL, the gateway stops and frees its port (before,
/// a killed or hung-up `dev` left its gateway on the port, and the next `dev` attached to it).
#[test]
fn exit_on_stdin_eof_stops_the_gateway_when_its_parent_goes() {
    let port = free_port();
    let mut child = start(
        Command::new(env!("CARGO_BIN_EXE_wasmgate"))
            .args([
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--exit-on-stdin-eof",
            ])
            .stdin(Stdio::piped()),
    );
    // Still serving while the pipe is open.
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        child.try_wait().unwrap().is_none(),
        "stopped with stdin open"
    );
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
    drop(child.stdin.take());
    let status = wait_exit(&mut child);
    assert!(status.success(), "a clean stop, not a crash: {status}");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the port is free"
    );
}
