//! The single writer: a thread that owns the write connection and commits
//! queued requests in groups. For each group it opens one transaction,
//! inserts every request's events (deduplicated by a unique key) and a
//! batch's compressed body (see [`super::raw`]), decides first opens and
//! clicks (written to their table late, see [`super::firsts`]), adds to the
//! per-minute rollups and commits. Only once the commit
//! is on disk (with `synchronous = "full"`, after the WAL fsync that
//! [`super::sync`] runs while the next group is written) are the requests
//! answered and the new events handed to the live engine. A failed commit
//! answers every request of the group with an error and stores none of
//! them, so a client that sees 200 knows its events are on disk, and one
//! that does not may retry without creating duplicates.

use super::dispatch::{
    self, DispatchMailings, DispatchOutcome, DispatchReport, DispatchUpdate, SentMatch,
};
use super::firsts::{self, Firsts, Idle, Kind, Policy};
use super::raw::RawBody;
use super::spans;
use super::sync::{AfterSync, Syncer};
use super::{StoreError, StoreStats};
use crate::ingest::parse::{Event, ParsedBatch};
use crate::metrics::engine::Update;
use crate::metrics::LiveHandle;
use mailpulse_app::protocol::{BounceKind, Counters, EventType};
use r2d2_sqlite::rusqlite::{
    params, CachedStatement, Connection, OptionalExtension, ToSql, Transaction,
};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};

/// A commit's answer once its fsync is known.
fn synced_or_failed(synced: Result<(), String>) -> Result<(), StoreError> {
    synced.map_err(StoreError::NotDurable)
}

/// Rows deleted per retention transaction: small enough that ingest,
/// which shares the writer, never waits long.
const RETENTION_CHUNK: i64 = 5_000;
/// Raw bodies deleted per retention transaction (each up to the request
/// size limit, 1 MiB by default, before compression).
const BODIES_CHUNK: i64 = 500;
/// While the group waits for the sync thread, how often the writer takes
/// in what has queued: a slow fsync (100 ms and more happen on this class
/// of disk) must not leave the queue to fill up and answer 503.
const DRAIN_EVERY: std::time::Duration = std::time::Duration::from_millis(1);
/// With first opens/clicks held, how long the queue must stay empty
/// before the writer writes them (`Writer::next_command`). Under load the
/// queue is empty for milliseconds at a time, so this never starts; below
/// ~10 requests a second a request may arrive during a chunk and wait for
/// it (a few milliseconds).
const IDLE_AFTER: std::time::Duration = std::time::Duration::from_millis(100);
/// How often the writer looks again while a flush's rows are still being
/// sorted.
const IDLE_POLL: std::time::Duration = std::time::Duration::from_millis(1);
/// Mailings whose first opens/clicks one retention transaction looks at.
/// Each look is two index seeks, so a step stays well under a millisecond
/// unless it deletes.
const FIRSTS_MAILINGS_PER_STEP: usize = 256;

pub(crate) enum Cmd {
    Ingest {
        source: Arc<str>,
        batch: ParsedBatch,
        /// The request body the events' raw JSON are spans of.
        raw: RawBody,
        /// `dedup_key` of each event, computed by the caller so hashing
        /// runs on the request's thread, not the single writer's.
        keys: Vec<[u8; 16]>,
        reply: oneshot::Sender<Result<IngestOutcome, StoreError>>,
    },
    Retention {
        step: RetentionStep,
        rollups_before: i64,
        reply: oneshot::Sender<Result<(u64, Option<RetentionStep>), StoreError>>,
    },
    /// Upserts small rows that are not events (settings, lag histograms):
    /// each statement with its parameters, all in one transaction.
    Upsert {
        statements: Vec<(&'static str, Vec<Param>)>,
        reply: Option<oneshot::Sender<Result<(), StoreError>>>,
    },
    /// Records reported transactional dispatches.
    Dispatches {
        reports: Vec<DispatchReport>,
        reply: oneshot::Sender<Result<DispatchOutcome, StoreError>>,
    },
    Shutdown {
        reply: oneshot::Sender<()>,
    },
}

/// A parameter of an [`Cmd::Upsert`] statement.
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    Int(i64),
    Real(f64),
    Text(Option<String>),
    Blob(Vec<u8>),
}

impl ToSql for Param {
    fn to_sql(
        &self,
    ) -> r2d2_sqlite::rusqlite::Result<r2d2_sqlite::rusqlite::types::ToSqlOutput<'_>> {
        match self {
            Param::Int(i) => i.to_sql(),
            Param::Real(r) => r.to_sql(),
            Param::Text(t) => t.to_sql(),
            Param::Blob(b) => b.to_sql(),
        }
    }
}

/// Where a retention pass is; each step is one small transaction.
#[derive(Clone, Debug)]
pub(crate) enum RetentionStep {
    Events {
        up_to_id: i64,
        events_before: i64,
        /// The largest `body_id` of the events deleted so far.
        last_body: Option<i64>,
    },
    /// Raw bodies below `below`: no event is left that points at them
    /// (bodies and events are numbered in the same commit order).
    Bodies { below: i64, events_before: i64 },
    /// Rollups older than the rollup horizon and unmatched sent events
    /// older than a day.
    Rollups { events_before: i64 },
    /// Lag histograms and delivered notifications.
    Housekeeping { events_before: i64 },
    /// Dispatch reports of mail accepted (still open) or sent (closed)
    /// before `events_before`.
    Dispatches { events_before: i64 },
    /// First opens/clicks of mailings with no rollup left, mailing by
    /// mailing in id order, from the first mailing after `after`.
    Firsts { after: Option<String> },
}

/// What one ingest request achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IngestOutcome {
    pub accepted: usize,
    pub duplicates: usize,
    pub quarantined: usize,
}

/// An event as committed, for the live engine.
#[derive(Debug, Clone)]
pub struct Committed {
    pub id: i64,
    pub event: Event,
    /// First open (for opens) or first click (for clicks) of this recipient
    /// in this mailing.
    pub first: bool,
    /// For `sent` events: the dispatch it closed, if any.
    pub dispatch: SentMatch,
}

/// How large one group commit may grow. The writer stops taking queued
/// requests once either limit is reached.
#[derive(Clone, Copy, Debug)]
pub(crate) struct GroupLimits {
    pub requests: usize,
    /// Events and quarantined items of all the group's requests.
    pub items: usize,
}

/// The writer's settings from `[store]`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Tuning {
    pub limits: GroupLimits,
    pub firsts: Policy,
}

/// What the writer does with the WAL besides appending commits to it.
pub(crate) struct WalDuties {
    /// Raised by the checkpointer when the WAL should start over.
    pub restart: Arc<AtomicBool>,
    /// The WAL file to fsync after commits, on a thread of its own, before
    /// answering (`synchronous = "full"`); `None` when SQLite syncs inside
    /// the commit (or nothing is synced).
    pub sync: Option<PathBuf>,
}

pub(crate) fn spawn(
    conn: Connection,
    rx: mpsc::Receiver<Cmd>,
    live: LiveHandle,
    stats: Arc<StoreStats>,
    gate: Arc<Mutex<()>>,
    tuning: Tuning,
    wal: WalDuties,
) -> anyhow::Result<()> {
    let syncer = wal
        .sync
        .map(|path| Syncer::spawn(path, stats.clone()))
        .transpose()?;
    let wal_restart = wal.restart;
    std::thread::Builder::new()
        .name("store-writer".into())
        .spawn(move || {
            let loaded = DispatchMailings::load(&conn)
                .and_then(|d| Ok((d, Firsts::load(tuning.firsts, &conn)?)));
            let loaded = loaded.and_then(|l| {
                let waits = tokio::runtime::Builder::new_current_thread()
                    .enable_time()
                    .build()?;
                Ok((l, waits))
            });
            let ((dispatch_mailings, firsts), waits) = match loaded {
                Ok(l) => l,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the store's state; store writer not started");
                    return;
                }
            };
            Writer {
                conn,
                live,
                stats,
                gate,
                limits: tuning.limits,
                dispatch_mailings,
                firsts,
                wal_restart,
                syncer,
                waits,
            }
            .run(rx)
        })?;
    Ok(())
}

