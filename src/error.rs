//! The error taxonomy: every domain error says what *kind* of failure it is and which
//! stable, snake_case *code* names it; transports map kinds once (HTTP in
//! `http/error.rs`, the job runner's stored `error.code`, the CLI's exit status).
//!
//! The core never builds a transport error, so `http → service → jobs → domain` stays
//! one-way. Each `classify` is an exhaustive `match` (no `_` arm): a new variant cannot
//! reach a client without someone deciding its kind and code.

/// What kind of failure an error is, independent of the transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The request is malformed or out of bounds (HTTP 400).
    Invalid,
    /// No credentials, or wrong ones (HTTP 401).
    Unauthorized,
    /// Credentials that may not do this (HTTP 403).
    Forbidden,
    /// The thing named does not exist (HTTP 404).
    NotFound,
    /// The state of things refuses it now (exists already, running, lost a race; HTTP 409).
    Conflict,
    /// The body is over a limit (HTTP 413).
    TooLarge,
    /// Well-formed but unusable (HTTP 422).
    Unprocessable,
    /// The heavy-work queue is full: retry later (HTTP 503 with `Retry-After`).
    Overloaded,
    /// The request ran past its deadline (HTTP 503).
    Timeout,
    /// The process is stopping; the work was cut short (HTTP 503).
    ShuttingDown,
    /// Not able to serve this yet (start-up under way; HTTP 503).
    Unavailable,
    /// A real server fault: storage failed, a task died, a stored object is damaged (HTTP 500).
    Internal,
}

impl ErrorKind {
    /// Every kind (a metric of errors by kind pre-creates a series for each).
    pub const ALL: [ErrorKind; 12] = [
        ErrorKind::Invalid,
        ErrorKind::Unauthorized,
        ErrorKind::Forbidden,
        ErrorKind::NotFound,
        ErrorKind::Conflict,
        ErrorKind::TooLarge,
        ErrorKind::Unprocessable,
        ErrorKind::Overloaded,
        ErrorKind::Timeout,
        ErrorKind::ShuttingDown,
        ErrorKind::Unavailable,
        ErrorKind::Internal,
    ];

    /// The kind's name, as metrics and logs label it.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Invalid => "invalid",
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Conflict => "conflict",
            ErrorKind::TooLarge => "too_large",
            ErrorKind::Unprocessable => "unprocessable",
            ErrorKind::Overloaded => "overloaded",
            ErrorKind::Timeout => "timeout",
            ErrorKind::ShuttingDown => "shutting_down",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Internal => "internal",
        }
    }
}

/// An error's kind and its stable code (the `error.code` clients match on).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Class {
    /// What kind of failure.
    pub kind: ErrorKind,
    /// Its snake_case code.
    pub code: &'static str,
}

impl Class {
    /// A class of `kind` named `code`.
    pub const fn new(kind: ErrorKind, code: &'static str) -> Class {
        Class { kind, code }
    }

    /// A bad input named `code`.
    pub const fn invalid(code: &'static str) -> Class {
        Class::new(ErrorKind::Invalid, code)
    }

    /// A real server fault (always coded `internal`: the log says what it was).
    pub const INTERNAL: Class = Class::new(ErrorKind::Internal, "internal");
}

/// An error that knows its kind and code.
pub trait Classified: std::error::Error {
    /// Its kind and code.
    fn classify(&self) -> Class;
}

/// The error and every source under it, `: `-joined: what a log line of a server fault says.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(x) = src {
        s.push_str(": ");
        s.push_str(&x.to_string());
        src = x.source();
    }
    s
}

/// What a client may be told of `e`: its own message, or for a server fault a pointer to
/// the log (which gets the whole chain, once, here).
pub fn public_message(e: &impl Classified) -> String {
    if e.classify().kind == ErrorKind::Internal {
        tracing::error!(error = %chain(e), "internal error");
        "internal server error; see the server log".to_string()
    } else {
        e.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    impl Classified for Outer {
        fn classify(&self) -> Class {
            Class::INTERNAL
        }
    }

    #[test]
    fn chain_walks_every_source_and_faults_are_not_told_to_clients() {
        let e = Outer(std::io::Error::other("disk on fire"));
        assert_eq!(chain(&e), "outer: disk on fire");
        let told = public_message(&e);
        assert!(!told.contains("disk"), "{told}");
    }

    #[test]
    fn kinds_have_distinct_names() {
        let names: std::collections::HashSet<_> = ErrorKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(names.len(), ErrorKind::ALL.len());
    }
}
