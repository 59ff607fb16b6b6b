//! The store on its own: the ingest bench's 100-event batches, parsed in
//! advance, handed straight to an in-process store (its writer, WAL sync
//! thread and checkpointer, and the live engine, as `mailpulse serve` runs
//! them) with no HTTP and no load generator on the machine. Its events/s is
//! what the single writer reaches when it has the machine to itself: the
//! bound above the HTTP batch figures. The last section of `make bench`:
//! the ~3 GB its runs write slowed the section after it (the e2e p99 read
//! 134, 304 and 188 ms in three runs, against 104–105 ms on its own).

use crate::ingest::{batch, median_by, run_id, CHECKPOINTER_THREAD, ROUNDS, WRITER_THREAD};
use crate::loadgen::{latency_histogram, Outcome};
use crate::proc::{own_cpu_seconds, thread_cpu_seconds, InProcess};
use crate::report::{ms, rates, Section};
use crate::Opts;
use bytes::Bytes;
use mailpulse::config::{Config, ServeArgs};
use mailpulse::ingest::parse::{parse_body, ParsedBatch};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Batches handed over at a time in the section: as many as the HTTP
/// batch runs' larger connection count.
const IN_FLIGHT: usize = 64;

/// Events per hand-off, as in the HTTP batch runs.
const BATCH: u64 = 100;

/// Batches prepared per second of run (300k events/s): above what the
/// writer can take (~160k events/s here), so a run ends by time, not by
/// running out of batches.
const BATCHES_PER_SECOND: f64 = 3_000.0;

/// One run's figures, in the shape of a load generator's run.
pub struct StoreRun {
    pub out: Outcome,
    /// Cores used by the whole process meanwhile (store threads and the
    /// tokio workers hashing, compressing and running the live engine).
    pub process_cpu: f64,
    pub writer_cpu: f64,
    pub checkpointer_cpu: f64,
}

impl StoreRun {
    fn events_per_second(&self) -> f64 {
        self.out.rps() * BATCH as f64
    }
}

/// An in-process store (with the live engine, as `mailpulse serve` runs
/// them) in a temporary directory.
pub struct StoreAlone {
    server: InProcess,
    _dir: tempfile::TempDir,
}

impl StoreAlone {
    /// With the defaults of `mailpulse serve` (`synchronous = full`
    /// included), or, when `env` is set, with them overridden by the
    /// `MAILPULSE_*` environment as `serve` reads it (for A/B runs of one
    /// build, e.g. `MAILPULSE_STORE__FIRSTS_FLUSH_ROWS`).
    pub async fn start(env: bool) -> anyhow::Result<StoreAlone> {
        let dir = tempfile::tempdir()?;
        let config = if env {
            Config::load(ServeArgs {
                addr: Some("127.0.0.1:0".parse()?),
                data_dir: Some(dir.path().to_path_buf()),
                ..ServeArgs::default()
            })?
        } else {
            Config::for_tests(dir.path().to_path_buf()).finish()?
        };
        let server = InProcess::start(config).await?;
        Ok(StoreAlone { server, _dir: dir })
    }

