//! Runs the benchmark in smoke mode against real servers (the Node `ws` and Socket.IO peers,
//! and wasmgate when its binary is around) and checks what it measured: every broadcast
//! delivered, every echo answered, every connection up, numbers present and consistent.
//!
//! wasmgate is found through `WASMGATE_BIN` or next to this package's binary (the workspace
//! target directory); its echo plugin through `WASMGATE_ECHO_WASM` or the `hostcalls` test
//! guest built for wasm32-wasip2 in the same target directory (where the tests crate's build
//! script puts it). With wasmgate, the JavaScript and Python echo plugins
//! (`bench/plugins/{js,py}-echo`) are built from source by `scripts/build-{js,py}-plugin.sh`
//! through the tests crate's `lang` module (kept in the target's tmp folder under a hash of
//! their inputs) and measured too.

#[path = "../../tests/tests/lang/mod.rs"]
mod lang;

use std::path::{Path, PathBuf};
use std::process::Command;

use lang::Lang;

use serde_json::Value;

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Installs the peers' npm packages through the bench script when they are missing.
#[expect(clippy::print_stderr, reason = "tell why the test runs npm")]
fn ensure_peers() {
    // The tests of this file run in parallel: one `npm ci` at a time in the same folder.
    static INSTALL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = INSTALL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let peers = manifest_dir().join("peers");
    let installed = ["ws", "socket.io"].iter().all(|p| {
        peers
            .join("node_modules")
            .join(p)
            .join("package.json")
            .is_file()
    });
    if installed {
        return;
    }
    eprintln!(
        "bench/peers/node_modules is missing: installing it with `scripts/bench.sh --install-peers` (npm ci)"
    );
    let status = Command::new("bash")
        .arg(manifest_dir().join("../scripts/bench.sh"))
        .arg("--install-peers")
        .status()
        .expect("run scripts/bench.sh");
    assert!(
        status.success(),
        "npm ci in bench/peers failed: node and npm are needed for the benchmark peers"
    );
}

fn bench_exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_wasmgate-bench"))
}

fn wasmgate_bin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("WASMGATE_BIN") {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "WASMGATE_BIN={} does not exist", p.display());
        return Some(p);
    }
    let sibling = bench_exe().with_file_name("wasmgate");
    sibling.is_file().then_some(sibling)
}

fn echo_wasm() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("WASMGATE_ECHO_WASM") {
        return Some(PathBuf::from(p));
    }
    // <target>/<profile>/wasmgate-bench → where the tests crate's build script puts the test
    // guests (<target>/guests/wasm32-wasip2/release), or a plain wasm32-wasip2 build.
    let target = bench_exe().parent()?.parent()?.to_path_buf();
    [
        target.join("guests/wasm32-wasip2/release"),
        target.join("wasm32-wasip2/release"),
        target.join("wasm32-wasip2/debug"),
    ]
    .into_iter()
    .map(|dir| dir.join("hostcalls.wasm"))
    .find(|p| p.is_file())
}

/// The echo plugin `bench/plugins/<dir>` in `lang`, built from source the way the tests crate
/// builds its language plugins (cached under a hash of the inputs; a missing toolchain fails
/// with `scripts/toolchains.sh`'s message).
fn lang_echo(lang: Lang, dir: &str) -> PathBuf {
    let src = manifest_dir().join("plugins").join(dir);
    lang::build_source(lang, &src, dir, &lang::build_root())
        .unwrap_or_else(|e| panic!("{dir} could not be built:\n{e}"))
}

