//! `retention show` and `retention apply`: old sets expire server-side, by the bucket's
//! lifecycle rules, so that the backup credentials never need the right to delete.
//!
//! The class comes first in every key (`<prefix>/<class>/<host>/<stamp>/...`), so ONE rule per
//! class expires the sets of every host: an Expiration rule filtered on `<prefix>/<class>/`,
//! plus one AbortIncompleteMultipartUpload rule (1 day) on `<prefix>/`. On a versioned bucket
//! (Object Lock needs versioning) an expired object only gets a delete marker, so one more rule
//! removes noncurrent versions a day later and then the markers themselves.
//!
//! Our rules are recognised by their ID, `seatable-backup:<prefix>:<what>`; every other rule of
//! the bucket (a user's, or ours for another prefix) is kept exactly as it is. `apply` writes
//! nothing when the bucket already holds what the configuration wants.

use anyhow::Context;
use serde::Serialize;

use crate::catalog::{self, SetClass, SetSummary};
use crate::config::{Config, RetentionConfig};
use crate::error::{Class as ErrClass, Failure};
use crate::store::{BucketAdmin, BucketFeatures, LifecycleRule, Store, StoreError};

/// Every rule this tool writes has an ID that starts so.
pub const ID_PREFIX: &str = "seatable-backup:";
/// Multipart uploads left open this long are aborted (by the store, or by `prune`).
pub const ABORT_AFTER_DAYS: i32 = 1;
/// On a versioned bucket: days a noncurrent version is kept after its object expired.
pub const NONCURRENT_DAYS: i32 = 1;

/// `seatable-backup:<prefix>:`: the IDs of the rules that belong to this configuration.
pub fn our_id_prefix(prefix: &str) -> String {
    format!("{ID_PREFIX}{prefix}:")
}

/// The rules this configuration wants in the bucket, in the order they are written.
pub fn wanted_rules(prefix: &str, r: &RetentionConfig, versioned: bool) -> Vec<LifecycleRule> {
    let ids = our_id_prefix(prefix);
    let base = crate::catalog::prefix_dir(prefix);
    let blank = |what: &str, prefix: String| LifecycleRule::new(format!("{ids}{what}"), prefix);
    let mut rules: Vec<LifecycleRule> = SetClass::ALL
        .iter()
        .map(|c| LifecycleRule {
            expiration_days: Some(c.keep_days(r) as i32),
            ..blank(c.as_str(), format!("{base}{c}/"))
        })
        .collect();
    rules.push(LifecycleRule {
        abort_incomplete_days: Some(ABORT_AFTER_DAYS),
        ..blank("abort-incomplete-uploads", base.clone())
    });
    if versioned {
        rules.push(LifecycleRule {
            noncurrent_days: Some(NONCURRENT_DAYS),
            expired_object_delete_marker: true,
            ..blank("noncurrent-versions", base)
        });
    }
    rules
}

/// How a rule in the bucket relates to this configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Ours, as the configuration wants it.
    Ok,
    /// Ours, but not as the configuration wants it (`apply` rewrites it).
    Differs,
    /// Ours, but the configuration no longer wants it (`apply` removes it).
    Unwanted,
    /// Ours for another prefix (another configuration sharing the bucket): kept.
    OtherPrefix,
    /// Not this tool's: kept as it is.
    Foreign,
}

#[derive(Debug, Clone, Serialize)]
pub struct RuleState {
    #[serde(flatten)]
    pub rule: LifecycleRule,
    pub verdict: Verdict,
    /// For `Differs`: what the configuration wants instead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wanted: Option<String>,
    /// A foreign rule that also expires objects of this tool's sets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

/// The bucket's rules next to the configuration's.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub rules: Vec<RuleState>,
    /// Wanted rules the bucket does not have.
    pub missing: Vec<LifecycleRule>,
    /// The bucket holds exactly the rules this configuration wants (and others that are kept).
    pub matches: bool,
}

