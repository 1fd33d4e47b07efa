//! The game loop: ask a question, close it (at the deadline or when all answered), show the
//! result, pause, ask the next, and finish. Every step loads and stores the state in the
//! key-value store, so consecutive steps may run in different instances or versions: under a
//! pool (`instances = N`) a countdown fires on the instance that set it, which is whichever
//! instance ran the previous step, not necessarily one serving a player of the room. Each step
//! runs under the plugin's key-value lock (taken by its first kv call), so steps of one game
//! never interleave.

use serde_json::json;
use wasmgate_guest::prelude::*;

use crate::game::{
    self, Game, Phase, Tick, end_game, load_board, load_game, ranking, save_board, save_game,
};

/// A player's name: its uid, or its client id when it has none.
pub fn player_name(client: &str) -> String {
    host::get_uid_by_client_id(client)
        .ok()
        .flatten()
        .unwrap_or_else(|| client.to_owned())
}

/// Open question `index`: store the state, start the countdown, push the question.
/// Ends the game instead if the room is empty or the questions are exhausted.
pub fn ask(room: &str, mut game: Game, index: usize) -> Result<(), Error> {
    if index >= game.questions.len() || host::get_client_count_by_group(room) == 0 {
        return finish(room);
    }
    game.index = index;
    game.phase = Phase::Asking;
    game.answers.clear();
    game.deadline_ms = host::now_ms().saturating_add(game.question_ms);
    let tick = game.tick(room, Phase::Asking);
    game.timer = host::set_timer_json(game.question_ms, &tick)?;
    save_game(room, &game)?;
    push_to_group(room, "question", &game.question_push(), &[])?;
    Ok(())
}

/// A timer fired: act on it if it still matches the game (a cancelled or superseded timer that
/// fired anyway is ignored).
pub fn tick(tick: &Tick) -> Result<(), Error> {
    let Some(game) = load_game(&tick.room)? else {
        return Ok(());
    };
    if !game.expects(tick) {
        log_debug!("stale quiz timer for {} question {}", tick.room, tick.index);
        return Ok(());
    }
    match tick.phase {
        Phase::Asking => close(&tick.room, game),
        Phase::Pause => {
            let next = game.index + 1;
            ask(&tick.room, game, next)
        }
    }
}

/// Close the open question early when every member of the room has answered.
pub fn close_early_if_all_answered(room: &str, game: Game) -> Result<(), Error> {
    let members = host::get_client_ids_by_group(room);
    if members.iter().all(|c| game.answers.contains_key(c)) {
        host::cancel_timer(game.timer);
        close(room, game)?;
    }
    Ok(())
}

/// Score the open question, push the result, then pause or go on.
fn close(room: &str, mut game: Game) -> Result<(), Error> {
    let scores = game.round_scores();
    let mut board = load_board(room)?;
    for (name, points) in &scores {
        *board.entry(name.clone()).or_default() += points;
    }
    save_board(room, &board)?;
    let correct = game.question().map(|q| q.answer);
    let result = json!({
        "index": game.index,
        "correct": correct,
        "scores": scores,
        "leaderboard": ranking(&board),
    });
    push_to_group(room, "result", &result, &[])?;
    if game.index + 1 >= game.questions.len() {
        return finish(room);
    }
    if game.pause_ms == 0 {
        let next = game.index + 1;
        return ask(room, game, next);
    }
    game.phase = Phase::Pause;
    game.answers.clear();
    let tick = game.tick(room, Phase::Pause);
    game.timer = host::set_timer_json(game.pause_ms, &tick)?;
    save_game(room, &game)
}

/// End the game: push the final leaderboard and forget the game (the board stays readable).
pub fn finish(room: &str) -> Result<(), Error> {
    let board = game::load_board(room)?;
    end_game(room)?;
    push_to_group(
        room,
        "gameover",
        &json!({ "leaderboard": ranking(&board) }),
        &[],
    )?;
    log_info!("quiz in {room} is over");
    Ok(())
}
