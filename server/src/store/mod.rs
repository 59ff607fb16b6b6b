//! The durable store: one SQLite file (`mailpulse.db`) in the data dir, in
//! WAL mode. All writes go through one writer thread ([`writer`]) that
//! commits many concurrent requests in one transaction (group commit) and
//! answers each only once its events are on disk (the WAL's fsync runs on
//! a thread of its own, [`sync`], while the next group commits); reads use
//! a small pool of read-only connections. This module owns the handle the rest of the
//! server uses; `docs/store.md` describes the schema.

pub mod dispatch;
mod firsts;
pub mod raw;
pub mod retention;
pub mod schema;
pub mod spans;
mod sync;
mod writer;

use crate::config::{Config, StoreConfig, Synchronous};
use crate::ingest::parse::ParsedBatch;
use crate::metrics::LiveHandle;
use bytes::Bytes;
use r2d2_sqlite::rusqlite::{Connection, OpenFlags};
use r2d2_sqlite::SqliteConnectionManager;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

pub use r2d2_sqlite::rusqlite;
pub use writer::{dedup_key, Committed, IngestOutcome, Param};

/// File name of the database inside the data dir.
pub const DB_FILE: &str = "mailpulse.db";

/// Why a write was not done, or not known to be durable. Either way the
/// client may safely retry: a retry never stores an event twice.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Nothing was committed.
    #[error("the store is busy: {0} requests are already waiting to be written")]
    Busy(usize),
    /// Nothing was committed.
    #[error("the store could not commit: {0}")]
    Failed(String),
    /// Nothing was committed.
    #[error("the store is shutting down")]
    Closed,
    /// Committed, but the fsync that should have made it durable failed
    /// (now or earlier), so whether it survives a power loss is unknown.
    /// Every later write gets this too, until mailpulse restarts.
    #[error("the store could not sync its log to disk: {0}")]
    NotDurable(String),
}

/// Counters of the store's work, read by `/metrics`.
#[derive(Debug)]
pub struct StoreStats {
    pub events_accepted: AtomicU64,
    pub duplicates: AtomicU64,
    pub quarantined: AtomicU64,
    pub commits: AtomicU64,
    pub commit_failures: AtomicU64,
    /// Sum of commit durations, in microseconds.
    pub commit_micros_total: AtomicU64,
    pub busy_rejections: AtomicU64,
    /// First opens/clicks decided and committed with their events but not
    /// yet written to `engagement_firsts` (held in memory; see
    /// `store/firsts.rs`).
    pub firsts_unwritten: AtomicU64,
    /// The memory of the new mailings' filters of first opens/clicks
    /// (estimated), in bytes.
    pub firsts_filter_bytes: AtomicU64,
    /// Claims of an open or click not held in memory that looked
    /// `engagement_firsts` up (the rest were told "not there" by a filter).
    pub firsts_table_lookups: AtomicU64,
    /// Group commit durations (inserts, rollups, writing the WAL frames;
    /// not the fsync after it), in seconds.
    pub commit_seconds: prometheus_client::metrics::histogram::Histogram,
    /// From handing a request's events to the writer until they are
    /// durably committed (waiting in the queue, the group commit, then the
    /// WAL fsync), in seconds.
    pub ingest_seconds: prometheus_client::metrics::histogram::Histogram,
    /// WAL fsyncs after commits (`synchronous = "full"`), in seconds.
    pub wal_sync_seconds: prometheus_client::metrics::histogram::Histogram,
}

impl Default for StoreStats {
    fn default() -> Self {
        StoreStats {
            events_accepted: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            quarantined: AtomicU64::new(0),
            commits: AtomicU64::new(0),
            commit_failures: AtomicU64::new(0),
            commit_micros_total: AtomicU64::new(0),
            busy_rejections: AtomicU64::new(0),
            firsts_unwritten: AtomicU64::new(0),
            firsts_filter_bytes: AtomicU64::new(0),
            firsts_table_lookups: AtomicU64::new(0),
            commit_seconds: store_seconds(),
            ingest_seconds: store_seconds(),
            wal_sync_seconds: store_seconds(),
        }
    }
}

/// A histogram of store durations in seconds: 0.25 ms … ~4 s.
fn store_seconds() -> prometheus_client::metrics::histogram::Histogram {
    use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
    Histogram::new(exponential_buckets(0.00025, 2.0, 15))
}

