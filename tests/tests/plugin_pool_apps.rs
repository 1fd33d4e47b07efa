//! The example plugins run pooled (`[plugins.<name>] instances = 2`) over real sockets: the Rust
//! chat and quiz (`plugins/chat`, `plugins/quiz`) and the JavaScript, Python and C chats
//! (`plugins/{js,py,c}-chat`, built from source like `lang_plugins` does).
//!
//! Events of one client go to one instance (picked from a hash of its id), so each test uses
//! enough clients (8: all on one instance has odds 1 in 128) that both instances serve some,
//! and checks only what clients see: rooms, nicknames and whispers across instances, a shared
//! counter that loses no increment, timers answered on the instance that set them, nicknames
//! claimed by exactly one client when all claim one at once (the check-then-bind of `nick` is
//! made atomic across instances by the plugin's key-value lock), and a quiz whose players sit
//! on both instances, scored right, with the countdown set on one instance closing a question
//! whose answers came through the other.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod common;
mod lang;
mod plugin_support;
#[allow(dead_code)]
#[path = "lang/wire.rs"]
mod wire;

use std::path::Path;
use std::time::Duration;

use common::{Client, TestGateway, sorted};
use lang::Lang;
use plugin_support::{CHAT, QUIZ, config, folder, install, plugin};
use serde_json::{Value, json};
use wasmgate::Config;
use wasmgate::config::{Instances, PluginConfig};
use wire::{expect, request, send, wait_for};

/// Instances per plugin in these tests.
const INSTANCES: usize = 2;
/// Clients per test: enough that both instances serve some.
const CLIENTS: usize = 8;
/// Rounds of the nickname race: each is a chance for two instances to interleave.
const RACE_ROUNDS: usize = 40;

/// `cfg` with the plugin `name` configured with `init` as its config and [`INSTANCES`]
/// instances.
fn pooled(cfg: &mut Config, name: &str, init: &str) {
    let entry = PluginConfig {
        config: init.to_owned(),
        instances: Some(Instances::Count(INSTANCES)),
        ..PluginConfig::default()
    };
    cfg.plugins.insert(name.to_owned(), entry);
}

/// A gateway serving the component `src` as `name`, pooled, once it serves.
async fn start_pooled(dir: &Path, name: &str, src: &str, init: &str) -> TestGateway {
    install(dir, name, src);
    let mut cfg = config(dir);
    pooled(&mut cfg, name, init);
    let gw = TestGateway::start(cfg).await;
    let entry = wait_for(&gw, name, "serves", |p| p["version"].is_string()).await;
    assert_eq!(entry["lastError"], Value::Null, "{entry}");
    let lanes = entry["instances"].as_array().map_or(0, Vec::len);
    assert_eq!(lanes, INSTANCES, "the plugin runs pooled: {entry}");
    gw
}

async fn connect_all(gw: &TestGateway, system: &str) -> Vec<Client> {
    let mut clients = Vec::with_capacity(CLIENTS);
    for _ in 0..CLIENTS {
        clients.push(gw.connect(system).await);
    }
    clients
}

/// The chat protocol across instances: nicknames, a room, `say`, `who`, whispers, a shared
/// counter and timers.
async fn chat_across_instances(gw: &TestGateway, system: &str) {
    let mut clients = connect_all(gw, system).await;
    let names: Vec<String> = (0..CLIENTS).map(|i| format!("u{i}")).collect();
    for (c, name) in clients.iter_mut().zip(&names) {
        request(c, "nick", json!({"name": name})).await;
        request(c, "join", json!({"room": "lobby"})).await;
    }
    // Every name is taken for every instance, wherever it was bound.
    for (i, c) in clients.iter_mut().enumerate() {
        let other = &names[(i + 1) % CLIENTS];
        send(c, "nick", json!({"name": other})).await;
        assert_eq!(expect(c, "nick").await["code"], 409, "{other} is taken");
    }

    // Everyone speaks; everyone hears everyone, under the speaker's nickname.
    for (i, c) in clients.iter_mut().enumerate() {
        send(
            c,
            "say",
            json!({"room": "lobby", "text": format!("hi from {i}")}),
        )
        .await;
    }
    for (i, c) in clients.iter_mut().enumerate() {
        // The pushes and the reply to its own `say` interleave: collect both.
        let mut heard = Vec::new();
        let mut reply = Value::Null;
        while heard.len() < CLIENTS || reply.is_null() {
            let frame = c.recv_json().await;
            match frame["event"].as_str() {
                Some("said") => heard.push(frame["data"].clone()),
                Some("say") => reply = frame,
                _ => {}
            }
        }
        heard.sort_by_key(|s| s["from"].as_str().unwrap_or_default().to_owned());
        let want: Vec<Value> = (0..CLIENTS)
            .map(|j| json!({"room": "lobby", "from": format!("u{j}"), "text": format!("hi from {j}")}))
            .collect();
        assert_eq!(heard, want, "client {i} hears the whole room");
        assert_eq!(reply["data"]["delivered"], CLIENTS, "{reply}");
    }
    let who = request(&mut clients[0], "who", json!({"room": "lobby"})).await;
    assert_eq!(sorted(&who["uids"]), names);

    // Whispers from one client reach every other, whichever instance serves them.
    for (i, name) in names.iter().enumerate().skip(1) {
        send(
            &mut clients[0],
            "whisper",
            json!({"to": name, "text": format!("psst {i}")}),
        )
        .await;
        assert_eq!(expect(&mut clients[0], "whisper").await["code"], 0);
        let w = expect(&mut clients[i], "whisper").await;
        assert_eq!(
            w["data"],
            json!({"from": "u0", "text": format!("psst {i}")})
        );
    }

    // One counter, incremented from every client at once: no increment lost.
    const INCRS: usize = 25;
    for c in clients.iter_mut() {
        for _ in 0..INCRS {
            send(c, "kv-incr", json!({"key": "hits"})).await;
        }
    }
    let mut seen = Vec::new();
    for c in clients.iter_mut() {
        for _ in 0..INCRS {
            let reply = expect(c, "kv-incr").await;
            assert_eq!(reply["code"], 0, "{reply}");
            seen.push(reply["data"]["value"].as_i64().unwrap());
        }
    }
    seen.sort_unstable();
    let total = i64::try_from(CLIENTS * INCRS).unwrap();
    assert_eq!(seen, (1..=total).collect::<Vec<_>>(), "each value once");

    // Timers fire on the instance that set them and reach their client.
    for (i, c) in clients.iter_mut().enumerate() {
        request(c, "timer", json!({"ms": 20, "payload": i})).await;
    }
    for (i, c) in clients.iter_mut().enumerate() {
        assert_eq!(expect(c, "timer").await["data"]["payload"], i);
    }
    let entry = plugin(gw, system).await;
    assert_eq!(entry["traps"], 0, "{entry}");
}

