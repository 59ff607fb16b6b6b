//! Ingest throughput and latency: a bare axum handler (the ceiling), then
//! mailpulse's durable ingest with single-event POSTs and 100-event batches,
//! all driven by the same load generator, then latency at half the peak.

use crate::fsyncs::{self, Fsyncs};
use crate::loadgen::{self, BodyFn, Load, Outcome};
use crate::proc::{self, own_cpu_seconds, LogLine, Server};
use crate::report::{ms, rates, Section};
use crate::wrk;
use crate::Opts;
use bytes::Bytes;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

/// Connection counts tried for single-event POSTs, the ceiling and
/// mailpulse alike; the verdict takes each one's best. Durable ingest
/// answers after an fsync (~1-2 ms here), so by Little's law 64
/// connections cap it near 64 / latency whatever the CPU; more concurrent
/// senders fill larger group commits. 512 since 2026-12-07: on that day's
/// machine, interleaved rounds put mailpulse's peak there (medians 55.9k
/// and 56.8k requests/s against 52.4k at 256, 55.5k at 384, 51.0k at
/// 1,024), while the ceiling peaks at 64 (docs/store.md).
const SINGLE_CONNS: [usize; 3] = [64, 256, 512];
/// Connection counts tried for 100-event batches.
const BATCH_CONNS: [usize; 2] = [16, 64];

/// Idle time before each half-peak run (see there).
const SETTLE: Duration = Duration::from_secs(10);

/// The same open-loop load, not measured, between [`SETTLE`] and each
/// half-peak run. This VM answers the first second of load after an idle
/// spell slowly, whatever the server: the bare axum ceiling read p99
/// 47–79 ms in its first second of 25,000 requests/s after 10 s idle and
/// 3–6 ms in the next one, and mailpulse 32–111 ms against 8.5–10 ms
/// (docs/store.md). In a 6 s run that first second alone decides the p99,
/// which is meant as the steady state's.
const WARM_OPEN: Duration = Duration::from_secs(1);

/// Length of the sustained half-peak batch run. A few seconds after a
/// pause show the store before its WAL wraps and before the checkpointed
/// pages reach the disk; under load that lasts, the WAL wraps every ~10 s
/// at half the peak batch rate and the database writeback shares the disk
/// with the commits' fsyncs. 30 s covers a few such cycles.
const SUSTAINED: Duration = Duration::from_secs(30);

/// One Optimizely-shaped event, unique by `n`; a mix of types so first
/// opens and clicks are exercised too. `ts` is its event time (ms): the
/// callers pass the time of sending, as live webhooks carry an event time
/// close to it. (Until 2026-11-28 every run used the same times from a
/// fixed origin, so each run after the first inserted into the middle of
/// the time-ordered unique index, as a replay of old events would; see
/// docs/store.md for what that costs.)
///
/// The recipient id is `n`'s digits reversed, so consecutive events name
/// recipients far apart in any sorted order. A campaign's recipients open
/// and click in no particular order, so each first open or click lands
/// in its own place in `engagement_firsts`. Until 2026-12-07 the ids
/// followed `n`, which put each first next to the one before, and that
/// flattered the store: 3.6 rewritten leaves of that table per commit
/// instead of 156–187 at half the batch peak, and a batch peak of 304k
/// events/s instead of 174k (docs/store.md, "First opens and clicks in no
/// order").
pub fn event_json(run: &str, n: u64, ts: u64, out: &mut String) {
    use std::fmt::Write;
    let kind = match n % 10 {
        0..=6 => "sent",
        7 | 8 => "open",
        _ => "click",
    };
    let _ = write!(
        out,
        r#"{{"type":"{kind}","clientId":7,"mailingId":4711,"userListId":12,"recipientId":"{run}-"#
    );
    // Reversed digits: distinct for distinct `n`, and scattered.
    let mut digits = n;
    loop {
        out.push(char::from(b'0' + (digits % 10) as u8));
        digits /= 10;
        if digits == 0 {
            break;
        }
    }
    let _ = write!(
        out,
        r#"","timestamp":{ts},"mediaTypesToAddresses":{{"EMAIL":"user{n}@example.com"}}{link}}}"#,
        link = if kind == "click" {
            r#","link":"https://example.com/offer""#
        } else {
            ""
        }
    );
}

fn now_ms() -> u64 {
    chrono::Utc::now().timestamp_millis() as u64
}

pub fn single(run: &'static str) -> BodyFn {
    Arc::new(move |n| {
        let mut s = String::with_capacity(256);
        event_json(run, n, now_ms(), &mut s);
        Bytes::from(s)
    })
}

pub fn batch(run: &'static str, size: u64) -> BodyFn {
    Arc::new(move |n| {
        let mut s = String::with_capacity(256 * size as usize);
        let ts = now_ms();
        s.push('[');
        for i in 0..size {
            if i > 0 {
                s.push(',');
            }
            event_json(run, n * size + i, ts, &mut s);
        }
        s.push(']');
        Bytes::from(s)
    })
}