impl StoreStats {
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

pub type ReadPool = r2d2::Pool<SqliteConnectionManager>;

/// A cheap-to-clone handle on the store.
#[derive(Clone, Debug)]
pub struct Store {
    tx: mpsc::Sender<writer::Cmd>,
    capacity: usize,
    reads: ReadPool,
    pub stats: Arc<StoreStats>,
    /// Held by the writer for each group; [`Store::pause_writes`] takes it
    /// to stop writes (for a consistent copy of the file, and in tests).
    gate: Arc<Mutex<()>>,
    path: PathBuf,
    stop_checkpoints: Arc<std::sync::atomic::AtomicBool>,
}

/// Stops the writer while held. Requests queue meanwhile, and get 503 once
/// the queue is full.
pub struct WritePause<'a>(#[allow(dead_code)] MutexGuard<'a, ()>);

impl Store {
    /// Opens (creating and migrating as needed) the store in `config.data_dir`
    /// and starts its writer thread. Committed events are handed to `live`.
    pub fn open(config: &Config, live: LiveHandle) -> anyhow::Result<Store> {
        std::fs::create_dir_all(&config.data_dir).map_err(|e| {
            anyhow::anyhow!("cannot create data dir {}: {e}", config.data_dir.display())
        })?;
        let path = config.data_dir.join(DB_FILE);
        let mut conn = open_writer(&path, &config.store)?;
        schema::migrate(&mut conn)?;
        let started = Instant::now();
        let (read, recovered) = firsts::recover(&mut conn)?;
        if read > 0 {
            tracing::info!(
                events = read,
                firsts = recovered,
                ms = started.elapsed().as_millis() as u64,
                "first opens/clicks recovered from the events after the last written"
            );
        }

        let manager = SqliteConnectionManager::file(&path)
            .with_flags(OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
            .with_init(|c| c.busy_timeout(Duration::from_secs(5)));
        let reads = r2d2::Pool::builder()
            .max_size(4)
            .min_idle(Some(1))
            .build(manager)?;

        let capacity = config.ingest.queue_capacity;
        let (tx, rx) = mpsc::channel(capacity);
        let stats = Arc::new(StoreStats::default());
        let gate = Arc::new(Mutex::new(()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let wal_restart = Arc::new(std::sync::atomic::AtomicBool::new(false));
        checkpointer(&path, &config.store, stop.clone(), wal_restart.clone())?;
        writer::spawn(
            conn,
            rx,
            live,
            stats.clone(),
            gate.clone(),
            writer::Tuning {
                limits: writer::GroupLimits {
                    requests: config.store.max_group_requests,
                    items: config.store.max_group_events,
                },
                firsts: firsts::Policy {
                    rows: config.store.firsts_flush_rows,
                    every: Duration::from_secs(config.store.firsts_flush_secs),
                    filter_bytes: config.store.firsts_filter_mib.saturating_mul(1 << 20),
                },
            },
            writer::WalDuties {
                restart: wal_restart,
                sync: (config.store.synchronous == Synchronous::Full).then(|| wal_path(&path)),
            },
        )?;
        Ok(Store {
            tx,
            capacity,
            reads,
            stats,
            gate,
            path,
            stop_checkpoints: stop,
        })
    }

    /// Stores a batch parsed from `body` (its events' raw JSON are spans of
    /// it) and answers once it is durably committed. Never waits for room
    /// in the queue: a full queue is [`StoreError::Busy`].
    pub async fn ingest(
        &self,
        source: Arc<str>,
        body: Bytes,
        batch: ParsedBatch,
    ) -> Result<IngestOutcome, StoreError> {
        let (reply, answer) = oneshot::channel();
        // Hashing and compressing run on the request's thread, not the
        // single writer's.
        let keys = batch.events.iter().map(|e| dedup_key(&source, e)).collect();
        let raw = raw::RawBody::for_request(body, batch.events.len())
            .map_err(|e| StoreError::Failed(format!("could not compress the body: {e}")))?;
        let handed = Instant::now();
        let cmd = writer::Cmd::Ingest {
            source,
            batch,
            raw,
            keys,
            reply,
        };
        match self.tx.try_send(cmd) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.stats.busy_rejections.fetch_add(1, Ordering::Relaxed);
                return Err(StoreError::Busy(self.capacity));
            }
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(StoreError::Closed),
        }
        let outcome = answer.await.map_err(|_| StoreError::Closed)?;
        self.stats
            .ingest_seconds
            .observe(handed.elapsed().as_secs_f64());
        outcome
    }

    /// Deletes raw events received before `events_before` and rollups (with
    /// first-open/click records of finished mailings) before
    /// `rollups_before` (both ms). Works in small transactions, so ingest
    /// keeps flowing meanwhile. Returns the number of rows deleted.
    pub async fn apply_retention(
        &self,
        events_before: i64,
        rollups_before: i64,
    ) -> Result<u64, StoreError> {
        let boundary = {
            let reads = self.reads.clone();
            tokio::task::spawn_blocking(move || last_id_received_before(&reads, events_before))
                .await
                .map_err(|e| StoreError::Failed(e.to_string()))?
                .map_err(|e| StoreError::Failed(e.to_string()))?
        };
        let mut deleted = 0;
        let mut step = writer::RetentionStep::Events {
            up_to_id: boundary.unwrap_or(0),
            events_before,
            last_body: None,
        };
        loop {
            let (reply, answer) = oneshot::channel();
            self.tx
                .send(writer::Cmd::Retention {
                    step: step.clone(),
                    rollups_before,
                    reply,
                })
                .await
                .map_err(|_| StoreError::Closed)?;
            let (n, next) = answer.await.map_err(|_| StoreError::Closed)??;
            deleted += n;
            match next {
                Some(s) => step = s,
                None => break,
            }
        }
        Ok(deleted)
    }

    /// Saves completed 5-minute webhook-lag histograms (`(scope, slot,
    /// bytes)`), so a restart can rebuild the 24 h lag window. Best effort:
    /// when the writer is busy they are tried again later.
    pub fn save_lag_slots(&self, slots: Vec<(String, i64, Vec<u8>)>) -> bool {
        use writer::Param;
        let statements = slots
            .into_iter()
            .map(|(scope, slot, bytes)| {
                (
                    "INSERT INTO lag_5m (scope, slot, histogram) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (scope, slot) DO UPDATE SET histogram = excluded.histogram",
                    vec![
                        Param::Text(Some(scope)),
                        Param::Int(slot),
                        Param::Blob(bytes),
                    ],
                )
            })
            .collect();
        self.tx
            .try_send(writer::Cmd::Upsert {
                statements,
                reply: None,
            })
            .is_ok()
    }

    /// Runs statements in one transaction through the writer; answers once
    /// committed.
    pub async fn execute(
        &self,
        statements: Vec<(&'static str, Vec<Param>)>,
    ) -> Result<(), StoreError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(writer::Cmd::Upsert {
                statements,
                reply: Some(reply),
            })
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// As [`Store::execute`] without waiting: false when the writer's queue
    /// is full (the caller keeps the statements and tries again).
    pub fn execute_nowait(&self, statements: Vec<(&'static str, Vec<Param>)>) -> bool {
        self.tx
            .try_send(writer::Cmd::Upsert {
                statements,
                reply: None,
            })
            .is_ok()
    }

    /// Records reported transactional dispatches; answers once committed.
    pub async fn record_dispatches(
        &self,
        reports: Vec<dispatch::DispatchReport>,
    ) -> Result<dispatch::DispatchOutcome, StoreError> {
        let (reply, answer) = oneshot::channel();
        match self.tx.try_send(writer::Cmd::Dispatches { reports, reply }) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.stats.busy_rejections.fetch_add(1, Ordering::Relaxed);
                return Err(StoreError::Busy(self.capacity));
            }
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(StoreError::Closed),
        }
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Stores a mailing's class and name (set through the API).
    pub async fn save_mailing_settings(
        &self,
        id: &str,
        class: Option<&str>,
        name: Option<&str>,
    ) -> Result<(), StoreError> {
        use writer::Param;
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(writer::Cmd::Upsert {
                statements: vec![(
                    "INSERT INTO mailing_settings (mailing_id, class, name, updated_at) \
                     VALUES (?1, ?2, ?3, ?4) ON CONFLICT (mailing_id) DO UPDATE SET \
                     class = excluded.class, name = excluded.name, updated_at = excluded.updated_at",
                    vec![
                        Param::Text(Some(id.to_string())),
                        Param::Text(class.map(str::to_string)),
                        Param::Text(name.map(str::to_string)),
                        Param::Int(chrono::Utc::now().timestamp_millis()),
                    ],
                )],
                reply: Some(reply),
            })
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// A read-only connection from the pool (blocking; use from
    /// `spawn_blocking`).
    pub fn reader(&self) -> anyhow::Result<r2d2::PooledConnection<SqliteConnectionManager>> {
        Ok(self.reads.get()?)
    }

    /// Runs `f` on a pooled read-only connection off the async runtime.
    pub async fn read<T, F>(&self, f: F) -> anyhow::Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> anyhow::Result<T> + Send + 'static,
    {
        let reads = self.reads.clone();
        tokio::task::spawn_blocking(move || {
            let conn = reads.get()?;
            f(&conn)
        })
        .await?
    }

    /// Commands waiting in the writer's queue (not counting the group
    /// being written).
    pub fn queued(&self) -> usize {
        self.capacity - self.tx.capacity()
    }

    /// How many commands the writer's queue holds before ingest answers 503.
    pub fn queue_capacity(&self) -> usize {
        self.capacity
    }

    /// Stops writes while the returned guard lives.
    pub fn pause_writes(&self) -> WritePause<'_> {
        WritePause(self.gate.lock().unwrap_or_else(|p| p.into_inner()))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Asks the writer to finish what is queued and stop; waits for it.
    pub async fn close(&self) {
        self.stop_checkpoints.store(true, Ordering::Relaxed);
        let (reply, done) = oneshot::channel();
        if self.tx.send(writer::Cmd::Shutdown { reply }).await.is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(30), done).await;
        }
    }
}

/// The writer's connection: WAL, the configured durability, and a busy
/// timeout for the rare moments a reader holds the WAL. Automatic
/// checkpoints are off: [`checkpointer`] runs them on another thread, so
/// copying pages back into the database never stalls a commit.
fn open_writer(path: &Path, config: &StoreConfig) -> anyhow::Result<Connection> {
    let conn = Connection::open(path)
        .map_err(|e| anyhow::anyhow!("cannot open store {}: {e}", path.display()))?;
    conn.busy_timeout(WRITER_BUSY_TIMEOUT)?;
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        anyhow::bail!("store {} cannot use WAL mode (got {mode})", path.display());
    }
    // FULL is kept by fsyncing the WAL after each commit on a thread of its
    // own ([`sync`]), so the commit itself does not sync.
    let pragma = match config.synchronous {
        Synchronous::Full => Synchronous::Normal.pragma(),
        other => other.pragma(),
    };
    conn.pragma_update(None, "synchronous", pragma)?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    // After a checkpoint restarts the WAL, trim the file to 1 GiB at most.
    // Trimming it to 64 MiB on every restart cost the writer ~14 % of its
    // time under batch load in ftruncate (which waits for writeback) and
    // in allocating blocks again for the frames written after it, and
    // stalled the first commit after a pause for ~350 ms.
    conn.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT)?;
    conn.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)?;
    conn.pragma_update(None, "mmap_size", WRITER_MMAP_BYTES)?;
    Ok(conn)
}

