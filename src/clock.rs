//! The time the program runs at: the system clock, or, for tests and drills, a clock set to
//! start at `SEATABLE_BACKUP_NOW` (RFC 3339) that runs on from there. Classes, prune ages and
//! expiry dates all read it, so a test can place a run on any day without waiting for it.

use std::sync::OnceLock;
use std::time::Instant;

use chrono::{DateTime, Utc};

pub const ENV: &str = "SEATABLE_BACKUP_NOW";

static START: OnceLock<Option<(DateTime<Utc>, Instant)>> = OnceLock::new();

/// Reads `SEATABLE_BACKUP_NOW` once; an unparsable value is an error naming it.
pub fn init_from_env() -> Result<(), String> {
    let pinned = match std::env::var(ENV) {
        Ok(v) if !v.trim().is_empty() => Some(parse(v.trim())?),
        _ => None,
    };
    let _ = START.set(pinned.map(|t| (t, Instant::now())));
    Ok(())
}

fn parse(v: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(v)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("`{ENV}={v}` is not an RFC 3339 time such as 2026-12-07T02:00:00Z: {e}"))
}

/// Now: the system clock, or the set clock's start plus the time since the program started.
pub fn now() -> DateTime<Utc> {
    match START.get() {
        Some(Some((t, since))) => *t + chrono::Duration::from_std(since.elapsed()).unwrap_or_default(),
        _ => Utc::now(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_rfc3339_only() {
        assert_eq!(super::parse("2026-12-07T02:00:00Z").unwrap().to_rfc3339(), "2026-12-07T02:00:00+00:00");
        assert!(super::parse("2026-12-07").unwrap_err().contains("SEATABLE_BACKUP_NOW"));
    }
}