struct Measured {
    out: Outcome,
    server_cpu: f64,
    /// Of `server_cpu`: the part spent in the kernel.
    server_system_cpu: f64,
    /// Of `server_cpu`: the store's single writer thread and its
    /// checkpointer (0 for the ceiling, which has neither).
    writer_cpu: f64,
    checkpointer_cpu: f64,
    gen_cpu: f64,
}

/// Thread names of the store's writer and checkpointer (`store/`); Linux
/// cuts thread names to 15 bytes.
pub const WRITER_THREAD: &str = "store-writer";
pub const CHECKPOINTER_THREAD: &str = "store-checkpoin";

async fn measure(server: &Server, load: Load) -> anyhow::Result<Measured> {
    let threads = |s: &Server| {
        (
            s.thread_cpu_seconds(WRITER_THREAD),
            s.thread_cpu_seconds(CHECKPOINTER_THREAD),
        )
    };
    let ((u0, k0), g0, (w0, c0)) = (server.cpu_times(), own_cpu_seconds(), threads(server));
    let secs = load.duration.as_secs_f64();
    let out = loadgen::run(load).await?;
    let ((u1, k1), (w1, c1)) = (server.cpu_times(), threads(server));
    Ok(Measured {
        out,
        server_cpu: (u1 + k1 - u0 - k0) / secs,
        server_system_cpu: (k1 - k0) / secs,
        writer_cpu: (w1 - w0) / secs,
        checkpointer_cpu: (c1 - c0) / secs,
        gen_cpu: (own_cpu_seconds() - g0) / secs,
    })
}

/// A half-peak run: [`SETTLE`] idle, [`WARM_OPEN`] of the same open-loop
/// load unmeasured, then `secs` of it measured. `body` makes a run's
/// bodies from its id; `ids` are the warm-up's and the measured run's.
async fn half_peak(
    server: &Server,
    conns: usize,
    secs: f64,
    rate: f64,
    body: impl Fn(&'static str) -> BodyFn,
    (warm_id, id): (&'static str, &'static str),
) -> anyhow::Result<(Measured, Seen)> {
    tokio::time::sleep(SETTLE).await;
    let warm = WARM_OPEN.as_secs_f64();
    loadgen::run(load(server, conns, warm, Some(rate), body(warm_id))).await?;
    measure_open(server, load(server, conns, secs, Some(rate), body(id))).await
}

/// What an open-loop run saw besides its latencies: the WAL fsyncs, and
/// the store's log lines of the run's time.
struct Seen {
    syncs: Fsyncs,
    log: Vec<LogLine>,
}

/// [`measure`] for an open-loop run, with what the store did meanwhile.
async fn measure_open(server: &Server, load: Load) -> anyhow::Result<(Measured, Seen)> {
    let before = Fsyncs::read(server.addr).await?;
    let m = measure(server, load).await?;
    // Read after the fsyncs' request: by then the run's last log lines
    // have come through the pipe.
    let syncs = Fsyncs::read(server.addr).await?.since(&before);
    let log = server.store_log(m.out.started_at, m.out.elapsed);
    Ok((m, Seen { syncs, log }))
}

/// What the store logged over a run, with its debug log on (each commit,
/// WAL fsync and checkpoint with its database sync over 10 ms, each WAL
/// restart, and each start of a flush of first opens/clicks): how many of
/// each and the slowest. The store decides what is slow enough to log
/// (`store::TRACE_OVER`). The commits' times leave out their wait for the
/// sync thread.
fn describe_store_log(lines: &[LogLine]) -> String {
    const KINDS: [(&str, &str); 4] = [
        ("store commit", "commits"),
        ("WAL fsync", "WAL fsyncs"),
        (
            "checkpoint and database sync",
            "checkpoints with their database sync",
        ),
        ("WAL restart", "WAL restarts"),
    ];
    let ms_of = |line: &str| -> Option<u64> {
        let rest = line.split(" ms=").nth(1)?;
        rest.split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    };
    let mut parts = Vec::new();
    for (needle, name) in KINDS {
        let times: Vec<u64> = lines
            .iter()
            .filter(|(_, l)| l.contains(needle))
            .filter_map(|(_, l)| ms_of(l))
            .collect();
        if let Some(slowest) = times.iter().max() {
            parts.push(format!("{} {name} (the slowest {slowest} ms)", times.len()));
        }
    }
    let flushes = lines
        .iter()
        .filter(|(_, l)| l.contains("writing first opens/clicks held"))
        .count();
    if flushes > 0 {
        parts.push(format!("{flushes} flushes of first opens/clicks begun"));
    }
    if parts.is_empty() {
        "The store logged no commit, fsync or checkpoint over 10 ms".into()
    } else {
        format!(
            "The store's log over the run (over 10 ms): {}",
            parts.join(", ")
        )
    }
}

/// What the disk did to the half-peak runs' tails: each run's WAL fsyncs
/// and how many requests the slow ones alone kept over [`HALF_PEAK_P99`].
/// Each entry: the run's name, its rate (requests/s), its measurements
/// and what the store did meanwhile.
fn tail_note(runs: &[(&str, f64, &Measured, &Seen)]) -> String {
    let mut note = String::from(
        "The half-peak tails and the disk: a request is answered after the WAL fsync that \
         makes its group durable, and a group that forms while an fsync runs waits for it, \
         so a stalled fsync holds every request that arrives meanwhile. WAL fsyncs during \
         each half-peak run (mailpulse's `store_wal_sync_seconds`):\n",
    );
    for (name, rate, m, seen) in runs {
        note.push_str(&format!(
            "\n- **{name}** (p99 {}): {}. {}. {}.",
            ms(m.out.p(0.99)),
            fsyncs::describe(&seen.syncs, *rate, m.out.ok, HALF_PEAK_P99),
            describe_stretches(&m.out, HALF_PEAK_P99),
            describe_store_log(&seen.log),
        ));
    }
    note
}

/// Where in a run its requests over `limit` lie: how many stretches of
/// them, and the largest few with their time from the run's start.
fn describe_stretches(out: &Outcome, limit: Duration) -> String {
    /// Slow requests less than this apart belong to one stretch.
    const GAP: Duration = Duration::from_millis(20);
    /// How many stretches are named, the largest first.
    const NAMED: usize = 4;
    let mut found = loadgen::stretches(&out.timeline, limit, GAP);
    let slow: u64 = found.iter().map(|s| s.requests).sum();
    if slow == 0 {
        return format!("No request took over {}", ms(limit));
    }
    let count = found.len();
    found.sort_by_key(|s| std::cmp::Reverse(s.requests));
    let named: Vec<String> = found
        .iter()
        .take(NAMED)
        .map(|s| {
            format!(
                "{} at {:.2} s ({} ms long, the slowest {})",
                s.requests,
                s.start.as_secs_f64(),
                s.length.as_millis(),
                ms(s.slowest)
            )
        })
        .collect();
    format!(
        "Requests over {}: {slow} ({:.2} %) in {count} stretch{} of the {:.0} s run{}: {}",
        ms(limit),
        100.0 * slow as f64 / out.ok.max(1) as f64,
        if count == 1 { "" } else { "es" },
        out.elapsed.as_secs_f64(),
        if count > NAMED { ", the largest" } else { "" },
        named.join("; ")
    )
}

fn load(server: &Server, conns: usize, secs: f64, rate: Option<f64>, body: BodyFn) -> Load {
    load_to(server.addr, conns, secs, rate, body)
}

fn load_to(
    addr: std::net::SocketAddr,
    conns: usize,
    secs: f64,
    rate: Option<f64>,
    body: BodyFn,
) -> Load {
    Load {
        addr,
        path: "/webhooks/optimizely".into(),
        connections: conns,
        duration: Duration::from_secs_f64(secs),
        rate,
        body,
        headers: vec![("content-type".into(), "application/json".into())],
    }
}

/// Each closed-loop configuration runs this many times, the ceiling's and
/// mailpulse's runs interleaved, and the tables show the median run: the
/// machine's speed drifts by ±15 % from minute to minute, and interleaving
/// keeps the ratio honest.
pub const ROUNDS: usize = 5;

/// How a verdict cell says whether its target is met: the figures are
/// rounded for the table, and 49.96 % must not read as "50 %, met".
fn met(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "not met"
    }
}

