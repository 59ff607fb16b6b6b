//! The retention job: periodically deletes raw events older than
//! `events_retention_days` and rollups older than `rollups_retention_days`,
//! in small transactions through the writer so ingest is never blocked long.

use super::Store;
use crate::config::StoreConfig;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const DAY_MS: i64 = 86_400_000;

/// Runs until `shutdown`; the first pass starts one minute after start-up
/// (not at once: start-up is busy rebuilding live state).
pub async fn run(store: Store, config: StoreConfig, shutdown: CancellationToken) {
    let first = Duration::from_secs(60).min(Duration::from_secs(config.retention_interval_secs));
    let mut next = tokio::time::Instant::now() + first;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            _ = shutdown.cancelled() => return,
        }
        let now = chrono::Utc::now().timestamp_millis();
        let events_before = now - i64::from(config.events_retention_days) * DAY_MS;
        let rollups_before = now - i64::from(config.rollups_retention_days) * DAY_MS;
        match store.apply_retention(events_before, rollups_before).await {
            Ok(0) => tracing::debug!("retention: nothing to delete"),
            Ok(n) => tracing::info!(rows = n, "retention: deleted old rows"),
            Err(e) => tracing::warn!(error = %e, "retention pass failed; will retry"),
        }
        next = tokio::time::Instant::now()
            + Duration::from_secs(config.retention_interval_secs.max(1));
    }
}
