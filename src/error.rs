//! Error classes and exit codes.
//!
//! Every failure the program reports belongs to one class, and the class decides the exit code.
//! Lower layers return typed errors (`StoreError`, `TarError`, ...) or a [`Failure`] with a
//! class; `anyhow` context is added above that. `main` walks the error chain to find the class.

use std::fmt;

/// What kind of thing failed; each has its own exit code (documented in the README).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Bad arguments, malformed or unsafe configuration.
    Usage,
    /// The thing being backed up: Docker, the database, the data directory.
    Source,
    /// The object store: bucket, credentials, network, uploads.
    Storage,
    /// Data that does not check out: hashes, truncated dumps, incomplete sets.
    Integrity,
    /// Another run holds the lock.
    Busy,
    /// SIGINT or SIGTERM.
    Interrupted,
    /// Anything else (a bug).
    Internal,
}

impl Class {
    pub fn exit_code(self) -> u8 {
        match self {
            Class::Internal => 1,
            Class::Usage => 2,
            Class::Source => 3,
            Class::Storage => 4,
            Class::Integrity => 5,
            Class::Busy => 75,
            Class::Interrupted => 130,
        }
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Class::Usage => "usage",
            Class::Source => "source",
            Class::Storage => "storage",
            Class::Integrity => "integrity",
            Class::Busy => "busy",
            Class::Interrupted => "interrupted",
            Class::Internal => "internal",
        })
    }
}

/// A classified failure with a message that names the thing that failed.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Failure {
    pub class: Class,
    pub message: String,
    /// What the user can do about it, printed on its own `hint:` line.
    pub hint: Option<String>,
}

impl Failure {
    pub fn new(class: Class, message: impl Into<String>) -> Self {
        Failure { class, message: message.into(), hint: None }
    }
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// Shorthands that build an `anyhow::Error` carrying a class.
pub fn usage(msg: impl Into<String>) -> anyhow::Error {
    Failure::new(Class::Usage, msg).into()
}
pub fn source(msg: impl Into<String>) -> anyhow::Error {
    Failure::new(Class::Source, msg).into()
}
pub fn storage(msg: impl Into<String>) -> anyhow::Error {
    Failure::new(Class::Storage, msg).into()
}
pub fn integrity(msg: impl Into<String>) -> anyhow::Error {
    Failure::new(Class::Integrity, msg).into()
}

/// The class of an error: the first classified error found in its chain.
pub fn class_of(err: &anyhow::Error) -> Class {
    for cause in err.chain() {
        if let Some(f) = cause.downcast_ref::<Failure>() {
            return f.class;
        }
        if let Some(e) = cause.downcast_ref::<crate::store::StoreError>() {
            return if e.is_integrity() { Class::Integrity } else { Class::Storage };
        }
        if cause.downcast_ref::<crate::store::upload::ReadError>().is_some() {
            return Class::Source;
        }
        if cause.downcast_ref::<crate::source::tar::TarError>().is_some() {
            return Class::Source;
        }
        if cause.downcast_ref::<crate::config::ConfigError>().is_some() {
            return Class::Usage;
        }
    }
    Class::Internal
}

/// The hint attached anywhere in the chain, if any.
pub fn hint_of(err: &anyhow::Error) -> Option<&str> {
    err.chain().find_map(|c| c.downcast_ref::<Failure>().and_then(|f| f.hint.as_deref()))
}

/// One line: every context, outermost first, joined with `: `.
pub fn one_line(err: &anyhow::Error) -> String {
    let mut s = format!("{err:#}");
    s.retain(|c| c != '\n' && c != '\r');
    s
}
