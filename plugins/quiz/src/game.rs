//! A game's state and rules. The state is stored in the key-value store after every change, so
//! any instance of any version can pick the game up where the previous one left it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use wasmgate_guest::{Error, host};

use crate::questions::Question;

/// Points for a correct answer given at the very last moment.
pub const BASE_POINTS: u64 = 500;
/// Extra points for a correct answer given at once; scaled down linearly with time taken.
pub const SPEED_POINTS: u64 = 500;

/// What the game is waiting for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// A question is open: answers are accepted until `deadline_ms`.
    Asking,
    /// Between a result and the next question.
    Pause,
}

/// One accepted answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    /// The player's name when it answered (uid, or client id without one).
    pub name: String,
    /// The chosen index.
    pub choice: usize,
    /// When it arrived (epoch ms).
    pub at_ms: u64,
}

/// A running game in one room, as stored under [`game_key`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Game {
    /// Unique per game (a counter in the store), carried by its timers: a timer of an earlier
    /// game in the same room is stale. 0 for games stored before ids existed.
    #[serde(default)]
    pub id: u64,
    /// The client that started the game (only it may `stop` it).
    pub host: String,
    /// The questions, copied at `start` so a config change by a reload cannot alter a game.
    pub questions: Vec<Question>,
    /// Time to answer one question.
    pub question_ms: u64,
    /// Pause between a result and the next question.
    pub pause_ms: u64,
    /// The current question.
    pub index: usize,
    /// What the game waits for.
    pub phase: Phase,
    /// When the current question closes (epoch ms).
    pub deadline_ms: u64,
    /// The pending timer, cancelled when every player answered early.
    pub timer: u64,
    /// Answers to the current question by client id.
    pub answers: BTreeMap<String, Answer>,
}

/// Why an answer was refused (each maps to a reply code).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No question is open.
    NotAsking,
    /// The deadline has passed.
    TooLate,
    /// This client already answered this question.
    AlreadyAnswered,
    /// The index is not one of the choices.
    NoSuchChoice,
}

impl Refusal {
    /// The reply `code` and `msg`.
    pub fn reply(&self) -> (i32, &'static str) {
        match self {
            Refusal::NotAsking => (409, "no question is open"),
            Refusal::TooLate => (409, "too late"),
            Refusal::AlreadyAnswered => (409, "already answered"),
            Refusal::NoSuchChoice => (400, "no such choice"),
        }
    }
}

/// The payload of the game's timers: which room, which question, which phase it closes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tick {
    /// The room of the game.
    pub room: String,
    /// The question the timer was set for.
    pub index: usize,
    /// The phase the timer ends.
    pub phase: Phase,
    /// The game's [`Game::id`] (0 in timers set before ids existed, matching such games).
    #[serde(default)]
    pub game: u64,
}

impl Game {
    /// The timer payload ending `phase` of the current question.
    pub fn tick(&self, room: &str, phase: Phase) -> Tick {
        Tick {
            room: room.to_owned(),
            index: self.index,
            phase,
            game: self.id,
        }
    }

    /// Whether `tick` is this game's pending timer. A cancelled timer may still arrive: it was
    /// already taken by its instance when another instance cancelled it (pooled plugins) or
    /// it fired just before; it then names an older question, phase or game and is ignored.
    pub fn expects(&self, tick: &Tick) -> bool {
        self.id == tick.game && self.index == tick.index && self.phase == tick.phase
    }

    /// The current question.
    pub fn question(&self) -> Option<&Question> {
        self.questions.get(self.index)
    }

    /// The `question` push for the current question.
    pub fn question_push(&self) -> Value {
        let (text, choices) = self
            .question()
            .map(|q| (q.text.as_str(), q.choices.as_slice()))
            .unwrap_or(("", &[]));
        json!({
            "index": self.index,
            "count": self.questions.len(),
            "text": text,
            "choices": choices,
            "deadlineMs": self.deadline_ms,
            "questionMs": self.question_ms,
        })
    }

    /// Record an answer if the rules allow it.
    pub fn accept(
        &mut self,
        client: &str,
        name: &str,
        choice: usize,
        now_ms: u64,
    ) -> Result<(), Refusal> {
        if self.phase != Phase::Asking {
            return Err(Refusal::NotAsking);
        }
        if now_ms > self.deadline_ms {
            return Err(Refusal::TooLate);
        }
        if self.answers.contains_key(client) {
            return Err(Refusal::AlreadyAnswered);
        }
        if self.question().is_none_or(|q| choice >= q.choices.len()) {
            return Err(Refusal::NoSuchChoice);
        }
        self.answers.insert(
            client.to_owned(),
            Answer {
                name: name.to_owned(),
                choice,
                at_ms: now_ms,
            },
        );
        Ok(())
    }

    /// Points of the current question by player name: correct answers score
    /// [`BASE_POINTS`] plus up to [`SPEED_POINTS`] for speed, wrong ones 0.
    pub fn round_scores(&self) -> BTreeMap<String, u64> {
        let correct = self.question().map(|q| q.answer);
        self.answers
            .values()
            .map(|a| {
                let points = if Some(a.choice) == correct {
                    let left = self
                        .deadline_ms
                        .saturating_sub(a.at_ms)
                        .min(self.question_ms);
                    BASE_POINTS + SPEED_POINTS * left / self.question_ms.max(1)
                } else {
                    0
                };
                (a.name.clone(), points)
            })
            .collect()
    }
}

/// Scores by player name, as stored under [`board_key`].
pub type Board = BTreeMap<String, u64>;

