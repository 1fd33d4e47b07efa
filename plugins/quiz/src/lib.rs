//! `quiz`: a timed multiplayer quiz, as a wasmgate plugin.
//!
//! The first client that sends `start` in a room hosts a game there. Questions are pushed to
//! the room with a deadline; answers score by speed; after each question the room gets the
//! result, and after the last one the leaderboard. A game can run in many rooms at once.
//!
//! All game state lives in the key-value store (`game:<room>`: current question, phase,
//! deadline, answers, the questions themselves; `board:<room>`: scores), and the countdowns are
//! host timers whose payload names the room and question. So a game survives a hot reload
//! mid-question: the new version reads the same state, keeps the same scores and question, and
//! receives the pending timers. Plugin memory only holds the parsed init config.
//!
//! Pooled (`instances = N`): players of one room may be served by different instances, and a
//! countdown fires on whichever instance set it. Every handler already loads the game from the
//! store, and its first kv call holds the plugin's key-value lock until it returns, so an answer,
//! a timer tick and a `start` never interleave, whatever instance runs them. `join` takes that
//! lock before checking that a name is free (see [`enter`]), and every game gets an id from the
//! store that its timers carry, so a tick from an earlier game in the same room is ignored even
//! when it was already on its way when that game ended.
//!
//! # Protocol
//!
//! Requests are JSON text frames `{"event":"<name>","data":{...}}`, answered
//! `{"event":"<name>","code":0,"msg":"success","data":{...}}` or, on failure,
//! `{"event":"<name>","code":<n>,"msg":"<why>","data":null}` (400 bad request, 403 not allowed,
//! 404 no game / unknown event, 409 conflict, 500 host failure).
//!
//! | event | data | reply data |
//! |---|---|---|
//! | `join` | `{room, name?}` | `{room, name, running}`: joins the room; `name` is bound as the uid (409 if taken); if a question is open it is pushed to the joiner |
//! | `start` | `{room, name?, questionMs?, pauseMs?}` | `{room, questions, questionMs, pauseMs}`: joins the room and starts a game, hosted by the sender (409 if one is running) |
//! | `answer` | `{choice}` | `{index}`: answers the open question of the sender's room (403 not in a room, 404 no game, 409 closed / too late / already answered, 400 no such choice) |
//! | `leaderboard` | `{room}` | `{room, running, leaderboard}` |
//! | `stop` | `{room}` | `{room}`: the host ends the game early (403 for others) |
//!
//! Pushes to every member of the room, as `{"event":"<name>","data":{...}}`:
//! - `question {index, count, text, choices, deadlineMs, questionMs}`: `deadlineMs` is the
//!   gateway's wall clock (epoch ms) when answers close;
//! - `result {index, correct, scores, leaderboard}`: `correct` is the index of the right
//!   choice, `scores` this question's points by player name, `leaderboard` the totals so far;
//! - `gameover {leaderboard}`: `leaderboard` is `[{name, score}]`, best first.
//!
//! Scoring: a correct answer earns 500 points plus up to 500 more the faster it came
//! (linear in the time left), a wrong one 0. A question closes at its deadline or as soon as
//! every member of the room has answered. Between questions there is a pause of `pauseMs`
//! (0 asks the next question at once). A player's name is its uid, or its client id when it has
//! none.
//!
//! # Config
//!
//! The init config is empty (built-in questions, 10 s per question, 2 s pause) or JSON
//! `{"questions":[{"text","choices":[..],"answer":<index>}], "questionMs":n, "pauseMs":n}`, each
//! field optional. An invalid config fails `init`, so a bad reload keeps the old version.
//! `questionMs` is clamped to 100–600000 and `pauseMs` to 0–60000.

mod flow;
mod game;
mod questions;

use serde_json::{Value, json};
use wasmgate_guest::prelude::*;
use wasmgate_guest::reply::CODE_BAD_REQUEST;

use crate::game::{Game, Phase, Tick, load_board, load_game, ranking};
use crate::questions::{Config, clamp_pause_ms, clamp_question_ms};

