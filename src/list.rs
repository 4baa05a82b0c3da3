//! `list`: the sets in the destination, per host and class, complete or not.

use futures::StreamExt;
use serde::Serialize;

use crate::catalog::{check_manifest, group_sets, Manifest, SetSummary, MANIFEST};
use crate::config::Config;
use crate::output::human_bytes;
use crate::store::Store;

/// A set as `list` shows it: its summary, and what its manifest says.
#[derive(Debug, Serialize)]
pub struct Listed {
    #[serde(flatten)]
    pub summary: SetSummary,
    /// Why a set with a manifest is not restorable (an object it names is missing or has
    /// another size: lifecycle rules expire objects one by one, a run may have been cut short).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub damaged: Option<String>,
    /// Tables left out of its dumps (slim dumps).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub excluded_tables: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seatable_version: Option<String>,
    /// Components: `db/ccnet_db`, `data`, `config`, ...
    pub components: Vec<String>,
}

impl Listed {
    fn status(&self) -> &'static str {
        match (self.summary.complete, &self.damaged) {
            (false, _) => "INCOMPLETE",
            (true, Some(_)) => "DAMAGED",
            (true, None) => "complete",
        }
    }
}

/// Manifests read at once.
const MANIFESTS_IN_FLIGHT: usize = 8;

pub async fn run(config: &Config, store: &dyn Store, of_host: Option<&str>, json: bool) -> anyhow::Result<()> {
    let prefix = &config.storage.prefix;
    let listing_prefix = crate::catalog::prefix_dir(prefix);
    let objects = store.list(&listing_prefix).await?;
    let mut sets = group_sets(prefix, &objects);
    if let Some(h) = of_host {
        sets.retain(|s| s.host == h);
    }
    let listed: Vec<Listed> = futures::stream::iter(sets)
        .map(|summary| {
            let objects = &objects;
            async move {
                let mut l = Listed {
                    summary,
                    damaged: None,
                    excluded_tables: Vec::new(),
                    seatable_version: None,
                    components: Vec::new(),
                };
                if !l.summary.complete {
                    return l;
                }
                let id = l.summary.id();
                let manifest = match store.get_object(&id.key(prefix, MANIFEST)).await {
                    Ok(bytes) => Manifest::from_json(&bytes),
                    Err(e) => Err(format!("its manifest cannot be read: {e}")),
                };
                match manifest {
                    Ok(m) => {
                        let dir = id.dir(prefix);
                        let mine: Vec<_> = objects.iter().filter(|o| o.key.starts_with(&dir)).cloned().collect();
                        l.damaged = check_manifest(&id, prefix, &m, &mine).err();
                        // Tables left out of a dump but kept in an object of their own are in the set.
                        let apart: Vec<String> = m
                            .objects
                            .iter()
                            .flat_map(|o| {
                                let db = o.database.clone().unwrap_or_default();
                                o.only_tables.iter().map(move |t| format!("{db}.{t}"))
                            })
                            .collect();
                        l.excluded_tables = m
                            .objects
                            .iter()
                            .flat_map(|o| o.excluded_tables.iter().cloned())
                            .filter(|t| !apart.contains(t))
                            .collect();
                        l.seatable_version = m.seatable.as_ref().and_then(|s| s.version.clone());
                        l.components = m.objects.iter().map(|o| o.component.clone()).collect();
                    }
                    Err(e) => l.damaged = Some(e),
                }
                l
            }
        })
        .buffered(MANIFESTS_IN_FLIGHT)
        .collect()
        .await;
    if json {
        println!("{}", serde_json::to_string_pretty(&listed)?);
    } else {
        print!("{}", render(&listed, store.describe(), prefix));
    }
    Ok(())
}

fn human_age(set: &SetSummary) -> String {
    let Some(t) = set.created else { return "?".into() };
    let secs = (crate::clock::now() - t).num_seconds().max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

fn render(sets: &[Listed], where_: String, prefix: &str) -> String {
    let mut out = String::new();
    if sets.is_empty() {
        out.push_str(&format!("no backup sets in {where_} under `{prefix}/`\n"));
        return out;
    }
    out.push_str(&format!(
        "{:<24} {:<8} {:<19} {:<10} {:>7} {:>11} {:>6}  {}\n",
        "HOST", "CLASS", "STAMP", "STATUS", "OBJECTS", "SIZE", "AGE", "NOTES"
    ));
    for l in sets {
        let s = &l.summary;
        let mut notes = Vec::new();
        if let Some(v) = &l.seatable_version {
            notes.push(format!("SeaTable {v}"));
        }
        if l.components.iter().any(|c| c == "config") {
            notes.push("+config".to_string());
        }
        if !l.excluded_tables.is_empty() {
            notes.push(format!("slim ({} tables left out)", l.excluded_tables.len()));
        }
        if let Some(d) = &l.damaged {
            notes.push(d.clone());
        }
        out.push_str(&format!(
            "{:<24} {:<8} {:<19} {:<10} {:>7} {:>11} {:>6}  {}\n",
            s.host,
            s.class.as_str(),
            s.stamp,
            l.status(),
            s.objects,
            human_bytes(s.bytes),
            human_age(s),
            notes.join("; ")
        ));
    }
    let incomplete = sets.iter().filter(|l| !l.summary.complete).count();
    let damaged = sets.iter().filter(|l| l.summary.complete && l.damaged.is_some()).count();
    out.push_str(&format!("{} set(s) in {where_} under `{prefix}/`", sets.len()));
    if incomplete > 0 {
        out.push_str(&format!("; {incomplete} incomplete (no manifest: a run failed or is still running)"));
    }
    if damaged > 0 {
        out.push_str(&format!("; {damaged} damaged (the manifest names objects that are missing: not restorable)"));
    }
    out.push('\n');
    out
}