/// Runs the benchmark binary; returns its JSON report and Markdown. `extra` holds further
/// arguments (the JavaScript and Python echo plugins).
fn run_bench(
    args: &[&str],
    wasmgate: Option<&Path>,
    echo: Option<&Path>,
    extra: &[(&str, PathBuf)],
) -> (Value, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let json = dir.path().join("out.json");
    let md = dir.path().join("out.md");
    let mut cmd = Command::new(bench_exe());
    cmd.args(args)
        .arg("--smoke")
        .arg("--json")
        .arg(&json)
        .arg("--markdown")
        .arg(&md)
        .env_remove("WASMGATE_BIN")
        .env_remove("WASMGATE_ECHO_WASM")
        .env_remove("WASMGATE_JS_ECHO_WASM")
        .env_remove("WASMGATE_PY_ECHO_WASM");
    for (flag, path) in extra {
        cmd.arg(flag).arg(path);
    }
    if let Some(w) = wasmgate {
        cmd.arg("--wasmgate-bin").arg(w);
    }
    if let Some(e) = echo {
        cmd.arg("--echo-wasm").arg(e);
    }
    let out = cmd.output().expect("run wasmgate-bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "wasmgate-bench {args:?} failed\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("JSON report written"))
            .expect("JSON report parses");
    let markdown = std::fs::read_to_string(&md).expect("Markdown report written");
    assert_eq!(markdown, stdout, "the Markdown file is what went to stdout");
    (report, markdown)
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

/// The measurements of an outcome that must have run.
fn ok<'a>(o: &'a Value, what: &str) -> &'a Value {
    assert_eq!(o["status"], "ok", "{what}: {o}");
    &o["value"]
}

fn skipped(o: &Value, what: &str) {
    assert_eq!(o["status"], "skipped", "{what}: {o}");
    assert!(
        o["value"].as_str().is_some_and(|w| !w.is_empty()),
        "{what} says why"
    );
}

fn check_dist(d: &Value, what: &str) {
    let (min, p50, p99, max) = (
        f(&d["min_ms"]),
        f(&d["p50_ms"]),
        f(&d["p99_ms"]),
        f(&d["max_ms"]),
    );
    assert!(
        0.0 < min && min <= p50 && p50 <= p99 && p99 <= max && max < 30_000.0,
        "{what}: {d}"
    );
}

fn check_fanout(s: &Value, name: &str) {
    let fan = ok(&s["fanout"], &format!("{name} fan-out"));
    let n = u(&fan["clients"]);
    let single = &fan["single"];
    assert_eq!(
        u(&single["received"]),
        n,
        "{name}: the broadcast reached everyone"
    );
    let (first, p50, p99, last) = (
        f(&single["first_ms"]),
        f(&single["p50_ms"]),
        f(&single["p99_ms"]),
        f(&single["last_ms"]),
    );
    assert!(
        0.0 < first && first <= p50 && p50 <= p99 && p99 <= last,
        "{name}: {single}"
    );
    let sus = &fan["sustained"];
    assert!(u(&sus["sent"]) > 0, "{name}: {sus}");
    assert_eq!(u(&sus["expected"]), u(&sus["sent"]) * n, "{name}: {sus}");
    assert_eq!(
        u(&sus["delivered"]),
        u(&sus["expected"]),
        "{name}: nothing lost: {sus}"
    );
    assert_eq!(u(&sus["out_of_order"]), 0, "{name}: in order: {sus}");
    assert!(f(&sus["msgs_per_sec"]) > 0.0, "{name}: {sus}");
    check_dist(&sus["last_delivery"], name);
    assert_eq!(u(&fan["dropped"]), 0, "{name}: no connection dropped");
}

fn check_echo(e: &Value, name: &str) {
    let replies = u(&e["replies"]);
    assert!(replies > 0, "{name}: {e}");
    assert_eq!(u(&e["errors"]), 0, "{name}: every request answered: {e}");
    assert_eq!(u(&e["latency"]["count"]), replies, "{name}: {e}");
    check_dist(&e["latency"], name);
    assert!(
        f(&e["per_sec"]) > 0.0 && f(&e["server_us_per_reply"]) >= 0.0,
        "{name}: {e}"
    );
}

