//! Validated names for indexes and harnesses.
//!
//! Names end up inside object-store keys, so they are parsed once at the edge into
//! newtypes and can never carry a path separator, a `..` or anything else that would let
//! a request escape its own prefix. After parsing, a name is known good everywhere.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest name accepted, in bytes (the contract's `{0,127}` after a first character).
pub const MAX_NAME_LEN: usize = 128;

/// Why a name was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NameError {
    /// The name is empty.
    #[error("{kind} name must not be empty")]
    Empty {
        /// What was being named.
        kind: &'static str,
    },
    /// The name is longer than [`MAX_NAME_LEN`].
    #[error("{kind} name is longer than {MAX_NAME_LEN} bytes")]
    TooLong {
        /// What was being named.
        kind: &'static str,
    },
    /// The name has a character outside `[A-Za-z0-9_.-]` or does not start alphanumeric.
    #[error("{kind} name {name:?} must match ^[A-Za-z0-9][A-Za-z0-9_.-]{{0,127}}$")]
    Invalid {
        /// What was being named.
        kind: &'static str,
        /// The refused name (shown back to the caller, who sent it).
        name: String,
    },
}

impl crate::error::Classified for NameError {
    fn classify(&self) -> crate::error::Class {
        match self {
            NameError::Empty { .. } | NameError::TooLong { .. } | NameError::Invalid { .. } => {
                crate::error::Class::invalid("invalid_name")
            }
        }
    }
}

fn check(kind: &'static str, s: &str) -> Result<(), NameError> {
    if s.is_empty() {
        return Err(NameError::Empty { kind });
    }
    if s.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong { kind });
    }
    let mut chars = s.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    // The pattern already forbids a leading '.', so "." and ".." cannot pass; the explicit
    // check keeps that true if the pattern is ever relaxed.
    if !first_ok || !rest_ok || s == "." || s == ".." {
        return Err(NameError::Invalid {
            kind,
            name: s.chars().take(MAX_NAME_LEN + 8).collect(),
        });
    }
    Ok(())
}

macro_rules! name_type {
    ($(#[$doc:meta])* $ty:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $ty(String);

        impl $ty {
            /// Parses a raw name, refusing anything that could not be a safe key segment.
            pub fn parse(s: impl Into<String>) -> Result<Self, NameError> {
                let s = s.into();
                check($kind, &s)?;
                Ok(Self(s))
            }

            /// The name as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $ty {
            type Error = NameError;
            fn try_from(s: String) -> Result<Self, NameError> {
                Self::parse(s)
            }
        }

        impl From<$ty> for String {
            fn from(n: $ty) -> String {
                n.0
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

name_type!(
    /// The name of a vector index.
    IndexName,
    "index"
);
name_type!(
    /// The name of an eval harness (global, not per index, as in the HTTP contract).
    HarnessName,
    "harness"
);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_contract_examples() {
        for ok in ["threat_intel_v1", "a", "A.b-c_d", "0", &"x".repeat(128)] {
            assert!(IndexName::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn refuses_path_like_and_odd_names() {
        for bad in [
            "",
            ".",
            "..",
            "../escape",
            "a/b",
            "a\\b",
            "-a",
            "_a",
            ".hidden",
            "a b",
            "é",
            "a\0",
            &"x".repeat(129),
        ] {
            assert!(IndexName::parse(bad).is_err(), "{bad:?}");
            assert!(HarnessName::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn serde_goes_through_parse() {
        assert!(serde_json::from_str::<IndexName>("\"../x\"").is_err());
        let n: IndexName = serde_json::from_str("\"ok\"").unwrap();
        assert_eq!(n.as_str(), "ok");
    }

    proptest! {
        #[test]
        fn parsed_names_are_safe_key_segments(s in "\\PC{0,140}") {
            if let Ok(n) = IndexName::parse(s.clone()) {
                prop_assert!(!n.as_str().contains('/'));
                prop_assert!(!n.as_str().starts_with('.'));
                prop_assert!(n.as_str().len() <= MAX_NAME_LEN);
                prop_assert_eq!(n.as_str(), s.as_str());
            }
        }

        #[test]
        fn pattern_matches_are_accepted(s in "[A-Za-z0-9][A-Za-z0-9_.-]{0,127}") {
            prop_assert!(IndexName::parse(s).is_ok());
        }
    }
}
