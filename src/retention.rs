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
use aws_sdk_s3::types::{
    AbortIncompleteMultipartUpload, ExpirationStatus, LifecycleExpiration, LifecycleRule, LifecycleRuleFilter,
    NoncurrentVersionExpiration,
};
use serde::Serialize;

use crate::catalog::{self, Class, SetSummary};
use crate::config::{Config, RetentionConfig};
use crate::error::{Class as ErrClass, Failure};
use crate::store::{BucketFeatures, Store, StoreError};

/// Every rule this tool writes has an ID that starts so.
pub const ID_PREFIX: &str = "seatable-backup:";
/// Multipart uploads left open this long are aborted (by the store, or by `prune`).
pub const ABORT_AFTER_DAYS: i32 = 1;
/// On a versioned bucket: days a noncurrent version is kept after its object expired.
pub const NONCURRENT_DAYS: i32 = 1;

/// One lifecycle rule, reduced to what this tool reads and writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleSpec {
    pub id: String,
    pub enabled: bool,
    /// The filter's key prefix (`""`: the whole bucket).
    pub prefix: String,
    pub expiration_days: Option<i32>,
    pub expired_object_delete_marker: bool,
    pub abort_incomplete_days: Option<i32>,
    pub noncurrent_days: Option<i32>,
    /// What else the rule holds, which this tool never writes (transitions, tag or size
    /// filters, a fixed date, ...).
    pub other: Vec<String>,
}

/// `seatable-backup:<prefix>:`: the IDs of the rules that belong to this configuration.
pub fn our_id_prefix(prefix: &str) -> String {
    format!("{ID_PREFIX}{prefix}:")
}

/// The rules this configuration wants in the bucket, in the order they are written.
pub fn wanted_rules(prefix: &str, r: &RetentionConfig, versioned: bool) -> Vec<RuleSpec> {
    let ids = our_id_prefix(prefix);
    let base = crate::catalog::prefix_dir(prefix);
    let blank = |what: &str, prefix: String| RuleSpec {
        id: format!("{ids}{what}"),
        enabled: true,
        prefix,
        expiration_days: None,
        expired_object_delete_marker: false,
        abort_incomplete_days: None,
        noncurrent_days: None,
        other: Vec::new(),
    };
    let mut rules: Vec<RuleSpec> = Class::ALL
        .iter()
        .map(|c| RuleSpec { expiration_days: Some(c.keep_days(r) as i32), ..blank(c.as_str(), format!("{base}{c}/")) })
        .collect();
    rules.push(RuleSpec {
        abort_incomplete_days: Some(ABORT_AFTER_DAYS),
        ..blank("abort-incomplete-uploads", base.clone())
    });
    if versioned {
        rules.push(RuleSpec {
            noncurrent_days: Some(NONCURRENT_DAYS),
            expired_object_delete_marker: true,
            ..blank("noncurrent-versions", base)
        });
    }
    rules
}

impl RuleSpec {
    pub fn from_sdk(rule: &LifecycleRule) -> RuleSpec {
        let mut other = Vec::new();
        #[allow(deprecated)]
        let legacy_prefix = rule.prefix().map(str::to_string);
        let prefix = match rule.filter() {
            Some(f) => {
                if f.tag().is_some() {
                    other.push("tag filter".to_string());
                }
                if f.object_size_greater_than().is_some() || f.object_size_less_than().is_some() {
                    other.push("size filter".to_string());
                }
                if let Some(and) = f.and() {
                    other.push("AND filter".to_string());
                    and.prefix().map(str::to_string)
                } else {
                    f.prefix().map(str::to_string)
                }
            }
            None => legacy_prefix,
        }
        .unwrap_or_default();
        let exp = rule.expiration();
        if exp.and_then(|e| e.date()).is_some() {
            other.push("expiration at a fixed date".to_string());
        }
        if !rule.transitions().is_empty() {
            other.push(format!("{} transition(s)", rule.transitions().len()));
        }
        if !rule.noncurrent_version_transitions().is_empty() {
            other.push("noncurrent version transition(s)".to_string());
        }
        let noncurrent = rule.noncurrent_version_expiration();
        if noncurrent.and_then(|n| n.newer_noncurrent_versions()).is_some() {
            other.push("newer noncurrent versions kept".to_string());
        }
        RuleSpec {
            id: rule.id().unwrap_or_default().to_string(),
            enabled: *rule.status() == ExpirationStatus::Enabled,
            prefix,
            expiration_days: exp.and_then(|e| e.days()),
            expired_object_delete_marker: exp.and_then(|e| e.expired_object_delete_marker()).unwrap_or(false),
            abort_incomplete_days: rule.abort_incomplete_multipart_upload().and_then(|a| a.days_after_initiation()),
            noncurrent_days: noncurrent.and_then(|n| n.noncurrent_days()),
            other,
        }
    }