/// The issue's bound on the p99 request latency at half the peak rate.
const HALF_PEAK_P99: Duration = Duration::from_millis(20);

/// The half-peak verdict: p99 against [`HALF_PEAK_P99`].
fn p99_verdict(out: &Outcome) -> String {
    let p99 = out.p(0.99);
    format!(
        "p99 {} (target < {}: {})",
        ms(p99),
        ms(HALF_PEAK_P99),
        met(p99 < HALF_PEAK_P99)
    )
}

/// What limits the best closed-loop rates, worked out from the CPU that
/// the same runs measured: per request (per event for batches), the CPU
/// time of the server, of its writer thread and of the load generator,
/// and what that allows on `cores` cores. Each argument is a run's
/// connection count and its measurements: the ceiling's, single events',
/// 100-event batches'.
fn limits_note(
    (ceiling_conns, c): (usize, &Measured),
    (one_conns, o): (usize, &Measured),
    (hundred_conns, h): (usize, &Measured),
    cores: usize,
) -> String {
    let n = cores as f64;
    // µs of CPU per request (per event with `per` = 100).
    let us = |m: &Measured, cpu: f64, per: f64| cpu / (m.out.rps() * per) * 1e6;
    let busy = |m: &Measured| 100.0 * (m.server_cpu + m.gen_cpu) / n;
    let (c_server, c_gen) = (us(c, c.server_cpu, 1.0), us(c, c.gen_cpu, 1.0));
    let (c_sys, o_sys, h_sys) = (
        us(c, c.server_system_cpu, 1.0),
        us(o, o.server_system_cpu, 1.0),
        us(h, h.server_system_cpu, 100.0),
    );
    let (o_server, o_writer, o_gen) = (
        us(o, o.server_cpu, 1.0),
        us(o, o.writer_cpu, 1.0),
        us(o, o.gen_cpu, 1.0),
    );
    let (h_server, h_writer, h_gen) = (
        us(h, h.server_cpu, 100.0),
        us(h, h.writer_cpu, 100.0),
        us(h, h.gen_cpu, 100.0),
    );
    let (c_sum, o_sum, h_sum) = (c_server + c_gen, o_server + o_gen, h_server + h_gen);
    format!(
        "What limits the best rates above, from the same runs' CPU columns \
         (µs of CPU per request, or per event for batches; this machine has {cores} cores, \
         shared by the server and the load generator):\n\n\
         - **Single events.** Per request the ceiling's server used {c_server:.1} µs \
         ({c_sys:.1} of it in the kernel) and the generator {c_gen:.1} ({ceiling_conns} \
         connections), {c_sum:.1} µs in all, with the cores {cb:.0} % busy; against mailpulse \
         the server used {o_server:.1} µs ({o_sys:.1} in the kernel), of which its writer \
         thread {o_writer:.1}, and the generator {o_gen:.1} ({one_conns} connections), \
         {o_sum:.1} µs in all, with the cores {ob:.0} % busy. So the server's {excess:.1} µs \
         over the ceiling's are {excess_user:.1} µs of its own code and SQLite's and \
         {excess_sys:.1} µs of kernel work (the store's writes and fsyncs, the wake-ups that \
         hand each request from thread to thread), and the generator's {excess_gen:.1} µs \
         over its cost against the ceiling come with the group commit's bursts of answers \
         and the connection count. A rate is the CPU kept busy over \
         the CPU per request, so the ratio, {measured:.1} %, is {ratio:.1} % (the CPU per \
         request) times {busy_ratio:.2} (how busy the cores were). With the cores as busy as \
         in these runs, 50 % needs mailpulse's sum at {need:.1} µs or less.\n\
         - **100-event batches.** Per event the server used {h_server:.2} µs ({h_sys:.2} in \
         the kernel), of which its \
         writer thread {h_writer:.2} (the serial stage: one core gives it at most \
         {writer_bound:.0} events/s), and the generator {h_gen:.2} ({hundred_conns} \
         connections, the cores {hb:.0} % busy). {cores} cores fully used give at most \
         {cpu_bound:.0} events/s at {h_sum:.2} µs per event; 200,000 events/s needs that sum \
         under {need_h:.1} µs and the writer under {need_w:.1} µs.\n\n\
         Where each part of that time goes, and what was tried to cut it: docs/store.md.",
        cb = busy(c),
        excess = o_server - c_server,
        excess_user = (o_server - o_sys) - (c_server - c_sys),
        excess_sys = o_sys - c_sys,
        excess_gen = o_gen - c_gen,
        ob = busy(o),
        hb = busy(h),
        ratio = 100.0 * c_sum / o_sum,
        busy_ratio = busy(o) / busy(c),
        measured = 100.0 * o.out.rps() / c.out.rps(),
        need = 2.0 * c_sum * busy(o) / busy(c),
        writer_bound = 1e6 / h_writer,
        cpu_bound = n * 1e6 / h_sum,
        need_h = n * 1e6 / 200_000.0,
        need_w = 1e6 / 200_000.0,
    )
}

