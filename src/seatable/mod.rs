//! What we know of a SeaTable install: which of its two layouts a data directory belongs to.
//! (Detection of `.env`, storage backends and Big Data grows here.)

use std::path::Path;

/// `new` (4.3+, `/opt/seatable-server/seatable`), `old` (up to 4.2,
/// `/opt/seatable/seatable-data/seatable`), or `custom` (configured elsewhere).
pub fn layout_of(data_dir: Option<&Path>) -> &'static str {
    match data_dir.and_then(|d| d.to_str()) {
        Some("/opt/seatable-server/seatable") => "new",
        Some("/opt/seatable/seatable-data/seatable") => "old",
        Some(_) => "custom",
        None => "unknown",
    }
}