    /// Hands the store batches for `secs`, `in_flight` at a time; `run`
    /// makes the events unique across calls.
    pub async fn run(
        &self,
        run: &'static str,
        secs: f64,
        in_flight: usize,
    ) -> anyhow::Result<StoreRun> {
        let store = self.server.store();
        // Parsed before the clock starts: parsing is the HTTP handler's
        // work, not the store's.
        let count = (secs * BATCHES_PER_SECOND) as u64;
        let body_of = batch(run, BATCH);
        let mut batches: Vec<(Bytes, ParsedBatch)> = Vec::with_capacity(count as usize);
        for b in 0..count {
            let body = body_of(b);
            let parsed = parse_body(&body, chrono::Utc::now().timestamp_millis())?;
            batches.push((body, parsed));
        }
        let queue = Arc::new(Mutex::new(batches.into_iter()));

        let pid = std::process::id();
        let threads = || {
            (
                thread_cpu_seconds(pid, WRITER_THREAD),
                thread_cpu_seconds(pid, CHECKPOINTER_THREAD),
            )
        };
        let (p0, (w0, c0)) = (own_cpu_seconds(), threads());
        let started = Instant::now();
        let deadline = started + Duration::from_secs_f64(secs);
        let source: Arc<str> = "default".into();
        let mut senders = tokio::task::JoinSet::new();
        for _ in 0..in_flight {
            let (queue, store, source) = (queue.clone(), store.clone(), source.clone());
            senders.spawn(async move {
                let mut latency = latency_histogram();
                let (mut ok, mut failed) = (0u64, 0u64);
                while Instant::now() < deadline {
                    let next = queue.lock().expect("batch queue").next();
                    let Some((body, batch)) = next else { break };
                    let sent = Instant::now();
                    match store.ingest(source.clone(), body, batch).await {
                        Ok(_) => {
                            ok += 1;
                            latency.saturating_record(sent.elapsed().as_micros() as u64);
                        }
                        Err(_) => failed += 1,
                    }
                }
                (ok, failed, latency)
            });
        }
        let mut out = Outcome {
            ok: 0,
            failed: 0,
            elapsed: Duration::ZERO,
            latency: latency_histogram(),
            timeline: Vec::new(),
            started_at: chrono::Utc::now(),
        };
        while let Some(done) = senders.join_next().await {
            let (ok, failed, latency) = done?;
            out.ok += ok;
            out.failed += failed;
            out.latency.add(latency)?;
        }
        out.elapsed = started.elapsed();
        let (w1, c1) = threads();
        let wall = out.elapsed.as_secs_f64();
        Ok(StoreRun {
            process_cpu: (own_cpu_seconds() - p0) / wall,
            writer_cpu: (w1 - w0) / wall,
            checkpointer_cpu: (c1 - c0) / wall,
            out,
        })
    }

    /// Stops it; its directory goes with it.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.server.stop().await
    }
}

/// `mailpulse-bench store`: `runs` runs on one store, each printed on a
/// line. The store's configuration takes `MAILPULSE_*` overrides.
pub async fn one_run(in_flight: usize, runs: usize, secs: f64) -> anyhow::Result<()> {
    let store = StoreAlone::start(true).await?;
    for n in 0..runs {
        let id = format!("store{}-", chrono::Utc::now().timestamp_millis());
        let r = store
            .run(run_id(&id, n, in_flight), secs, in_flight)
            .await?;
        println!(
            "events/s {:.0} · failed {} · p50 {} · p99 {} · process CPU {:.2} · writer {:.2} · checkpointer {:.2}",
            r.events_per_second(),
            r.out.failed,
            ms(r.out.p(0.5)),
            ms(r.out.p(0.99)),
            r.process_cpu,
            r.writer_cpu,
            r.checkpointer_cpu,
        );
    }
    store.stop().await
}

/// The `make bench` section: `ROUNDS` runs on one store, the median shown.
pub async fn section(opts: &Opts) -> anyhow::Result<Section> {
    let secs = opts.seconds;
    let store = StoreAlone::start(false).await?;
    let mut runs = Vec::with_capacity(ROUNDS);
    for round in 0..ROUNDS {
        runs.push(
            store
                .run(run_id("alone", round, IN_FLIGHT), secs, IN_FLIGHT)
                .await?,
        );
    }
    store.stop().await?;
    let (m, all) = median_by(runs, StoreRun::events_per_second);
    let mut s = Section::new(
        "The store alone (issue 3)",
        format!(
            "The ingest section's 100-event batches (same mix, unique events, the time of \
             sending as event time), parsed beforehand and handed straight to an in-process \
             store, {IN_FLIGHT} at a time, for {secs:.0} s: its writer, WAL sync thread and \
             checkpointer, and the live engine, as `mailpulse serve` runs them with its \
             defaults (`synchronous=full`), with no HTTP and no load generator on the \
             machine. The median of {ROUNDS} runs on one store (all runs in the last column). \
             Process CPU is the whole bench process's, in cores. This is the most the single \
             writer commits with the machine to itself: the bound above the ingest section's \
             batch figures."
        ),
        &[
            "run",
            "events/s",
            "p50",
            "p99",
            "process CPU",
            "writer / checkpointer CPU",
            "errors",
            "runs (events/s)",
        ],
    );
    s.row(vec![
        format!("100 events per hand-off, {IN_FLIGHT} in flight"),
        format!("{:.0}", m.events_per_second()),
        ms(m.out.p(0.5)),
        ms(m.out.p(0.99)),
        format!("{:.2}", m.process_cpu),
        format!("{:.2} / {:.2}", m.writer_cpu, m.checkpointer_cpu),
        m.out.failed.to_string(),
        rates(&all),
    ]);
    Ok(s)
}