pub fn compare(prefix: &str, current: &[LifecycleRule], wanted: &[LifecycleRule]) -> Comparison {
    let ours = our_id_prefix(prefix);
    let base = crate::catalog::prefix_dir(prefix);
    let mut rules = Vec::new();
    for r in current {
        let spec = r.clone();
        let (verdict, want) = if spec.id.starts_with(&ours) {
            match wanted.iter().find(|w| w.id == spec.id) {
                Some(w) if *w == spec => (Verdict::Ok, None),
                Some(w) => (Verdict::Differs, Some(w.describe())),
                None => (Verdict::Unwanted, None),
            }
        } else if spec.id.starts_with(ID_PREFIX) {
            (Verdict::OtherPrefix, None)
        } else {
            (Verdict::Foreign, None)
        };
        // A rule of someone else's that reaches into our keys decides about our sets too.
        let overlaps = spec.prefix.starts_with(&base) || base.starts_with(&spec.prefix);
        let warning =
            (verdict == Verdict::Foreign && spec.enabled && overlaps && spec.expiration_days.is_some()).then(|| {
                format!(
                    "this rule also expires objects of this tool's sets (its prefix `{}` overlaps `{base}`)",
                    spec.prefix
                )
            });
        rules.push(RuleState { rule: spec, verdict, wanted: want, warning });
    }
    let missing: Vec<LifecycleRule> =
        wanted.iter().filter(|w| !rules.iter().any(|r| r.rule.id == w.id)).cloned().collect();
    let matches =
        missing.is_empty() && rules.iter().all(|r| !matches!(r.verdict, Verdict::Differs | Verdict::Unwanted));
    Comparison { rules, missing, matches }
}

/// The bucket's rules with ours replaced by `wanted`: every rule that is not ours stays as it
/// was read (the store writes it back unchanged), in its place; ours follow.
pub fn merge(prefix: &str, current: &[LifecycleRule], wanted: &[LifecycleRule]) -> Vec<LifecycleRule> {
    let ours = our_id_prefix(prefix);
    current.iter().filter(|r| !r.id.starts_with(&ours)).chain(wanted).cloned().collect()
}

/// Where a store without lifecycle rules is pointed to.
pub const FALLBACK_HINT: &str = "this store keeps no lifecycle rules: run `seatable-backup prune` after every backup (it deletes expired sets client-side, with the same ages); see the README, section Retention";

/// Lifecycle rules are an administrator's business: the backup's own credentials should not be
/// able to change them.
const ADMIN_HINT: &str = "reading and writing lifecycle rules needs s3:GetLifecycleConfiguration and s3:PutLifecycleConfiguration, which the backup's credentials should not have: run `retention` with the admin credentials (README, Minimal permissions)";

/// The error of a lifecycle call, with what to do about it.
fn lifecycle_error(store: &dyn Store, e: StoreError, doing: &str) -> anyhow::Error {
    match e {
        StoreError::Unsupported { .. } | StoreError::NoBucket { .. } => {
            Failure::new(ErrClass::Storage, e.to_string()).with_hint(FALLBACK_HINT).into()
        }
        StoreError::AccessDenied { .. } => {
            Failure::new(ErrClass::Storage, format!("{doing} {}: {e}", store.describe())).with_hint(ADMIN_HINT).into()
        }
        other => anyhow::Error::from(other).context(format!("{doing} {}", store.describe())),
    }
}

/// A set and the day lifecycle rules (or `prune`) remove it.
#[derive(Debug, Clone, Serialize)]
pub struct Expiry {
    pub set: String,
    pub complete: bool,
    pub bytes: u64,
    pub expires_on: chrono::NaiveDate,
}

/// The sets under the prefix, soonest to expire first.
pub fn expiries(sets: &[SetSummary], r: &RetentionConfig) -> Vec<Expiry> {
    let mut v: Vec<Expiry> = sets
        .iter()
        .filter_map(|s| {
            s.created.map(|c| Expiry {
                set: s.id().to_string(),
                complete: s.complete,
                bytes: s.bytes,
                expires_on: catalog::expires_on(s.class, c, r),
            })
        })
        .collect();
    v.sort_by(|a, b| a.expires_on.cmp(&b.expires_on).then(a.set.cmp(&b.set)));
    v
}

