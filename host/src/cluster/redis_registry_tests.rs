//! Unit tests of the Redis registry's encodings (its behaviour is tested against a real
//! redis-server in `host/tests/cluster.rs`).

use super::*;

#[test]
fn members_round_trip() {
    for (u, e) in [("", ""), ("ab", "c:d"), ("1:x", ""), ("é", "ü")] {
        let m = Member {
            user_id: u.into(),
            extend: e.into(),
        };
        assert_eq!(decode_member(&encode_member(&m)), m);
    }
}

#[test]
fn glob_characters_are_escaped() {
    assert_eq!(redis_glob_escape("p:3:a*b:"), "p:3:a\\*b:");
}