/// The board as a ranking: `[{name, score}]`, best first, ties by name.
pub fn ranking(board: &Board) -> Value {
    let mut rows: Vec<(&String, &u64)> = board.iter().collect();
    rows.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
    Value::Array(
        rows.into_iter()
            .map(|(name, score)| json!({ "name": name, "score": score }))
            .collect(),
    )
}

/// The kv key of a room's running game.
pub fn game_key(room: &str) -> String {
    format!("game:{room}")
}

/// The kv key of a room's leaderboard.
pub fn board_key(room: &str) -> String {
    format!("board:{room}")
}

/// The running game of a room, if any.
pub fn load_game(room: &str) -> Result<Option<Game>, Error> {
    host::kv_get_json(&game_key(room))
}

/// Store a room's game.
pub fn save_game(room: &str, game: &Game) -> Result<(), Error> {
    host::kv_set_json(&game_key(room), game)
}

/// Forget a room's game (the board stays).
pub fn end_game(room: &str) -> Result<(), Error> {
    host::kv_delete(&game_key(room)).map(|_| ())
}

/// A room's leaderboard (empty if none).
pub fn load_board(room: &str) -> Result<Board, Error> {
    Ok(host::kv_get_json(&board_key(room))?.unwrap_or_default())
}

/// Store a room's leaderboard.
pub fn save_board(room: &str, board: &Board) -> Result<(), Error> {
    host::kv_set_json(&board_key(room), board)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn game() -> Game {
        Game {
            id: 7,
            host: "h".into(),
            questions: vec![Question {
                text: "2+2?".into(),
                choices: vec!["3".into(), "4".into()],
                answer: 1,
            }],
            question_ms: 1_000,
            pause_ms: 0,
            index: 0,
            phase: Phase::Asking,
            deadline_ms: 11_000,
            timer: 1,
            answers: BTreeMap::new(),
        }
    }

    #[test]
    fn faster_correct_answers_score_more() {
        let mut g = game();
        assert_eq!(g.accept("c1", "ann", 1, 10_000), Ok(()));
        assert_eq!(g.accept("c2", "bob", 1, 10_750), Ok(()));
        assert_eq!(g.accept("c3", "cid", 0, 10_100), Ok(()));
        assert_eq!(g.accept("c4", "dan", 1, 11_000), Ok(()));
        let s = g.round_scores();
        assert_eq!(s["ann"], 1_000);
        assert_eq!(s["bob"], 625);
        assert_eq!(s["cid"], 0);
        assert_eq!(s["dan"], BASE_POINTS);
    }

    #[test]
    fn refusals() {
        let mut g = game();
        assert_eq!(g.accept("c1", "ann", 2, 10_000), Err(Refusal::NoSuchChoice));
        assert_eq!(g.accept("c1", "ann", 1, 11_001), Err(Refusal::TooLate));
        assert_eq!(g.accept("c1", "ann", 0, 10_000), Ok(()));
        assert_eq!(
            g.accept("c1", "ann", 1, 10_001),
            Err(Refusal::AlreadyAnswered)
        );
        g.phase = Phase::Pause;
        assert_eq!(g.accept("c2", "bob", 1, 10_000), Err(Refusal::NotAsking));
    }

    #[test]
    fn game_state_round_trips_through_json() -> Result<(), serde_json::Error> {
        let mut g = game();
        assert_eq!(g.accept("c1", "ann", 1, 10_500), Ok(()));
        let stored = serde_json::to_vec(&g)?;
        assert_eq!(serde_json::from_slice::<Game>(&stored)?, g);
        let tick = Tick {
            room: "r".into(),
            index: 3,
            phase: Phase::Pause,
            game: 7,
        };
        let text = serde_json::to_string(&tick)?;
        assert_eq!(text, r#"{"room":"r","index":3,"phase":"pause","game":7}"#);
        Ok(())
    }

    #[test]
    fn ticks_of_other_questions_phases_or_games_are_stale() -> Result<(), serde_json::Error> {
        let g = game();
        let tick = g.tick("r", Phase::Asking);
        assert!(g.expects(&tick));
        assert!(!g.expects(&g.tick("r", Phase::Pause)));
        assert!(!g.expects(&Tick {
            index: 1,
            ..tick.clone()
        }));
        // The same room, question and phase of the game before this one: a timer that was
        // already taken when that game was stopped must not close this game's question.
        assert!(!g.expects(&Tick {
            game: 6,
            ..tick.clone()
        }));
        // Games and timers stored by a version without ids still match each other.
        let old: Tick = serde_json::from_str(r#"{"room":"r","index":0,"phase":"asking"}"#)?;
        let mut stored = serde_json::to_value(&g)?;
        stored.as_object_mut().map(|o| o.remove("id"));
        let old_game: Game = serde_json::from_value(stored)?;
        assert!(old_game.expects(&old));
        assert!(!g.expects(&old));
        Ok(())
    }

    #[test]
    fn ranking_is_best_first_then_by_name() {
        let board: Board = [("bob".into(), 5), ("ann".into(), 5), ("cid".into(), 9)].into();
        assert_eq!(
            ranking(&board),
            json!([
                {"name": "cid", "score": 9},
                {"name": "ann", "score": 5},
                {"name": "bob", "score": 5},
            ])
        );
    }

    #[test]
    fn question_push_carries_the_deadline() {
        let g = game();
        let p = g.question_push();
        assert_eq!(p["deadlineMs"], 11_000);
        assert_eq!(p["choices"], json!(["3", "4"]));
        assert_eq!(p["count"], 1);
    }
}
