//! The gateway `wasmgate dev` installs into: one already running at `--gateway`, or a child
//! `wasmgate` it starts there (and stops when it exits).
//!
//! Nothing is polled while the author is idle: `GET /api/plugins` is asked only right after an
//! install, until the new version serves or its load failed.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};
use tokio::time::Instant;

use super::{DevError, say};

/// How long a gateway `wasmgate dev` started may take to answer its API.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// What `GET /api/plugins` says about one plugin.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PluginState {
    /// The blake3 of the serving version, if one serves.
    pub version: Option<String>,
    /// The last load error, cleared when a version starts serving.
    pub last_error: Option<String>,
}

/// How an install ended.
#[derive(Debug)]
pub enum Outcome {
    /// The installed version serves.
    Served,
    /// The gateway refused it (compile, link or `init` failed): the error.
    Failed(String),
    /// Neither within the wait.
    TimedOut,
}

/// A gateway's API, and the gateway itself when `wasmgate dev` started it.
pub struct Gateway {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
    child: Option<Child>,
    /// The write end of the started gateway's stdin, held apart from `child`: tokio's
    /// `Child::wait` (which `exited` awaits) closes a stdin it still holds, and the gateway
    /// (`--exit-on-stdin-eof`) would stop at once. Closed by the kernel however dev ends.
    lifeline: Option<tokio::process::ChildStdin>,
}

impl Gateway {
    /// Attach to the gateway answering at `url`, or start one listening there with `plugins`
    /// as its plugins folder. Log lines of the child about `plugin` are printed.
    pub async fn attach_or_start(
        url: &str,
        token: Option<String>,
        plugins: &Path,
        config: Option<&Path>,
        plugin: &str,
    ) -> Result<Gateway, DevError> {
        let base = url.trim_end_matches('/').to_owned();
        let base = if base.contains("://") {
            base
        } else {
            format!("http://{base}")
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| DevError::Gateway(e.to_string()))?;
        let mut gw = Gateway {
            base,
            token,
            http,
            child: None,
            lifeline: None,
        };
        let probe = gw.list().await;
        match probe {
            Ok(_) => {
                say(&format!(
                    "attached to the gateway at {}: it must watch {} (its `--plugins`); the \
                     plugin's log lines are in that gateway's output (lines with plugin={plugin})",
                    gw.base,
                    plugins.display()
                ));
                return Ok(gw);
            }
            Err(DevError::Unreachable(_)) => {}
            Err(e) => return Err(e),
        }
        let addr = listen_addr(&gw.base)?;
        let exe = std::env::current_exe().map_err(|e| DevError::Gateway(e.to_string()))?;
        let mut cmd = Command::new(exe);
        cmd.arg("--listen")
            .arg(addr.to_string())
            .arg("--plugins")
            .arg(plugins)
            .args(["--log-format", "json", "--exit-on-stdin-eof"]);
        if let Some(config) = config {
            cmd.arg("--config").arg(config);
        }
        // Its own process group: a Ctrl-C in the terminal reaches `wasmgate dev` only, which
        // then stops the gateway (else both race to exit and dev reports a dead gateway).
        #[cfg(unix)]
        cmd.process_group(0);
        // The gateway stops when this pipe closes (its `--exit-on-stdin-eof`): the write end
        // stays in `child` for as long as dev runs, and the kernel closes it however dev ends
        // (SIGHUP of a closed terminal, SIGKILL), so no orphan keeps the port.
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| DevError::Gateway(format!("starting a gateway: {e}")))?;
        gw.lifeline = child.stdin.take();
        if let Some(out) = child.stdout.take() {
            tokio::spawn(forward_logs(out, plugin.to_owned()));
        }
        gw.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(child) = gw.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(DevError::Gateway(format!(
                    "the gateway it started on {addr} exited ({status})"
                )));
            }
            let probe = gw.list().await;
            match probe {
                Ok(_) => break,
                Err(DevError::Unreachable(_)) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => return Err(e),
            }
        }
        say(&format!(
            "started a gateway on {addr} (plugins folder {}); its log lines about {plugin} \
             follow; clients connect to ws://{addr}/api/websocket/ws?systemId={plugin}",
            plugins.display()
        ));
        Ok(gw)
    }

    /// `GET /api/plugins`'s `list`.
    async fn list(&self) -> Result<Vec<Value>, DevError> {
        let mut req = self.http.get(format!("{}/api/plugins", self.base));
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        let resp = req.send().await.map_err(|e| {
            if e.is_connect() {
                DevError::Unreachable(self.base.clone())
            } else {
                DevError::Gateway(format!("{}: {e}", self.base))
            }
        })?;
        let status = resp.status();
        if status.as_u16() == 401 || status.as_u16() == 403 {
            return Err(DevError::Gateway(format!(
                "{} answered {status} to GET /api/plugins: pass its API token with --token \
                 (or WASMGATE_API_TOKEN)",
                self.base
            )));
        }
        let body: Value = resp
            .json()
            .await
            .map_err(|e| DevError::Gateway(format!("{}: {e}", self.base)))?;
        if !status.is_success() {
            return Err(DevError::Gateway(format!("{}: {status} {body}", self.base)));
        }
        Ok(body["data"]["list"].as_array().cloned().unwrap_or_default())
    }

    /// What the gateway says about `name` (default: not loaded).
    pub async fn state(&self, name: &str) -> Result<PluginState, DevError> {
        let list = self.list().await?;
        Ok(list
            .iter()
            .find(|p| p["name"] == name)
            .map(|p| PluginState {
                version: p["version"].as_str().map(str::to_owned),
                last_error: p["lastError"].as_str().map(str::to_owned),
            })
            .unwrap_or_default())
    }

    /// Poll until version `hash` of `name` serves, or a load error other than `before` shows,
    /// or `wait` passed. Polls every 5 ms for the first second (a cached Rust plugin serves in a
    /// few ms), then every 50 ms (a cold compile of a Python plugin takes seconds).
    pub async fn wait_serving(
        &self,
        name: &str,
        hash: &str,
        before: Option<&str>,
        wait: Duration,
    ) -> Result<Outcome, DevError> {
        let start = Instant::now();
        loop {
            let state = self.state(name).await?;
            if state.version.as_deref() == Some(hash) {
                return Ok(Outcome::Served);
            }
            if let Some(err) = state.last_error
                && Some(err.as_str()) != before
            {
                return Ok(Outcome::Failed(err));
            }
            let waited = start.elapsed();
            if waited >= wait {
                return Ok(Outcome::TimedOut);
            }
            let step = if waited < Duration::from_secs(1) {
                5
            } else {
                50
            };
            tokio::time::sleep(Duration::from_millis(step)).await;
        }
    }

    /// Resolves when the gateway `wasmgate dev` started exits (never for an attached one).
    pub async fn exited(&mut self) -> String {
        match self.child.as_mut() {
            Some(child) => match child.wait().await {
                Ok(status) => status.to_string(),
                Err(e) => e.to_string(),
            },
            None => std::future::pending().await,
        }
    }

    /// Stop the gateway `wasmgate dev` started, if it did.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
        self.lifeline = None;
    }
}