fn check_server(s: &Value, params: &Value, plugin: bool) {
    let name = s["server"].as_str().expect("server name").to_owned();
    let idle = ok(&s["idle"], &format!("{name} idle"));
    assert!(u(&idle["baseline_rss_kib"]) > 1000, "{name}: {idle}");
    let levels: Vec<u64> = idle["levels"]
        .as_array()
        .expect("levels")
        .iter()
        .map(|l| u(&l["conns"]))
        .collect();
    let wanted: Vec<u64> = params["idle_levels"]
        .as_array()
        .expect("levels")
        .iter()
        .map(u)
        .collect();
    assert_eq!(levels, wanted, "{name}: every idle level reached");
    for l in idle["levels"].as_array().expect("levels") {
        assert!(u(&l["rss_kib"]) > 0, "{name}: {l}");
        let kb = f(&l["kb_per_conn"]);
        assert!((0.0..10_000.0).contains(&kb), "{name}: {l}");
    }
    assert_eq!(u(&idle["dropped"]), 0, "{name}: idle connections stay open");

    check_fanout(s, &name);
    check_latency(s, &name, params);

    if name == "socketio" {
        skipped(&s["echo_native"], "Socket.IO native echo");
    } else {
        check_echo(ok(&s["echo_native"], &format!("{name} echo native")), &name);
    }
    if name == "wasmgate" && !plugin {
        skipped(&s["echo_app"], "wasmgate plugin echo without a plugin");
    } else {
        check_echo(ok(&s["echo_app"], &format!("{name} echo app")), &name);
    }
    if name == "wasmgate" {
        for lang in ["js", "python"] {
            let what = format!("wasmgate {lang} plugin echo");
            check_echo(ok(&s[format!("echo_app_{lang}")], &what), &what);
        }
    } else {
        for lang in ["js", "python"] {
            assert!(
                s.get(format!("echo_app_{lang}")).is_none(),
                "{name}: the peers have one application echo: {s}"
            );
        }
    }

    let storm = ok(&s["storm"], &format!("{name} storm"));
    assert_eq!(
        u(&storm["connected"]),
        u(&storm["target"]),
        "{name}: {storm}"
    );
    assert_eq!(u(&storm["failed"]), 0, "{name}: {storm}");
    assert!(f(&storm["per_sec"]) > 0.0, "{name}: {storm}");
    check_dist(&storm["connect"], &name);

    check_group_fanout(s, &name);
    if name == "wasmgate" && !plugin {
        skipped(&s["echo_scaling"], "wasmgate scaling without a plugin");
    } else {
        let sc = ok(&s["echo_scaling"], &format!("{name} echo scaling"));
        check_echo(&sc["one_core"], &format!("{name} scaling, one core"));
        check_echo(&sc["all_cores"], &format!("{name} scaling, every core"));
        let speedup = f(&sc["speedup"]);
        let want = f(&sc["all_cores"]["per_sec"]) / f(&sc["one_core"]["per_sec"]);
        assert!((speedup - want).abs() < 1e-9 * want, "{name}: {sc}");
        assert_eq!(sc["one_core_cpus"], "1", "{name}: {sc}");
        // Every request of the scaling row carried the handler work (and every reply echoed
        // it, or the client would have counted an error); the plain echo rows carry none.
        let work = u(&params["scaling_work"]);
        assert_eq!(u(&sc["one_core"]["work"]), work, "{name}: {sc}");
        assert_eq!(u(&sc["all_cores"]["work"]), work, "{name}: {sc}");
    }

    if name == "wasmgate" && plugin {
        let r = ok(&s["reload"], "wasmgate hot reload");
        assert_eq!(u(&r["reordered"]), 0, "{r}");
        // Every swap is either seen serving (timed) or counted as not seen before the next
        // write (a debug gateway compiles slower than the smoke's 300 ms interval).
        let seen = r["swap_live"]["count"].as_u64().unwrap_or(0);
        assert_eq!(seen + u(&r["swaps_not_seen"]), u(&r["swaps"]), "{r}");
        assert!(seen >= 1, "at least the last swap is timed: {r}");
        assert!(!r["live_from"].as_str().unwrap_or("").is_empty(), "{r}");
        assert!(u(&r["sent"]) > 0, "{r}");
        assert_eq!(
            u(&r["answered"]),
            u(&r["sent"]),
            "every request answered: {r}"
        );
        assert_eq!(u(&r["lost"]), 0, "{r}");
        assert_eq!(u(&r["doubled"]), 0, "{r}");
        assert_eq!(u(&r["dropped_connections"]), 0, "{r}");
        check_dist(&r["during_swaps"], "latency during swaps");
        assert!(u(&r["reloads_applied"]) >= 1, "the gateway reloaded: {r}");
        assert!(
            r["last_swap_live_ms"].as_f64().is_some(),
            "the last build serves: {r}"
        );
    } else {
        skipped(&s["reload"], &format!("{name} hot reload"));
    }
}