    pub fn to_sdk(&self) -> anyhow::Result<LifecycleRule> {
        let mut b = LifecycleRule::builder()
            .id(&self.id)
            .status(if self.enabled { ExpirationStatus::Enabled } else { ExpirationStatus::Disabled })
            .filter(LifecycleRuleFilter::builder().prefix(&self.prefix).build());
        if self.expiration_days.is_some() || self.expired_object_delete_marker {
            let mut e = LifecycleExpiration::builder();
            if let Some(d) = self.expiration_days {
                e = e.days(d);
            }
            if self.expired_object_delete_marker {
                e = e.expired_object_delete_marker(true);
            }
            b = b.expiration(e.build());
        }
        if let Some(d) = self.abort_incomplete_days {
            b = b.abort_incomplete_multipart_upload(
                AbortIncompleteMultipartUpload::builder().days_after_initiation(d).build(),
            );
        }
        if let Some(d) = self.noncurrent_days {
            b = b.noncurrent_version_expiration(NoncurrentVersionExpiration::builder().noncurrent_days(d).build());
        }
        b.build().with_context(|| format!("building lifecycle rule `{}`", self.id))
    }

    /// `prefix seatable/daily/: expire after 7 days`.
    pub fn describe(&self) -> String {
        let mut actions = Vec::new();
        if let Some(d) = self.expiration_days {
            actions.push(format!("expire after {d} day{}", if d == 1 { "" } else { "s" }));
        }
        if self.expired_object_delete_marker {
            actions.push("remove expired delete markers".into());
        }
        if let Some(d) = self.noncurrent_days {
            actions.push(format!("remove noncurrent versions after {d} day{}", if d == 1 { "" } else { "s" }));
        }
        if let Some(d) = self.abort_incomplete_days {
            actions.push(format!("abort incomplete uploads after {d} day{}", if d == 1 { "" } else { "s" }));
        }
        actions.extend(self.other.iter().cloned());
        let filter =
            if self.prefix.is_empty() { "whole bucket".to_string() } else { format!("prefix {}", self.prefix) };
        format!(
            "{filter}: {}{}",
            if actions.is_empty() { "no action".to_string() } else { actions.join(", ") },
            if self.enabled { "" } else { " (DISABLED)" }
        )
    }
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
    pub rule: RuleSpec,
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
    pub missing: Vec<RuleSpec>,
    /// The bucket holds exactly the rules this configuration wants (and others that are kept).
    pub matches: bool,
}

