//! Scenario files: a plugin test as data, run by `wasmgate-testkit run <plugin.wasm> <file>`,
//! for authors of any language.
//!
//! A scenario is a JSON object: `system` and `config` (optional, as [`crate::SimBuilder`]) and
//! `steps`, run in order. Clients are named in the file (`"ann"`); the runner maps names to the
//! ids the simulation gives them. Steps (one key names the step):
//!
//! | step | does |
//! |---|---|
//! | `{"connect": "ann", "query": {"room": "lobby"}, "uid": "u1", "claims": {…}}` | connects `ann` (all but the name optional); must be accepted |
//! | `{"connect": "bob", "rejected": 4001}` | connects `bob`, which must be rejected with that code |
//! | `{"send": "ann", "text": "…"}` / `{"send": "ann", "json": {…}}` | `ann` sends a text frame (`json` is sent as its text) |
//! | `{"expect": "ann", "json": {…}}` | the next frame `ann` received (not yet checked) is JSON containing these fields (objects match as subsets, recursively; `"$ann"` stands for ann's id) |
//! | `{"expect": "ann", "text": "…"}` | the next frame is exactly this text |
//! | `{"expect_nothing": "ann"}` | `ann` has no frame left to check |
//! | `{"skip": "ann"}` | forget every frame `ann` received so far |
//! | `{"advance_ms": 5000}` | advance the virtual clock, firing due timers |
//! | `{"disconnect": "ann", "code": 1000}` | `ann` leaves (code optional, 1000) |
//! | `{"expect_closed": "ann", "code": 4001}` | the gateway closed `ann` with this code |
//! | `{"expect_kv": "key", "value": "…"}` / `{"expect_kv": "key", "json": …}` / `{"expect_kv": "key", "absent": true}` | the key-value store holds this |
//! | `{"expect_log": "text"}` | some log line contains the text |
//! | `{"expect_groups": "ann", "groups": ["a", "b"]}` | `ann`'s groups |
//!
//! The run stops at the first failing step and says which (its index and the step itself).

use std::collections::HashMap;

use serde_json::Value;

use crate::sim::empty_context;
use crate::{Frame, KitError, Sim};

/// Why a scenario failed.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file is not a scenario.
    #[error("scenario: {0}")]
    Invalid(String),
    /// The simulation could not start.
    #[error(transparent)]
    Kit(#[from] KitError),
    /// A step failed.
    #[error("step {index} {step}: {why}")]
    Step {
        /// 0-based.
        index: usize,
        /// The step, as written.
        step: Value,
        /// What went wrong.
        why: String,
    },
}

/// Run the scenario `scenario` (parsed JSON) against the component `plugin`; the number of
/// steps run.
pub fn run(plugin: &std::path::Path, scenario: &Value) -> Result<usize, ScenarioError> {
    let obj = scenario
        .as_object()
        .ok_or_else(|| ScenarioError::Invalid("not a JSON object".into()))?;
    let mut builder = Sim::builder(plugin);
    if let Some(s) = obj.get("system").and_then(Value::as_str) {
        builder = builder.system(s);
    }
    if let Some(c) = obj.get("config") {
        builder = builder.config(match c {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        });
    }
    let mut sim = builder.build()?;
    let steps = obj
        .get("steps")
        .and_then(Value::as_array)
        .ok_or_else(|| ScenarioError::Invalid("`steps` must be a list".into()))?;
    let mut runner = Runner {
        sim: &mut sim,
        names: HashMap::new(),
        cursor: HashMap::new(),
    };
    for (index, step) in steps.iter().enumerate() {
        runner.step(step).map_err(|why| ScenarioError::Step {
            index,
            step: step.clone(),
            why,
        })?;
    }
    Ok(steps.len())
}

struct Runner<'a> {
    sim: &'a mut Sim,
    /// Scenario name → client id.
    names: HashMap<String, String>,
    /// Frames of each client already checked.
    cursor: HashMap<String, usize>,
}

