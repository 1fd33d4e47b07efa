//! The plugin test kit (`testkit/`) on the example plugins: the quiz's countdown in virtual time
//! (a whole game of 10 s questions runs without waiting), a chat scenario file run the way the
//! command line runs it, and a plugin that loops forever failing its event instead of hanging.
#![allow(clippy::unwrap_used)]

mod common;
mod plugin_support;

use plugin_support::{CHAT, CONTRACT02, LOOPER, QUIZ};
use serde_json::{Value, json};
use wasmgate_testkit::{Frame, KitError, Sim};

/// The JSON frames a client received since the last call, as values.
fn frames(sim: &mut Sim, client: &str) -> Vec<Value> {
    sim.take_received(client)
        .iter()
        .filter_map(Frame::json)
        .collect()
}

/// The pushes of event `name` among `frames`.
fn pushes<'a>(frames: &'a [Value], name: &str) -> Vec<&'a Value> {
    frames
        .iter()
        .filter(|f| f["event"] == name && f.get("code").is_none())
        .collect()
}

fn say(sim: &mut Sim, client: &str, event: &str, data: Value) {
    let frame = json!({"event": event, "data": data}).to_string();
    sim.send_text(client, &frame).unwrap();
}

#[test]
fn the_quiz_countdown_runs_in_virtual_time() {
    let config = json!({
        "questions": [
            {"text": "2+2?", "choices": ["3", "4"], "answer": 1},
            {"text": "Capital of France?", "choices": ["Paris", "Rome"], "answer": 0},
        ],
        "questionMs": 10_000,
        "pauseMs": 2_000,
    });
    let mut sim = Sim::builder(QUIZ)
        .system("quiz")
        .config(config.to_string())
        .build()
        .unwrap();
    let t0 = sim.now_ms();
    let ann = sim.connect().unwrap();
    let bob = sim.connect().unwrap();
    say(&mut sim, &ann, "start", json!({"room": "r", "name": "ann"}));
    say(&mut sim, &bob, "join", json!({"room": "r", "name": "bob"}));
    let got = frames(&mut sim, &ann);
    let q0 = pushes(&got, "question");
    assert_eq!(q0.len(), 1, "{got:?}");
    assert_eq!(q0[0]["data"]["index"], 0);
    // The deadline is on the virtual clock.
    assert_eq!(q0[0]["data"]["deadlineMs"], t0 + 10_000);
    assert_eq!(sim.pending_timers(), 1, "the countdown");
    frames(&mut sim, &bob); // bob saw the same question

    // Bob answers right at once; ann does not answer, so the question stays open.
    say(&mut sim, &bob, "answer", json!({"choice": 1}));
    sim.advance_ms(9_999).unwrap();
    assert!(
        pushes(&frames(&mut sim, &ann), "result").is_empty(),
        "not yet"
    );
    sim.advance_ms(1).unwrap();
    let got = frames(&mut sim, &ann);
    let result = pushes(&got, "result");
    assert_eq!(result.len(), 1, "closed at the deadline: {got:?}");
    assert_eq!(result[0]["data"]["correct"], 1);
    assert_eq!(
        result[0]["data"]["scores"]["bob"], 1000,
        "an instant answer scores 1000"
    );

    // The pause, then the next question.
    sim.advance_ms(1_999).unwrap();
    assert!(pushes(&frames(&mut sim, &ann), "question").is_empty());
    sim.advance_ms(1).unwrap();
    let got = frames(&mut sim, &bob);
    let q1 = pushes(&got, "question");
    assert_eq!(q1.len(), 1, "{got:?}");
    assert_eq!(q1[0]["data"]["index"], 1);
    assert_eq!(q1[0]["data"]["deadlineMs"], t0 + 22_000);

    // Both answer: the question closes early and the game ends.
    sim.advance_ms(5_000).unwrap();
    say(&mut sim, &ann, "answer", json!({"choice": 0}));
    say(&mut sim, &bob, "answer", json!({"choice": 1}));
    let got = frames(&mut sim, &ann);
    let over = pushes(&got, "gameover");
    assert_eq!(over.len(), 1, "{got:?}");
    let board = &over[0]["data"]["leaderboard"];
    assert_eq!(board[0]["name"], "bob", "{board}");
    assert_eq!(board[0]["score"], 1000);
    assert_eq!(board[1]["name"], "ann");
    assert_eq!(board[1]["score"], 750, "half the time left: 500 + 250");
    assert_eq!(sim.pending_timers(), 0);
    assert!(
        sim.kv_keys().iter().any(|k| k == "board:r"),
        "{:?}",
        sim.kv_keys()
    );
    assert!(sim.traps().is_empty(), "{:?}", sim.traps());
    // The game's 17 s went by on the virtual clock (no test asserts on the wall clock).
    assert_eq!(sim.now_ms() - t0, 17_000);
}