/// The single-event comparison again with wrk: per connection count the
/// median ceiling and mailpulse runs, and the ratio of the best medians,
/// as the verdict above takes it from the bench's own generator.
fn wrk_note(runs: Vec<Vec<(wrk::WrkRun, wrk::WrkRun)>>) -> String {
    let mut rows = String::new();
    let mut best = (0.0f64, 0.0f64);
    for (conns, pairs) in SINGLE_CONNS.iter().zip(runs) {
        let errors: u64 = pairs.iter().map(|(c, m)| c.errors + m.errors).sum();
        let (ceilings, mine): (Vec<_>, Vec<_>) = pairs.into_iter().unzip();
        let (c, c_all) = median_by(ceilings, |r| r.rps);
        let (m, m_all) = median_by(mine, |r| r.rps);
        best = (best.0.max(c.rps), best.1.max(m.rps));
        rows.push_str(&format!(
            "| {conns} | {:.0} ({:.1} µs, {:.0} % busy) | {:.0} ({:.1} µs, {:.0} % busy) | \
             {errors} | {} / {} |\n",
            c.rps,
            1e6 * c.server_cpu / c.rps,
            100.0 * c.busy,
            m.rps,
            1e6 * m.server_cpu / m.rps,
            100.0 * m.busy,
            rates(&c_all),
            rates(&m_all),
        ));
    }
    format!(
        "**The same single-event comparison with wrk** (Debian's `wrk`, 2 threads, a Lua \
         script sending the same unique events), run in the same rounds as the rows above: \
         {:.1} % of the ceiling (best median against best median). Medians of {ROUNDS} \
         runs in requests/s, with the server's CPU per request and how busy the machine's \
         cores were:\n\n\
         | connections | ceiling | mailpulse | errors | runs: ceiling / mailpulse |\n\
         |---|---|---|---|---|\n{}",
        100.0 * best.1 / best.0,
        rows.trim_end(),
    )
}

/// "16 and 64", "64, 256 and 512".
fn counts(conns: &[usize]) -> String {
    let names: Vec<String> = conns.iter().map(usize::to_string).collect();
    match names.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
        None => String::new(),
    }
}

