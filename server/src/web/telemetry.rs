//! `GET /metrics`: mailpulse's own health in the Prometheus text format,
//! every name prefixed `mailpulse_`. Values are read at scrape time from the
//! store's and the hub's counters and from the live overview.

use crate::hub::Hub;
use crate::store::Store;
use crate::AppState;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use mailpulse_app::protocol::{Topic, TopicState, Window};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::Ordering;
use std::sync::Arc;

#[derive(Debug)]
struct Health {
    /// The handle, not just its counters: the queue depth is read from the
    /// writer's channel at scrape time.
    store: Store,
    hub: Arc<Hub>,
}

fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> std::fmt::Result {
    let c = ConstCounter::new(v);
    c.encode(e.encode_descriptor(name, help, None, c.metric_type())?)
}

fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, v: f64) -> std::fmt::Result {
    let g = ConstGauge::new(v);
    g.encode(e.encode_descriptor(name, help, None, g.metric_type())?)
}

impl Collector for Health {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        let s = &self.store.stats;
        let get = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        counter(
            &mut e,
            "events_accepted",
            "Webhook events stored.",
            get(&s.events_accepted),
        )?;
        counter(
            &mut e,
            "events_duplicate",
            "Webhook events already stored (not stored again).",
            get(&s.duplicates),
        )?;
        counter(
            &mut e,
            "events_quarantined",
            "Webhook items that could not be understood, kept in quarantine.",
            get(&s.quarantined),
        )?;
        counter(
            &mut e,
            "store_commits",
            "Group commits of the store.",
            get(&s.commits),
        )?;
        counter(
            &mut e,
            "store_commit_failures",
            "Failed group commits (their requests got 503).",
            get(&s.commit_failures),
        )?;
        counter(
            &mut e,
            "ingest_busy_rejections",
            "Webhook requests answered 503 because the store queue was full.",
            get(&s.busy_rejections),
        )?;
        // Depth against capacity says how close ingest is to answering 503:
        // a queue that stays deep means the writer cannot keep up.
        gauge(
            &mut e,
            "store_queue_depth",
            "Requests waiting for the store writer (not counting the group being written).",
            self.store.queued() as f64,
        )?;
        gauge(
            &mut e,
            "store_queue_capacity",
            "Requests the store queue holds before ingest answers 503 (ingest.queue_capacity).",
            self.store.queue_capacity() as f64,
        )?;
        gauge(
            &mut e,
            "store_firsts_unwritten",
            "First opens/clicks committed with their events but held in memory, not yet written to their table.",
            get(&s.firsts_unwritten) as f64,
        )?;
        gauge(
            &mut e,
            "store_firsts_filter_bytes",
            "Memory of the Bloom filters that spare new mailings' first opens/clicks a table look-up (estimated; store.firsts_filter_mib caps it).",
            get(&s.firsts_filter_bytes) as f64,
        )?;
        counter(
            &mut e,
            "store_firsts_table_lookups",
            "Opens/clicks not held in memory that looked their first up in the table (the others a filter told apart).",
            get(&s.firsts_table_lookups),
        )?;
        let h = &self.hub.stats;
        gauge(
            &mut e,
            "websocket_clients",
            "Open websocket connections.",
            get(&h.clients) as f64,
        )?;
        counter(
            &mut e,
            "websocket_resyncs",
            "Slow websocket clients resynced with a snapshot.",
            get(&h.resyncs),
        )?;
        counter(
            &mut e,
            "websocket_dropped",
            "Websocket clients dropped because their socket stayed blocked.",
            get(&h.dropped),
        )?;
        counter(
            &mut e,
            "websocket_deltas_published",
            "Deltas published (each serialised once for all clients).",
            get(&h.frames_published),
        )?;
        if let Some(ch) = self.hub.channel(&Topic::Overview) {
            if let TopicState::Overview(o) = &ch.current().state {
                let w = o.summary.overall.window(Window::M5);
                if let Some(lag) = w.lag {
                    gauge(
                        &mut e,
                        "webhook_lag_p50_seconds",
                        "Webhook lag (received - event time), p50 over 5 minutes.",
                        lag.p50 as f64 / 1000.0,
                    )?;
                    gauge(
                        &mut e,
                        "webhook_lag_p95_seconds",
                        "Webhook lag, p95 over 5 minutes.",
                        lag.p95 as f64 / 1000.0,
                    )?;
                    gauge(
                        &mut e,
                        "webhook_lag_p99_seconds",
                        "Webhook lag, p99 over 5 minutes.",
                        lag.p99 as f64 / 1000.0,
                    )?;
                }
                gauge(
                    &mut e,
                    "webhook_events_per_second",
                    "Webhook events received per second over the last minute.",
                    o.feed.events_per_sec,
                )?;
                if let Some(t) = o.feed.last_received_at {
                    gauge(
                        &mut e,
                        "webhook_last_received_timestamp_seconds",
                        "When the last webhook event arrived.",
                        t as f64 / 1000.0,
                    )?;
                }
            }
        }
        Ok(())
    }
}

/// The registry of this server, built once.
pub fn registry(store: &Store, hub: &Arc<Hub>) -> Arc<Registry> {
    let mut r = Registry::with_prefix("mailpulse");
    r.register(
        "store_commit_seconds",
        "The writer's time on each group commit (inserts, rollups, writing the WAL; with \
         synchronous=full the WAL's fsync follows on its own thread, see \
         store_wal_sync_seconds, and the time a group waits for the fsync in flight is not \
         counted).",
        store.stats.commit_seconds.clone(),
    );
    r.register(
        "store_wal_sync_seconds",
        "Duration of the WAL fsyncs that make commits durable (synchronous=full); answers wait \
         for them.",
        store.stats.wal_sync_seconds.clone(),
    );
    r.register(
        "store_ingest_seconds",
        "From handing a webhook request's events to the store until they are durably committed \
         (queue wait, group commit and WAL fsync).",
        store.stats.ingest_seconds.clone(),
    );
    r.register_collector(Box::new(Health {
        store: store.clone(),
        hub: hub.clone(),
    }));
    Arc::new(r)
}

pub async fn scrape(State(state): State<AppState>) -> impl IntoResponse {
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &state.telemetry) {
        tracing::error!(error = %e, "cannot encode /metrics");
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        out,
    )
}
