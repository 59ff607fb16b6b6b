//! Websocket fan-out: N concurrent clients follow the overview while a
//! steady trickle of events makes every tick produce a delta; the tick is
//! set to 1 s, so each client gets one update per second. Measures the
//! server's CPU, its memory per client, and how late updates arrive.

use crate::ingest::single;
use crate::loadgen::{self, Load};
use crate::proc::{own_cpu_seconds, Server};
use crate::report::{ms, Section};
use crate::Opts;
use futures_util::StreamExt;
use hdrhistogram::Histogram;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

/// The server time a delta was built at (`"now":…` of the delta, ms): the
/// hub serializes a tick's delta once for every client, so it also names
/// the tick. `None` for other messages.
fn built_ms(text: &str) -> Option<i64> {
    if !text.starts_with(r#"{"type":"delta""#) {
        return None;
    }
    let i = text.find(r#""now":"#)? + 6;
    let digits: String = text[i..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

struct Shared {
    delays: Mutex<Histogram<u64>>,
    /// Deltas received, by the time they were built at (one key per tick).
    ticks: Mutex<HashMap<i64, u64>>,
    failed: AtomicU64,
}

/// Deltas built in `[from, to)` (ms): how many ticks sent one, and how
/// many reached the clients in all.
fn delivered(ticks: &HashMap<i64, u64>, from: i64, to: i64) -> (u64, u64) {
    ticks
        .iter()
        .filter(|(built, _)| (from..to).contains(*built))
        .fold((0, 0), |(n, got), (_, c)| (n + 1, got + c))
}

async fn client(addr: std::net::SocketAddr, shared: Arc<Shared>, sample: bool) {
    // Small client buffers: the bench holds up to 10,000 of these.
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0);
    let url = format!("ws://{addr}/ws?topic=overview");
    let Ok((mut ws, _)) =
        tokio_tungstenite::connect_async_with_config(url, Some(config), true).await
    else {
        shared.failed.fetch_add(1, Ordering::Relaxed);
        return;
    };
    while let Some(Ok(msg)) = ws.next().await {
        if let Message::Text(t) = msg {
            if let Some(built) = built_ms(&t) {
                // Same machine, same clock: the delay is the arrival minus
                // the time the server built the delta.
                let delay = chrono::Utc::now().timestamp_millis() - built;
                *shared.ticks.lock().unwrap().entry(built).or_insert(0) += 1;
                // Recorded at once: a run may bring only a few updates per
                // client. Sampled clients are 1 in 10, so the lock is cold.
                if sample {
                    shared
                        .delays
                        .lock()
                        .unwrap()
                        .saturating_record(delay.max(1) as u64);
                }
            }
        }
    }
}

/// How long after the window the deltas are counted: delivering a tick to
/// 10,000 clients takes a few hundred ms here.
const GRACE: Duration = Duration::from_secs(2);

pub async fn run(opts: &Opts) -> anyhow::Result<Section> {
    let limit = rlimit::increase_nofile_limit(65_536)?;
    let mut s = Section::new(
        "Websocket fan-out (issue 4)",
        format!(
            "N clients (tokio-tungstenite, in the benchmark process) follow the overview of the \
             release binary, whose tick is set to 1 s; 50 single-event POSTs per second keep every \
             tick changing, so every client receives one delta per second. Measured over \
             {:.0} s once all clients are connected: the deltas built in that window count, \
             read {grace:.0} s after it so that the last one has reached every client, and a \
             delta is missed when a connected client did not get it (missed out of ticks with a \
             delta × clients). Memory per client = (server RSS with N \
             clients − RSS before) / N, counting the server's own memory only: the \
             file-backed part of its RSS (the binary, and the store's pages its writer reads \
             through a memory map) is the kernel's page cache and left out. Update delay = \
             arrival at the client − the time the server built the delta (sampled on every 10th client). File-descriptor limit raised \
             to {limit}.",
            opts.seconds,
            grace = GRACE.as_secs_f64(),
        ),
        &[
            "clients",
            "connected",
            "updates/s delivered",
            "missed",
            "server CPU",
            "bench CPU",
            "memory per client",
            "update delay p50",
            "p99",
            "max",
        ],
    );
    for n in [1_000usize, 5_000, 10_000] {
        let dir = tempfile::tempdir()?;
        let server = Server::mailpulse(
            &opts.mailpulse,
            dir.path(),
            &[("MAILPULSE_LIVE__TICK_MS", "1000")],
        )?;
        server.wait_ready().await?;
        // Some data, so the overview is of realistic size.
        loadgen::run(Load {
            addr: server.addr,
            path: "/webhooks/optimizely".into(),
            connections: 8,
            duration: Duration::from_secs(1),
            rate: Some(2_000.0),
            body: crate::ingest::batch("seed", 10),
            headers: vec![("content-type".into(), "application/json".into())],
        })
        .await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let rss_before = server.memory().own();
        let shared = Arc::new(Shared {
            delays: Mutex::new(Histogram::new_with_bounds(1, 600_000, 3)?),
            ticks: Mutex::new(HashMap::new()),
            failed: AtomicU64::new(0),
        });
        let mut tasks = Vec::with_capacity(n);
        for i in 0..n {
            tasks.push(tokio::spawn(client(
                server.addr,
                shared.clone(),
                i % 10 == 0,
            )));
            if i % 250 == 249 {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        let failed = shared.failed.load(Ordering::Relaxed) as usize;
        let rss_with = server.memory().own();
        shared.delays.lock().unwrap().reset();
        let (cpu0, own0) = (server.cpu_seconds(), own_cpu_seconds());
        let from = chrono::Utc::now().timestamp_millis();
        loadgen::run(Load {
            addr: server.addr,
            path: "/webhooks/optimizely".into(),
            connections: 4,
            duration: Duration::from_secs_f64(opts.seconds),
            rate: Some(50.0),
            body: single("fan"),
            headers: vec![("content-type".into(), "application/json".into())],
        })
        .await?;
        let to = chrono::Utc::now().timestamp_millis();
        let secs = opts.seconds;
        let server_cpu = (server.cpu_seconds() - cpu0) / secs;
        let bench_cpu = (own_cpu_seconds() - own0) / secs;
        tokio::time::sleep(GRACE).await;
        let (ticks, got) = delivered(&shared.ticks.lock().unwrap(), from, to);
        let expected = ticks * (n - failed) as u64;
        let updates = got as f64 / ((to - from) as f64 / 1000.0);
        let h = shared.delays.lock().unwrap().clone();
        let per_client = (rss_with.saturating_sub(rss_before)) as f64 / (n - failed).max(1) as f64;
        s.row(vec![
            n.to_string(),
            (n - failed).to_string(),
            format!("{updates:.0}"),
            format!("{} of {expected}", expected.saturating_sub(got)),
            format!("{server_cpu:.2} cores"),
            format!("{bench_cpu:.2} cores"),
            format!("{:.1} KB (target < 20 KB)", per_client / 1024.0),
        ]);
        let cells = if h.is_empty() {
            vec!["no samples".to_string(); 3]
        } else {
            [h.value_at_quantile(0.5), h.value_at_quantile(0.99), h.max()]
                .map(|v| ms(Duration::from_millis(v)))
                .to_vec()
        };
        s.rows.last_mut().expect("just pushed").extend(cells);
        for t in tasks {
            t.abort();
        }
        server.stop();
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    s.note(
        "Published peers, for scale (not measured here): Centrifugo's benchmark delivered \
         about 500k messages/s to 1 million connections with a p99 delivery latency of 200 ms, \
         using 20 server pods \
         (centrifugal.dev/blog/2020/02/10/million-connections-with-centrifugo); Grafana Live \
         allows 100 simultaneous connections by default and says delivery can take \"up to \
         several hundred milliseconds or higher\" \
         (grafana.com/docs/grafana/latest/setup-grafana/set-up-grafana-live). The clients here \
         share the machine's 2 cores with the server."
            .into(),
    );
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deltas_count_by_the_tick_they_were_built_in() {
        let delta =
            r#"{"type":"delta","topic":"overview","seq":7,"delta":{"now":1767000001000,"x":1}}"#;
        assert_eq!(built_ms(delta), Some(1_767_000_001_000));
        assert_eq!(built_ms(r#"{"type":"heartbeat","now":5}"#), None);
        // Ticks at 1 s, 2 s and 3 s; the window [1 s, 3 s) holds the first
        // two, whose deltas reached 10 and 9 clients.
        let ticks = HashMap::from([(1_000, 10), (2_000, 9), (3_000, 10)]);
        assert_eq!(delivered(&ticks, 1_000, 3_000), (2, 19));
        assert_eq!(delivered(&ticks, 3_001, 4_000), (0, 0));
    }
}