/// SQLite's write-ahead log next to the database file.
fn wal_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push("-wal");
    PathBuf::from(name)
}

/// How long the writer waits for a reader holding the WAL.
const WRITER_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Largest WAL file kept after a checkpoint restarts it, in bytes: what
/// `WAL_RESTART_FRAMES` lets the WAL grow to, so that it is overwritten
/// in place rather than trimmed and regrown.
const WAL_SIZE_LIMIT: i64 = 1024 * 1024 * 1024;

/// WAL frames (pages) after which the writer restarts the WAL itself
/// (1 GiB with 4 KiB pages). Under continuous load the passive checkpoints
/// never copy the last frames before new ones arrive, so SQLite never
/// restarts the WAL: it grew to 1.7 GB in a 6-second batch run, and without
/// a bound it would grow for as long as the load lasts. A restart holds the
/// writer while it copies what the passive checkpoints have not (about
/// 20 ms of commits) and fsyncs the database: 1–15 ms in most restarts at
/// half the peak batch rate here, 140 ms at worst seen. When the load
/// pauses, even briefly, the passive checkpoints catch up and SQLite
/// restarts the WAL at no cost.
const WAL_RESTART_FRAMES: i64 = 256 * 1024;

/// The writer's page cache, in KiB (4 MiB, 1,024 pages): room for the
/// B-trees' interior pages and the hot right-hand leaves that each group
/// commit touches. Not more, because of how SQLite ends a transaction while
/// the database is under 1 GiB: a page split parks a page at the number of
/// the 1 GiB lock page for a moment (`balance_nonroot` sorting new pages),
/// so the cache's highest page number lies past the end of the database,
/// and the commit then walks the whole cache to drop pages past the end
/// (`pcache1TruncateUnsafe`). With 64 MiB (16K pages) that walk took 22–28 %
/// of the writer's CPU time, 8–10 µs per single-event request against
/// 6.3–7 µs with 4 MiB (perf and gdb on the release binary; see
/// docs/store.md).
const WRITER_CACHE_KIB: i64 = 4 * 1024;