/// The connection count and measurements of the fastest of `runs` (each
/// a connection count's median run); the first of equals.
fn best_run(runs: &[(usize, Measured, Vec<f64>)]) -> (usize, &Measured) {
    let (conns, m, _) = runs
        .iter()
        .reduce(|a, b| if b.1.out.rps() > a.1.out.rps() { b } else { a })
        .expect("every section tries at least one connection count");
    (*conns, m)
}

/// The run with the median throughput.
fn median(runs: Vec<Measured>) -> (Measured, Vec<f64>) {
    median_by(runs, |m| m.out.rps())
}

/// The run with the median `rate`, and every run's rate in rising order.
pub fn median_by<T>(mut runs: Vec<T>, rate: impl Fn(&T) -> f64) -> (T, Vec<f64>) {
    runs.sort_by(|a, b| rate(a).total_cmp(&rate(b)));
    let all = runs.iter().map(&rate).collect();
    let mid = runs.len() / 2;
    (runs.swap_remove(mid), all)
}

/// A run id for unique event ids; the bench is a short-lived process.
pub fn run_id(kind: &str, round: usize, conns: usize) -> &'static str {
    Box::leak(format!("{kind}{round}-{conns}").into_boxed_str())
}

/// `mailpulse-bench load`: one run against a running server, for profiling
/// it while it runs. Event ids are unique per process start.
pub async fn one_run(
    addr: std::net::SocketAddr,
    conns: usize,
    rate: Option<f64>,
    batch_size: u64,
    secs: f64,
) -> anyhow::Result<()> {
    let run = run_id(
        &format!("load{}-", chrono::Utc::now().timestamp_millis()),
        0,
        conns,
    );
    let body = if batch_size > 1 {
        batch(run, batch_size)
    } else {
        single(run)
    };
    let out = loadgen::run(load_to(addr, conns, secs, rate, body)).await?;
    // The start's wall-clock time places the stretches below against the
    // server's log.
    println!("started {}", out.started_at.format("%H:%M:%S%.3f"));
    println!(
        "requests/s {:.0} · events/s {:.0} · failed {} · p50 {} · p90 {} · p99 {} · p99.9 {} · max {}",
        out.rps(),
        out.rps() * batch_size as f64,
        out.failed,
        ms(out.p(0.5)),
        ms(out.p(0.9)),
        ms(out.p(0.99)),
        ms(out.p(0.999)),
        ms(out.p(1.0)),
    );
    if rate.is_some() {
        println!("{}", describe_stretches(&out, HALF_PEAK_P99));
    }
    Ok(())
}

