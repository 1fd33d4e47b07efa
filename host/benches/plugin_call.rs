//! Micro-benchmarks of the plugin call path, against the native path.
//!
//! The guest is `tests/guests/hostcalls`: a text frame that is not a command is answered
//! `echo:<text>` through one host call (`send-to-client`). Groups:
//! - `call`: one `on-message` called directly on this thread (no queue, no actor thread),
//!   including the host call and the frame landing in the client's outbound queue; versus
//!   `native_send`, the same frame queued by the gateway itself (what the HTTP API does). The
//!   same echo written in JavaScript and Python (`bench/plugins/{js,py}-echo`) has a row each
//!   when their toolchains are installed: the difference to the Rust row is their runtime's.
//! - `gateway`: a client frame handed to the gateway until the answer is in the client's
//!   outbound queue: through the plugin (a direct call, guest, host call) versus a native
//!   send awaited the same way; and `plugin_echo_socket`, the same through to the client's TCP
//!   socket, as the reply of an upgraded connection is written.
//! - `websocket`: a round trip over a real WebSocket on loopback: the plugin's echo versus the
//!   gateway's own `ping` → `pong`.
//!
//! Run: `cargo bench -p wasmgate --bench plugin_call`. The guest is built (release,
//! wasm32-wasip2, into `target/guests`) if it is not there yet.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::hint::black_box;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncReadExt;
use tokio_tungstenite::tungstenite::Message;
use wasmgate::Config;
use wasmgate::gateway::Taken;
use wasmgate::server::{self, Server};

/// The workspace root.
fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The `hostcalls` component, built (cargo is a no-op when it is up to date) into the guest
/// target folder the tests crate's build script uses, under `CARGO_TARGET_DIR` when set.
fn guest() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root().join("target"), PathBuf::from)
        .join("guests");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(root())
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "-p",
            "hostcalls",
        ])
        .arg("--target-dir")
        .arg(&target)
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .status()
        .unwrap();
    assert!(status.success(), "building the hostcalls guest failed");
    target.join("wasm32-wasip2/release/hostcalls.wasm")
}

