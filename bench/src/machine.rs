//! What the numbers were measured on: CPU, kernel, tool and library versions, pinning.

use std::path::Path;
use std::process::Command;

use serde::{Deserialize, Serialize};

use crate::server::Launcher;

/// Machine and software facts written next to the numbers.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct MachineInfo {
    /// UTC time the run started.
    pub date: String,
    /// Online CPUs of the machine (not of this process's affinity mask).
    pub nproc: usize,
    /// CPU model name.
    pub cpu_model: String,
    /// Kernel release.
    pub kernel: String,
    /// Total memory, MiB.
    pub mem_total_mib: u64,
    /// CPUs the load generator may run on.
    pub client_cpus: String,
    /// CPUs the servers were pinned to (`taskset -c`), if any.
    pub server_cpus: Option<String>,
    /// `rustc --version`.
    pub rustc: String,
    /// `node --version`.
    pub node: String,
    /// Version of the `ws` package the peer uses.
    pub ws: String,
    /// Version of the `socket.io` package the peer uses.
    pub socketio: String,
    /// `wasmgate --version`, if it answers.
    pub wasmgate: String,
    /// Commit of the repository the run was made from.
    pub git_commit: String,
    /// /proc/loadavg when the run started: other work on the machine skews wall-clock numbers.
    pub load_before: String,
    /// /proc/loadavg when the run ended.
    pub load_after: String,
}

/// Every online CPU as a `taskset -c` list (`0-N`): a server started with it may use every
/// core even when this process is pinned to one (affinity is inherited otherwise).
pub fn all_cpus() -> String {
    let n = std::fs::read_to_string("/proc/cpuinfo")
        .map(|s| s.lines().filter(|l| l.starts_with("processor")).count())
        .unwrap_or(1)
        .max(1);
    format!("0-{}", n - 1)
}

/// The 1, 5 and 15 minute load averages.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn cmd(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

fn package_version(peers: &Path, name: &str) -> String {
    std::fs::read_to_string(peers.join("node_modules").join(name).join("package.json"))
        .ok()
        .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
        .and_then(|v| v["version"].as_str().map(str::to_owned))
        .unwrap_or_else(|| "not installed".into())
}

fn status_field(field: &str) -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field).map(|v| v.trim().to_owned()))
        })
        .unwrap_or_default()
}

/// Collects the facts (commands that fail read "unknown"); `load_before` is the load average
/// taken before the run.
pub fn collect(l: &Launcher, load_before: String) -> MachineInfo {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let node = l.node.display().to_string();
    MachineInfo {
        date: cmd("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"]),
        nproc: cpuinfo
            .lines()
            .filter(|l| l.starts_with("processor"))
            .count(),
        cpu_model: cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
            .unwrap_or_else(|| "unknown".into()),
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_owned())
            .unwrap_or_default(),
        mem_total_mib: meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .map_or(0, |kib| kib / 1024),
        client_cpus: status_field("Cpus_allowed_list:"),
        server_cpus: l.server_cpu.clone(),
        rustc: cmd("rustc", &["--version"]),
        node: cmd(&node, &["--version"]),
        ws: package_version(&l.peers_dir, "ws"),
        socketio: package_version(&l.peers_dir, "socket.io"),
        wasmgate: l.wasmgate_bin.as_ref().map_or_else(
            || "not built".into(),
            |b| cmd(&b.display().to_string(), &["--version"]),
        ),
        git_commit: cmd(
            "git",
            &[
                "-C",
                &l.peers_dir.display().to_string(),
                // `-dirty` when the tree has changes: a result of uncommitted code says so.
                "describe",
                "--always",
                "--dirty",
            ],
        ),
        load_before,
        load_after: loadavg(),
    }
}