/// All clients claim the same nickname at once, [`RACE_ROUNDS`] times: each time exactly one
/// gets it. Without the key-value lock in `nick`, two instances can both see the name free and
/// both bind it.
async fn nick_race(gw: &TestGateway, system: &str) {
    let mut clients = connect_all(gw, system).await;
    for round in 0..RACE_ROUNDS {
        let name = format!("race{round}");
        for c in clients.iter_mut() {
            send(c, "nick", json!({"name": name})).await;
        }
        let mut winners = Vec::new();
        for c in clients.iter_mut() {
            let reply = expect(c, "nick").await;
            match reply["code"].as_u64() {
                Some(0) => winners.push(c.id.clone()),
                Some(409) => {}
                _ => panic!("nick {name}: {reply}"),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: {name} won by {winners:?}");
        let owners = gw
            .ok("get_client_ids_by_uid", system, json!({"uid": name}))
            .await;
        assert_eq!(sorted(&owners["list"]), winners, "round {round}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooled_rust_chat_serves_one_room_across_instances() {
    let dir = folder();
    let gw = start_pooled(dir.path(), "chat", CHAT, "").await;
    chat_across_instances(&gw, "chat").await;
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooled_rust_chat_gives_a_nickname_to_exactly_one_claimant() {
    let dir = folder();
    let gw = start_pooled(dir.path(), "chat", CHAT, "").await;
    nick_race(&gw, "chat").await;
    gw.stop().await;
}

async fn lang_gateway(lang: Lang, dir: &Path) -> TestGateway {
    let src = lang::component(lang, 1).await;
    start_pooled(dir, lang.plugin(), src.to_str().unwrap(), "").await
}

macro_rules! lang_tests {
    ($lang:expr, $room:ident, $race:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $room() {
            let dir = folder();
            let gw = lang_gateway($lang, dir.path()).await;
            chat_across_instances(&gw, $lang.plugin()).await;
            gw.stop().await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $race() {
            let dir = folder();
            let gw = lang_gateway($lang, dir.path()).await;
            nick_race(&gw, $lang.plugin()).await;
            gw.stop().await;
        }
    };
}

lang_tests!(
    Lang::Js,
    pooled_js_chat_serves_one_room_across_instances,
    pooled_js_chat_gives_a_nickname_to_exactly_one_claimant
);
lang_tests!(
    Lang::Python,
    pooled_py_chat_serves_one_room_across_instances,
    pooled_py_chat_gives_a_nickname_to_exactly_one_claimant
);
lang_tests!(
    Lang::C,
    pooled_c_chat_serves_one_room_across_instances,
    pooled_c_chat_gives_a_nickname_to_exactly_one_claimant
);

/// The quiz config of these tests: two questions, no pause.
fn quiz_config() -> String {
    json!({
        "questions": [
            {"text": "Q1", "choices": ["a", "b"], "answer": 0},
            {"text": "Q2", "choices": ["c", "d"], "answer": 1},
        ],
        "questionMs": 5000,
        "pauseMs": 0,
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooled_quiz_scores_players_on_every_instance() {
    let dir = folder();
    let gw = start_pooled(dir.path(), "quiz", QUIZ, &quiz_config()).await;
    let mut players = connect_all(&gw, "quiz").await;
    let names: Vec<String> = (0..CLIENTS).map(|i| format!("p{i}")).collect();
    for (p, name) in players.iter_mut().zip(&names).skip(1) {
        let joined = request(p, "join", json!({"room": "r", "name": name})).await;
        assert_eq!(joined["running"], false, "{joined}");
    }
    const QUESTION_MS: u64 = 1500;
    let started = request(
        &mut players[0],
        "start",
        json!({"room": "r", "name": "p0", "questionMs": QUESTION_MS}),
    )
    .await;
    assert_eq!(started["questions"], 2);
    for p in players.iter_mut() {
        let q = expect(p, "question").await["data"].clone();
        assert_eq!(
            (q["index"].clone(), q["text"].clone()),
            (json!(0), json!("Q1"))
        );
    }

    // A second start, from another client (maybe another instance), sees the running game.
    send(&mut players[1], "start", json!({"room": "r"})).await;
    assert_eq!(expect(&mut players[1], "start").await["code"], 409);
    // Q1: everyone answers, even players right, odd ones wrong. The last answer closes the
    // question early, on its instance, cancelling the countdown another instance set.
    for (i, p) in players.iter_mut().enumerate() {
        let choice = i % 2;
        assert_eq!(
            request(p, "answer", json!({"choice": choice})).await["index"],
            0
        );
        if i + 1 < CLIENTS {
            // Answering twice is refused (not for the last player: its answer closes Q1 and
            // opens Q2 at once).
            send(p, "answer", json!({"choice": choice})).await;
            let again = expect(p, "answer").await;
            assert_eq!(again["code"], 409, "{again}");
        }
    }
    let mut q1_scores = None;
    for p in players.iter_mut() {
        let result = expect(p, "result").await["data"].clone();
        assert_eq!(result["index"], 0, "{result}");
        assert_eq!(result["correct"], 0, "{result}");
        q1_scores.get_or_insert_with(|| result["scores"].clone());
        assert_eq!(
            Some(&result["scores"]),
            q1_scores.as_ref(),
            "one result for all"
        );
    }
    let q1_scores = q1_scores.unwrap();
    for (i, name) in names.iter().enumerate() {
        let points = q1_scores[name]
            .as_u64()
            .unwrap_or_else(|| panic!("{name}: {q1_scores}"));
        if i % 2 == 0 {
            assert!(points >= 500, "{name} was right: {q1_scores}");
        } else {
            assert_eq!(points, 0, "{name} was wrong: {q1_scores}");
        }
    }

    // Q2: only the first half answers (correctly). Nobody else does, so the countdown (set by
    // the instance that closed Q1) must close it; the cancelled Q1 countdown must not.
    let asked_at = std::time::Instant::now();
    for p in players.iter_mut() {
        let q = expect(p, "question").await["data"].clone();
        assert_eq!(q["index"], 1, "{q}");
    }
    for p in players.iter_mut().take(CLIENTS / 2) {
        request(p, "answer", json!({"choice": 1})).await;
    }
    let mut q2_scores = Value::Null;
    for p in players.iter_mut() {
        let result = expect(p, "result").await["data"].clone();
        assert_eq!(result["index"], 1, "{result}");
        q2_scores = result["scores"].clone();
    }
    assert!(
        asked_at.elapsed() >= Duration::from_millis(QUESTION_MS - 200),
        "Q2 closed by its deadline, not before ({:?})",
        asked_at.elapsed()
    );
    let answered: Vec<String> = q2_scores.as_object().unwrap().keys().cloned().collect();
    assert_eq!(answered, names[..CLIENTS / 2], "{q2_scores}");

    let mut want: Vec<(String, u64)> = names
        .iter()
        .map(|n| {
            let total = q1_scores[n].as_u64().unwrap() + q2_scores[n].as_u64().unwrap_or(0);
            (n.clone(), total)
        })
        .collect();
    want.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let want: Vec<Value> = want
        .into_iter()
        .map(|(name, score)| json!({"name": name, "score": score}))
        .collect();
    for p in players.iter_mut() {
        let over = expect(p, "gameover").await["data"].clone();
        assert_eq!(over["leaderboard"], Value::Array(want.clone()));
    }
    let board = request(&mut players[3], "leaderboard", json!({"room": "r"})).await;
    assert_eq!(board["running"], false, "{board}");
    assert_eq!(board["leaderboard"], Value::Array(want));
    let entry = plugin(&gw, "quiz").await;
    assert_eq!(entry["traps"], 0, "{entry}");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooled_quiz_gives_a_name_to_exactly_one_player() {
    let dir = folder();
    let gw = start_pooled(dir.path(), "quiz", QUIZ, &quiz_config()).await;
    let mut players = connect_all(&gw, "quiz").await;
    for round in 0..RACE_ROUNDS {
        let name = format!("race{round}");
        for p in players.iter_mut() {
            send(p, "join", json!({"room": "r", "name": name})).await;
        }
        let mut winners = Vec::new();
        for p in players.iter_mut() {
            let reply = expect(p, "join").await;
            match reply["code"].as_u64() {
                Some(0) => winners.push(p.id.clone()),
                Some(409) => {}
                _ => panic!("join as {name}: {reply}"),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: {name} won by {winners:?}");
    }
    gw.stop().await;
}