struct Writer {
    conn: Connection,
    live: LiveHandle,
    stats: Arc<StoreStats>,
    gate: Arc<Mutex<()>>,
    limits: GroupLimits,
    dispatch_mailings: DispatchMailings,
    /// First opens/clicks decided but not yet in their table.
    firsts: Firsts,
    /// Raised by the checkpointer when the WAL has grown past
    /// `WAL_RESTART_FRAMES` under continuous load.
    wal_restart: Arc<AtomicBool>,
    /// Set for `synchronous = "full"`: answers wait for its WAL fsync.
    syncer: Option<Syncer>,
    /// Waits for the queue with a time limit (`next_command`), which the
    /// queue's blocking receive does not offer: a runtime of this thread's
    /// own, with a timer and nothing else.
    waits: tokio::runtime::Runtime,
}

struct Pending {
    source: Arc<str>,
    batch: ParsedBatch,
    raw: RawBody,
    keys: Vec<[u8; 16]>,
    reply: oneshot::Sender<Result<IngestOutcome, StoreError>>,
}

/// What the writer has taken from its queue for one group.
#[derive(Default)]
struct Gathered {
    group: Vec<Pending>,
    /// Events and quarantined items of `group`.
    items: usize,
    /// Commands other than ingests, run after the group commits.
    others: Vec<Cmd>,
}

impl Gathered {
    /// Whether the group may take more requests.
    ///
    /// Bounded by items too: a backlog of large batches drained in one
    /// transaction would hold every request in it until the last event is
    /// written (at ~6 µs of writer time per event, 512 batches of 100 take
    /// 300 ms); in groups of ~2,000 items the first ones are answered after
    /// ~12 ms.
    fn open(&self, limits: GroupLimits) -> bool {
        self.group.len() < limits.requests && self.items < limits.items && self.others.is_empty()
    }

