//! The real `wasmgate` binary at the HTTP layer's edges: out of file descriptors it keeps
//! accepting as soon as some are free, and a configuration that would lock the API is refused
//! at startup.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running gateway, killed when dropped (also when an assertion fails).
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start the binary and wait until it logs that it listens.
fn start(cmd: &mut Command) -> Running {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
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
    let running = Running(child);
    rx.recv_timeout(Duration::from_secs(20))
        .expect("the gateway logs that it listens");
    running
}

/// `GET path` on a fresh connection: the whole answer, or `None` if the connection is closed
/// or nothing arrives within `within`.
fn get(port: u16, path: &str, within: Duration) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(within)).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    (!answer.is_empty()).then_some(answer)
}

#[test]
fn out_of_file_descriptors_the_gateway_answers_again_once_some_are_free() {
    if Command::new("prlimit").arg("--version").output().is_err() {
        #[allow(clippy::print_stderr)]
        {
            eprintln!("SKIPPED: prlimit (util-linux) is not installed");
        }
        return;
    }
    let port = free_port();
    // 64 descriptors: the runtime takes a few dozen, so a few dozen connections exhaust it.
    let _gateway = start(
        Command::new("prlimit")
            .arg("--nofile=64:64")
            .arg(env!("CARGO_BIN_EXE_wasmgate"))
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .env("WASMGATE_HTTP__HEADER_READ_TIMEOUT", "300ms"),
    );
    // Far more silent connections than descriptors, all held open by this test: only the
    // gateway's header timeout closes its side.
    let peers: Vec<TcpStream> = (0..200)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    let deadline = Instant::now() + Duration::from_secs(15);
    let answer = loop {
        if let Some(answer) = get(port, "/healthz", Duration::from_secs(2)) {
            break answer;
        }
        assert!(
            Instant::now() < deadline,
            "/healthz does not answer while silent peers hold the descriptors"
        );
    };
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let metrics = get(port, "/metrics", Duration::from_secs(2)).unwrap();
    let errors: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("wasmgate_http_accept_errors_total "))
        .unwrap_or_else(|| panic!("no accept error counter: {metrics}"))
        .trim()
        .parse()
        .unwrap();
    assert!(errors > 0.0, "the descriptors never ran out: {metrics}");
    drop(peers);
}

#[test]
fn an_empty_api_token_refuses_to_start_with_a_message() {
    let mut gateway = Running(
        Command::new(env!("CARGO_BIN_EXE_wasmgate"))
            .args(["--listen", &format!("127.0.0.1:{}", free_port())])
            .env("WASMGATE_API_TOKEN", "")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = gateway.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "started with an empty api_token: the API would be locked"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(!status.success());
    let mut stderr = String::new();
    gateway
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(stderr.contains("api_token is empty"), "stderr: {stderr}");
}
