//! Object Lock on a complete set: decided before the first object is written (from the
//! bucket's setting and the configuration), put on every object once the manifest is written.

use anyhow::Context;

use crate::catalog::{self, SetId};
use crate::config::Config;
use crate::error::storage;
use crate::store::{Retention, Store};

/// The Object Lock retention for a new set, when the bucket has Object Lock enabled and the
/// configuration does not turn it off.
pub async fn retention_for(
    config: &Config,
    store: &dyn Store,
    class: catalog::SetClass,
    started: chrono::DateTime<chrono::Utc>,
) -> Option<Retention> {
    if !config.retention.object_lock {
        return None;
    }
    match crate::store::features(store).await {
        Ok(f) if f.object_lock => {
            let days = config.retention.object_lock_days.unwrap_or_else(|| class.keep_days(&config.retention));
            let r = Retention {
                mode: config.retention.object_lock_mode,
                until: started + chrono::Duration::days(days.into()),
            };
            tracing::info!(mode = r.mode.as_str(), until = %r.until, "the bucket has Object Lock: the set's objects will be locked");
            Some(r)
        }
        Ok(_) => None,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the bucket's Object Lock setting (these credentials may lack s3:GetBucketObjectLockConfiguration); the set is not locked");
            None
        }
    }
}

/// Objects locked at once.
const LOCKS_IN_FLIGHT: usize = 8;

/// Puts the retention on every object of the complete set (the manifest included).
pub async fn lock_set(store: &dyn Store, id: &SetId, prefix: &str, retention: Retention) -> anyhow::Result<()> {
    use futures::StreamExt;
    let keys: Vec<String> = store
        .list(&id.dir(prefix))
        .await
        .with_context(|| format!("listing set {id} to lock it"))?
        .into_iter()
        .map(|o| o.key)
        .collect();
    let count = keys.len();
    let admin = store.require_admin("Object Lock")?;
    let failed: Vec<(String, crate::store::StoreError)> = futures::stream::iter(keys)
        .map(|k| async move { admin.lock_object(&k, retention).await.err().map(|e| (k, e)) })
        .buffer_unordered(LOCKS_IN_FLIGHT)
        .filter_map(|r| async move { r })
        .collect()
        .await;
    if let Some((key, e)) = failed.first() {
        return Err(storage(format!(
            "set {id} is complete, but Object Lock retention could not be put on {} of its {count} objects (first `{key}`: {e})",
            failed.len()
        )));
    }
    tracing::info!(set = %id, objects = count, mode = retention.mode.as_str(), until = %retention.until, "set locked");
    Ok(())
}
