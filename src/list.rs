//! `list`: the sets in the destination, per host and class, complete or not.

use chrono::Utc;

use crate::catalog::{list_sets, SetSummary};
use crate::config::Config;
use crate::store::Store;

pub async fn run(config: &Config, store: &dyn Store, of_host: Option<&str>, json: bool) -> anyhow::Result<()> {
    let mut sets = list_sets(store, &config.storage.prefix).await?;
    if let Some(h) = of_host {
        sets.retain(|s| s.host == h);
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&sets)?);
    } else {
        print!("{}", render(&sets, store.describe(), &config.storage.prefix));
    }
    Ok(())
}

pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn human_age(set: &SetSummary) -> String {
    let Some(t) = set.created else { return "?".into() };
    let secs = (Utc::now() - t).num_seconds().max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

fn render(sets: &[SetSummary], where_: String, prefix: &str) -> String {
    let mut out = String::new();
    if sets.is_empty() {
        out.push_str(&format!("no backup sets in {where_} under `{prefix}/`\n"));
        return out;
    }
    out.push_str(&format!(
        "{:<24} {:<8} {:<19} {:<10} {:>7} {:>11} {:>6}\n",
        "HOST", "CLASS", "STAMP", "STATUS", "OBJECTS", "SIZE", "AGE"
    ));
    for s in sets {
        out.push_str(&format!(
            "{:<24} {:<8} {:<19} {:<10} {:>7} {:>11} {:>6}\n",
            s.host,
            s.class.as_str(),
            s.stamp,
            if s.complete { "complete" } else { "INCOMPLETE" },
            s.objects,
            human_bytes(s.bytes),
            human_age(s)
        ));
    }
    let incomplete = sets.iter().filter(|s| !s.complete).count();
    out.push_str(&format!("{} set(s) in {where_} under `{prefix}/`", sets.len()));
    if incomplete > 0 {
        out.push_str(&format!("; {incomplete} incomplete (no manifest: a run failed or is still running)"));
    }
    out.push('\n');
    out
}
