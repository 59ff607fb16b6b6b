//! Pipelined durability for `synchronous = "full"`. SQLite's own FULL mode
//! fsyncs the WAL inside every commit, so the single writer sits idle for
//! the fsync (about a third of each commit at the peak of 100-event
//! batches on this class of disk) while requests queue behind it. Instead
//! the writer commits with SQLite's NORMAL mode (the WAL frames are
//! written, not synced) and hands the commit's answers to this thread,
//! which fsyncs the WAL file and only then answers; meanwhile the writer
//! already commits the next group. One fsync covers every commit written
//! before it, so a slow fsync makes the next one cover more commits, not
//! the queue longer.
//!
//! While an fsync is in flight, a group that is not full keeps its
//! transaction open: the writer inserts what it has, waits until this
//! thread is free ([`Syncer::wait_free`]), takes in what arrived meanwhile
//! and only then commits. Those requests would wait for the next fsync
//! anyway, so they lose only the time to insert what arrived last; in
//! exchange there is one commit per fsync instead of several small ones
//! (each with its own WAL frames, `BEGIN`/`COMMIT`, rollup and span rows),
//! and the writer is woken once per fsync rather than per request. Under
//! single-event load this cut the writer's CPU per request by a fifth.
//!
//! Why this is as durable as FULL: WAL recovery replays committed frames
//! whose checksums chain correctly and stops at the first that does not, so
//! a commit whose frames were synced survives power loss, and one that was
//! not synced was never answered 200. A checkpoint in NORMAL mode syncs the
//! WAL before copying it into the database and syncs the database after,
//! so restarting the WAL never loses synced frames either.

use super::StoreStats;
use std::fs::File;
use std::path::PathBuf;
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Work to run once the commits before it are on disk (`Ok`) or could not
/// be synced (`Err`, the reason).
pub(crate) type AfterSync = Box<dyn FnOnce(Result<(), String>) + Send>;

pub(crate) struct Syncer {
    tx: Option<mpsc::Sender<AfterSync>>,
    thread: Option<JoinHandle<()>>,
    busy: Arc<Busy>,
}

/// Whether the thread has an fsync to run: set when a job is handed over,
/// cleared (waking the writer) once an fsync is done and no job waits for
/// the next one.
#[derive(Default)]
struct Busy {
    busy: Mutex<bool>,
    free: Condvar,
}

impl Busy {
    fn set(&self, busy: bool) {
        *self.busy.lock().unwrap_or_else(|p| p.into_inner()) = busy;
        if !busy {
            self.free.notify_all();
        }
    }
}

impl Syncer {
    /// Starts the thread that syncs `wal` (the database's `-wal` file).
    pub fn spawn(wal: PathBuf, stats: Arc<StoreStats>) -> std::io::Result<Syncer> {
        let (tx, rx) = mpsc::channel::<AfterSync>();
        let busy = Arc::new(Busy::default());
        let thread = {
            let busy = busy.clone();
            std::thread::Builder::new()
                .name("store-sync".into())
                .spawn(move || run(wal, rx, &stats, &busy))?
        };
        Ok(Syncer {
            tx: Some(tx),
            thread: Some(thread),
            busy,
        })
    }

    /// Runs `job` after the next fsync of the WAL.
    pub fn after_sync(&self, job: AfterSync) {
        match &self.tx {
            Some(tx) => {
                // Before the send: the thread clears it only after a round
                // that finds no job left, so it cannot stay set for a job
                // already synced.
                self.busy.set(true);
                if let Err(mpsc::SendError(job)) = tx.send(job) {
                    self.busy.set(false);
                    job(Err("the store's sync thread stopped".into()));
                }
            }
            None => job(Err("the store is stopping".into())),
        }
    }