/// The benchmark's echo plugin in `lang` (`js` or `py`: `bench/plugins/<lang>-echo`, the same
/// handler as the Rust guest's echo), built with `scripts/build-<lang>-plugin.sh` into the
/// folder `scripts/bench.sh` uses. `None`, said on stderr, when its toolchain is not installed
/// (`scripts/toolchains.sh all`; the benchmark installs nothing): the Rust rows still run.
fn lang_echo(lang: &str) -> Option<PathBuf> {
    let toolchain = if lang == "py" { "python" } else { lang };
    let installed = Command::new(root().join("scripts/toolchains.sh"))
        .args([toolchain, "--check"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !installed {
        eprintln!(
            "no {toolchain} toolchain (scripts/toolchains.sh {toolchain}): its row is left out"
        );
        return None;
    }
    let out = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root().join("target"), PathBuf::from)
        .join("bench-plugins")
        .join(format!("{lang}-echo.wasm"));
    let status = Command::new(root().join(format!("scripts/build-{lang}-plugin.sh")))
        .arg(root().join(format!("bench/plugins/{lang}-echo")))
        .arg(&out)
        .status();
    match status {
        Ok(s) if s.success() => Some(out),
        other => {
            eprintln!("the {lang} echo plugin did not build ({other:?}): its row is left out");
            None
        }
    }
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .event_interval(server::EVENT_INTERVAL)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(guest(), dir.path().join("bench.wasm")).unwrap();
    // The same echo in JavaScript and Python: what their runtimes add to a call (issue 11).
    let langs: Vec<&str> = ["js", "py"]
        .into_iter()
        .filter(|lang| {
            lang_echo(lang).is_some_and(|wasm| {
                std::fs::copy(wasm, dir.path().join(format!("bench-{lang}.wasm"))).is_ok()
            })
        })
        .collect();
    let mut config = Config {
        plugins_dir: Some(dir.path().to_path_buf()),
        listen: "127.0.0.1:0".parse().unwrap(),
        ..Config::default()
    };
    // One client sends back to back here: the per-client rate limit (1000 messages/s by
    // default) would make every round trip wait ~1 ms for its token instead of measuring it.
    config.limits.client_messages_per_second = 0;
    config.limits.client_bytes_per_second = 0;
    let listener = rt.block_on(async { server::bind(config.listen) }).unwrap();
    let addr = listener.local_addr().unwrap();
    let server = rt.block_on(Server::build(config)).unwrap();
    let gateway = server.gateway.clone();
    let host = server.plugins.clone().unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let token = stop.clone();
    let serving = rt.spawn(server.serve(listener, async move { token.cancelled().await }));

    let (client, mut rx) = rt.block_on(gateway.connect("bench", None)).unwrap();
    let mut direct = rt.block_on(host.direct_instance("bench")).unwrap();
    let echo = Message::text("echo:x");

    let mut group = c.benchmark_group("call");
    group.bench_function("plugin_on_message", |b| {
        b.iter(|| {
            rt.block_on(direct.on_message(&client, black_box("x")))
                .unwrap();
            black_box(rx.try_recv().unwrap());
        })
    });
    for lang in &langs {
        let system = format!("bench-{lang}");
        let (client, mut rx) = rt.block_on(gateway.connect(&system, None)).unwrap();
        let mut direct = rt.block_on(host.direct_instance(&system)).unwrap();
        group.bench_function(format!("plugin_on_message_{lang}"), |b| {
            b.iter(|| {
                rt.block_on(direct.on_message(&client, black_box("x")))
                    .unwrap();
                black_box(rx.try_recv().unwrap());
            })
        });
    }
    group.bench_function("native_send", |b| {
        b.iter(|| {
            rt.block_on(gateway.send_to_client("bench", &client, echo.clone()))
                .unwrap();
            black_box(rx.try_recv().unwrap());
        })
    });
    group.finish();

    let mut group = c.benchmark_group("gateway");
    group.bench_function("plugin_echo", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let started = Instant::now();
                for _ in 0..iters {
                    match gateway.client_message("bench", &client, Message::text("x"), &rx) {
                        Taken::Call(call) => call.await,
                        Taken::Hold(room) => room.await,
                        _ => {}
                    }
                    black_box(next(&mut rx).await);
                }
                started.elapsed()
            })
        })
    });
    group.bench_function("native_send", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let started = Instant::now();
                for _ in 0..iters {
                    gateway
                        .send_to_client("bench", &client, echo.clone())
                        .await
                        .unwrap();
                    black_box(next(&mut rx).await);
                }
                started.elapsed()
            })
        })
    });
    // The same echo to a client whose queue has its TCP socket, as a connection's has once it
    // is upgraded: the reply is written to the socket by the call (the frame read back here),
    // which the rows above, with no socket, never do.
    let (sock_client, sock_rx) = rt.block_on(gateway.connect("bench", None)).unwrap();
    let mut peer = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let peer = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server_end, _) = listener.accept().await.unwrap();
        sock_rx.set_socket(std::sync::Arc::new(server_end));
        sock_rx.release();
        peer
    });
    // The reply is the echo, written to the socket by the call (queued, nothing would write
    // it and the benchmark would wait forever).
    rt.block_on(async {
        if let Taken::Call(call) =
            gateway.client_message("bench", &sock_client, Message::text("x"), &sock_rx)
        {
            call.await;
        }
        let mut frame = [0u8; 8];
        tokio::time::timeout(Duration::from_secs(5), peer.read_exact(&mut frame))
            .await
            .expect("the reply is written to the socket")
            .unwrap();
        assert_eq!(&frame, b"\x81\x06echo:x");
    });
    group.bench_function("plugin_echo_socket", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut frame = [0u8; 8]; // "echo:x" and its 2-byte header
                let started = Instant::now();
                for _ in 0..iters {
                    match gateway.client_message(
                        "bench",
                        &sock_client,
                        Message::text("x"),
                        &sock_rx,
                    ) {
                        Taken::Call(call) => call.await,
                        Taken::Hold(room) => room.await,
                        _ => {}
                    }
                    peer.read_exact(&mut frame).await.unwrap();
                    black_box(&frame);
                }
                started.elapsed()
            })
        })
    });
    group.finish();

    let url = format!("ws://{addr}/api/websocket/ws?systemId=bench");
    let mut ws = rt.block_on(async {
        let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
        ws.next().await.unwrap().unwrap(); // welcome
        ws
    });
    let mut group = c.benchmark_group("websocket");
    for (name, send, answer) in [
        ("plugin_echo", "x", "echo:x"),
        ("native_ping", "ping", "pong"),
    ] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let started = Instant::now();
                    for _ in 0..iters {
                        ws.send(Message::text(send)).await.unwrap();
                        match ws.next().await {
                            Some(Ok(Message::Text(t))) => assert_eq!(t.as_str(), answer),
                            other => panic!("unexpected {other:?}"),
                        }
                    }
                    started.elapsed()
                })
            })
        });
    }
    group.finish();

    stop.cancel();
    rt.block_on(serving).unwrap().unwrap();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = plugin_call;
    config = config();
    targets = benches
}
criterion_main!(plugin_call);

/// The next queued message, waiting for one.
async fn next(rx: &mut wasmgate::outbound::OutboundRx) -> Message {
    loop {
        if let Some(msg) = rx.try_recv() {
            return msg;
        }
        rx.ready().await;
    }
}