/// Issue 13's row: the broadcast reaches every member and nobody else.
fn check_group_fanout(s: &Value, name: &str) {
    let g = ok(&s["fanout_group"], &format!("{name} group fan-out"));
    let members = u(&g["members"]);
    assert!(members > 0 && members < u(&g["clients"]), "{name}: {g}");
    assert_eq!(u(&g["single"]["received"]), members, "{name}: {g}");
    assert_eq!(u(&g["strays"]), 0, "{name}: no non-member got it: {g}");
    let sus = &g["sustained"];
    assert_eq!(
        u(&sus["expected"]),
        u(&sus["sent"]) * members,
        "{name}: {sus}"
    );
    assert_eq!(u(&sus["delivered"]), u(&sus["expected"]), "{name}: {sus}");
    assert_eq!(u(&g["dropped"]), 0, "{name}: {g}");
}

/// Every `send_to_client` of the latency scenario arrived once, in order, with its times.
fn check_latency(s: &Value, name: &str, params: &Value) {
    let l = ok(&s["latency"], &format!("{name} latency"));
    let sent = u(&params["latency_sends"]);
    assert_eq!(u(&l["sent"]), sent, "{name}: {l}");
    assert_eq!(u(&l["received"]), sent, "{name}: every send arrived: {l}");
    assert_eq!(u(&l["doubled"]), 0, "{name}: {l}");
    assert_eq!(u(&l["misrouted"]), 0, "{name}: {l}");
    assert_eq!(u(&l["out_of_order"]), 0, "{name}: {l}");
    assert_eq!(u(&l["dropped"]), 0, "{name}: {l}");
    assert_eq!(u(&l["delivery"]["count"]), sent, "{name}: {l}");
    check_dist(&l["delivery"], name);
    check_dist(&l["answer"], name);
    let cross = l["cross_node"].as_bool().expect("cross_node");
    assert_eq!(cross, name == "cluster", "{name}: {l}");
    let clients = u(&l["clients"]);
    // Connection i is on node i % 3: a cluster addresses only the other two nodes' clients.
    let expect = if cross {
        clients - clients.div_ceil(3)
    } else {
        clients
    };
    assert_eq!(u(&l["addressed"]), expect, "{name}: {l}");
}

/// A three-node cluster (its own redis-server) beside one node: single sends cross nodes and
/// arrive once and in order; the ratio column divides the cluster by the one node.
#[test]
fn latency_across_a_cluster() {
    let Some(wasmgate) = wasmgate_bin() else {
        panic!("the cluster needs the wasmgate binary next to wasmgate-bench (cargo build)");
    };
    let (report, md) = run_bench(
        &["latency", "--servers", "wasmgate,cluster"],
        Some(&wasmgate),
        None,
        &[],
    );
    for s in run_servers(&report, 0) {
        check_latency(s, s["server"].as_str().expect("name"), &report["params"]);
    }
    assert!(
        md.contains("| wasmgate ×3 ÷ wasmgate median | min–max over runs |"),
        "{md}"
    );
    assert!(md.contains("p99 call → client (ms) ↓"), "{md}");
}

/// The servers of run `i` of a report.
fn run_servers(report: &Value, i: usize) -> &Vec<Value> {
    report["runs"][i]["servers"].as_array().expect("servers")
}