    /// Takes `cmd`, then whatever else is queued while the group is open.
    fn take(&mut self, cmd: Cmd, rx: &mut mpsc::Receiver<Cmd>, limits: GroupLimits) {
        let mut next = Some(cmd);
        while let Some(cmd) = next.take() {
            match cmd {
                Cmd::Ingest {
                    source,
                    batch,
                    raw,
                    keys,
                    reply,
                } => {
                    self.items += batch.events.len() + batch.quarantined.len();
                    self.group.push(Pending {
                        source,
                        batch,
                        raw,
                        keys,
                        reply,
                    })
                }
                other => self.others.push(other),
            }
            if self.open(limits) {
                next = rx.try_recv().ok();
            }
        }
    }
}

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<Cmd>) {
        while let Some(first) = self.next_command(&mut rx) {
            let gate = self.gate.clone();
            let _held = gate.lock().unwrap_or_else(|p| p.into_inner());
            let mut g = Gathered::default();
            g.take(first, &mut rx, self.limits);
            if !g.group.is_empty() {
                self.commit_group(&mut g, &mut rx);
            }
            let others = std::mem::take(&mut g.others);
            if self.wal_restart.swap(false, Ordering::Relaxed) {
                self.restart_wal();
            }
            for cmd in others {
                match cmd {
                    Cmd::Retention {
                        step,
                        rollups_before,
                        reply,
                    } => {
                        let res = self
                            .retention(step, rollups_before)
                            .map_err(|e| StoreError::Failed(e.to_string()));
                        let _ = reply.send(res);
                    }
                    Cmd::Upsert { statements, reply } => {
                        let res = self
                            .upsert(&statements)
                            .map_err(|e| StoreError::Failed(e.to_string()));
                        if let Err(e) = &res {
                            tracing::warn!(error = %e, "store upsert failed");
                        }
                        if let Some(reply) = reply {
                            self.after_sync(Box::new(move |synced| {
                                let _ = reply.send(res.and_then(|()| synced_or_failed(synced)));
                            }));
                        }
                    }
                    Cmd::Dispatches { reports, reply } => {
                        let res = self
                            .dispatches(&reports)
                            .map_err(|e| StoreError::Failed(e.to_string()));
                        let live = self.live.clone();
                        // Through the sync thread like the events' hand-off,
                        // so the live engine sees both in commit order.
                        self.after_sync(Box::new(move |synced| {
                            let res = res.map(|(outcome, update)| {
                                if update != DispatchUpdate::default() {
                                    live.submit_blocking(Update::Dispatches(update));
                                }
                                outcome
                            });
                            let _ =
                                reply.send(res.and_then(|o| synced_or_failed(synced).map(|()| o)));
                        }));
                    }
                    Cmd::Shutdown { reply } => {
                        // So that a restart has none to recover.
                        match self.firsts.write_all(&mut self.conn) {
                            Ok(n) => tracing::debug!(firsts = n, "first opens/clicks written"),
                            Err(e) => {
                                tracing::warn!(error = %e, "could not write the first opens/clicks held; the next start recovers them")
                            }
                        }
                        if let Some(syncer) = &mut self.syncer {
                            syncer.finish();
                        }
                        tracing::info!("store writer stopped");
                        let _ = reply.send(());
                        return;
                    }
                    Cmd::Ingest { .. } => unreachable!("ingests are grouped above"),
                }
            }
        }
    }

    /// Waits for the next command. Once none has come for [`IDLE_AFTER`],
    /// writes the first opens/clicks held, a chunk at a time, looking at
    /// the queue between chunks (see [`Firsts::write_idle`]). `None` once
    /// the queue is closed.
    fn next_command(&mut self, rx: &mut mpsc::Receiver<Cmd>) -> Option<Cmd> {
        let idle_since = Instant::now();
        loop {
            match rx.try_recv() {
                Ok(cmd) => return Some(cmd),
                Err(mpsc::error::TryRecvError::Disconnected) => return None,
                Err(mpsc::error::TryRecvError::Empty) => {}
            }
            if self.firsts.unwritten() == 0 {
                return rx.blocking_recv();
            }
            if let Some(left) = IDLE_AFTER.checked_sub(idle_since.elapsed()) {
                // Asleep until a command comes or the time is up.
                // (The timer is made inside the runtime, which owns it.)
                let waited = self
                    .waits
                    .block_on(async { tokio::time::timeout(left, rx.recv()).await });
                match waited {
                    Ok(cmd) => return cmd,
                    Err(_) => continue,
                }
            }
            let gate = self.gate.clone();
            let written = {
                let _held = gate.lock().unwrap_or_else(|p| p.into_inner());
                self.firsts.write_idle(&mut self.conn)
            };
            self.publish_firsts_stats();
            match written {
                Ok(Idle::More) => {}
                Ok(Idle::Sorting) => std::thread::sleep(IDLE_POLL),
                Ok(Idle::Done) => return rx.blocking_recv(),
                Err(e) => {
                    // Written by the next flush instead.
                    tracing::warn!(error = %e, "could not write first opens/clicks while idle");
                    return rx.blocking_recv();
                }
            }
        }
    }

    /// Shows the first opens/clicks held and the filters' state in
    /// `/metrics`.
    fn publish_firsts_stats(&self) {
        let s = &self.stats;
        s.firsts_unwritten
            .store(self.firsts.unwritten() as u64, Ordering::Relaxed);
        let (filter_bytes, table_lookups) = self.firsts.filter_stats();
        s.firsts_filter_bytes
            .store(filter_bytes as u64, Ordering::Relaxed);
        s.firsts_table_lookups
            .store(table_lookups, Ordering::Relaxed);
    }

    /// Commits the gathered group in one transaction. While the sync
    /// thread is busy with an fsync (which the group would wait for
    /// anyway), the transaction stays open: the writer inserts what it has,
    /// waits for the thread to be free, then takes in what arrived
    /// meanwhile, until the group is full; commands other than ingests end
    /// the gathering. See [`super::sync`] for why.
    fn commit_group(&mut self, g: &mut Gathered, rx: &mut mpsc::Receiver<Cmd>) {
        let started = Instant::now();
        // Time spent waiting for the sync thread: not the commit's own (its
        // metric and the slow-commit warning leave it out).
        let mut waited = std::time::Duration::ZERO;
        let (limits, syncer) = (self.limits, &self.syncer);
        let dispatch_mailings = &self.dispatch_mailings;
        let firsts = &mut self.firsts;
        let conn = &mut self.conn;
        let result = (|| -> anyhow::Result<(Vec<IngestOutcome>, Vec<Committed>)> {
            let tx = conn.transaction()?;
            let mut outcomes = Vec::with_capacity(g.group.len());
            let mut committed = Vec::new();
            let mut rollups = Rollups::default();
            let mut inserts = Inserts::prepare(&tx)?;
            loop {
                // Room for every event gathered so far at once: growing it
                // one event at a time moved every event's struct again.
                committed.reserve(g.items.saturating_sub(committed.len()));
                for p in &mut g.group[outcomes.len()..] {
                    outcomes.push(insert_batch(
                        &mut inserts,
                        p,
                        &mut committed,
                        &mut rollups,
                        firsts,
                        dispatch_mailings,
                    )?);
                }
                if !(g.open(limits) && syncer.as_ref().is_some_and(Syncer::busy)) {
                    break;
                }
                let wait = Instant::now();
                if let Some(syncer) = syncer {
                    syncer.wait_free(DRAIN_EVERY);
                }
                waited += wait.elapsed();
                if let Ok(cmd) = rx.try_recv() {
                    g.take(cmd, rx, limits);
                }
            }
            drop(inserts);
            spans::record(&tx, &committed)?;
            rollups.write(&tx)?;
            firsts.write_chunk(&tx)?;
            tx.commit()?;
            Ok((outcomes, committed))
        })();
        let micros = started.elapsed().saturating_sub(waited).as_micros() as u64;
        let group = std::mem::take(&mut g.group);
        if micros > 50_000 {
            tracing::warn!(
                ms = micros / 1000,
                requests = group.len(),
                "slow store commit"
            );
        } else if micros > super::TRACE_OVER.as_micros() as u64 {
            // At debug level: what a latency tail is made of, placed in
            // time (docs/development.md).
            tracing::debug!(
                ms = micros / 1000,
                requests = group.len(),
                waited_ms = waited.as_millis() as u64,
                "store commit over 10 ms"
            );
        }
        match result {
            Ok((outcomes, committed)) => {
                if let Err(e) = self.firsts.committed(&self.conn) {
                    // Only the next flush's start failed; it is tried
                    // again after the next commit.
                    tracing::warn!(error = %e, "could not start writing first opens/clicks");
                }
                self.publish_firsts_stats();
                let s = &self.stats;
                s.commits.fetch_add(1, Ordering::Relaxed);
                s.commit_micros_total.fetch_add(micros, Ordering::Relaxed);
                s.commit_seconds.observe(micros as f64 / 1e6);
                for o in &outcomes {
                    s.events_accepted
                        .fetch_add(o.accepted as u64, Ordering::Relaxed);
                    s.duplicates
                        .fetch_add(o.duplicates as u64, Ordering::Relaxed);
                    s.quarantined
                        .fetch_add(o.quarantined as u64, Ordering::Relaxed);
                }
                let live = self.live.clone();
                self.after_sync(Box::new(move |synced| {
                    // The events are committed (readers see them) even if
                    // the fsync failed, so the live state counts them.
                    // Hand-off first, so a client that saw 200 and then
                    // looks at the dashboard finds its events on the next
                    // tick.
                    if !committed.is_empty() {
                        live.submit_blocking(Update::Events(committed));
                    }
                    for (p, o) in group.into_iter().zip(outcomes) {
                        let _ = p.reply.send(synced_or_failed(synced.clone()).map(|()| o));
                    }
                }));
            }
            Err(e) => {
                self.firsts.rolled_back();
                self.stats.commit_failures.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, requests = group.len(), "store commit failed; requests answered 503");
                for p in group {
                    let _ = p.reply.send(Err(StoreError::Failed(e.to_string())));
                }
            }
        }
    }

    /// Runs `job` once what was committed so far is durable: after the
    /// syncer's next fsync, or at once when commits sync themselves.
    fn after_sync(&self, job: AfterSync) {
        match &self.syncer {
            Some(syncer) => syncer.after_sync(job),
            None => job(Ok(())),
        }
    }

    /// Starts the WAL over (see `restart_wal`), logging a slow restart.
    fn restart_wal(&mut self) {
        let started = Instant::now();
        let res = super::restart_wal(&self.conn);
        let ms = started.elapsed().as_millis() as u64;
        match res {
            Ok(true) if ms > 50 => tracing::warn!(ms, "slow store WAL restart"),
            Ok(true) => tracing::debug!(ms, "store WAL restarted"),
            Ok(false) => tracing::debug!(ms, "store WAL restart deferred: a reader is busy"),
            Err(e) => tracing::warn!(error = %e, ms, "store WAL restart failed"),
        }
    }

    /// Commits the reports; returns the outcome and what the live engine
    /// should learn from it.
    fn dispatches(
        &mut self,
        reports: &[DispatchReport],
    ) -> anyhow::Result<(DispatchOutcome, DispatchUpdate)> {
        let now = chrono::Utc::now().timestamp_millis();
        let mut update = DispatchUpdate::default();
        let tx = self.conn.transaction()?;
        let out = dispatch::record(&tx, reports, &mut self.dispatch_mailings, &mut update, now)?;
        tx.commit()?;
        Ok((out, update))
    }

    fn upsert(&mut self, statements: &[(&'static str, Vec<Param>)]) -> anyhow::Result<()> {
        let tx = self.conn.transaction()?;
        for (sql, params) in statements {
            let mut stmt = tx.prepare_cached(sql)?;
            stmt.execute(r2d2_sqlite::rusqlite::params_from_iter(params.iter()))?;
        }
        tx.commit()?;
        Ok(())
    }

    fn retention(
        &mut self,
        step: RetentionStep,
        rollups_before: i64,
    ) -> anyhow::Result<(u64, Option<RetentionStep>)> {
        if let RetentionStep::Events { up_to_id, .. } = step {
            // Once deleted, events cannot tell `firsts::recover` their
            // firsts. Under traffic the table is written to within seconds
            // of the newest event, far past the 30-day horizon; this only
            // writes after a quiet spell left firsts held.
            if self.firsts.written_up_to() < up_to_id {
                self.firsts.write_all(&mut self.conn)?;
            }
        }
        let tx = self.conn.transaction()?;
        let result = match step {
            RetentionStep::Events {
                up_to_id,
                events_before,
                mut last_body,
            } => {
                let mut n = 0u64;
                let mut deleted_to = i64::MIN;
                {
                    let mut delete = tx.prepare_cached(
                        "DELETE FROM events WHERE id IN \
                         (SELECT id FROM events WHERE id <= ?1 ORDER BY id LIMIT ?2) \
                         RETURNING id, body_id",
                    )?;
                    let mut rows = delete.query(params![up_to_id, RETENTION_CHUNK])?;
                    while let Some(row) = rows.next()? {
                        n += 1;
                        deleted_to = deleted_to.max(row.get(0)?);
                        if let Some(b) = row.get::<_, Option<i64>>(1)? {
                            last_body = Some(last_body.map_or(b, |l| l.max(b)));
                        }
                    }
                }
                // The spans of what is deleted: each ends at one of its
                // mailing's events, so they are never more than the events
                // deleted and keep pace with them chunk by chunk. Like
                // index entries, they are not counted as rows deleted.
                spans::delete_up_to(&tx, deleted_to, RETENTION_CHUNK)?;
                let next = if n as i64 == RETENTION_CHUNK {
                    RetentionStep::Events {
                        up_to_id,
                        events_before,
                        last_body,
                    }
                } else {
                    match last_body {
                        Some(last) => {
                            // A request's events have consecutive ids, so
                            // only the first event kept can still share the
                            // last deleted event's body.
                            let shared: Option<Option<i64>> = tx
                                .query_row(
                                    "SELECT body_id FROM events WHERE id > ?1 ORDER BY id LIMIT 1",
                                    [up_to_id],
                                    |r| r.get(0),
                                )
                                .optional()?;
                            let below = if shared == Some(Some(last)) {
                                last
                            } else {
                                last + 1
                            };
                            RetentionStep::Bodies {
                                below,
                                events_before,
                            }
                        }
                        None => RetentionStep::Rollups { events_before },
                    }
                };
                (n, Some(next))
            }
            RetentionStep::Bodies {
                below,
                events_before,
            } => {
                let n = tx.execute(
                    "DELETE FROM raw_bodies WHERE id IN \
                     (SELECT id FROM raw_bodies WHERE id < ?1 ORDER BY id LIMIT ?2)",
                    params![below, BODIES_CHUNK],
                )? as u64;
                let next = if n as i64 == BODIES_CHUNK {
                    RetentionStep::Bodies {
                        below,
                        events_before,
                    }
                } else {
                    RetentionStep::Rollups { events_before }
                };
                (n, Some(next))
            }
            RetentionStep::Rollups { events_before } => {
                // The tables that grow with the traffic, each through an
                // index on its time and a chunk at a time (one day of
                // bounce rollups can be many rows: mailings × domains ×
                // reasons).
                let minute = rollups_before.div_euclid(60_000);
                let day = rollups_before.div_euclid(86_400_000);
                let now = chrono::Utc::now().timestamp_millis();
                let deletes = [
                    (
                        "DELETE FROM rollup_minute WHERE (mailing_id, minute) IN \
                         (SELECT mailing_id, minute FROM rollup_minute WHERE minute < ?1 LIMIT ?2)",
                        minute,
                    ),
                    (
                        "DELETE FROM rollup_bounce_day \
                         WHERE (mailing_id, day, domain, category, reason) IN \
                         (SELECT mailing_id, day, domain, category, reason FROM rollup_bounce_day \
                          WHERE day < ?1 LIMIT ?2)",
                        day,
                    ),
                    // A sent event still unmatched after a day will not be.
                    (
                        "DELETE FROM unmatched_sent WHERE event_id IN \
                         (SELECT event_id FROM unmatched_sent WHERE event_time < ?1 LIMIT ?2)",
                        now - 86_400_000,
                    ),
                ];
                let (n, more) = delete_chunk(&tx, deletes)?;
                let next = if more {
                    RetentionStep::Rollups { events_before }
                } else {
                    RetentionStep::Housekeeping { events_before }
                };
                (n, Some(next))
            }
            RetentionStep::Housekeeping { events_before } => {
                // Small tables, bounded by what they hold rather than by
                // the traffic.
                let now = chrono::Utc::now().timestamp_millis();
                let mut n = 0;
                for (sql, bound) in [
                    // Lag histograms only serve the last day.
                    ("DELETE FROM lag_5m WHERE slot < ?1", now - 2 * 86_400_000),
                    // Delivered notifications are kept as long as raw events.
                    (
                        "DELETE FROM alert_outbox WHERE delivered_at IS NOT NULL AND created_at < ?1",
                        events_before,
                    ),
                ] {
                    n += tx.execute(sql, params![bound])?;
                }
                (n as u64, Some(RetentionStep::Dispatches { events_before }))
            }
            RetentionStep::Dispatches { events_before } => {
                // Dispatches go with the raw events: an open one when it
                // was accepted before the horizon, a closed one when its
                // `sent` was. Each through its partial index, a chunk at a
                // time: a condition on `accepted_at` alone would read the
                // whole table (every dispatch of the last 30 days) while
                // ingest waits.
                let (n, more) = delete_chunk(
                    &tx,
                    [
                        (
                            "DELETE FROM dispatches WHERE rowid IN (SELECT rowid FROM dispatches \
                             WHERE sent_at IS NULL AND accepted_at < ?1 LIMIT ?2)",
                            events_before,
                        ),
                        (
                            "DELETE FROM dispatches WHERE rowid IN (SELECT rowid FROM dispatches \
                             WHERE sent_at IS NOT NULL AND sent_at < ?1 LIMIT ?2)",
                            events_before,
                        ),
                    ],
                )?;
                let next = if more {
                    RetentionStep::Dispatches { events_before }
                } else {
                    RetentionStep::Firsts { after: None }
                };
                (n, Some(next))
            }
            RetentionStep::Firsts { after } => {
                let (n, next) = retain_firsts(&tx, after, rollups_before)?;
                (n, next.map(|after| RetentionStep::Firsts { after }))
            }
        };
        tx.commit()?;
        Ok(result)
    }
}

/// Runs retention deletes that share one chunk of `RETENTION_CHUNK` rows,
/// in order: each is a `DELETE … LIMIT ?2` with its bound as `?1`, and gets
/// what the ones before it left of the chunk. Returns the rows deleted and
/// whether the chunk filled (so there may be more to delete).
fn delete_chunk<const N: usize>(
    tx: &Transaction<'_>,
    deletes: [(&str, i64); N],
) -> anyhow::Result<(u64, bool)> {
    let mut n = 0;
    for (sql, bound) in deletes {
        n += tx.execute(sql, params![bound, RETENTION_CHUNK - n as i64])?;
    }
    Ok((n as u64, n as i64 == RETENTION_CHUNK))
}

/// One step of deleting the first opens/clicks of mailings with no rollup
/// left (those mailings ended before the rollup horizon): looks at up to
/// `FIRSTS_MAILINGS_PER_STEP` mailings after `after` and deletes at most
/// `RETENTION_CHUNK` records. Returns the records deleted and where to go on
/// from, `None` when every mailing was looked at.
///
/// It walks the distinct mailings by seeking in the primary key rather than
/// asking for every record whose mailing has no rollup: that question reads
/// the whole table (one record per opener or clicker of every mailing
/// kept), ~300 ms per 2 million records, in one transaction while ingest
/// waits, and it grows with the store.
fn retain_firsts(
    tx: &Transaction<'_>,
    mut after: Option<String>,
    rollups_before: i64,
) -> anyhow::Result<(u64, Option<Option<String>>)> {
    let mut first =
        tx.prepare_cached("SELECT mailing_id FROM engagement_firsts ORDER BY mailing_id LIMIT 1")?;
    let mut following = tx.prepare_cached(
        "SELECT mailing_id FROM engagement_firsts WHERE mailing_id > ?1 \
         ORDER BY mailing_id LIMIT 1",
    )?;
    let mut has_rollups =
        tx.prepare_cached("SELECT EXISTS (SELECT 1 FROM rollup_minute WHERE mailing_id = ?1)")?;
    let mut delete = tx.prepare_cached(
        "DELETE FROM engagement_firsts WHERE (mailing_id, recipient, kind) IN \
         (SELECT mailing_id, recipient, kind FROM engagement_firsts \
          WHERE mailing_id = ?1 AND event_time < ?2 LIMIT ?3)",
    )?;
    for _ in 0..FIRSTS_MAILINGS_PER_STEP {
        let mailing: Option<String> = match &after {
            None => first.query_row([], |r| r.get(0)).optional()?,
            Some(a) => following.query_row([a], |r| r.get(0)).optional()?,
        };
        let Some(mailing) = mailing else {
            return Ok((0, None));
        };
        if !has_rollups.query_row([&mailing], |r| r.get::<_, bool>(0))? {
            let n = delete.execute(params![mailing, rollups_before, RETENTION_CHUNK])?;
            if n > 0 {
                // This mailing again next time when the chunk was full
                // (`after` still points before it), the next one if not.
                if (n as i64) < RETENTION_CHUNK {
                    after = Some(mailing);
                }
                return Ok((n as u64, Some(after)));
            }
        }
        after = Some(mailing);
    }
    Ok((0, Some(after)))
}

/// The composite deduplication key, 16 bytes: the event time (ms, 6 bytes
/// big-endian, good until the year 10889) then 10 bytes of a BLAKE3 hash of
/// (source, type, client, mailing, recipient list, recipient, link, bounce
/// category). Leading with the time keeps the unique index's inserts in a
/// few B-tree pages per commit (events arrive roughly in time order); a
/// purely random key touches one page per event and multiplies the bytes
/// each commit writes. Equal events still get equal keys, since the time is
/// part of the composite. Fields are length-prefixed so no two tuples
/// collide by concatenation.
pub fn dedup_key(source: &str, e: &Event) -> [u8; 16] {
    let fields = [
        Some(source),
        Some(e.type_raw.as_str()),
        e.client_id.as_deref(),
        e.mailing_id.as_deref(),
        e.recipient_list_id.as_deref(),
        e.recipient_key(),
        e.link.as_deref(),
        e.bounce_category.map(BounceKind::as_str),
    ];
    // Each field as its length + 1 (0 for none, 8 bytes LE) and its bytes,
    // hashed in one `update`: BLAKE3 gives the same hash however the input
    // is split, and one call over a buffer costs half the instructions of
    // sixteen small ones (callgrind, docs/store.md). Most keys fit on the
    // stack.
    let len: usize = fields.iter().map(|f| 8 + f.map_or(0, str::len)).sum();
    let mut stack = [0u8; 256];
    let mut heap = Vec::new();
    let buf = if len <= stack.len() {
        &mut stack[..len]
    } else {
        heap.resize(len, 0);
        &mut heap[..]
    };
    let mut at = 0;
    for f in fields {
        let n = f.map_or(0, |s| s.len() as u64 + 1);
        buf[at..at + 8].copy_from_slice(&n.to_le_bytes());
        at += 8;
        if let Some(s) = f {
            buf[at..at + s.len()].copy_from_slice(s.as_bytes());
            at += s.len();
        }
    }
    let hash = blake3::hash(buf);
    let mut out = [0u8; 16];
    // Event times are validated to lie in [2000, 10000): positive, < 2^48.
    out[..6].copy_from_slice(&(e.event_time as u64).to_be_bytes()[2..]);
    out[6..].copy_from_slice(&hash.as_bytes()[..10]);
    out
}

/// The statements of an ingest group, looked up once per group rather than
/// once per request (each lookup hashes the statement's text).
struct Inserts<'tx> {
    tx: &'tx Transaction<'tx>,
    event: CachedStatement<'tx>,
    body: CachedStatement<'tx>,
    drop_body: CachedStatement<'tx>,
    first: firsts::Lookups<'tx>,
    quarantine: CachedStatement<'tx>,
    /// Scratch for [`insert_batch`], reused by the group's requests.
    stored: Vec<Stored>,
    /// What the event insert has bound now, carried from one request of
    /// the group to the next (a statement keeps its parameters between
    /// executions): the source, whether the raw-body parameters are bound
    /// for inline raw JSON, and the last event with its first-open/click
    /// flags. Single events bind only what differs from the previous
    /// request's event.
    bound_source: Option<Arc<str>>,
    bound_inline: bool,
    bound_event: Option<(Event, (bool, bool))>,
}