/// How much of the database file the writer reads through a memory map
/// instead of `pread`: all of it (SQLite maps the file's size, up to this;
/// `.cargo/config.toml` raises SQLite's own cap from 2 GiB to this). Pages
/// whose newest version is in the WAL are still read from the WAL. Each
/// first open or click is looked up in `engagement_firsts`, a random leaf
/// that the 4 MiB cache above rarely holds; through the map a miss costs a
/// page-table walk instead of a syscall and a 4 KiB copy into the cache.
/// Measured (docs/store.md, "Reading through a memory map"): 100-event
/// batches closed loop, 7 interleaved rounds, ×1.042 events/s (higher in 5
/// of 7) with the writer's CPU per request ×0.94; the half-peak tails on
/// a 2.5–5.5 GB store are better in 6 of 7 pairs of runs, but too noisy to
/// give a figure. SQLite never writes through the map, so a commit is as
/// durable as before. An I/O error on a mapped page arrives as SIGBUS
/// instead of an error code and kills the process; a restart recovers from
/// the WAL, and nothing answered 200 is lost.
const WRITER_MMAP_BYTES: i64 = 1 << 40;

/// Checkpoints what the passive checkpoints have not copied yet and starts
/// the WAL over, on the writer's connection between two commits. Readers in
/// the middle of a query are waited for briefly; when one takes longer the
/// restart is deferred (`Ok(false)`) to the next signal, rather than
/// holding every commit behind, say, a CSV export.
fn restart_wal(conn: &Connection) -> anyhow::Result<bool> {
    conn.busy_timeout(Duration::from_millis(50))?;
    // (busy, frames in the WAL, frames checkpointed)
    let busy = conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |r| r.get::<_, i64>(0));
    conn.busy_timeout(WRITER_BUSY_TIMEOUT)?;
    Ok(busy? == 0)
}

