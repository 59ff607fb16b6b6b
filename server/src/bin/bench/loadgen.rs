//! The HTTP load generator shared by every benchmark: keep-alive HTTP/1.1
//! connections on loopback, either closed-loop (each connection sends as
//! fast as answers come: peak throughput) or open-loop at a fixed rate
//! (latency measured from each request's *scheduled* time, so a stalled
//! server is not hidden by the generator waiting for it).

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// Makes the body of request number `n` (unique per request, so the
/// server never sees duplicates unless asked to).
pub type BodyFn = Arc<dyn Fn(u64) -> Bytes + Send + Sync>;

#[derive(Clone)]
pub struct Load {
    pub addr: SocketAddr,
    pub path: String,
    pub connections: usize,
    pub duration: Duration,
    /// Requests per second across all connections; `None` = closed loop.
    pub rate: Option<f64>,
    pub body: BodyFn,
    pub headers: Vec<(String, String)>,
}

#[derive(Debug)]
pub struct Outcome {
    pub ok: u64,
    pub failed: u64,
    pub elapsed: Duration,
    /// Latency of successful requests, in microseconds.
    pub latency: Histogram<u64>,
    /// Open loop only: each successful request's scheduled time (from
    /// the run's start) and latency, so a tail can be placed in time.
    pub timeline: Vec<(Duration, Duration)>,
    /// The wall-clock time of the run's start (its connections open), to
    /// place the timeline against a server's log.
    pub started_at: chrono::DateTime<chrono::Utc>,
}

impl Outcome {
    pub fn rps(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }
    pub fn p(&self, q: f64) -> Duration {
        Duration::from_micros(self.latency.value_at_quantile(q))
    }
}

/// A histogram of latencies in microseconds, 1 µs to 60 s: every
/// latency table of the bench records into this shape, so runs can be
/// added together.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("static bounds")
}

/// Runs `load` and returns what it measured.
pub async fn run(load: Load) -> anyhow::Result<Outcome> {
    // Every connection is open before the clock starts: a run measures
    // requests on keep-alive connections, not a burst of handshakes. (Until
    // 2026-12-07 each connection connected on the clock: the first
    // requests of an open-loop run over 512 connections at 25,000/s waited
    // up to ~90 ms for them, and made that run's p99.)
    let mut connecting = tokio::task::JoinSet::new();
    for _ in 0..load.connections {
        connecting.spawn(connect(load.addr));
    }
    let mut senders = Vec::with_capacity(load.connections);
    while let Some(sender) = connecting.join_next().await {
        senders.push(sender??);
    }
    let start = Instant::now();
    let started_at = chrono::Utc::now();
    let deadline = start + load.duration;
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for sender in senders {
        let load = load.clone();
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            connection(load, sender, next, start, deadline).await
        }));
    }
    let mut latency = latency_histogram();
    let (mut ok, mut failed) = (0, 0);
    let mut timeline = Vec::new();
    for t in tasks {
        let (h, o, f, times) = t.await??;
        latency.add(h)?;
        ok += o;
        failed += f;
        timeline.extend(times);
    }
    timeline.sort_unstable();
    Ok(Outcome {
        ok,
        failed,
        elapsed: start.elapsed(),
        latency,
        timeline,
        started_at,
    })
}

async fn connection(
    load: Load,
    mut sender: Sender,
    next: Arc<AtomicU64>,
    start: Instant,
    deadline: Instant,
) -> anyhow::Result<(Histogram<u64>, u64, u64, Vec<(Duration, Duration)>)> {
    let mut hist = latency_histogram();
    let (mut ok, mut failed) = (0u64, 0u64);
    let mut timeline = Vec::new();
    loop {
        let n = next.fetch_add(1, Ordering::Relaxed);
        let scheduled = match load.rate {
            Some(rate) => start + Duration::from_secs_f64(n as f64 / rate),
            None => Instant::now(),
        };
        if scheduled >= deadline {
            break;
        }
        // Timers have 1 ms granularity: only sleep when ahead of schedule.
        if scheduled > Instant::now() {
            tokio::time::sleep_until(scheduled.into()).await;
        }
        let mut req = Request::post(load.path.as_str()).header("host", "bench");
        for (k, v) in &load.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let req = req.body(Full::new((load.body)(n)))?;
        if sender.ready().await.is_err() {
            sender = connect(load.addr).await?;
        }
        match sender.send_request(req).await {
            Ok(resp) => {
                let status = resp.status();
                let _ = resp.into_body().collect().await;
                if status.is_success() {
                    ok += 1;
                    let took = scheduled.elapsed();
                    hist.saturating_record((took.as_micros() as u64).max(1));
                    if load.rate.is_some() {
                        timeline.push((scheduled - start, took));
                    }
                } else {
                    failed += 1;
                }
            }
            Err(_) => {
                failed += 1;
                sender = connect(load.addr).await?;
            }
        }
    }
    Ok((hist, ok, failed, timeline))
}

/// A stretch of an open-loop run in which requests took over a limit:
/// when the first of them was scheduled, how long until the last was
/// answered, how many there were and the slowest.
#[derive(Debug, Clone, PartialEq)]
pub struct Stretch {
    pub start: Duration,
    pub length: Duration,
    pub requests: u64,
    pub slowest: Duration,
}

/// The stretches of `timeline` (sorted by scheduled time) in which
/// requests took over `limit`: slow requests belong to one stretch while
/// each is scheduled before the previous ones were answered, plus `gap`.
/// A p99 over its target is made of these; when they lie (a stall of the
/// disk, a WAL restart, a start still slow after idle) tells what made
/// it.
pub fn stretches(
    timeline: &[(Duration, Duration)],
    limit: Duration,
    gap: Duration,
) -> Vec<Stretch> {
    let mut out: Vec<Stretch> = Vec::new();
    for &(at, took) in timeline.iter().filter(|(_, took)| *took > limit) {
        match out.last_mut() {
            Some(s) if at <= s.start + s.length + gap => {
                s.length = s.length.max(at + took - s.start);
                s.requests += 1;
                s.slowest = s.slowest.max(took);
            }
            _ => out.push(Stretch {
                start: at,
                length: took,
                requests: 1,
                slowest: took,
            }),
        }
    }
    out
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(addr: SocketAddr) -> anyhow::Result<Sender> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn slow_requests_close_in_time_make_one_stretch() {
        let timeline = [
            (ms(0), ms(3)),
            (ms(100), ms(25)),
            // Scheduled while the one before was still waiting.
            (ms(110), ms(30)),
            (ms(120), ms(2)),
            // 5 ms after the last slow one was answered (140 ms): within
            // the gap.
            (ms(145), ms(21)),
            // Far later, alone.
            (ms(900), ms(40)),
        ];
        let s = stretches(&timeline, ms(20), ms(10));
        assert_eq!(
            s,
            vec![
                Stretch {
                    start: ms(100),
                    length: ms(66),
                    requests: 3,
                    slowest: ms(30),
                },
                Stretch {
                    start: ms(900),
                    length: ms(40),
                    requests: 1,
                    slowest: ms(40),
                },
            ]
        );
        assert!(stretches(&timeline, ms(50), ms(10)).is_empty());
    }
}