/// Bad JSON, or a missing or invalid field.
const BAD_REQUEST: i32 = CODE_BAD_REQUEST;
/// Not allowed for this client.
const FORBIDDEN: i32 = 403;
/// No game where one is needed.
const NOT_FOUND: i32 = 404;
/// The request conflicts with the game's state.
const CONFLICT: i32 = 409;
/// Longest room or player name, in characters.
const MAX_NAME: usize = 64;
/// The info key holding the room a client plays in.
const ROOM_INFO: &str = "quiz.room";
/// The key `enter` reads to take the plugin's key-value lock before checking a name (never
/// written: the registry holds the names).
const NAME_LOCK: &str = "lock:names";
/// The counter giving each game its id.
const GAME_IDS: &str = "games";

/// The plugin: only the parsed config lives in memory.
#[derive(Default)]
struct Quiz {
    /// Questions and timings for new games.
    config: Config,
}

/// A required string field: present, non-empty, at most [`MAX_NAME`] characters.
fn name_field(data: &Value, field: &str) -> Result<String, EventError> {
    match data.get(field).and_then(Value::as_str) {
        Some(v) if !v.trim().is_empty() && v.chars().count() <= MAX_NAME => Ok(v.to_owned()),
        _ => Err(EventError::with_code(
            BAD_REQUEST,
            format!("field '{field}' must be 1-{MAX_NAME} characters"),
        )),
    }
}

/// An optional non-negative integer field.
fn opt_ms(data: &Value, field: &str) -> Result<Option<u64>, EventError> {
    match data.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or_else(|| {
            EventError::with_code(BAD_REQUEST, format!("field '{field}' must be a number"))
        }),
    }
}

/// Put `client` in `room` (group and info map), binding `name` as its uid if given.
/// Returns the player's name.
fn enter(client: &str, room: &str, name: Option<&str>) -> Result<String, EventError> {
    if let Some(name) = name {
        // Under a pool two instances may check the same free name at once and both bind it.
        // The first kv call of an event takes the plugin's key-value lock until the event
        // returns, so this read makes the check and the bind one step across instances.
        host::kv_get(NAME_LOCK)?;
        if host::get_client_ids_by_uid(name)
            .iter()
            .any(|c| c != client)
        {
            return Err(EventError::with_code(
                CONFLICT,
                format!("name '{name}' is taken"),
            ));
        }
        host::bind_uid(client, name)?;
    }
    host::join_group(client, room)?;
    host::update_info(client, [(ROOM_INFO, room)])?;
    Ok(flow::player_name(client))
}

impl Quiz {
    fn join(&mut self, client: &str, data: Value) -> HandlerResult {
        let room = name_field(&data, "room")?;
        let name = data
            .get("name")
            .map(|_| name_field(&data, "name"))
            .transpose()?;
        let name = enter(client, &room, name.as_deref())?;
        let game = load_game(&room)?;
        reply_ok(
            client,
            "join",
            &json!({ "room": room, "name": name, "running": game.is_some() }),
        )?;
        if let Some(game) = game.filter(|g| g.phase == Phase::Asking) {
            push(client, "question", &game.question_push())?;
        }
        Ok(())
    }

    fn start(&mut self, client: &str, data: Value) -> HandlerResult {
        let room = name_field(&data, "room")?;
        let name = data
            .get("name")
            .map(|_| name_field(&data, "name"))
            .transpose()?;
        let question_ms =
            clamp_question_ms(opt_ms(&data, "questionMs")?.unwrap_or(self.config.question_ms));
        let pause_ms = clamp_pause_ms(opt_ms(&data, "pauseMs")?.unwrap_or(self.config.pause_ms));
        if load_game(&room)?.is_some() {
            return Err(EventError::with_code(
                CONFLICT,
                format!("a game is already running in '{room}'"),
            ));
        }
        enter(client, &room, name.as_deref())?;
        let id = u64::try_from(host::kv_incr(GAME_IDS, 1)?).unwrap_or_default();
        let game = Game {
            id,
            host: client.to_owned(),
            questions: self.config.questions.clone(),
            question_ms,
            pause_ms,
            index: 0,
            phase: Phase::Pause,
            deadline_ms: 0,
            timer: 0,
            answers: Default::default(),
        };
        game::save_board(&room, &Default::default())?;
        reply_ok(
            client,
            "start",
            &json!({
                "room": room,
                "questions": game.questions.len(),
                "questionMs": question_ms,
                "pauseMs": pause_ms,
            }),
        )?;
        log_info!("{client} started a quiz in {room}");
        flow::ask(&room, game, 0)?;
        Ok(())
    }