pub fn compare(prefix: &str, current: &[LifecycleRule], wanted: &[RuleSpec]) -> Comparison {
    let ours = our_id_prefix(prefix);
    let base = crate::catalog::prefix_dir(prefix);
    let mut rules = Vec::new();
    for r in current {
        let spec = RuleSpec::from_sdk(r);
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
    let missing: Vec<RuleSpec> = wanted.iter().filter(|w| !rules.iter().any(|r| r.rule.id == w.id)).cloned().collect();
    let matches =
        missing.is_empty() && rules.iter().all(|r| !matches!(r.verdict, Verdict::Differs | Verdict::Unwanted));
    Comparison { rules, missing, matches }
}

/// The bucket's rules with ours replaced by `wanted`: every rule that is not ours stays, in
/// its place; ours follow.
pub fn merge(prefix: &str, current: &[LifecycleRule], wanted: &[RuleSpec]) -> anyhow::Result<Vec<LifecycleRule>> {
    let ours = our_id_prefix(prefix);
    let mut out: Vec<LifecycleRule> =
        current.iter().filter(|r| !r.id().unwrap_or_default().starts_with(&ours)).cloned().collect();
    for w in wanted {
        out.push(w.to_sdk()?);
    }
    Ok(out)
}

/// Where a store without lifecycle rules is pointed to.
pub const FALLBACK_HINT: &str = "this store keeps no lifecycle rules: run `seatable-backup prune` after every backup (it deletes expired sets client-side, with the same ages); see the README, section Retention";

/// Lifecycle rules are an administrator's business: the backup's own credentials should not be
/// able to change them.
const ADMIN_HINT: &str = "reading and writing lifecycle rules needs s3:GetLifecycleConfiguration and s3:PutLifecycleConfiguration, which the backup's credentials should not have: run `retention` with the admin credentials (README, Minimal permissions)";

/// The error of a lifecycle call, with what to do about it.
fn lifecycle_error(store: &dyn Store, e: StoreError, doing: &str) -> anyhow::Error {
    match e {
        StoreError::Unsupported { .. } => {
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
    let (lifecycle, unsupported) = match store.lifecycle_rules().await {
        Ok(current) => {
            let wanted = wanted_rules(prefix, &config.retention, features.versioning);
            (Some(compare(prefix, &current, &wanted)), None)
        }
        Err(e @ StoreError::Unsupported { .. }) => (None, Some(e.to_string())),
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
    match store.features().await {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the bucket's versioning and Object Lock settings; taking both as off");
            BucketFeatures::default()
        }
    }
}

pub async fn apply(config: &Config, store: &dyn Store, dry_run: bool) -> anyhow::Result<()> {
    let prefix = &config.storage.prefix;
    let current =
        store.lifecycle_rules().await.map_err(|e| lifecycle_error(store, e, "reading the lifecycle rules of"))?;
    let features = store
        .features()
        .await
        .with_context(|| format!("reading the versioning and Object Lock settings of {}", store.describe()))?;
    let wanted = wanted_rules(prefix, &config.retention, features.versioning);
    let cmp = compare(prefix, &current, &wanted);
    let merged = merge(prefix, &current, &wanted)?;
    let before: Vec<RuleSpec> = current.iter().map(RuleSpec::from_sdk).collect();
    let after: Vec<RuleSpec> = merged.iter().map(RuleSpec::from_sdk).collect();
    let list = |v: &[RuleSpec]| -> String {
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
        print!("{}", list(&before));
        return Ok(());
    }
    println!("Lifecycle rules of {} before:\n{}after:\n{}", store.describe(), list(&before), list(&after));
    if dry_run {
        println!("Dry run: nothing written.");
        return Ok(());
    }
    store.put_lifecycle_rules(merged).await.map_err(|e| lifecycle_error(store, e, "writing the lifecycle rules of"))?;
    // Read them back: a store may accept a configuration and silently drop what it does not know.
    let stored =
        store.lifecycle_rules().await.map_err(|e| lifecycle_error(store, e, "reading back the lifecycle rules of"))?;
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
    let lost: Vec<&RuleSpec> = before
        .iter()
        .filter(|b| {
            !b.id.starts_with(&our_id_prefix(prefix)) && !stored.iter().any(|s| s.id().unwrap_or_default() == b.id)
        })
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
        LifecycleRule::builder()
            .id(id)
            .status(ExpirationStatus::Enabled)
            .filter(LifecycleRuleFilter::builder().prefix(prefix).build())
            .expiration(LifecycleExpiration::builder().days(days).build())
            .build()
            .unwrap()
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
    fn rules_round_trip_through_the_sdk_types() {
        for w in wanted_rules("p/q", &RetentionConfig::default(), true) {
            assert_eq!(RuleSpec::from_sdk(&w.to_sdk().unwrap()), w);
        }
    }

    #[test]
    fn merge_keeps_foreign_rules_and_replaces_ours() {
        let wanted = wanted_rules("seatable", &RetentionConfig::default(), false);
        let mut old_daily = wanted[0].clone();
        old_daily.expiration_days = Some(3);
        let current = vec![
            foreign("logs", "logs/", 30),
            old_daily.to_sdk().unwrap(),
            foreign("seatable-backup:other:daily", "other/daily/", 2),
        ];
        let c = compare("seatable", &current, &wanted);
        assert!(!c.matches);
        assert_eq!(c.rules[0].verdict, Verdict::Foreign);
        assert_eq!(c.rules[1].verdict, Verdict::Differs);
        assert_eq!(c.rules[2].verdict, Verdict::OtherPrefix);
        assert_eq!(c.missing.len(), 3);
        let merged = merge("seatable", &current, &wanted).unwrap();
        let ids: Vec<&str> = merged.iter().map(|r| r.id().unwrap()).collect();
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
        assert_eq!(merge("seatable", &merged, &wanted).unwrap(), merged);
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
        let sets = [mk(Class::Monthly, "2026-12-01T020000Z"), mk(Class::Daily, "2026-12-02T020000Z")];
        let e = expiries(&sets, &RetentionConfig::default());
        assert_eq!(e[0].set, "daily/h/2026-12-02T020000Z");
        assert_eq!(e[0].expires_on.to_string(), "2026-12-10");
        assert_eq!(e[1].expires_on.to_string(), "2027-12-02");
    }
}