/// Whether `got` contains `want`: objects as subsets (recursively), the rest equal.
fn contains(got: &Value, want: &Value) -> bool {
    match (got, want) {
        (Value::Object(g), Value::Object(w)) => w
            .iter()
            .all(|(k, wv)| g.get(k).is_some_and(|gv| contains(gv, wv))),
        (Value::Array(g), Value::Array(w)) => {
            g.len() == w.len() && g.iter().zip(w).all(|(a, b)| contains(a, b))
        }
        _ => got == want,
    }
}

impl Runner<'_> {
    fn id(&self, name: &str) -> Result<String, String> {
        self.names
            .get(name)
            .cloned()
            .ok_or_else(|| format!("no client named {name} connected in this scenario"))
    }

    /// `"$name"` strings replaced by client ids.
    fn resolve(&self, v: &Value) -> Value {
        match v {
            Value::String(s) => match s.strip_prefix('$').and_then(|n| self.names.get(n)) {
                Some(id) => Value::String(id.clone()),
                None => v.clone(),
            },
            Value::Array(a) => Value::Array(a.iter().map(|x| self.resolve(x)).collect()),
            Value::Object(o) => Value::Object(
                o.iter()
                    .map(|(k, x)| (k.clone(), self.resolve(x)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }

    /// The next unchecked frame of `name`.
    fn next_frame(&mut self, name: &str) -> Result<Frame, String> {
        let id = self.id(name)?;
        let seen = self.cursor.entry(name.to_owned()).or_default();
        let frames = self.sim.received(&id);
        let frame = frames.get(*seen).cloned().ok_or_else(|| {
            format!(
                "{name} received nothing more (it got {} frames)",
                frames.len()
            )
        })?;
        *seen += 1;
        Ok(frame)
    }

    fn step(&mut self, step: &Value) -> Result<(), String> {
        let s = step
            .as_object()
            .ok_or_else(|| "a step must be an object".to_owned())?;
        let kit = |e: KitError| e.to_string();
        if let Some(name) = s.get("connect").and_then(Value::as_str) {
            let mut ctx = empty_context();
            if let Some(q) = s.get("query").and_then(Value::as_object) {
                ctx.query = q
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().map_or(v.to_string(), str::to_owned)))
                    .collect();
            }
            ctx.uid = s.get("uid").and_then(Value::as_str).map(str::to_owned);
            ctx.claims = s.get("claims").map(Value::to_string);
            let expected = s.get("rejected").and_then(Value::as_u64);
            return match (self.sim.connect_with(ctx), expected) {
                (Ok(id), None) => {
                    self.names.insert(name.to_owned(), id);
                    Ok(())
                }
                (Ok(_), Some(code)) => Err(format!("accepted, expected a reject with {code}")),
                (Err(KitError::Rejected { code, .. }), Some(want)) if u64::from(code) == want => {
                    Ok(())
                }
                (Err(e), _) => Err(kit(e)),
            };
        }
        if let Some(name) = s.get("send").and_then(Value::as_str) {
            let id = self.id(name)?;
            let text = match (s.get("text"), s.get("json")) {
                (Some(Value::String(t)), _) => t.clone(),
                (_, Some(j)) => self.resolve(j).to_string(),
                _ => return Err("`send` needs `text` or `json`".into()),
            };
            return self.sim.send_text(&id, &text).map_err(kit);
        }
        if let Some(name) = s.get("expect").and_then(Value::as_str) {
            let frame = self.next_frame(name)?;
            if let Some(want) = s.get("text").and_then(Value::as_str) {
                return match frame.as_text() {
                    Some(t) if t == want => Ok(()),
                    _ => Err(format!("got {frame:?}")),
                };
            }
            let want = self.resolve(s.get("json").ok_or("`expect` needs `text` or `json`")?);
            let got = frame.json().ok_or_else(|| format!("not JSON: {frame:?}"))?;
            return if contains(&got, &want) {
                Ok(())
            } else {
                Err(format!("got {got}"))
            };
        }
        if let Some(name) = s.get("expect_nothing").and_then(Value::as_str) {
            return match self.next_frame(name) {
                Err(_) => Ok(()),
                Ok(f) => Err(format!("got {f:?}")),
            };
        }
        if let Some(name) = s.get("skip").and_then(Value::as_str) {
            let id = self.id(name)?;
            let n = self.sim.received(&id).len();
            self.cursor.insert(name.to_owned(), n);
            return Ok(());
        }
        if let Some(ms) = s.get("advance_ms").and_then(Value::as_u64) {
            return self.sim.advance_ms(ms).map_err(kit);
        }
        if let Some(name) = s.get("disconnect").and_then(Value::as_str) {
            let id = self.id(name)?;
            let code = s.get("code").and_then(Value::as_u64).unwrap_or(1000);
            let code = u16::try_from(code).map_err(|_| "bad close code".to_owned())?;
            return self.sim.disconnect(&id, code, "").map_err(kit);
        }
        if let Some(name) = s.get("expect_closed").and_then(Value::as_str) {
            let id = self.id(name)?;
            let want = s.get("code").and_then(Value::as_u64);
            return match (self.sim.closed(&id), want) {
                (Some((code, _)), Some(w)) if u64::from(code) == w => Ok(()),
                (Some(_), None) => Ok(()),
                (got, _) => Err(format!("closed: {got:?}")),
            };
        }
        if let Some(key) = s.get("expect_kv").and_then(Value::as_str) {
            let got = self.sim.kv_str(key);
            if s.get("absent").and_then(Value::as_bool) == Some(true) {
                return match got {
                    None => Ok(()),
                    Some(v) => Err(format!("holds {v}")),
                };
            }
            let got = got.ok_or_else(|| format!("no key {key}"))?;
            if let Some(want) = s.get("value").and_then(Value::as_str) {
                return if got == want {
                    Ok(())
                } else {
                    Err(format!("holds {got}"))
                };
            }
            let want = self.resolve(
                s.get("json")
                    .ok_or("`expect_kv` needs `value`, `json` or `absent`")?,
            );
            let parsed: Value =
                serde_json::from_str(&got).map_err(|_| format!("not JSON: {got}"))?;
            return if contains(&parsed, &want) {
                Ok(())
            } else {
                Err(format!("holds {parsed}"))
            };
        }
        if let Some(text) = s.get("expect_log").and_then(Value::as_str) {
            return if self.sim.logs().iter().any(|l| l.message.contains(text)) {
                Ok(())
            } else {
                Err(format!(
                    "no log line contains it ({} lines)",
                    self.sim.logs().len()
                ))
            };
        }
        if let Some(name) = s.get("expect_groups").and_then(Value::as_str) {
            let id = self.id(name)?;
            let got = self.sim.groups_of(&id);
            let want: Vec<String> = s
                .get("groups")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default();
            return if got == want {
                Ok(())
            } else {
                Err(format!("in {got:?}"))
            };
        }
        Err("unknown step".into())
    }
}

#[cfg(test)]
mod tests {
    use super::contains;
    use serde_json::json;

    #[test]
    fn objects_match_as_subsets_and_the_rest_exactly() {
        let got = json!({"event": "tick", "data": {"left": 3, "room": "r"}, "code": 0});
        assert!(contains(&got, &json!({"event": "tick"})));
        assert!(contains(&got, &json!({"data": {"left": 3}})));
        assert!(!contains(&got, &json!({"data": {"left": 4}})));
        assert!(!contains(&got, &json!({"missing": 1})));
        assert!(contains(
            &json!([1, {"a": 1, "b": 2}]),
            &json!([1, {"a": 1}])
        ));
        assert!(!contains(&json!([1, 2]), &json!([1])));
    }
}