/// The socket address a child gateway listens on, from `http://127.0.0.1:8080`.
fn listen_addr(base: &str) -> Result<SocketAddr, DevError> {
    let rest = base.split_once("://").map_or(base, |(_, r)| r);
    let hostport = rest.split('/').next().unwrap_or(rest);
    let hostport = hostport.replace("localhost", "127.0.0.1");
    hostport.parse().map_err(|_| {
        DevError::Gateway(format!(
            "nothing answers at {base}, and a gateway can only be started on an ip:port \
             address (e.g. --gateway http://127.0.0.1:8080)"
        ))
    })
}

/// Print the child's log lines (JSON, one a line) about `plugin`, and its warnings and errors.
async fn forward_logs(out: ChildStdout, plugin: String) {
    let mut lines = BufReader::new(out).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if let Some(text) = log_line(&line, &plugin) {
            say(&text);
        }
    }
}

/// The terminal form of one JSON log line, if the author should see it: everything the plugin
/// logs (`[name] INFO msg`), and the gateway's lines about it or at warn/error level.
pub fn log_line(line: &str, plugin: &str) -> Option<String> {
    let Ok(v) = serde_json::from_str::<Value>(line) else {
        return Some(line.to_owned());
    };
    let level = v["level"].as_str().unwrap_or("INFO");
    let fields = v["fields"].as_object()?;
    let about = fields.get("plugin").and_then(Value::as_str) == Some(plugin);
    let guest = v["target"].as_str() == Some("wasmgate::plugin::guest");
    if guest && about {
        let msg = fields.get("message").and_then(Value::as_str).unwrap_or("");
        return Some(format!("[{plugin}] {level} {msg}"));
    }
    if !(about || matches!(level, "WARN" | "ERROR")) {
        return None;
    }
    let mut text = format!("gateway {level}");
    if let Some(msg) = fields.get("message").and_then(Value::as_str) {
        text.push(' ');
        text.push_str(msg);
    }
    for (k, val) in fields.iter().filter(|(k, _)| *k != "message") {
        match val.as_str() {
            Some(s) => text.push_str(&format!(" {k}={s}")),
            None => text.push_str(&format!(" {k}={val}")),
        }
    }
    Some(text)
}

/// Where a spawned gateway keeps what it must not lose: nothing beyond the plugins folder.
pub fn plugins_dir(dir: &Path) -> Result<PathBuf, DevError> {
    std::fs::create_dir_all(dir).map_err(|e| DevError::io(dir, e))?;
    std::fs::canonicalize(dir).map_err(|e| DevError::io(dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_listens_where_dev_was_told_to_look() {
        assert_eq!(
            listen_addr("http://127.0.0.1:8080").expect("addr"),
            "127.0.0.1:8080".parse::<SocketAddr>().expect("addr")
        );
        assert_eq!(
            listen_addr("http://localhost:9000/").expect("addr").port(),
            9000
        );
        assert!(listen_addr("http://gw.example:80").is_err());
    }

    #[test]
    fn the_plugins_log_lines_are_shown_and_others_filtered() {
        let guest = r#"{"level":"INFO","target":"wasmgate::plugin::guest","fields":{"message":"hi","plugin":"hello","system":"hello"}}"#;
        assert_eq!(log_line(guest, "hello").as_deref(), Some("[hello] INFO hi"));
        assert_eq!(log_line(guest, "other"), None);
        let failed = r#"{"level":"ERROR","target":"wasmgate::plugin::loader","fields":{"message":"plugin load failed","plugin":"hello","cause":"bad"}}"#;
        let text = log_line(failed, "hello").expect("shown");
        assert!(
            text.contains("plugin load failed") && text.contains("cause=bad"),
            "{text}"
        );
        let chatter =
            r#"{"level":"INFO","target":"wasmgate::server","fields":{"message":"listening"}}"#;
        assert_eq!(log_line(chatter, "hello"), None);
    }
}
