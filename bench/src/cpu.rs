//! CPU time of a process (user + system, from /proc/PID/stat), to report the server's CPU
//! cost per operation and whether the load generator itself was saturated. Per-operation
//! CPU cost holds up on a busy machine where wall-clock throughput does not.

use std::time::Instant;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// /proc reports times in USER_HZ, which Linux fixes at 100 for user space.
const TICKS_PER_SEC: f64 = 100.0;

/// CPU seconds (user + system) consumed so far by `pid` (`None` = this process).
pub fn cpu_secs(pid: Option<u32>) -> Result<f64> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/stat"),
        None => "/proc/self/stat".to_owned(),
    };
    let stat = std::fs::read_to_string(&path).with_context(|| format!("read {path}"))?;
    parse_stat(&stat).with_context(|| format!("parse {path}"))
}

fn parse_stat(stat: &str) -> Option<f64> {
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / TICKS_PER_SEC)
}

/// CPU used by the server and by the load generator over a stretch of wall-clock time.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct CpuUse {
    /// Wall-clock seconds of the stretch.
    pub wall_secs: f64,
    /// Server CPU seconds in it.
    pub server_secs: f64,
    /// Load generator CPU seconds in it (near `wall_secs` = the client was the bottleneck).
    pub client_secs: f64,
}

/// A started measurement.
pub struct CpuMeter {
    pids: Vec<u32>,
    at: Instant,
    server: f64,
    client: f64,
}

/// CPU seconds of every process in `pids`, together.
fn sum_secs(pids: &[u32]) -> Result<f64> {
    pids.iter().map(|p| cpu_secs(Some(*p))).sum()
}

impl CpuMeter {
    /// Starts measuring the server `pid` and this process.
    pub fn start(pid: u32) -> Result<CpuMeter> {
        Self::start_all(vec![pid])
    }

    /// Starts measuring the server processes `pids` together (a cluster's nodes and Redis)
    /// and this process.
    pub fn start_all(pids: Vec<u32>) -> Result<CpuMeter> {
        Ok(CpuMeter {
            server: sum_secs(&pids)?,
            pids,
            at: Instant::now(),
            client: cpu_secs(None)?,
        })
    }

    /// CPU used since [`CpuMeter::start`].
    pub fn stop(&self) -> Result<CpuUse> {
        Ok(CpuUse {
            wall_secs: self.at.elapsed().as_secs_f64(),
            server_secs: sum_secs(&self.pids)? - self.server,
            client_secs: cpu_secs(None)? - self.client,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_times_after_a_tricky_command_name() {
        let stat = "42 (a) b) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 1 0";
        assert_eq!(parse_stat(stat), Some(3.0));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn own_cpu_time_grows_with_work() {
        let before = cpu_secs(None).expect("own stat");
        let start = Instant::now();
        let mut x = 0u64;
        while start.elapsed().as_millis() < 60 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let after = cpu_secs(None).expect("own stat");
        assert!(
            after > before,
            "60 ms of spinning shows up ({before} -> {after})"
        );
    }
}