pub async fn run(opts: &Opts) -> anyhow::Result<Section> {
    let secs = opts.seconds;
    let warm = (secs / 5.0).max(1.0);

    // The ceiling: the same generator against a handler that only reads the
    // body and answers 200.
    let ceiling = Server::start({
        let mut c = Command::new(std::env::current_exe()?);
        c.arg("ceiling-server");
        c
    })?;
    let dir = tempfile::tempdir()?;
    let env: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| k.starts_with("MAILPULSE_"))
        .collect();
    // The store's debug log: each commit, fsync and checkpoint over 10 ms,
    // which the half-peak notes match against their runs.
    let log_level = format!("{},mailpulse::store=debug", proc::RUST_LOG);
    let mut env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    env.push(("RUST_LOG", &log_level));
    let server = Server::mailpulse(&opts.mailpulse, dir.path(), &env)?;
    server.wait_ready().await?;
    loadgen::run(load(&ceiling, SINGLE_CONNS[0], warm, None, single("w"))).await?;
    loadgen::run(load(&server, SINGLE_CONNS[0], warm, None, single("w1"))).await?;

    let mut ceiling_runs: Vec<Vec<Measured>> = SINGLE_CONNS.iter().map(|_| Vec::new()).collect();
    let mut one_runs: Vec<Vec<Measured>> = SINGLE_CONNS.iter().map(|_| Vec::new()).collect();
    let mut hundred_runs: Vec<Vec<Measured>> = BATCH_CONNS.iter().map(|_| Vec::new()).collect();
    // The second generator's runs, in the same rounds so the machine's
    // drift falls on both generators alike: (ceiling, mailpulse) per count.
    let wrk_script = if wrk::available() {
        Some(wrk::write_script(dir.path())?)
    } else {
        eprintln!("bench: wrk is not installed; the single-event check with wrk is skipped");
        None
    };
    let mut wrk_runs: Vec<Vec<(wrk::WrkRun, wrk::WrkRun)>> =
        SINGLE_CONNS.iter().map(|_| Vec::new()).collect();
    for round in 0..ROUNDS {
        for (i, conns) in SINGLE_CONNS.into_iter().enumerate() {
            let c = measure(&ceiling, load(&ceiling, conns, secs, None, single("c"))).await?;
            ceiling_runs[i].push(c);
            let body = single(run_id("s", round, conns));
            let m = measure(&server, load(&server, conns, secs, None, body)).await?;
            one_runs[i].push(m);
            if let Some(script) = &wrk_script {
                let c = wrk::run(script, &ceiling, conns, secs, "wc").await?;
                let tag = run_id("ws", round, conns);
                let m = wrk::run(script, &server, conns, secs, tag).await?;
                wrk_runs[i].push((c, m));
            }
        }
        for (i, conns) in BATCH_CONNS.into_iter().enumerate() {
            let body = batch(run_id("b", round, conns), 100);
            let m = measure(&server, load(&server, conns, secs, None, body)).await?;
            hundred_runs[i].push(m);
        }
    }
    ceiling.stop();
    let stored = |runs: &[Vec<Measured>]| -> u64 { runs.iter().flatten().map(|m| m.out.ok).sum() };
    let (single_ok, batch_ok) = (stored(&one_runs), stored(&hundred_runs));
    let medians = |runs: Vec<Vec<Measured>>, conns: &[usize]| -> Vec<(usize, Measured, Vec<f64>)> {
        runs.into_iter()
            .zip(conns)
            .map(|(r, c)| {
                let (m, all) = median(r);
                (*c, m, all)
            })
            .collect()
    };
    let ceilings = medians(ceiling_runs, &SINGLE_CONNS);
    let ones = medians(one_runs, &SINGLE_CONNS);
    let hundreds = medians(hundred_runs, &BATCH_CONNS);
    let (best_ceiling, best_one, best_hundred) =
        (best_run(&ceilings), best_run(&ones), best_run(&hundreds));
    let (one_conns, one_peak) = (best_one.0, best_one.1.out.rps());
    let (hundred_conns, hundred_peak) = (best_hundred.0, best_hundred.1.out.rps());
    let ceiling_rps = best_ceiling.1.out.rps();
    // Half-peak latency is a steady-state figure: let the store's
    // checkpoints catch up with the minutes of overload before (as they do
    // between peaks in production) instead of measuring the recovery.
    let half_one_rate = one_peak / 2.0;
    let (half_one, half_one_seen) = half_peak(
        &server,
        one_conns,
        secs,
        half_one_rate,
        single,
        ("h1w", "h1"),
    )
    .await?;
    let half_hundred_rate = hundred_peak / 2.0;
    let hundreds_of = |id| batch(id, 100);
    let (half_hundred, half_hundred_seen) = half_peak(
        &server,
        hundred_conns,
        secs,
        half_hundred_rate,
        hundreds_of,
        ("h100w", "h100"),
    )
    .await?;
    let (sustained, sustained_seen) = half_peak(
        &server,
        hundred_conns,
        SUSTAINED.as_secs_f64(),
        half_hundred_rate,
        hundreds_of,
        ("h100sw", "h100s"),
    )
    .await?;
    let db_bytes = std::fs::metadata(dir.path().join("mailpulse.db")).map_or(0, |m| m.len());
    let memory = server.memory();
    server.stop();

    let mut s = Section::new(
        "Ingest throughput (issue 3)",
        format!(
            "Closed loop over keep-alive connections ({} for single events, {} for \
             100-event batches; the ceiling with the same counts as single events), \
             {secs:.0} s each, one after the other (each server had a {warm:.0} s warm-up \
             first). Each closed-loop row is the median \
             of {ROUNDS} runs, the ceiling's and mailpulse's interleaved (all runs' requests/s \
             in the last column); the verdicts compare best median with best median. \
             Every event is unique (no duplicates), a mix of sent/open/click (70/20/10 %) for \
             recipients in no sorted order (as a campaign's opens and clicks arrive: each \
             first open or click belongs in its own place in the store's index of them, which \
             the store writes late, sorted), with \
             the time of sending as its event time (as live webhooks carry). mailpulse runs \
             with its defaults: `synchronous=full` (a request is answered after the WAL \
             fsync that makes its group durable, run on a thread of its own while the \
             writer gathers the next group, which commits when that fsync is done unless \
             it is full first). The load generator shares the machine's cores \
             with the server, for the ceiling and for mailpulse alike; CPU columns are cores \
             used (1.0 = one core). The writer / checkpointer column is the part of the \
             server's CPU used by the store's single writer thread and by its checkpointer \
             thread; the writer is the serial stage, and when it is busy most of the time \
             (the rest it waits for requests or for a core) it is what limits \
             the rate. \
             Half-peak runs are open loop at half the best closed-loop \
             rate, over the connection count that reached it, each after {settle:.0} s idle so \
             the store's checkpoints have caught up with the closed-loop overload before, \
             then {warm_open:.0} s of the same load not measured (after an idle spell this \
             machine answers the first second of load slowly, the bare axum handler too: \
             p99 47–79 ms there, 3–6 ms in the next second; docs/store.md); \
             the batch rate runs twice, {secs:.0} s and {sustained:.0} s (the longer one \
             includes the WAL's wraps and the database's writeback, see docs/store.md). \
             The last section, \"The store alone\", measures the same batches without \
             HTTP.",
            counts(&SINGLE_CONNS),
            counts(&BATCH_CONNS),
            settle = SETTLE.as_secs_f64(),
            warm_open = WARM_OPEN.as_secs_f64(),
            sustained = SUSTAINED.as_secs_f64(),
        ),
        &[
            "run",
            "requests/s",
            "events/s",
            "p50",
            "p99",
            "server CPU",
            "writer / checkpointer CPU",
            "loadgen CPU",
            "errors",
            "vs ceiling / target",
            "runs (requests/s)",
        ],
    );
    let row = |name: &str, m: &Measured, per: f64, verdict: String, all: &[f64]| {
        vec![
            name.to_string(),
            format!("{:.0}", m.out.rps()),
            format!("{:.0}", m.out.rps() * per),
            ms(m.out.p(0.5)),
            ms(m.out.p(0.99)),
            format!("{:.2}", m.server_cpu),
            if m.writer_cpu == 0.0 && m.checkpointer_cpu == 0.0 {
                "—".to_string() // the ceiling has no store
            } else {
                format!("{:.2} / {:.2}", m.writer_cpu, m.checkpointer_cpu)
            },
            format!("{:.2}", m.gen_cpu),
            m.out.failed.to_string(),
            verdict,
            rates(all),
        ]
    };
    for (conns, m, all) in &ceilings {
        let verdict = if m.out.rps() == ceiling_rps {
            "100% (the ceiling)".into()
        } else {
            format!("{:.0}%", 100.0 * m.out.rps() / ceiling_rps)
        };
        s.row(row(
            &format!("bare axum handler, {conns} connections"),
            m,
            1.0,
            verdict,
            all,
        ));
    }
    for (conns, m, all) in &ones {
        s.row(row(
            &format!("mailpulse, 1 event per POST, {conns} connections"),
            m,
            1.0,
            format!(
                "{:.1}% of ceiling (target ≥ 50%: {})",
                100.0 * m.out.rps() / ceiling_rps,
                met(m.out.rps() >= ceiling_rps / 2.0)
            ),
            all,
        ));
    }
    for (conns, m, all) in &hundreds {
        s.row(row(
            &format!("mailpulse, 100 events per POST, {conns} connections"),
            m,
            100.0,
            format!(
                "{:.0} events/s (target ≥ 200,000: {})",
                m.out.rps() * 100.0,
                met(m.out.rps() * 100.0 >= 200_000.0)
            ),
            all,
        ));
    }
    s.row(row(
        &format!("mailpulse, 1 event, open loop at {half_one_rate:.0}/s (half peak)"),
        &half_one,
        1.0,
        p99_verdict(&half_one.out),
        &[],
    ));
    s.row(row(
        &format!("mailpulse, 100 events, open loop at {half_hundred_rate:.0}/s (half peak)"),
        &half_hundred,
        100.0,
        p99_verdict(&half_hundred.out),
        &[],
    ));
    s.row(row(
        &format!(
            "mailpulse, 100 events, open loop at {half_hundred_rate:.0}/s (half peak), sustained {:.0} s",
            SUSTAINED.as_secs_f64()
        ),
        &sustained,
        100.0,
        p99_verdict(&sustained.out),
        &[],
    ));
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    s.note(limits_note(best_ceiling, best_one, best_hundred, cores));
    if wrk_script.is_some() {
        s.note(wrk_note(wrk_runs));
    }
    s.note(tail_note(&[
        ("single events", half_one_rate, &half_one, &half_one_seen),
        (
            "batches, 6 s",
            half_hundred_rate,
            &half_hundred,
            &half_hundred_seen,
        ),
        (
            "batches, 30 s",
            half_hundred_rate,
            &sustained,
            &sustained_seen,
        ),
    ]));
    let events =
        single_ok + half_one.out.ok + (batch_ok + half_hundred.out.ok + sustained.out.ok) * 100;
    s.note(format!(
        "Store after the run: {:.1} MB for {events} events; server resident memory {:.0} MB, \
         of which {:.0} MB file-backed (the binary, and the pages of the store that the \
         writer reads through a memory map: the kernel's page cache, shared and reclaimable) \
         and {:.0} MB the server's own.",
        db_bytes as f64 / 1e6,
        memory.resident as f64 / 1e6,
        memory.file as f64 / 1e6,
        memory.own() as f64 / 1e6
    ));
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logged(lines: &[&str]) -> Vec<LogLine> {
        lines
            .iter()
            .map(|l| (l.split(' ').next().unwrap().parse().unwrap(), l.to_string()))
            .collect()
    }

    #[test]
    fn a_runs_store_log_is_counted_by_kind_with_the_slowest() {
        let lines = logged(&[
            "2026-12-07T22:32:17.832349Z DEBUG mailpulse::store::writer: store commit over 10 ms ms=42 requests=500 waited_ms=0",
            "2026-12-07T22:32:17.900203Z DEBUG mailpulse::store::writer: store commit over 10 ms ms=12 requests=282 waited_ms=3",
            "2026-12-07T22:32:18.019579Z DEBUG mailpulse::store::firsts: writing first opens/clicks held rows=63000",
            "2026-12-07T22:32:18.500000Z  WARN mailpulse::store::writer: slow store commit ms=225 requests=22",
            "2026-12-07T22:32:19.506558Z  WARN mailpulse::store::sync: slow store WAL fsync ms=105",
            "2026-12-07T22:32:19.507911Z DEBUG mailpulse::store: store checkpoint and database sync over 10 ms ms=105 frames=329",
            "2026-12-07T22:32:20.674023Z DEBUG mailpulse::store::writer: store WAL restarted ms=5",
        ]);
        assert_eq!(
            describe_store_log(&lines),
            "The store's log over the run (over 10 ms): 3 commits (the slowest 225 ms), \
             1 WAL fsyncs (the slowest 105 ms), 1 checkpoints with their database sync \
             (the slowest 105 ms), 1 WAL restarts (the slowest 5 ms), 1 flushes of first \
             opens/clicks begun"
        );
        assert_eq!(
            describe_store_log(&lines[2..3]),
            "The store's log over the run (over 10 ms): 1 flushes of first opens/clicks begun"
        );
        assert_eq!(
            describe_store_log(&[]),
            "The store logged no commit, fsync or checkpoint over 10 ms"
        );
    }

    #[test]
    fn connection_counts_read_as_a_list() {
        assert_eq!(counts(&[64]), "64");
        assert_eq!(counts(&[16, 64]), "16 and 64");
        assert_eq!(counts(&[64, 256, 512]), "64, 256 and 512");
    }

    /// A 10-second run that answered `rps` requests a second, using the
    /// given cores' worth of CPU (server and its kernel part, its writer
    /// thread, generator).
    fn run(
        rps: f64,
        (server_cpu, server_system_cpu): (f64, f64),
        writer_cpu: f64,
        gen_cpu: f64,
    ) -> Measured {
        Measured {
            out: Outcome {
                ok: (rps * 10.0) as u64,
                failed: 0,
                elapsed: Duration::from_secs(10),
                latency: loadgen::latency_histogram(),
                timeline: Vec::new(),
                started_at: chrono::Utc::now(),
            },
            server_cpu,
            server_system_cpu,
            writer_cpu,
            checkpointer_cpu: 0.0,
            gen_cpu,
        }
    }

    /// The recipient id of `event_json`'s event number `n`.
    fn recipient(n: u64) -> String {
        let mut s = String::new();
        event_json("r", n, 1, &mut s);
        let v: serde_json::Value = serde_json::from_str(&s).expect("valid JSON");
        v["recipientId"].as_str().expect("a string id").to_string()
    }

    #[test]
    fn events_name_distinct_recipients_in_no_sorted_order() {
        assert_eq!(recipient(0), "r-0");
        assert_eq!(recipient(120), "r-021");
        let ids: Vec<String> = (0..100_000).map(recipient).collect();
        let distinct: std::collections::HashSet<&String> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len(), "two events share a recipient");
        // Consecutive events must not sit next to each other in sorted
        // order, or first opens and clicks all append to one leaf.
        let mut sorted = ids.clone();
        sorted.sort();
        let rank: std::collections::HashMap<&String, usize> =
            sorted.iter().enumerate().map(|(i, id)| (id, i)).collect();
        let near = ids
            .windows(2)
            .filter(|w| rank[&w[0]].abs_diff(rank[&w[1]]) < 100)
            .count();
        assert!(
            near < ids.len() / 100,
            "{near} consecutive ids sort within 100 of each other"
        );
    }

    #[test]
    fn the_limits_note_works_out_each_part_per_request_and_per_event() {
        // Ceiling: 40k requests/s, server 1.04 cores (0.6 in the kernel),
        // generator 0.88: 26 (15) + 22 µs per request, the cores 96 %
        // busy. Single events: 20k requests/s, server 1.2 (0.5 in the
        // kernel, writer 0.2), generator 0.6: 60 (25) + 30 µs (writer 10),
        // the cores 90 % busy.
        // Batches: 1,500 requests/s = 150k events/s, server 1.5 (0.45 in
        // the kernel, writer 0.75), generator 0.15: 10 (3) + 1 µs per
        // event (writer 5).
        let note = limits_note(
            (64, &run(40_000.0, (1.04, 0.6), 0.0, 0.88)),
            (256, &run(20_000.0, (1.2, 0.5), 0.2, 0.6)),
            (64, &run(1_500.0, (1.5, 0.45), 0.75, 0.15)),
            2,
        );
        for part in [
            "the ceiling's server used 26.0 µs (15.0 of it in the kernel) and the generator 22.0 (64 connections), 48.0 µs in all, with the cores 96 % busy",
            "the server used 60.0 µs (25.0 in the kernel), of which its writer thread 10.0, and the generator 30.0 (256 connections), 90.0 µs in all, with the cores 90 % busy",
            "the server's 34.0 µs over the ceiling's are 24.0 µs of its own code and SQLite's and 10.0 µs of kernel work",
            "the generator's 8.0 µs over its cost against the ceiling",
            "the ratio, 50.0 %, is 53.3 % (the CPU per request) times 0.94 (how busy the cores were)",
            "50 % needs mailpulse's sum at 90.0 µs or less",
            "Per event the server used 10.00 µs (3.00 in the kernel), of which its writer thread 5.00 (the serial stage: one core gives it at most 200000 events/s), and the generator 1.00 (64 connections, the cores 82 % busy)",
            "2 cores fully used give at most 181818 events/s at 11.00 µs per event",
            "needs that sum under 10.0 µs and the writer under 5.0 µs",
        ] {
            assert!(note.contains(part), "{part:?} not in:\n{note}");
        }
    }
}