#[test]
fn smoke_run_measures_every_scenario() {
    ensure_peers();
    let wasmgate = wasmgate_bin();
    let echo = echo_wasm().filter(|p| p.is_file());
    let mut servers = vec!["ws", "socketio"];
    if wasmgate.is_some() {
        servers.insert(0, "wasmgate");
    }
    let list = servers.join(",");
    let langs = if wasmgate.is_some() {
        vec![
            ("--js-echo-wasm", lang_echo(Lang::Js, "js-echo")),
            ("--py-echo-wasm", lang_echo(Lang::Python, "py-echo")),
        ]
    } else {
        Vec::new()
    };
    let (report, md) = run_bench(
        &["all", "--servers", &list],
        wasmgate.as_deref(),
        echo.as_deref(),
        &langs,
    );
    assert_eq!(report["smoke"], true);
    assert_eq!(report["runs"].as_array().map(Vec::len), Some(1));
    let got: Vec<&str> = run_servers(&report, 0)
        .iter()
        .map(|s| s["server"].as_str().expect("name"))
        .collect();
    assert_eq!(got, servers);
    for s in run_servers(&report, 0) {
        check_server(s, &report["params"], echo.is_some());
    }
    assert!(md.contains("| scenario | metric |"), "{md}");
    assert!(
        md.contains("| Socket.IO ÷ ws median | min–max over runs |"),
        "ratios to Node ws: {md}"
    );
    assert!(
        md.contains("| fan-out to a group of 20 in a system of 60 clients (send_to_group), 100 B | non-members reached ↓ | "),
        "{md}"
    );
    assert!(md.contains("every core ÷ one core (replies/s) ↑"), "{md}");
    assert!(
        md.contains("| idle memory | KB per connection @ 50 ↓ |"),
        "{md}"
    );
    assert!(report["machine"]["nproc"].as_u64().is_some_and(|n| n > 0));
    assert_ne!(report["machine"]["ws"], "not installed");
    if wasmgate.is_some() {
        for lang in ["Rust", "JavaScript", "Python"] {
            assert!(
                md.contains(&format!(
                    "| echo, application: wasmgate {lang} plugin, peers JS handler, 50 clients | replies/s ↑ |"
                )),
                "a {lang} plugin row: {md}"
            );
        }
    }
}

#[test]
fn group_fanout_delivers_to_every_member() {
    ensure_peers();
    let wasmgate = wasmgate_bin();
    let mut servers = vec!["ws"];
    if wasmgate.is_some() {
        servers.push("wasmgate");
    }
    let list = servers.join(",");
    let (report, md) = run_bench(
        &["fanout", "--fanout-via", "group", "--servers", &list],
        wasmgate.as_deref(),
        None,
        &[],
    );
    assert_eq!(report["params"]["fanout_via"], "group");
    for s in run_servers(&report, 0) {
        check_fanout(s, s["server"].as_str().expect("name"));
        assert_eq!(s["fanout"]["value"]["via"], "group");
    }
    assert!(md.contains("fan-out (send_to_group)"), "{md}");
}

/// The chat plugin (`plugins/chat`) for the soak: `WASMGATE_CHAT_WASM`, or where the tests
/// crate's build script puts it, built there with cargo when it is missing.
fn chat_wasm() -> PathBuf {
    if let Some(p) = std::env::var_os("WASMGATE_CHAT_WASM") {
        return PathBuf::from(p);
    }
    let target = bench_exe()
        .parent()
        .and_then(Path::parent)
        .expect("target directory")
        .join("guests");
    let wasm = target.join("wasm32-wasip2/release/chat.wasm");
    if !wasm.is_file() {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = Command::new(cargo)
            .current_dir(manifest_dir().join(".."))
            .args([
                "build",
                "--release",
                "--target",
                "wasm32-wasip2",
                "-p",
                "chat",
            ])
            .arg("--target-dir")
            .arg(&target)
            .status()
            .expect("run cargo for plugins/chat");
        assert!(status.success(), "plugins/chat did not build");
    }
    wasm
}