/// How often the checkpointer runs. Each checkpoint that copied pages is
/// followed by an fsync of the database file, so the database's writeback
/// reaches the disk in small pieces, each no more than what 20 ms of
/// commits wrote (about 1 MB of pages at half the peak batch rate; most
/// syncs take under 5 ms). A commit's WAL fsync queued behind one waits
/// for it. With 250 ms, and a sync only once the WAL was large, the first
/// sync of each WAL cycle carried seconds of writeback and the commits
/// behind it waited 50–250 ms (docs/store.md).
const CHECKPOINT_EVERY: Duration = Duration::from_millis(20);

/// The checkpointer's pause when the WAL has nothing new: doubled after
/// each idle look up to this, so an idle server does not wake 50 times a
/// second (0.5 % of a core), and back to `CHECKPOINT_EVERY` once commits
/// come again. The first checkpoint of a burst then copies and syncs at
/// most 100 ms of commits.
const CHECKPOINT_IDLE_MAX: Duration = Duration::from_millis(100);

/// Copies committed WAL pages back into the database every 20 ms (passive:
/// never blocks the writer or readers) and then syncs the database file,
/// off the writer's path. When the load pauses the checkpoints catch up and
/// the writer restarts the WAL from its beginning on its next commit; when
/// it does not and the WAL passes `WAL_RESTART_FRAMES`, the checkpointer
/// raises `wal_restart` so the writer restarts it between two commits,
/// with little left to copy or sync.
///
/// SQLite itself syncs the database file only when a checkpoint has copied
/// the whole WAL, which never happens while commits keep coming: the copied
/// pages would pile up in the OS's page cache until a restart or the
/// kernel's writeback wrote them all at once, with the commits' fsyncs
/// queued behind (0.3–0.9 s stalls under sustained load).
fn checkpointer(
    path: &Path,
    config: &StoreConfig,
    stop: Arc<std::sync::atomic::AtomicBool>,
    wal_restart: Arc<std::sync::atomic::AtomicBool>,
) -> anyhow::Result<()> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.pragma_update(None, "synchronous", config.synchronous.pragma())?;
    // fsync through any descriptor of the file writes back all its pages.
    let db = std::fs::File::open(path)?;
    std::thread::Builder::new()
        .name("store-checkpoint".into())
        .spawn(move || {
            let mut synced_up_to = 0;
            let mut pause = CHECKPOINT_EVERY;
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(pause);
                pause = (pause * 2).min(CHECKPOINT_IDLE_MAX);
                // (busy, frames in the WAL, frames checkpointed)
                let started = Instant::now();
                let res = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                    Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
                });
                match res {
                    Ok((frames, copied)) => {
                        // A checkpoint that copied the whole WAL was synced
                        // by SQLite; one that copied nothing needs no sync.
                        if copied != synced_up_to {
                            pause = CHECKPOINT_EVERY;
                            // The counts start over with the WAL.
                            let fresh = if copied > synced_up_to { copied - synced_up_to } else { copied };
                            let synced = if copied < frames { db.sync_data() } else { Ok(()) };
                            match synced {
                                Ok(()) => synced_up_to = copied,
                                Err(e) => tracing::warn!(error = %e, "store database sync failed; will retry"),
                            }
                            let took = started.elapsed();
                            if took > TRACE_OVER {
                                tracing::debug!(
                                    ms = took.as_millis() as u64,
                                    frames = fresh,
                                    "store checkpoint and database sync over 10 ms"
                                );
                            }
                        }
                        if frames > WAL_RESTART_FRAMES {
                            wal_restart.store(true, Ordering::Relaxed)
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "store checkpoint failed; will retry"),
                }
            }
        })?;
    Ok(())
}