#[test]
fn a_scenario_file_drives_the_chat_example() {
    let file = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../plugins/chat/scenarios/rooms-and-timers.json"
    );
    let scenario: Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    let steps = wasmgate_testkit::scenario::run(CHAT.as_ref(), &scenario).unwrap();
    assert!(steps > 20);

    // A failing step is reported with its index and what was received instead.
    let wrong = json!({"steps": [
        {"connect": "ann"},
        {"send": "ann", "text": "hello"},
        {"expect": "ann", "text": "hello from python"},
    ]});
    let err = wasmgate_testkit::scenario::run(CHAT.as_ref(), &wrong).unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with("step 2 "), "{text}");
    assert!(text.contains("hello from rust"), "{text}");
}

#[test]
fn connect_context_member_data_and_bound_timers_in_the_simulation() {
    let mut sim = Sim::builder(CONTRACT02).system("c2").build().unwrap();
    let a = sim.connect_with_query(&[("room", "lobby")]).unwrap();
    let b = sim.connect().unwrap();
    let call = |sim: &mut Sim, from: &str, call: &str, args: Value| -> Value {
        let req = json!({"call": call, "args": args, "id": 1}).to_string();
        sim.send_text(from, &req).unwrap();
        let got = frames(sim, from);
        got.into_iter().find(|f| f["call"] == call).unwrap()
    };
    assert_eq!(
        call(&mut sim, &a, "context", json!({}))["ok"]["query"],
        json!([["room", "lobby"]])
    );
    let member =
        |c: &str, user: &str| json!({"client": c, "group": "g", "userId": user, "extend": "x"});
    call(&mut sim, &a, "join-group", member(&a, "ua"));
    call(&mut sim, &b, "join-group", member(&b, "ub"));
    let notice = frames(&mut sim, &a);
    assert_eq!(notice[0]["code"], 1001);
    assert_eq!(
        notice[0]["data"],
        json!({"clientId": b, "userId": "ub", "extend": "x"})
    );
    // A timer bound to b dies with it; an unbound one fires.
    call(
        &mut sim,
        &a,
        "set-timer",
        json!({"ms": 100, "payload": a, "client": b}),
    );
    call(&mut sim, &a, "set-timer", json!({"ms": 200, "payload": a}));
    sim.disconnect(&b, 1000, "bye").unwrap();
    let left = frames(&mut sim, &a);
    assert_eq!(left[0]["code"], 1002, "{left:?}");
    sim.advance_ms(1_000).unwrap();
    let fired = frames(&mut sim, &a);
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert_eq!(fired[0]["client"], Value::Null);
    // A reject code a server may not send becomes 4000, as in the gateway.
    let err = sim.connect_with_query(&[("reject", "1006")]).unwrap_err();
    assert!(
        matches!(err, KitError::Rejected { code: 4000, .. }),
        "{err}"
    );
}

#[test]
fn a_plugin_that_loops_forever_fails_its_event_and_is_instantiated_again() {
    let mut sim = Sim::builder(LOOPER)
        .fuel_per_event(50_000_000)
        .build()
        .unwrap();
    let c = sim.connect().unwrap();
    let err = sim.send_text(&c, "loop").unwrap_err();
    assert!(
        matches!(
            err,
            KitError::Trap {
                event: "on-message",
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(sim.traps().len(), 1);
}