    fn answer(&mut self, client: &str, data: Value) -> HandlerResult {
        let Some(choice) = data.get("choice").and_then(Value::as_u64) else {
            return Err(EventError::with_code(
                BAD_REQUEST,
                "field 'choice' must be a number",
            ));
        };
        let Some(room) = host::get_info_field(client, ROOM_INFO)? else {
            return Err(EventError::with_code(FORBIDDEN, "join a room first"));
        };
        let Some(mut game) = load_game(&room)? else {
            return Err(EventError::with_code(
                NOT_FOUND,
                format!("no game in '{room}'"),
            ));
        };
        let name = flow::player_name(client);
        let choice = usize::try_from(choice).unwrap_or(usize::MAX);
        if let Err(refusal) = game.accept(client, &name, choice, host::now_ms()) {
            let (code, msg) = refusal.reply();
            return Err(EventError::with_code(code, msg));
        }
        game::save_game(&room, &game)?;
        reply_ok(client, "answer", &json!({ "index": game.index }))?;
        flow::close_early_if_all_answered(&room, game)?;
        Ok(())
    }

    fn leaderboard(&mut self, client: &str, data: Value) -> HandlerResult {
        let room = name_field(&data, "room")?;
        let board = load_board(&room)?;
        let running = load_game(&room)?.is_some();
        reply_ok(
            client,
            "leaderboard",
            &json!({ "room": room, "running": running, "leaderboard": ranking(&board) }),
        )?;
        Ok(())
    }

    fn stop(&mut self, client: &str, data: Value) -> HandlerResult {
        let room = name_field(&data, "room")?;
        let Some(game) = load_game(&room)? else {
            return Err(EventError::with_code(
                NOT_FOUND,
                format!("no game in '{room}'"),
            ));
        };
        if game.host != client {
            return Err(EventError::with_code(
                FORBIDDEN,
                "only the host may stop the game",
            ));
        }
        host::cancel_timer(game.timer);
        reply_ok(client, "stop", &json!({ "room": room }))?;
        flow::finish(&room)?;
        Ok(())
    }

    fn router() -> Router<Self> {
        Router::new()
            .on("join", Self::join)
            .on("start", Self::start)
            .on("answer", Self::answer)
            .on("leaderboard", Self::leaderboard)
            .on("stop", Self::stop)
    }
}

impl Plugin for Quiz {
    fn init(&mut self, config: &str) -> Result<(), String> {
        self.config = Config::parse(config)?;
        log_info!("quiz ready with {} questions", self.config.questions.len());
        Ok(())
    }

    fn on_message(&mut self, client: &str, msg: Message) {
        Self::router().dispatch(self, client, &msg);
    }

    fn on_timer(&mut self, timer: &Timer) {
        let payload = timer.payload.as_str();
        match serde_json::from_str::<Tick>(payload) {
            Ok(tick) => {
                if let Err(e) = flow::tick(&tick) {
                    log_error!("quiz timer for {} failed: {e}", tick.room);
                }
            }
            Err(e) => log_warn!("ignoring a timer with payload {payload}: {e}"),
        }
    }
}

export_plugin!(Quiz);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_fields_are_bounded() {
        let data = json!({"room": "r1", "empty": "", "long": "x".repeat(65), "n": 1});
        assert_eq!(name_field(&data, "room"), Ok("r1".to_owned()));
        for bad in ["empty", "long", "n", "absent"] {
            assert_eq!(
                name_field(&data, bad).map_err(|e| e.code),
                Err(400),
                "{bad}"
            );
        }
    }

    #[test]
    fn optional_durations() {
        let data = json!({"a": 5, "b": null, "c": "x", "d": -1});
        assert_eq!(opt_ms(&data, "a"), Ok(Some(5)));
        assert_eq!(opt_ms(&data, "b"), Ok(None));
        assert_eq!(opt_ms(&data, "z"), Ok(None));
        assert_eq!(opt_ms(&data, "c").map_err(|e| e.code), Err(400));
        assert_eq!(opt_ms(&data, "d").map_err(|e| e.code), Err(400));
    }

    #[test]
    fn every_event_is_routed() {
        let events: Vec<_> = Quiz::router().events().collect();
        assert_eq!(events, ["join", "start", "answer", "leaderboard", "stop"]);
    }
}