impl<'tx> Inserts<'tx> {
    fn prepare(tx: &'tx Transaction<'tx>) -> anyhow::Result<Inserts<'tx>> {
        Ok(Inserts {
            tx,
            event: tx.prepare_cached(EVENT_INSERT)?,
            body: tx
                .prepare_cached("INSERT INTO raw_bodies (received_at, body) VALUES (?1, ?2)")?,
            drop_body: tx.prepare_cached("DELETE FROM raw_bodies WHERE id = ?1")?,
            first: firsts::Lookups::prepare(tx)?,
            quarantine: tx.prepare_cached(
                "INSERT INTO quarantine (source, received_at, reason, raw) VALUES (?1, ?2, ?3, ?4)",
            )?,
            stored: Vec::new(),
            bound_source: None,
            bound_inline: false,
            bound_event: None,
        })
    }
}

/// Where the events of one request get their raw JSON from.
enum RawOf<'a> {
    Inline(&'a str),
    /// The body's row id and its length before compression.
    Body(i64, usize),
}

/// The event insert. Its parameters are named after their columns;
/// SQLite numbers them in order of appearance, which [`param`] spells out
/// (a test checks the two agree).
const EVENT_INSERT: &str = "INSERT OR IGNORE INTO events (dedup_key, source, type, type_raw, \
     client_id, mailing_id, recipient_list_id, recipient_id, event_time, time_source, received_at, \
     media_type, address, domain, link, bounce_category, bounce_reason, mail_id, first_open, \
     first_click, raw, body_id, raw_start, raw_len) \
     VALUES (:dedup_key, :source, :type, :type_raw, :client_id, :mailing_id, :recipient_list_id, \
     :recipient_id, :event_time, :time_source, :received_at, :media_type, :address, :domain, \
     :link, :bounce_category, :bounce_reason, :mail_id, :first_open, :first_click, :raw, \
     :body_id, :raw_start, :raw_len)";