#[derive(Debug, Serialize)]
struct ShowReport {
    destination: String,
    prefix: String,
    /// `None` when the store has no lifecycle rules at all.
    lifecycle: Option<Comparison>,
    #[serde(skip_serializing_if = "Option::is_none")]
    unsupported: Option<String>,
    versioning: bool,
    object_lock: bool,
    next_to_expire: Vec<Expiry>,
}

/// Sets shown under "expires next".
const SHOW_NEXT: usize = 10;

pub async fn show(config: &Config, store: &dyn Store, json: bool) -> anyhow::Result<()> {
    let prefix = &config.storage.prefix;
    let features = features_or_warn(store).await;
    let (lifecycle, unsupported) = match read_rules(store).await {
        Ok(current) => {
            let wanted = wanted_rules(prefix, &config.retention, features.versioning);
            (Some(compare(prefix, &current, &wanted)), None)
        }
        Err(e @ (StoreError::Unsupported { .. } | StoreError::NoBucket { .. })) => (None, Some(e.to_string())),
        Err(e) => return Err(lifecycle_error(store, e, "reading the lifecycle rules of")),
    };
    let sets = catalog::list_sets(store, prefix).await.context("listing the sets")?;
    let report = ShowReport {
        destination: store.describe(),
        prefix: prefix.clone(),
        lifecycle,
        unsupported,
        versioning: features.versioning,
        object_lock: features.object_lock,
        next_to_expire: expiries(&sets, &config.retention).into_iter().take(SHOW_NEXT).collect(),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render_show(&report, &config.retention));
    }
    Ok(())
}

fn render_show(r: &ShowReport, ret: &RetentionConfig) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(s, "Destination {} (prefix `{}`)", r.destination, r.prefix);
    let _ = writeln!(
        s,
        "Keep days: daily {}, weekly {}, monthly {}; versioning {}, Object Lock {}",
        ret.daily,
        ret.weekly,
        ret.monthly,
        if r.versioning { "on" } else { "off" },
        if r.object_lock { "on" } else { "off" }
    );
    match (&r.lifecycle, &r.unsupported) {
        (Some(c), _) => {
            if c.rules.is_empty() {
                let _ = writeln!(s, "\nThe bucket has no lifecycle rules.");
            } else {
                let _ = writeln!(s, "\nLifecycle rules in the bucket:");
            }
            for st in &c.rules {
                let tag = match st.verdict {
                    Verdict::Ok => "ours, as configured",
                    Verdict::Differs => "ours, DIFFERS from the config",
                    Verdict::Unwanted => "ours, no longer wanted",
                    Verdict::OtherPrefix => "ours for another prefix, kept",
                    Verdict::Foreign => "not ours, kept",
                };
                let _ = writeln!(s, "  {:<52} {}  [{tag}]", st.rule.id, st.rule.describe());
                if let Some(w) = &st.wanted {
                    let _ = writeln!(s, "  {:<52} wanted: {w}", "");
                }
                if let Some(w) = &st.warning {
                    let _ = writeln!(s, "  {:<52} WARNING: {w}", "");
                }
            }
            for m in &c.missing {
                let _ = writeln!(s, "  {:<52} {}  [MISSING]", m.id, m.describe());
            }
            if c.matches {
                let _ = writeln!(s, "\nThe bucket's rules are the ones this configuration expects.");
            } else {
                let _ = writeln!(
                    s,
                    "\nThe bucket's rules do NOT match this configuration: run `seatable-backup retention apply` (with --dry-run first to see the change)."
                );
            }
        }
        (None, Some(why)) => {
            let _ = writeln!(s, "\nNo lifecycle rules: {why}.\nhint: {FALLBACK_HINT}");
        }
        (None, None) => {}
    }
    if r.next_to_expire.is_empty() {
        let _ = writeln!(s, "\nNo sets under this prefix.");
    } else {
        let _ =
            writeln!(s, "\nNext to expire (by the configured ages; lifecycle rules count from each object's upload):");
        for e in &r.next_to_expire {
            let _ = writeln!(
                s,
                "  {}  {:<48} {:>10}{}",
                e.expires_on,
                e.set,
                crate::output::human_bytes(e.bytes),
                if e.complete { "" } else { "  (incomplete)" }
            );
        }
    }
    s
}

