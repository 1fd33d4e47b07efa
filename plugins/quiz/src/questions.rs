//! The question list and the plugin's init config.

use serde::{Deserialize, Serialize};

/// One multiple-choice question.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Question {
    /// What is asked.
    pub text: String,
    /// The possible answers, shown in this order; a client answers with an index.
    pub choices: Vec<String>,
    /// Index of the correct choice.
    pub answer: usize,
}

/// Default time to answer one question.
pub const DEFAULT_QUESTION_MS: u64 = 10_000;
/// Default pause between a result and the next question.
pub const DEFAULT_PAUSE_MS: u64 = 2_000;
/// Shortest question time accepted (tests use short ones).
pub const MIN_QUESTION_MS: u64 = 100;
/// Longest question time accepted.
pub const MAX_QUESTION_MS: u64 = 600_000;
/// Longest pause accepted.
pub const MAX_PAUSE_MS: u64 = 60_000;

/// The init config: every field optional, an empty config means the defaults.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    /// The questions of every new game (the built-in list when absent).
    #[serde(default = "builtin")]
    pub questions: Vec<Question>,
    /// Time to answer when `start` does not say.
    #[serde(default = "default_question_ms")]
    pub question_ms: u64,
    /// Pause between questions when `start` does not say.
    #[serde(default = "default_pause_ms")]
    pub pause_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            questions: builtin(),
            question_ms: DEFAULT_QUESTION_MS,
            pause_ms: DEFAULT_PAUSE_MS,
        }
    }
}

fn default_question_ms() -> u64 {
    DEFAULT_QUESTION_MS
}

fn default_pause_ms() -> u64 {
    DEFAULT_PAUSE_MS
}

impl Config {
    /// Parse and check an init config (empty or blank means the defaults).
    pub fn parse(config: &str) -> Result<Self, String> {
        if config.trim().is_empty() {
            return Ok(Config::default());
        }
        let cfg: Config =
            serde_json::from_str(config).map_err(|e| format!("bad quiz config: {e}"))?;
        if cfg.questions.is_empty() {
            return Err("bad quiz config: no questions".to_owned());
        }
        for (i, q) in cfg.questions.iter().enumerate() {
            if q.choices.len() < 2 || q.answer >= q.choices.len() {
                return Err(format!(
                    "bad quiz config: question {i} needs 2+ choices and a valid answer index"
                ));
            }
        }
        Ok(cfg)
    }
}

/// Clamp a requested question time into the accepted range.
pub fn clamp_question_ms(ms: u64) -> u64 {
    ms.clamp(MIN_QUESTION_MS, MAX_QUESTION_MS)
}

/// Clamp a requested pause into the accepted range.
pub fn clamp_pause_ms(ms: u64) -> u64 {
    ms.min(MAX_PAUSE_MS)
}

/// The built-in questions.
pub fn builtin() -> Vec<Question> {
    let q = |text: &str, choices: &[&str], answer: usize| Question {
        text: text.to_owned(),
        choices: choices.iter().map(|c| (*c).to_owned()).collect(),
        answer,
    };
    vec![
        q(
            "What does WASM stand for?",
            &[
                "WebAssembly",
                "Web Application Server Module",
                "Wide Area Socket Map",
            ],
            0,
        ),
        q(
            "Which close code means a normal closure?",
            &["1006", "1000", "4000"],
            1,
        ),
        q("How many bits are in a byte?", &["4", "16", "8", "10"], 2),
        q(
            "Which protocol upgrade starts a WebSocket?",
            &["HTTP", "FTP", "SMTP"],
            0,
        ),
        q("What is 7 × 6?", &["36", "42", "48", "54"], 1),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_config_means_defaults() {
        assert_eq!(Config::parse(""), Ok(Config::default()));
        assert_eq!(Config::parse("  \n"), Ok(Config::default()));
        assert_eq!(Config::default().questions.len(), 5);
    }

    #[test]
    fn config_fields_override_defaults() -> Result<(), String> {
        let cfg = Config::parse(
            r#"{"questions":[{"text":"1+1?","choices":["2","3"],"answer":0}],"questionMs":500}"#,
        )?;
        assert_eq!(cfg.questions.len(), 1);
        assert_eq!(cfg.question_ms, 500);
        assert_eq!(cfg.pause_ms, DEFAULT_PAUSE_MS);
        Ok(())
    }

    #[test]
    fn bad_configs_are_refused() {
        for bad in [
            "not json",
            r#"{"questions":[]}"#,
            r#"{"questions":[{"text":"?","choices":["a"],"answer":0}]}"#,
            r#"{"questions":[{"text":"?","choices":["a","b"],"answer":2}]}"#,
            r#"{"questionMs":"fast"}"#,
            r#"{"typo":1}"#,
        ] {
            assert!(Config::parse(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn builtin_answers_are_valid() {
        for q in builtin() {
            assert!(q.answer < q.choices.len(), "{}", q.text);
        }
    }

    #[test]
    fn clamps() {
        assert_eq!(clamp_question_ms(1), MIN_QUESTION_MS);
        assert_eq!(clamp_question_ms(5_000), 5_000);
        assert_eq!(clamp_question_ms(u64::MAX), MAX_QUESTION_MS);
        assert_eq!(clamp_pause_ms(0), 0);
        assert_eq!(clamp_pause_ms(u64::MAX), MAX_PAUSE_MS);
    }
}
