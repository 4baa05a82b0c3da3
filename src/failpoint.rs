//! Failpoints: named places in the restore's swap (and elsewhere) where tests inject a failure,
//! a kill or a pause, to check that every step can be undone.
//!
//! Compiled in only with the `failpoints` feature (the test suite builds with it); in any other
//! build [`hit`] is an empty function. `SEATABLE_BACKUP_FAILPOINTS` lists `name=action` pairs,
//! separated by `;`: `error` makes the point fail, `kill` ends the process at once (as SIGKILL
//! would), `sleep(MS)` pauses there (to send a signal at a known moment).

/// Passes, unless a test asked this point to fail.
#[cfg(feature = "failpoints")]
pub fn hit(name: &str) -> anyhow::Result<()> {
    let Ok(spec) = std::env::var("SEATABLE_BACKUP_FAILPOINTS") else { return Ok(()) };
    for pair in spec.split(';') {
        let Some((point, action)) = pair.trim().split_once('=') else { continue };
        if point.trim() != name {
            continue;
        }
        let action = action.trim();
        tracing::warn!(failpoint = name, action, "failpoint reached");
        if action == "error" {
            return Err(crate::error::source(format!("failpoint `{name}` injected a failure")));
        }
        if action == "kill" {
            // SAFETY: raise has no preconditions; SIGKILL ends the process like `kill -9`.
            unsafe { libc::raise(libc::SIGKILL) };
        }
        if let Some(ms) = action.strip_prefix("sleep(").and_then(|r| r.strip_suffix(')')) {
            std::thread::sleep(std::time::Duration::from_millis(ms.parse().unwrap_or(0)));
        }
    }
    Ok(())
}

/// Passes: failpoints are compiled in only with the `failpoints` feature.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn hit(_name: &str) -> anyhow::Result<()> {
    Ok(())
}
