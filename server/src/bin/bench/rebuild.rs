//! Rebuild time after a restart: a store is filled with N events (through
//! the real store writer, in-process, with arrival times spread over the past
//! week the way a live feed would have them), then the release binary is
//! started on it and timed until `/readyz` says ready.

use crate::proc::{InProcess, Server};
use crate::report::Section;
use crate::Opts;
use compact_str::format_compact;
use mailpulse::config::Config;
use mailpulse::ingest::parse::{Event, ParsedBatch, TimeSource};
use mailpulse_app::protocol::EventType;
use rand::{Rng, SeedableRng};
use std::fmt::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

const DAY_MS: i64 = 86_400_000;

/// Fills `dir` with `n` events whose arrival times are spread evenly over
/// the last `span_ms`. Returns how long it took.
async fn fill(dir: &std::path::Path, n: u64, span_ms: i64) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut config = Config::for_tests(dir.to_path_buf());
    config.store.synchronous = mailpulse::config::Synchronous::Normal;
    let config = config.finish()?;
    let server = InProcess::start(config).await?;
    let store = server.store();
    let source: Arc<str> = "default".into();
    let now = chrono::Utc::now().timestamp_millis();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let per_batch = 2_000u64;
    let mut in_flight = tokio::task::JoinSet::new();
    let mut i = 0u64;
    while i < n {
        let mut events = Vec::with_capacity(per_batch as usize);
        // The request body the events' raw JSON are spans of.
        let mut body = String::from("[");
        for _ in 0..per_batch.min(n - i) {
            let received_at = now - span_ms + (i as i64 * span_ms) / n as i64;
            let lag = rng.random_range(500..10_000);
            let mailing = if i.is_multiple_of(20) {
                format!("tx-{}", i % 5)
            } else {
                format!("campaign-{}", (i / 50_000) % 200)
            };
            let kind = match rng.random_range(0..100) {
                0..=69 => EventType::Sent,
                70..=89 => EventType::Open,
                90..=96 => EventType::Click,
                _ => EventType::Bounce,
            };
            if body.len() > 1 {
                body.push(',');
            }
            let start = body.len();
            let _ = write!(
                body,
                r#"{{"type":"{}","recipientId":"r{i}"}}"#,
                kind.as_str()
            );
            events.push(Event {
                event_type: kind,
                type_raw: kind.as_str().into(),
                client_id: Some("7".into()),
                mailing_id: Some(mailing.into()),
                recipient_list_id: Some("12".into()),
                recipient_id: Some(format_compact!("r{i}")),
                event_time: received_at - lag,
                time_source: TimeSource::Payload,
                received_at,
                media_type: Some("EMAIL".into()),
                address: Some(format_compact!("user{i}@example.com")),
                domain: Some("example.com".into()),
                link: None,
                bounce_category: (kind == EventType::Bounce)
                    .then_some(mailpulse_app::protocol::BounceKind::Hard),
                bounce_reason: None,
                mail_id: None,
                raw: start..body.len(),
            });
            i += 1;
        }
        body.push(']');
        let body = bytes::Bytes::from(body);
        let store = store.clone();
        let source = source.clone();
        in_flight.spawn(async move {
            loop {
                let batch = ParsedBatch {
                    events: events.clone(),
                    quarantined: vec![],
                };
                match store.ingest(source.clone(), body.clone(), batch).await {
                    Ok(_) => return,
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        });
        while in_flight.len() >= 8 {
            in_flight.join_next().await;
        }
    }
    while in_flight.join_next().await.is_some() {}
    server.stop().await?;
    Ok(started.elapsed())
}

pub async fn run(opts: &Opts) -> anyhow::Result<Section> {
    let mut s = Section::new(
        "Rebuild after restart (issue 4)",
        "A store is filled through the real writer (in-process), then the release binary is \
         started on it and timed from spawn to `/readyz` = 200. The rebuild reads totals, \
         per-minute buckets and bounce breakdowns from the rollups (one aggregate query per \
         table), persisted 5-minute lag histograms, and the raw events that arrived in the \
         last hour (for per-second windows and recent lag); its cost grows with the number of \
         rollup rows and with the last hour's traffic, not with the total stored."
            .into(),
        &[
            "stored events",
            "arrivals spread over",
            "events in the last hour",
            "store size",
            "fill time",
            "start → ready",
        ],
    );
    for (n, span, label) in [
        (1_000_000u64, 7 * DAY_MS, "7 days"),
        (10_000_000u64, 7 * DAY_MS, "7 days"),
        (1_000_000u64, 3_600_000, "the last hour (worst case)"),
    ] {
        let dir = tempfile::tempdir()?;
        let fill_time = fill(dir.path(), n, span).await?;
        let last_hour = if span <= 3_600_000 {
            n
        } else {
            n * 3_600_000 / span as u64
        };
        let size: u64 = std::fs::read_dir(dir.path())?
            .filter_map(|e| e.ok()?.metadata().ok())
            .map(|m| m.len())
            .sum();
        let server = Server::mailpulse(&opts.mailpulse, dir.path(), &[])?;
        let ready = server.wait_ready().await?;
        server.stop();
        s.row(vec![
            format!("{n}"),
            label.into(),
            format!("~{last_hour}"),
            format!("{:.2} GB", size as f64 / 1e9),
            format!("{:.0} s", fill_time.as_secs_f64()),
            format!("{:.2} s", ready.as_secs_f64()),
        ]);
    }
    Ok(s)
}