/// Commits, WAL fsyncs and checkpoints that take longer than this are
/// traced at debug level (`RUST_LOG=mailpulse::store=debug`), so that a
/// latency tail can be matched with what the store did at the time.
pub(crate) const TRACE_OVER: Duration = Duration::from_millis(10);

/// The smallest and largest event ids. Two subqueries, because SQLite
/// answers a lone `MIN(id)` or `MAX(id)` from the ends of the table's
/// B-tree but `SELECT MIN(id), MAX(id)` by reading every row: on a store
/// of millions of events that took the retention pass a second of a full
/// core, and stalled ingest behind it.
const EVENT_ID_BOUNDS: &str = "SELECT (SELECT MIN(id) FROM events), (SELECT MAX(id) FROM events)";

/// The first event id received at or after `since`, by binary search over
/// ids: ids grow with arrival, so `received_at` does too (up to the few ms
/// between a request's arrival and its commit). No index needed.
pub fn first_id_received_since(conn: &Connection, since: i64) -> anyhow::Result<Option<i64>> {
    let (lo, hi): (Option<i64>, Option<i64>) =
        conn.query_row(EVENT_ID_BOUNDS, [], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let (Some(mut lo), Some(mut hi)) = (lo, hi) else {
        return Ok(None);
    };
    let mut at =
        conn.prepare_cached("SELECT received_at FROM events WHERE id >= ?1 ORDER BY id LIMIT 1")?;
    let mut received_at_or_after = |id: i64| -> anyhow::Result<Option<i64>> {
        let mut rows = at.query([id])?;
        Ok(match rows.next()? {
            Some(r) => Some(r.get(0)?),
            None => None,
        })
    };
    if received_at_or_after(hi)?.is_none_or(|t| t < since) {
        return Ok(None);
    }
    // Invariant: the row at/after `hi` is recent enough; find the first.
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        match received_at_or_after(mid)? {
            Some(t) if t >= since => hi = mid,
            _ => lo = mid + 1,
        }
    }
    Ok(Some(lo))
}