/// 1-based parameter indexes of [`EVENT_INSERT`], in its column order.
mod param {
    pub const KEY: usize = 1;
    pub const SOURCE: usize = 2;
    pub const TYPE: usize = 3;
    pub const TYPE_RAW: usize = 4;
    pub const CLIENT_ID: usize = 5;
    pub const MAILING_ID: usize = 6;
    pub const RECIPIENT_LIST_ID: usize = 7;
    pub const RECIPIENT_ID: usize = 8;
    pub const EVENT_TIME: usize = 9;
    pub const TIME_SOURCE: usize = 10;
    pub const RECEIVED_AT: usize = 11;
    pub const MEDIA_TYPE: usize = 12;
    pub const ADDRESS: usize = 13;
    pub const DOMAIN: usize = 14;
    pub const LINK: usize = 15;
    pub const BOUNCE_CATEGORY: usize = 16;
    pub const BOUNCE_REASON: usize = 17;
    pub const MAIL_ID: usize = 18;
    pub const FIRST_OPEN: usize = 19;
    pub const FIRST_CLICK: usize = 20;
    pub const RAW: usize = 21;
    pub const BODY_ID: usize = 22;
    pub const RAW_START: usize = 23;
    pub const RAW_LEN: usize = 24;
}

/// What became of one event of a request: its row id, whether it was a
/// first open/click, and the dispatch a `sent` closed; `None` for a
/// duplicate.
type Stored = Option<(i64, bool, SentMatch)>;

