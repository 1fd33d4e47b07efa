//! The example plugins end to end over real sockets: `plugins/chat` (nicknames, rooms, whispers,
//! surviving a hot reload) and `plugins/quiz` (a game that survives two hot reloads mid-question:
//! same scores, same question, timers delivered to the new version, no reconnects).
#![allow(clippy::unwrap_used)]

mod common;
mod plugin_support;

use common::TestGateway;
use plugin_support::*;
use serde_json::{Value, json};
use wasmgate::config::PluginConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_end_to_end_across_a_hot_reload() {
    let dir = folder();
    install(dir.path(), "chat", CHAT);
    let gw = TestGateway::start(config(dir.path())).await;
    let mut a = gw.connect("chat").await;
    let mut b = gw.connect("chat").await;

    assert_eq!(
        request(&mut a, "nick", json!({"name": "ann"})).await,
        json!({"name": "ann"})
    );
    request(&mut b, "nick", json!({"name": "bob"})).await;
    send(&mut b, "nick", json!({"name": "ann"})).await;
    assert_eq!(expect(&mut b, "nick").await["code"], 409);
    request(&mut a, "join", json!({"room": "lobby"})).await;
    request(&mut b, "join", json!({"room": "lobby"})).await;

    send(&mut a, "say", json!({"room": "lobby", "text": "hi all"})).await;
    let said = expect(&mut b, "said").await;
    assert_eq!(
        said["data"],
        json!({"room": "lobby", "from": "ann", "text": "hi all"})
    );
    assert_eq!(expect(&mut a, "say").await["data"]["delivered"], 2);

    hot_reload(&gw, dir.path(), "chat", CHAT, "chat-2").await;

    // Nicknames and rooms live in the gateway: the new version sees them.
    assert_eq!(
        request(&mut a, "who", json!({"room": "lobby"})).await,
        json!({"room": "lobby", "uids": ["ann", "bob"]})
    );
    send(&mut b, "whisper", json!({"to": "ann", "text": "psst"})).await;
    let w = expect(&mut a, "whisper").await;
    assert_eq!(w["data"], json!({"from": "bob", "text": "psst"}));
    assert_eq!(expect(&mut b, "whisper").await["data"]["delivered"], 1);
    send(
        &mut b,
        "say",
        json!({"room": "lobby", "text": "after reload"}),
    )
    .await;
    assert_eq!(expect(&mut a, "said").await["data"]["text"], "after reload");
    a.send_text("hello").await;
    assert_eq!(a.recv_text().await, "hello from rust");
    request(&mut b, "leave", json!({"room": "lobby"})).await;
    send(&mut b, "say", json!({"room": "lobby", "text": "x"})).await;
    assert_eq!(expect(&mut b, "say").await["code"], 403);
    assert_eq!(plugin(&gw, "chat").await["traps"], 0);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiz_survives_hot_reloads_mid_question() {
    let dir = folder();
    install(dir.path(), "quiz", QUIZ);
    let mut cfg = config(dir.path());
    let questions = json!({
        "questions": [
            {"text": "Q1", "choices": ["a", "b"], "answer": 0},
            {"text": "Q2", "choices": ["c", "d"], "answer": 1},
        ],
        "questionMs": 5000,
        "pauseMs": 0,
    });
    cfg.plugins.insert(
        "quiz".into(),
        PluginConfig {
            config: questions.to_string(),
            ..PluginConfig::default()
        },
    );
    let gw = TestGateway::start(cfg).await;
    // The reloads below must land within a question's 1.5 s, and compiling is slow in test
    // builds: load the two builds once under other names first, so the reloads reuse their code.
    for tag in ["quiz-2", "quiz-3"] {
        install_bytes(dir.path(), tag, &variant(QUIZ, tag));
        wait_plugin(&gw, tag, "compiled", |p| p["version"].is_string()).await;
        std::fs::remove_file(dir.path().join(format!("{tag}.wasm"))).expect("remove");
        wait_plugin(&gw, tag, "unloaded", Value::is_null).await;
    }
    let mut ann = gw.connect("quiz").await;
    let mut bob = gw.connect("quiz").await;

    request(&mut bob, "join", json!({"room": "r", "name": "bob"})).await;
    let started = request(
        &mut ann,
        "start",
        json!({"room": "r", "name": "ann", "questionMs": 1500}),
    )
    .await;
    assert_eq!(started["questions"], 2);
    let q1 = expect(&mut bob, "question").await["data"].clone();
    assert_eq!(
        (q1["index"].clone(), q1["text"].clone()),
        (json!(0), json!("Q1"))
    );
    expect(&mut ann, "question").await;
    assert_eq!(
        request(&mut ann, "answer", json!({"choice": 0})).await["index"],
        0
    );

    // Reload with ann's answer recorded and bob's pending.
    let entry = hot_reload(&gw, dir.path(), "quiz", QUIZ, "quiz-2").await;
    assert_eq!(entry["code"], "memory", "{entry}");

    assert_eq!(
        request(&mut bob, "answer", json!({"choice": 1})).await["index"],
        0
    );
    let result = expect(&mut ann, "result").await["data"].clone();
    assert_eq!(result["index"], 0, "{result}");
    assert_eq!(result["correct"], 0);
    let ann_q1 = result["scores"]["ann"].as_u64().expect("ann scored");
    assert!(
        ann_q1 >= 500,
        "ann's answer from before the reload counts: {result}"
    );
    assert_eq!(result["scores"]["bob"], 0, "{result}");
    let q2 = expect(&mut bob, "question").await["data"].clone();
    assert_eq!(
        (q2["index"].clone(), q2["text"].clone()),
        (json!(1), json!("Q2"))
    );
    expect(&mut ann, "question").await;
    request(&mut ann, "answer", json!({"choice": 1})).await;

    // Reload again mid-question: bob never answers, so the question's deadline timer (set by
    // the previous version) must fire into the new one.
    hot_reload(&gw, dir.path(), "quiz", QUIZ, "quiz-3").await;

    let result = expect(&mut bob, "result").await["data"].clone();
    assert_eq!(result["index"], 1, "{result}");
    let ann_q2 = result["scores"]["ann"].as_u64().expect("ann scored");
    assert!(ann_q2 >= 500, "{result}");
    let over = expect(&mut bob, "gameover").await["data"].clone();
    assert_eq!(
        over["leaderboard"],
        json!([{"name": "ann", "score": ann_q1 + ann_q2}, {"name": "bob", "score": 0}])
    );
    expect(&mut ann, "gameover").await;
    let entry = plugin(&gw, "quiz").await;
    assert_eq!(entry["reloads"], 3, "{entry}");
    assert_eq!(entry["traps"], 0, "{entry}");
    assert_eq!(gw.gateway.local_connection_count(), 2, "nobody reconnected");
    gw.stop().await;
}