/// The largest event id received before `cutoff`, if any.
fn last_id_received_before(reads: &ReadPool, cutoff: i64) -> anyhow::Result<Option<i64>> {
    let conn = reads.get()?;
    Ok(match first_id_received_since(&conn, cutoff)? {
        Some(first_new) => Some(first_new - 1),
        None => conn.query_row("SELECT MAX(id) FROM events", [], |r| r.get(0))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use r2d2_sqlite::rusqlite::params;

    /// The bundled SQLite is built by the same cargo invocation as this
    /// crate, so the flags `.cargo/config.toml` hands its build script are
    /// visible here too: a guard against losing `fdatasync` (see
    /// docs/store.md) by editing that file.
    #[test]
    fn sqlite_is_built_to_use_fdatasync() {
        let flags = option_env!("LIBSQLITE3_FLAGS").unwrap_or_default();
        assert!(
            flags.split_whitespace().any(|f| f == "-DHAVE_FDATASYNC=1"),
            "LIBSQLITE3_FLAGS is {flags:?}"
        );
    }

    /// The writer reads through a memory map of the whole size asked for:
    /// SQLite quietly lowers it to the cap it was built with (2 GiB unless
    /// `.cargo/config.toml` raises it; 0 turns maps off).
    #[test]
    fn writer_reads_through_a_memory_map() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open_writer(&dir.path().join("m.db"), &StoreConfig::default()).unwrap();
        let size: i64 = conn
            .query_row("PRAGMA mmap_size", [], |r| r.get(0))
            .unwrap();
        assert_eq!(size, WRITER_MMAP_BYTES);
    }

    /// The lines of SQLite's plan for `sql`.
    fn plan(conn: &Connection, sql: &str) -> Vec<String> {
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        for i in 1..=stmt.parameter_count() {
            stmt.raw_bind_parameter(i, 0).unwrap();
        }
        let mut rows = stmt.raw_query();
        let mut lines = Vec::new();
        while let Some(row) = rows.next().unwrap() {
            lines.push(row.get(3).unwrap());
        }
        lines
    }

    #[test]
    fn finding_ids_by_receive_time_reads_no_whole_table() {
        let mut conn = Connection::open_in_memory().unwrap();
        schema::migrate(&mut conn).unwrap();
        for sql in [
            EVENT_ID_BOUNDS,
            "SELECT received_at FROM events WHERE id >= ?1 ORDER BY id LIMIT 1",
        ] {
            let plan = plan(&conn, sql);
            assert!(
                plan.iter().all(|l| !l.starts_with("SCAN events")),
                "{sql}: {plan:?}"
            );
        }
        // The combined aggregate is the one that reads every row.
        let both = plan(&conn, "SELECT MIN(id), MAX(id) FROM events");
        assert!(
            both.iter().any(|l| l.starts_with("SCAN events")),
            "{both:?}"
        );

        let insert = |id: i64, received_at: i64| {
            conn.execute(
                "INSERT INTO events (id, dedup_key, source, type, type_raw, event_time, \
                 time_source, received_at, raw) VALUES (?1, ?1, 's', 'sent', 'sent', 0, 'received', ?2, '')",
                params![id, received_at],
            )
            .unwrap();
        };
        assert_eq!(first_id_received_since(&conn, 0).unwrap(), None);
        for id in 5..=40 {
            insert(id, id * 10);
        }
        assert_eq!(first_id_received_since(&conn, 0).unwrap(), Some(5));
        assert_eq!(first_id_received_since(&conn, 201).unwrap(), Some(21));
        assert_eq!(first_id_received_since(&conn, 400).unwrap(), Some(40));
        assert_eq!(first_id_received_since(&conn, 401).unwrap(), None);
    }

    fn frames(conn: &Connection) -> i64 {
        conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get(1))
            .unwrap()
    }

    #[test]
    fn a_wal_restart_starts_the_wal_over_and_waits_for_no_long_reader() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let writer = open_writer(&path, &StoreConfig::default()).unwrap();
        writer
            .execute_batch("CREATE TABLE t (x BLOB); BEGIN;")
            .unwrap();
        for _ in 0..200 {
            writer
                .execute("INSERT INTO t VALUES (zeroblob(4000))", [])
                .unwrap();
        }
        writer.execute_batch("COMMIT;").unwrap();
        assert!(frames(&writer) > 200);

        // A reader in the middle of a transaction: deferred, not blocked.
        let reader = Connection::open(&path).unwrap();
        reader
            .execute_batch("BEGIN; SELECT count(*) FROM t;")
            .unwrap();
        writer.execute("INSERT INTO t VALUES (1)", []).unwrap();
        let started = std::time::Instant::now();
        assert!(!restart_wal(&writer).unwrap());
        assert!(started.elapsed() < Duration::from_secs(2));
        reader.execute_batch("COMMIT;").unwrap();

        // Without one: the next commit writes from the WAL's beginning.
        assert!(restart_wal(&writer).unwrap());
        writer.execute("INSERT INTO t VALUES (2)", []).unwrap();
        assert!(frames(&writer) < 10, "{}", frames(&writer));
        let n: i64 = reader
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 202);
    }
}