/// A short soak (15 s) against the gateway: the scenario's code runs in every test run and
/// must see no error at all. Its RSS criterion is not applied here (15 s are too short for a
/// steady state; `scripts/bench.sh --soak` applies it over 10 minutes), so only the RSS
/// readings' presence is checked.
#[test]
fn short_soak_has_no_errors() {
    let wasmgate = wasmgate_bin();
    let servers = if wasmgate.is_some() { "wasmgate" } else { "ws" };
    let chat: Vec<(&str, PathBuf)> = match wasmgate {
        Some(_) => vec![("--chat-wasm", chat_wasm())],
        None => Vec::new(),
    };
    let (report, md) = run_bench(
        &["soak", "--servers", servers],
        wasmgate.as_deref(),
        None,
        &chat,
    );
    let s = &report["runs"][0]["servers"][0];
    if wasmgate.is_none() {
        skipped(&s["soak"], "soak against a peer");
        return;
    }
    let r = ok(&s["soak"], "wasmgate soak");
    assert_eq!(
        u(&r["errors"]["total"]),
        0,
        "no error at all: {}",
        r["errors"]
    );
    assert!(r["failures"].as_array().is_some_and(Vec::is_empty), "{r}");
    assert_eq!(r["rss_checked"], false, "smoke runs do not judge memory");
    assert!(
        u(&r["churn_connects"]) > 50,
        "churn ran: {}",
        r["churn_connects"]
    );
    for left in ["left_close_frame", "left_fin", "left_reset", "left_kicked"] {
        assert!(u(&r[left]) > 0, "{left}: every kind of departure happened");
    }
    assert!(
        u(&r["left_close_frame"]) >= u(&r["churn_connects"]) * 4 / 10,
        "about half leave with a close frame"
    );
    assert!(u(&r["plugin_messages"]) > 0);
    assert_eq!(u(&r["plugin_replies"]), u(&r["plugin_messages"]));
    assert!(u(&r["pushes_sent"]) > 50, "pushes: {}", r["pushes_sent"]);
    assert!(u(&r["pushes_received"]) >= u(&r["pushes_sent"]));
    assert!(u(&r["said_received"]) > 0 && u(&r["notices_received"]) > 0);
    let samples = r["samples"].as_array().expect("samples");
    assert!(
        samples.len() >= 10,
        "an RSS sample a second: {}",
        samples.len()
    );
    for k in [
        "rss_start_kib",
        "rss_warmup_kib",
        "rss_end_kib",
        "rss_max_kib",
    ] {
        assert!(u(&r[k]) > 1000, "{k}: {r}");
    }
    assert!(u(&r["rss_max_kib"]) >= u(&r["rss_end_kib"]));
    assert!(md.contains("| RSS end ÷ warm-up ↓ |"), "{md}");
}

/// Two tiny runs: the JSON keeps each run's raw numbers, the summary holds each server's
/// median over them and the wasmgate ÷ Node ws ratio taken inside each run, and `--only`
/// narrows the scenarios.
#[test]
fn runs_are_aggregated_into_medians_and_per_run_ratios() {
    ensure_peers();
    let wasmgate = wasmgate_bin();
    let list = if wasmgate.is_some() {
        "wasmgate,ws"
    } else {
        "socketio,ws"
    };
    let (report, md) = run_bench(
        &[
            "all",
            "--runs",
            "2",
            "--only",
            "echo-native,storm",
            "--servers",
            list,
        ],
        wasmgate.as_deref(),
        None,
        &[],
    );
    let runs = report["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 2);
    for (i, run) in runs.iter().enumerate() {
        assert_eq!(u(&run["run"]), i as u64 + 1);
        for s in run_servers(&report, i) {
            assert!(s.get("idle").is_none(), "--only leaves idle out: {s}");
            assert!(s.get("fanout").is_none(), "--only leaves fan-out out: {s}");
            assert_eq!(s["storm"]["status"], "ok", "{s}");
        }
    }
    let row = report["summary"]
        .as_array()
        .expect("summary")
        .iter()
        .find(|r| r["metric"] == "connections/s")
        .expect("a connections/s row");
    let (a, ws) = (&row["cells"][0], &row["cells"][1]);
    assert_eq!(ws["server"], "ws");
    let raw =
        |server: usize, run: usize| f(&runs[run]["servers"][server]["storm"]["value"]["per_sec"]);
    // JSON round trips may move the last bit of a float.
    let near = |got: &Value, want: f64| {
        let g = f(got);
        assert!(
            (g - want).abs() <= 1e-9 * want.abs(),
            "{g} vs {want}: {row}"
        );
    };
    for run in 0..2 {
        near(&a["per_run"][run], raw(0, run));
        near(&ws["per_run"][run], raw(1, run));
    }
    near(&a["median"], (raw(0, 0) + raw(0, 1)) / 2.0);
    let ratio = &row["ratios"][0];
    let r0 = raw(0, 0) / raw(1, 0);
    let r1 = raw(0, 1) / raw(1, 1);
    near(&ratio["per_run"][0], r0);
    near(&ratio["per_run"][1], r1);
    near(&ratio["min"], r0.min(r1));
    near(&ratio["max"], r0.max(r1));
    near(&ratio["median"], (r0 + r1) / 2.0);
    assert!(md.contains("- runs: 2 "), "{md}");
    assert!(md.contains("÷ ws median | min–max over runs |"), "{md}");
    assert!(!md.contains("idle memory"), "{md}");
}