/// Inserts one request's events (taking them out of `p`).
///
/// SQLite keeps a statement's bound parameters from one execution to the
/// next, and binding copies every text. The events of one request mostly
/// share their source, client, mailing, list, media type, times and raw
/// body, so each parameter is bound only when it differs from the previous
/// event's: at the batch peak, where the single writer is the limit,
/// binding was a fifth of its time. The previous event of a request's
/// first is the group's previous request's last ([`Inserts`] carries it),
/// so single events from one sender share most parameters too.
fn insert_batch(
    ins: &mut Inserts<'_>,
    p: &mut Pending,
    committed: &mut Vec<Committed>,
    rollups: &mut Rollups,
    firsts: &mut Firsts,
    dispatch_mailings: &DispatchMailings,
) -> anyhow::Result<IngestOutcome> {
    let tx = ins.tx;
    let (source, raw, keys) = (&*p.source, &p.raw, &p.keys);
    let batch = std::mem::take(&mut p.batch);
    let total = batch.events.len();
    let raw_of = match raw {
        RawBody::Inline(body) => RawOf::Inline(std::str::from_utf8(body)?),
        RawBody::Compressed { data, len } if total > 0 => {
            let received_at = batch.events[0].received_at;
            ins.body.execute(params![received_at, data])?;
            RawOf::Body(tx.last_insert_rowid(), *len)
        }
        // Nothing refers to the body.
        RawBody::Compressed { .. } => RawOf::Inline(""),
    };
    // What is bound now, taken: should anything below fail, the group
    // fails, and nothing is assumed bound by a later request.
    let bound_source = ins.bound_source.take();
    let bound_inline = std::mem::take(&mut ins.bound_inline);
    let carried = ins.bound_event.take();
    let stmt = &mut ins.event;
    if bound_source.as_deref() != Some(source) {
        stmt.raw_bind_parameter(param::SOURCE, source)?;
    }
    match raw_of {
        RawOf::Inline(_) => {
            if !bound_inline {
                for i in [param::BODY_ID, param::RAW_START, param::RAW_LEN] {
                    stmt.raw_bind_parameter(i, None::<i64>)?;
                }
            }
        }
        RawOf::Body(id, _) => {
            stmt.raw_bind_parameter(param::BODY_ID, id)?;
            stmt.raw_bind_parameter(param::RAW, "")?;
        }
    }
    let stored = &mut ins.stored;
    stored.clear();
    // The event bound before (this request's previous one, or the group's
    // previous request's last) and the first-open/click flags bound for it.
    let mut prev: Option<(&Event, (bool, bool))> = carried.as_ref().map(|(e, f)| (e, *f));
    for (e, key) in batch.events.iter().zip(keys) {
        // A duplicate event never adds a first: the original already did.
        let kind = match e.event_type {
            EventType::Open => Some(Kind::Open),
            EventType::Click => Some(Kind::Click),
            _ => None,
        };
        let first = match (kind, e.mailing_id.as_deref(), e.recipient_key()) {
            (Some(k), Some(m), Some(r)) => firsts.claim(&mut ins.first, m, r, k, e.event_time)?,
            _ => false,
        };
        // Binds parameter `$i` to `$value` (an expression of the event
        // `$x`) unless the previous event of this request had the same
        // value, which is then still bound.
        macro_rules! bind {
            ($i:expr, $x:ident => $value:expr) => {{
                let value = {
                    let $x = e;
                    $value
                };
                let bound = prev.map(|(p, _)| {
                    let $x = p;
                    $value
                });
                if bound != Some(value) {
                    stmt.raw_bind_parameter($i, value)?;
                }
            }};
        }
        stmt.raw_bind_parameter(param::KEY, &key[..])?;
        bind!(param::TYPE, x => x.event_type.as_str());
        bind!(param::TYPE_RAW, x => x.type_raw.as_str());
        bind!(param::CLIENT_ID, x => x.client_id.as_deref());
        bind!(param::MAILING_ID, x => x.mailing_id.as_deref());
        bind!(param::RECIPIENT_LIST_ID, x => x.recipient_list_id.as_deref());
        bind!(param::RECIPIENT_ID, x => x.recipient_id.as_deref());
        bind!(param::EVENT_TIME, x => x.event_time);
        bind!(param::TIME_SOURCE, x => x.time_source.as_str());
        bind!(param::RECEIVED_AT, x => x.received_at);
        bind!(param::MEDIA_TYPE, x => x.media_type.as_deref());
        bind!(param::ADDRESS, x => x.address.as_deref());
        bind!(param::DOMAIN, x => x.domain.as_deref());
        bind!(param::LINK, x => x.link.as_deref());
        bind!(param::BOUNCE_CATEGORY, x => x.bounce_category.map(BounceKind::as_str));
        bind!(param::BOUNCE_REASON, x => x.bounce_reason.as_deref());
        bind!(param::MAIL_ID, x => x.mail_id.as_deref());
        let flags = (
            first && e.event_type == EventType::Open,
            first && e.event_type == EventType::Click,
        );
        if prev.map(|(_, f)| f) != Some(flags) {
            stmt.raw_bind_parameter(param::FIRST_OPEN, flags.0)?;
            stmt.raw_bind_parameter(param::FIRST_CLICK, flags.1)?;
        }
        match raw_of {
            RawOf::Inline(body) => {
                let text = e.raw_in(body).ok_or_else(|| {
                    anyhow::anyhow!("an event's raw span {:?} is not in its body", e.raw)
                })?;
                stmt.raw_bind_parameter(param::RAW, text)?;
            }
            RawOf::Body(_, body_len) => {
                if e.raw.start > e.raw.end || e.raw.end > body_len {
                    anyhow::bail!("an event's raw span {:?} is not in its body", e.raw);
                }
                stmt.raw_bind_parameter(param::RAW_START, e.raw.start as i64)?;
                stmt.raw_bind_parameter(param::RAW_LEN, e.raw.len() as i64)?;
            }
        }
        let inserted = stmt.raw_execute()?;
        prev = Some((e, flags));
        stored.push(if inserted == 1 {
            rollups.add(e, first);
            let id = tx.last_insert_rowid();
            let dispatch = if e.event_type == EventType::Sent {
                dispatch::match_sent(tx, e, id, dispatch_mailings)?
            } else {
                SentMatch::NotTracked
            };
            Some((id, first, dispatch))
        } else {
            None
        });
    }
    // Cloned before the events move on to the live engine.
    let last_bound = prev.map(|(e, flags)| (e.clone(), flags));
    let before = committed.len();
    for (event, s) in batch.events.into_iter().zip(stored.drain(..)) {
        if let Some((id, first, dispatch)) = s {
            committed.push(Committed {
                id,
                event,
                first,
                dispatch,
            });
        }
    }
    let accepted = committed.len() - before;
    if let (RawOf::Body(id, _), 0) = (&raw_of, accepted) {
        // Every event was a duplicate: keep no body that nothing points at.
        ins.drop_body.execute([id])?;
    }
    for q in &batch.quarantined {
        ins.quarantine
            .execute(params![source, q.received_at, q.reason, q.raw])?;
    }
    ins.bound_event = last_bound;
    ins.bound_source = Some(p.source.clone());
    ins.bound_inline = matches!(raw_of, RawOf::Inline(_));
    Ok(IngestOutcome {
        accepted,
        duplicates: total - accepted,
        quarantined: batch.quarantined.len(),
    })
}

