//! Names of systems, groups and uids (see the module docs of `domain`).
//!
//! A name is checked once, where it enters (an API body or header, a host call), against one
//! rule: non-empty and at most `limits.max_name_bytes` bytes (256 by default). Before this rule
//! the API accepted 1 MB group names and uids while host calls capped them at 256 bytes; every
//! such name is a key the registry keeps per member, so its length multiplies memory.
//!
//! The limit is configurable, so parsing takes it: `GroupName::parse(s, &limits)`.

use std::borrow::Borrow;
use std::fmt;

use crate::config::LimitsConfig;

/// Why a name was refused. The API answers 400, host calls `invalid-argument`, with the same
/// message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name is the empty string (it would silently match nothing).
    #[error("{field} must not be empty")]
    Empty {
        /// The field, as the API names it (`groupName`, `uid`, `systemId`).
        field: &'static str,
    },
    /// The name is longer than `limits.max_name_bytes`.
    #[error("{field} is {len} bytes, over limits.max_name_bytes ({max})")]
    TooLong {
        /// The field, as the API names it.
        field: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
}

/// Check `value` against the name rule.
fn check(field: &'static str, value: &str, limits: &LimitsConfig) -> Result<(), NameError> {
    if value.is_empty() {
        return Err(NameError::Empty { field });
    }
    if value.len() > limits.max_name_bytes {
        return Err(NameError::TooLong {
            field,
            len: value.len(),
            max: limits.max_name_bytes,
        });
    }
    Ok(())
}

macro_rules! name_type {
    ($(#[$doc:meta])* $ty:ident, $field:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $ty(String);

        impl $ty {
            /// The field name used in messages (the API's JSON field or header).
            pub const FIELD: &'static str = $field;

            /// Check `value` (non-empty, at most `limits.max_name_bytes` bytes).
            pub fn parse(value: impl Into<String>, limits: &LimitsConfig) -> Result<Self, NameError> {
                let value = value.into();
                check($field, &value, limits)?;
                Ok(Self(value))
            }

            /// The name.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The name, owned.
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl std::ops::Deref for $ty {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Borrow<str> for $ty {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

name_type!(
    /// A system (tenant) id: the `systemId` header, `register`/`unregister`'s body.
    SystemId,
    "systemId"
);
name_type!(
    /// A group name, as the API and host calls take it.
    GroupName,
    "groupName"
);
name_type!(
    /// A user id bound to clients.
    Uid,
    "uid"
);

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max: usize) -> LimitsConfig {
        LimitsConfig {
            max_name_bytes: max,
            ..LimitsConfig::default()
        }
    }

    #[test]
    fn one_rule_for_every_name() {
        let l = limits(4);
        assert_eq!(GroupName::parse("abcd", &l).map(|g| g.len()), Ok(4));
        assert_eq!(Uid::parse("", &l), Err(NameError::Empty { field: "uid" }));
        let err = SystemId::parse("abcde", &l).expect_err("too long");
        assert_eq!(
            err.to_string(),
            "systemId is 5 bytes, over limits.max_name_bytes (4)"
        );
        // Bytes, not characters: "é" is two bytes.
        assert!(GroupName::parse("ééé", &l).is_err());
    }

    #[test]
    fn the_default_limit_is_256_bytes() {
        let l = LimitsConfig::default();
        assert!(GroupName::parse("g".repeat(256), &l).is_ok());
        assert!(GroupName::parse("g".repeat(257), &l).is_err());
    }
}