    /// Whether an fsync is running or about to: a commit made now would
    /// wait for the one after it. A race only costs a smaller group, never
    /// durability: answers still wait for an fsync that follows their
    /// commit.
    pub fn busy(&self) -> bool {
        *self.busy.busy.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until the thread is free, or `at_most`.
    pub fn wait_free(&self, at_most: Duration) {
        let busy = self.busy.busy.lock().unwrap_or_else(|p| p.into_inner());
        let _unused = self
            .busy
            .free
            .wait_timeout_while(busy, at_most, |busy| *busy)
            .unwrap_or_else(|p| p.into_inner());
    }

    /// Syncs and answers everything handed over so far, then stops.
    pub fn finish(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        self.finish();
    }
}

/// A WAL fsync slower than this is logged: answers wait for it.
const SLOW_SYNC: Duration = Duration::from_millis(100);

fn run(path: PathBuf, rx: mpsc::Receiver<AfterSync>, stats: &StoreStats, busy: &Busy) {
    // Opened on first use: SQLite creates the file with the first commit,
    // which precedes the first job. It is never replaced while the writer's
    // connection is open (SQLite rewinds it in place).
    let mut wal: Option<File> = None;
    // A failed fsync is final: Linux may drop the unsynced pages and report
    // success on the next call, so nothing after it can be trusted to be on
    // disk. Every later request is answered 503 until a restart, whose WAL
    // recovery keeps exactly what reached the disk.
    let mut failed: Option<String> = None;
    // A job that arrived while the last fsync ran: it needs the next one.
    let mut next: Option<AfterSync> = None;
    loop {
        let first = match next.take().map_or_else(|| rx.recv(), Ok) {
            Ok(job) => job,
            Err(mpsc::RecvError) => break,
        };
        let mut jobs = vec![first];
        jobs.extend(rx.try_iter());
        let result = match &failed {
            Some(e) => Err(e.clone()),
            None => timed_sync(&path, &mut wal, stats).inspect_err(|e| {
                tracing::error!(error = %e, "cannot fsync the store's WAL; every write is refused (503) until mailpulse restarts");
                failed = Some(format!("an earlier fsync failed ({e}); restart mailpulse"));
            }),
        };
        // Free before answering, so the writer's commit overlaps the
        // answers rather than waiting for them.
        match rx.try_recv() {
            Ok(job) => next = Some(job),
            Err(_) => busy.set(false),
        }
        for job in jobs {
            job(result.clone());
        }
    }
}

fn timed_sync(path: &PathBuf, wal: &mut Option<File>, stats: &StoreStats) -> Result<(), String> {
    let started = Instant::now();
    let result = sync(path, wal);
    let took = started.elapsed();
    stats.wal_sync_seconds.observe(took.as_secs_f64());
    if took > SLOW_SYNC {
        tracing::warn!(ms = took.as_millis() as u64, "slow store WAL fsync");
    } else if took > super::TRACE_OVER {
        tracing::debug!(ms = took.as_millis() as u64, "store WAL fsync over 10 ms");
    }
    result
}

fn sync(path: &PathBuf, wal: &mut Option<File>) -> Result<(), String> {
    if wal.is_none() {
        let file = File::open(path).map_err(|e| format!("open {}: {e}", path.display()))?;
        *wal = Some(file);
    }
    let file = wal.as_ref().expect("opened above");
    file.sync_data()
        .map_err(|e| format!("fsync {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A syncer on an existing WAL file in a fresh directory (kept alive
    /// by the returned guard).
    fn syncer_on_a_wal() -> (tempfile::TempDir, Syncer) {
        let dir = tempfile::tempdir().unwrap();
        let wal = dir.path().join("db-wal");
        std::fs::write(&wal, b"frames").unwrap();
        let syncer = Syncer::spawn(wal, Arc::default()).unwrap();
        (dir, syncer)
    }

    fn results(syncer: &mut Syncer, n: usize) -> Vec<Result<(), String>> {
        let seen = Arc::new(Mutex::new(Vec::new()));
        for _ in 0..n {
            let seen = seen.clone();
            syncer.after_sync(Box::new(move |r| seen.lock().unwrap().push(r)));
        }
        syncer.finish();
        Arc::try_unwrap(seen).unwrap().into_inner().unwrap()
    }

    #[test]
    fn every_job_runs_after_a_sync_and_finish_waits_for_them() {
        let (_dir, mut syncer) = syncer_on_a_wal();
        let got = results(&mut syncer, 100);
        assert_eq!(got.len(), 100);
        assert!(got.iter().all(Result::is_ok));
        // After finish, nothing is accepted silently.
        let (tx, rx) = std::sync::mpsc::channel();
        syncer.after_sync(Box::new(move |r| tx.send(r).unwrap()));
        assert!(rx.recv().unwrap().unwrap_err().contains("stopping"));
    }

    #[test]
    fn free_once_the_jobs_fsync_is_done() {
        let (_dir, mut syncer) = syncer_on_a_wal();
        assert!(!syncer.busy(), "nothing handed over yet");
        let (tx, rx) = std::sync::mpsc::channel();
        for _ in 0..3 {
            let tx = tx.clone();
            syncer.after_sync(Box::new(move |r| tx.send(r).unwrap()));
        }
        syncer.wait_free(Duration::from_secs(30));
        assert!(!syncer.busy(), "still busy after every job's fsync");
        for _ in 0..3 {
            rx.recv().unwrap().unwrap();
        }
        syncer.finish();
    }

    #[test]
    fn a_failed_sync_fails_every_later_job_too() {
        let dir = tempfile::tempdir().unwrap();
        let wal = dir.path().join("db-wal");
        let mut syncer = Syncer::spawn(wal.clone(), Arc::default()).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let first = tx.clone();
        syncer.after_sync(Box::new(move |r| first.send(r).unwrap()));
        let err = rx.recv().unwrap().unwrap_err();
        assert!(err.contains("db-wal"), "{err}");
        // The file appears, but what was not synced before is unknown.
        std::fs::write(&wal, b"frames").unwrap();
        syncer.after_sync(Box::new(move |r| tx.send(r).unwrap()));
        let later = rx.recv().unwrap().unwrap_err();
        assert!(later.contains("an earlier fsync failed"), "{later}");
        syncer.finish();
    }
}