/// Rollup increments of one group, written once per key at commit. Keyed
/// by mailing first so the common case (one mailing, one minute) finds its
/// entry without allocating.
#[derive(Default)]
struct Rollups {
    minutes: HashMap<String, HashMap<i64, Counters>>,
    bounces: HashMap<(String, i64, String, &'static str, String), u64>,
}

impl Rollups {
    fn add(&mut self, e: &Event, first: bool) {
        let mailing = e.mailing_id.as_deref().unwrap_or_default();
        let minute = e.event_time.div_euclid(60_000);
        let per_minute = match self.minutes.get_mut(mailing) {
            Some(m) => m,
            None => self.minutes.entry(mailing.to_string()).or_default(),
        };
        per_minute
            .entry(minute)
            .or_default()
            .count(e.event_type, first, e.bounce_category);
        if e.event_type == EventType::Bounce {
            let key = (
                mailing.to_string(),
                e.event_time.div_euclid(86_400_000),
                e.domain.as_deref().unwrap_or_default().to_string(),
                e.bounce_category.unwrap_or(BounceKind::Unknown).as_str(),
                e.bounce_reason.as_deref().unwrap_or_default().to_string(),
            );
            *self.bounces.entry(key).or_default() += 1;
        }
    }

    fn write(&self, tx: &Transaction<'_>) -> anyhow::Result<()> {
        static UPSERT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        let upsert = UPSERT.get_or_init(|| {
            let cols = Counters::FIELDS.join(", ");
            let placeholders = (3..3 + Counters::FIELDS.len())
                .map(|i| format!("?{i}"))
                .collect::<Vec<_>>()
                .join(", ");
            let updates = Counters::FIELDS
                .iter()
                .map(|c| format!("{c} = {c} + excluded.{c}"))
                .collect::<Vec<_>>()
                .join(", ");
            format!(
                "INSERT INTO rollup_minute (mailing_id, minute, {cols}) VALUES (?1, ?2, {placeholders}) \
                 ON CONFLICT (mailing_id, minute) DO UPDATE SET {updates}"
            )
        });
        let mut minute = tx.prepare_cached(upsert)?;
        for (mailing, minutes) in &self.minutes {
            for (m, c) in minutes {
                let values = c.to_array().map(|n| n as i64);
                let mut params: Vec<&dyn ToSql> = vec![mailing, m];
                params.extend(values.iter().map(|v| v as &dyn ToSql));
                minute.execute(params.as_slice())?;
            }
        }
        let mut bounce = tx.prepare_cached(
            "INSERT INTO rollup_bounce_day (mailing_id, day, domain, category, reason, count) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
             ON CONFLICT (mailing_id, day, domain, category, reason) DO UPDATE SET count = count + excluded.count",
        )?;
        for ((mailing, day, domain, category, reason), n) in &self.bounces {
            bounce.execute(params![mailing, day, domain, category, reason, *n as i64])?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::parse::parse_body;

    fn event(json: &str) -> Event {
        parse_body(json.as_bytes(), 1_767_000_000_000)
            .unwrap()
            .events
            .remove(0)
    }

    /// The event insert's parameters carry from one request of a group to
    /// the next (see [`insert_batch`]): through changes of source, of raw
    /// body kind (inline or compressed), of columns, a duplicate and a
    /// request with no event, each stored row holds exactly its event's
    /// values.
    #[test]
    fn a_groups_requests_each_store_their_own_values() {
        let mut conn = Connection::open_in_memory().unwrap();
        super::super::schema::migrate(&mut conn).unwrap();
        let dispatch_mailings = DispatchMailings::load(&conn).unwrap();
        let policy = Policy {
            rows: 1_000,
            every: std::time::Duration::from_secs(3_600),
            filter_bytes: 1 << 20,
        };
        let mut firsts = Firsts::load(policy, &conn).unwrap();
        let sent = r#"{"type":"sent","clientId":1,"mailingId":5,"userListId":9,"recipientId":"a","timestamp":1766999000001,"mediaTypesToAddresses":{"EMAIL":"a@one.test"}}"#;
        let bounce = |r: &str| {
            format!(
                r#"{{"type":"bounce","mailingId":6,"recipientId":"{r}","bounceCategory":"soft","reason":"mailbox full","timestamp":1766999000004,"mediaTypesToAddresses":{{"EMAIL":"{r}@two.test"}}}}"#
            )
        };
        let requests = [
            ("a", sent.to_string()),
            ("a", r#"{"type":"open","clientId":1,"mailingId":5,"recipientId":"a","timestamp":1766999000002}"#.to_string()),
            ("b", r#"{"type":"click","mailingId":6,"recipientId":"b","link":"https://l.test/1","timestamp":1766999000003}"#.to_string()),
            ("b", format!("[{},{},{}]", bounce("c"), bounce("d"), bounce("e"))),
            ("b", r#"{"type":"hardbounce","mailingId":6,"recipientId":"c","timestamp":1766999000005,"mailId":"m-1"}"#.to_string()),
            ("a", sent.to_string()),
            ("a", "[1]".to_string()),
            ("a", r#"{"type":"Custom","recipientId":"f"}"#.to_string()),
            ("b", r#"{"type":"open","clientId":2,"mailingId":5,"recipientId":"g","timestamp":1766999000006,"mediaTypesToAddresses":{"SMS":"+4912345"}}"#.to_string()),
        ];
        let tx = conn.transaction().unwrap();
        let mut ins = Inserts::prepare(&tx).unwrap();
        let (mut committed, mut rollups) = (Vec::new(), Rollups::default());
        let mut outcomes = Vec::new();
        let mut expected = Vec::new();
        for (source, body) in &requests {
            let batch = parse_body(body.as_bytes(), 1_767_000_000_000).unwrap();
            let keys = batch.events.iter().map(|e| dedup_key(source, e)).collect();
            let raw =
                RawBody::for_request(bytes::Bytes::from(body.clone()), batch.events.len()).unwrap();
            let compressed = matches!(raw, RawBody::Compressed { .. });
            let (reply, _answer) = oneshot::channel();
            let mut p = Pending {
                source: Arc::from(*source),
                batch,
                raw,
                keys,
                reply,
            };
            let before = committed.len();
            outcomes.push(
                insert_batch(
                    &mut ins,
                    &mut p,
                    &mut committed,
                    &mut rollups,
                    &mut firsts,
                    &dispatch_mailings,
                )
                .unwrap(),
            );
            for c in &committed[before..] {
                expected.push((source.to_string(), body.clone(), compressed, c.clone()));
            }
        }
        drop(ins);
        let accepted: Vec<usize> = outcomes.iter().map(|o| o.accepted).collect();
        assert_eq!(accepted, [1, 1, 1, 3, 1, 0, 0, 1, 1]);
        assert_eq!((outcomes[5].duplicates, outcomes[6].quarantined), (1, 1));
        // The batch of bounces went compressed, the rest inline.
        let kinds: Vec<bool> = expected.iter().map(|x| x.2).collect();
        assert_eq!(
            kinds,
            [false, false, false, true, true, true, false, false, false]
        );

        let mut s = tx
            .prepare(
                "SELECT id, source, type, type_raw, client_id, mailing_id, recipient_list_id, \
                 recipient_id, time_source, media_type, address, domain, link, bounce_category, \
                 bounce_reason, mail_id, event_time, received_at, first_open, first_click, raw, \
                 body_id, raw_start, raw_len FROM events ORDER BY id",
            )
            .unwrap();
        type Row = (Vec<Option<String>>, Vec<Option<i64>>, Option<String>);
        let rows: Vec<Row> = s
            .query_map([], |r| {
                Ok((
                    (1..16).map(|i| r.get(i)).collect::<Result<_, _>>()?,
                    [0, 16, 17, 18, 19, 21, 22, 23]
                        .into_iter()
                        .map(|i| r.get(i))
                        .collect::<Result<_, _>>()?,
                    r.get(20)?,
                ))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(rows.len(), expected.len());
        for (i, ((texts, ints, raw), (source, body, compressed, c))) in
            rows.iter().zip(&expected).enumerate()
        {
            let e = &c.event;
            let want: Vec<Option<String>> = [
                Some(source.as_str()),
                Some(e.event_type.as_str()),
                Some(e.type_raw.as_str()),
                e.client_id.as_deref(),
                e.mailing_id.as_deref(),
                e.recipient_list_id.as_deref(),
                e.recipient_id.as_deref(),
                Some(e.time_source.as_str()),
                e.media_type.as_deref(),
                e.address.as_deref(),
                e.domain.as_deref(),
                e.link.as_deref(),
                e.bounce_category.map(BounceKind::as_str),
                e.bounce_reason.as_deref(),
                e.mail_id.as_deref(),
            ]
            .map(|v| v.map(str::to_string))
            .to_vec();
            assert_eq!(texts, &want, "event {i}");
            let first = |kind| i64::from(c.first && e.event_type == kind);
            assert_eq!(
                ints[..5],
                [
                    Some(c.id),
                    Some(e.event_time),
                    Some(e.received_at),
                    Some(first(EventType::Open)),
                    Some(first(EventType::Click)),
                ],
                "event {i}"
            );
            if *compressed {
                assert_eq!(raw.as_deref(), Some(""), "event {i}");
                assert!(ints[5].is_some(), "event {i}: body id");
                let span = (e.raw.start as i64, e.raw.len() as i64);
                assert_eq!(
                    (ints[6], ints[7]),
                    (Some(span.0), Some(span.1)),
                    "event {i}"
                );
            } else {
                assert_eq!(raw.as_deref(), e.raw_in(body), "event {i}");
                assert_eq!(ints[5..], [None, None, None], "event {i}");
            }
        }
        // The open of `a` after its send is a first open; the click of `b`
        // a first click.
        let firsts: Vec<bool> = expected.iter().map(|x| x.3.first).collect();
        assert_eq!(
            firsts,
            [false, true, true, false, false, false, false, false, true]
        );
    }

    #[test]
    fn event_parameter_indexes_match_the_insert() {
        let mut conn = Connection::open_in_memory().unwrap();
        super::super::schema::migrate(&mut conn).unwrap();
        let stmt = conn.prepare(EVENT_INSERT).unwrap();
        let expected = [
            (":dedup_key", param::KEY),
            (":source", param::SOURCE),
            (":type", param::TYPE),
            (":type_raw", param::TYPE_RAW),
            (":client_id", param::CLIENT_ID),
            (":mailing_id", param::MAILING_ID),
            (":recipient_list_id", param::RECIPIENT_LIST_ID),
            (":recipient_id", param::RECIPIENT_ID),
            (":event_time", param::EVENT_TIME),
            (":time_source", param::TIME_SOURCE),
            (":received_at", param::RECEIVED_AT),
            (":media_type", param::MEDIA_TYPE),
            (":address", param::ADDRESS),
            (":domain", param::DOMAIN),
            (":link", param::LINK),
            (":bounce_category", param::BOUNCE_CATEGORY),
            (":bounce_reason", param::BOUNCE_REASON),
            (":mail_id", param::MAIL_ID),
            (":first_open", param::FIRST_OPEN),
            (":first_click", param::FIRST_CLICK),
            (":raw", param::RAW),
            (":body_id", param::BODY_ID),
            (":raw_start", param::RAW_START),
            (":raw_len", param::RAW_LEN),
        ];
        assert_eq!(stmt.parameter_count(), expected.len());
        for (name, index) in expected {
            assert_eq!(stmt.parameter_index(name).unwrap(), Some(index), "{name}");
        }
    }

    #[test]
    fn dedup_key_covers_the_composite_fields() {
        let base = event(
            r#"{"type":"click","mailingId":1,"recipientId":"r","timestamp":1766999000,"link":"a"}"#,
        );
        let same = event(
            r#"{"type":"CLICK","mailing_id":"1","recipientId":"r","timestamp":1766999000000,"link":"a","extra":1}"#,
        );
        assert_eq!(dedup_key("default", &base), dedup_key("default", &same));
        for other in [
            r#"{"type":"click","mailingId":2,"recipientId":"r","timestamp":1766999000,"link":"a"}"#,
            r#"{"type":"click","mailingId":1,"recipientId":"s","timestamp":1766999000,"link":"a"}"#,
            r#"{"type":"click","mailingId":1,"recipientId":"r","timestamp":1766999001,"link":"a"}"#,
            r#"{"type":"click","mailingId":1,"recipientId":"r","timestamp":1766999000,"link":"b"}"#,
            r#"{"type":"open","mailingId":1,"recipientId":"r","timestamp":1766999000,"link":"a"}"#,
            r#"{"type":"click","mailingId":1,"recipientId":"r","timestamp":1766999000,"link":"a","userListId":3}"#,
        ] {
            assert_ne!(
                dedup_key("default", &base),
                dedup_key("default", &event(other)),
                "{other}"
            );
        }
        assert_ne!(dedup_key("default", &base), dedup_key("eu", &base));
        // Length prefixes: ("ab", "c") differs from ("a", "bc").
        let a =
            event(r#"{"type":"sent","mailingId":"ab","recipientId":"c","timestamp":1766999000}"#);
        let b =
            event(r#"{"type":"sent","mailingId":"a","recipientId":"bc","timestamp":1766999000}"#);
        assert_ne!(dedup_key("s", &a), dedup_key("s", &b));
    }

    /// Keys already stored must match the keys of re-deliveries after an
    /// upgrade: any change to how keys are computed must give these bytes
    /// (computed by the implementation of schema versions 1–7).
    #[test]
    fn dedup_keys_stay_what_stores_hold() {
        let hex = |k: [u8; 16]| k.iter().map(|b| format!("{b:02x}")).collect::<String>();
        let cases = [
            (
                "default",
                r#"{"type":"click","clientId":7,"mailingId":4711,"userListId":12,"recipientId":"r-1","timestamp":1767000000123,"link":"https://example.com/offer"}"#,
            ),
            (
                "eu",
                r#"{"type":"sent","mailingId":"ab","timestamp":1766999000}"#,
            ),
            (
                "default",
                r#"{"type":"bounce","recipientId":"9","mediaTypesToAddresses":{"EMAIL":"a@b.example"},"bounceType":"hard","timestamp":"2025-12-28T10:00:00Z"}"#,
            ),
            (
                "s",
                &format!(
                    r#"{{"type":"click","mailingId":"m","recipientId":"r","timestamp":1766999000,"link":"https://example.com/{}"}}"#,
                    "x".repeat(2000)
                ),
            ),
        ];
        let want = [
            "019b6968467b3c943898ab264630b117",
            "019b695903c0b4c8027067f7e065d9a4",
            "019b64668900043ac4e50d211837b5e2",
            "019b695903c0c22b06ae24e4c4b3e861",
        ];
        for ((source, json), want) in cases.iter().zip(want) {
            assert_eq!(hex(dedup_key(source, &event(json))), want, "{json}");
        }
    }
}