/// Versioning and Object Lock, or nothing known (with a warning) where these credentials may
/// not read them.
async fn features_or_warn(store: &dyn Store) -> BucketFeatures {
    match crate::store::features(store).await {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the bucket's versioning and Object Lock settings; taking both as off");
            BucketFeatures::default()
        }
    }
}

/// The bucket's lifecycle rules; a store that is no bucket has none to read.
async fn read_rules(store: &dyn Store) -> Result<Vec<LifecycleRule>, StoreError> {
    store.require_admin(LIFECYCLE_RULES)?.lifecycle_rules().await
}

const LIFECYCLE_RULES: &str = "lifecycle rules";

pub async fn apply(config: &Config, store: &dyn Store, dry_run: bool) -> anyhow::Result<()> {
    let prefix = &config.storage.prefix;
    let admin: &dyn BucketAdmin = store
        .require_admin(LIFECYCLE_RULES)
        .map_err(|e| lifecycle_error(store, e, "reading the lifecycle rules of"))?;
    let current =
        admin.lifecycle_rules().await.map_err(|e| lifecycle_error(store, e, "reading the lifecycle rules of"))?;
    let features = admin
        .features()
        .await
        .with_context(|| format!("reading the versioning and Object Lock settings of {}", store.describe()))?;
    let wanted = wanted_rules(prefix, &config.retention, features.versioning);
    let cmp = compare(prefix, &current, &wanted);
    let merged = merge(prefix, &current, &wanted);
    let (before, after) = (&current, &merged);
    let list = |v: &[LifecycleRule]| -> String {
        if v.is_empty() {
            return "  (none)\n".into();
        }
        v.iter().map(|r| format!("  {:<52} {}\n", r.id, r.describe())).collect()
    };
    for st in cmp.rules.iter().filter(|s| s.warning.is_some()) {
        tracing::warn!(rule = %st.rule.id, "{}", st.warning.as_deref().unwrap_or_default());
    }
    if cmp.matches {
        println!("{}: the lifecycle rules are already as configured; nothing to change.", store.describe());
        print!("{}", list(before));
        return Ok(());
    }
    println!("Lifecycle rules of {} before:\n{}after:\n{}", store.describe(), list(before), list(after));
    if dry_run {
        println!("Dry run: nothing written.");
        return Ok(());
    }
    admin.put_lifecycle_rules(merged).await.map_err(|e| lifecycle_error(store, e, "writing the lifecycle rules of"))?;
    // Read them back: a store may accept a configuration and silently drop what it does not know.
    let stored =
        admin.lifecycle_rules().await.map_err(|e| lifecycle_error(store, e, "reading back the lifecycle rules of"))?;
    let check = compare(prefix, &stored, &wanted);
    if !check.matches {
        let what: Vec<String> = check
            .missing
            .iter()
            .map(|m| format!("`{}` missing", m.id))
            .chain(
                check
                    .rules
                    .iter()
                    .filter(|r| r.verdict == Verdict::Differs)
                    .map(|r| format!("`{}` stored as \"{}\"", r.rule.id, r.rule.describe())),
            )
            .collect();
        return Err(Failure::new(
            ErrClass::Storage,
            format!(
                "{} accepted the lifecycle rules but does not hold them as written: {}",
                store.describe(),
                what.join(", ")
            ),
        )
        .with_hint(FALLBACK_HINT)
        .into());
    }
    let lost: Vec<&LifecycleRule> = before
        .iter()
        .filter(|b| !b.id.starts_with(&our_id_prefix(prefix)) && !stored.iter().any(|s| s.id == b.id))
        .collect();
    if let Some(l) = lost.first() {
        return Err(Failure::new(
            ErrClass::Storage,
            format!("{} dropped the rule `{}` that was not ours while taking the new rules", store.describe(), l.id),
        )
        .into());
    }
    println!("Written and read back: the bucket's rules are the ones this configuration expects.");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn foreign(id: &str, prefix: &str, days: i32) -> LifecycleRule {
        LifecycleRule { expiration_days: Some(days), ..LifecycleRule::new(id.into(), prefix.into()) }
    }

    #[test]
    fn wanted_rules_follow_the_key_layout() {
        let r = RetentionConfig::default();
        let w = wanted_rules("seatable", &r, false);
        assert_eq!(w.len(), 4);
        assert_eq!(w[0].id, "seatable-backup:seatable:daily");
        assert_eq!(w[0].prefix, "seatable/daily/");
        assert_eq!(w[0].expiration_days, Some(7));
        assert_eq!(w[1].expiration_days, Some(35));
        assert_eq!(w[2].prefix, "seatable/monthly/");
        assert_eq!(w[2].expiration_days, Some(365));
        assert_eq!(w[3].abort_incomplete_days, Some(1));
        assert_eq!(w[3].prefix, "seatable/");
        let v = wanted_rules("", &r, true);
        assert_eq!(v[0].prefix, "daily/");
        assert_eq!(v[4].id, "seatable-backup::noncurrent-versions");
        assert!(v[4].expired_object_delete_marker && v[4].noncurrent_days == Some(1));
    }

    #[test]
    fn merge_keeps_foreign_rules_and_replaces_ours() {
        let wanted = wanted_rules("seatable", &RetentionConfig::default(), false);
        let mut old_daily = wanted[0].clone();
        old_daily.expiration_days = Some(3);
        let current =
            vec![foreign("logs", "logs/", 30), old_daily, foreign("seatable-backup:other:daily", "other/daily/", 2)];
        let c = compare("seatable", &current, &wanted);
        assert!(!c.matches);
        assert_eq!(c.rules[0].verdict, Verdict::Foreign);
        assert_eq!(c.rules[1].verdict, Verdict::Differs);
        assert_eq!(c.rules[2].verdict, Verdict::OtherPrefix);
        assert_eq!(c.missing.len(), 3);
        let merged = merge("seatable", &current, &wanted);
        let ids: Vec<&str> = merged.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "logs",
                "seatable-backup:other:daily",
                "seatable-backup:seatable:daily",
                "seatable-backup:seatable:weekly",
                "seatable-backup:seatable:monthly",
                "seatable-backup:seatable:abort-incomplete-uploads"
            ]
        );
        assert!(compare("seatable", &merged, &wanted).matches);
        // Merging again changes nothing.
        assert_eq!(merge("seatable", &merged, &wanted), merged);
    }

    #[test]
    fn a_foreign_rule_over_our_keys_is_flagged() {
        let wanted = wanted_rules("seatable", &RetentionConfig::default(), false);
        let c = compare("seatable", &[foreign("cleanup", "", 3), foreign("logs", "logs/", 3)], &wanted);
        assert!(c.rules[0].warning.is_some());
        assert!(c.rules[1].warning.is_none());
    }

    #[test]
    fn expiries_are_sorted_soonest_first() {
        let mk = |class, stamp: &str| SetSummary {
            class,
            host: "h".into(),
            stamp: stamp.into(),
            complete: true,
            objects: 1,
            bytes: 1,
            created: catalog::parse_stamp(stamp),
            dir: String::new(),
        };
        let sets = [mk(SetClass::Monthly, "2026-12-01T020000Z"), mk(SetClass::Daily, "2026-12-02T020000Z")];
        let e = expiries(&sets, &RetentionConfig::default());
        assert_eq!(e[0].set, "daily/h/2026-12-02T020000Z");
        assert_eq!(e[0].expires_on.to_string(), "2026-12-10");
        assert_eq!(e[1].expires_on.to_string(), "2027-12-02");
    }
}
