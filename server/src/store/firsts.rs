//! First opens and clicks: deciding whether an open or click is the
//! recipient's first of the mailing, and writing the records of those
//! firsts to `engagement_firsts` late, sorted, and a little per commit.
//!
//! Why late: a campaign's recipients open and click in no order, so each
//! first inserted at once into `engagement_firsts` (keyed by mailing,
//! recipient, kind) lands on a B-tree leaf of its own, and each commit
//! rewrote one 4 KiB page per first (docs/store.md, "First opens and clicks
//! in no order"). Here the writer decides "first" against the firsts it
//! holds in memory and the table, and keeps the new ones in memory. Once
//! enough have gathered ([`Policy`]), a thread of their own sorts them
//! in the table's order and the writer writes them a chunk per group
//! commit, so the rows that share a leaf are written together.
//!
//! Nothing is lost by a crash: every event row carries its `first_open` /
//! `first_click` flag, committed with it. `firsts_written` records the last
//! event id whose firsts are all in the table; at start, [`recover`] writes
//! the firsts flagged on the events after it.
//!
//! Exact: the set in memory holds the keys themselves; the hash only finds
//! them.
//!
//! Looked up only where it can be there: deciding "first" for a key not
//! held asks the table, a B-tree descent that was ~13 % of the writer's
//! time under batch load, where nearly every open or click was a first.
//! A mailing that had no firsts in the table when this process first
//! claimed one of it has all of them in a Bloom filter of its own
//! ([`Mailing::New`]): a key the filter has never seen is not in the
//! table, and only the filter's "maybe" (what it was given, and a few %
//! of the rest) goes on to the table. The filter only ever answers "not
//! there" for keys that truly are not, so the decision stays exact.

use growable_bloom_filter::{GrowableBloom, GrowableBloomBuilder};
use r2d2_sqlite::rusqlite::{params, CachedStatement, Connection, Transaction};
use std::borrow::Cow;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Whether a first is an open or a click. The discriminants follow the
/// `kind` column's text order (`'click'` < `'open'`), so keys sort like the
/// table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    Click = 0,
    Open = 1,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Click => "click",
            Kind::Open => "open",
        }
    }
}

/// A (mailing, recipient, kind) key in one allocation (shared by the set
/// of held keys and the list the first waits in), encoded so that
/// comparing keys as bytes orders them like the table's primary key
/// (mailing, then recipient, then kind, text compared as bytes: SQLite's
/// `BINARY` collation). Each text is written with its 0 bytes as `0 255`
/// and ends with `0 0`, which sorts a text before any longer one it
/// begins; the kind's byte comes last. A flush sorts them as bytes.
type Key = Arc<[u8]>;

fn pack(buf: &mut Vec<u8>, mailing: &str, recipient: &str, kind: Kind) {
    buf.clear();
    for text in [mailing, recipient] {
        for &b in text.as_bytes() {
            buf.push(b);
            if b == 0 {
                buf.push(255);
            }
        }
        buf.extend_from_slice(&[0, 0]);
    }
    buf.push(kind as u8);
}

/// The parts of a packed key. A text without 0 bytes (nearly all) is
/// borrowed.
fn unpack(key: &[u8]) -> (Cow<'_, str>, Cow<'_, str>, Kind) {
    fn text(key: &[u8]) -> (Cow<'_, str>, &[u8]) {
        let mut owned: Option<Vec<u8>> = None;
        let mut i = 0;
        loop {
            if key[i] == 0 {
                if key[i + 1] == 0 {
                    break;
                }
                // An escaped 0 byte.
                let o = owned.get_or_insert_with(|| key[..i].to_vec());
                o.push(0);
                i += 2;
            } else {
                if let Some(o) = &mut owned {
                    o.push(key[i]);
                }
                i += 1;
            }
        }
        // Packed from a `&str`, with only 0 bytes escaped.
        let t = match owned {
            None => Cow::Borrowed(std::str::from_utf8(&key[..i]).expect("packed from a str")),
            Some(o) => Cow::Owned(String::from_utf8(o).expect("packed from a str")),
        };
        (t, &key[i + 2..])
    }
    let (mailing, rest) = text(key);
    let (recipient, rest) = text(rest);
    let kind = if rest[0] == Kind::Click as u8 {
        Kind::Click
    } else {
        Kind::Open
    };
    (mailing, recipient, kind)
}

/// When the firsts held in memory are written, and how much memory the
/// mailings' filters may use.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Policy {
    /// A flush starts once this many firsts wait. The more rows one flush
    /// writes, the more of them share a leaf of the table; each row held
    /// costs ~100 bytes of memory, twice (the ones gathering while the
    /// previous flush is written).
    pub rows: usize,
    /// ... or once the oldest has waited this long, even if none wait:
    /// that moves `firsts_written` on, which bounds what [`recover`] reads
    /// after a crash.
    pub every: Duration,
    /// The mailings' filters together (an estimate, see
    /// [`FILTER_BYTES_PER_KEY`]); past it, the filters of the mailings
    /// claimed longest ago are let go. 0: no filters.
    pub filter_bytes: usize,
}

/// What the filters are sized for: 1 % of the keys a filter was not
/// given answer "maybe" (and are looked up in the table).
const FILTER_ERROR: f64 = 0.01;
/// A new mailing's filter starts with room for this many keys and grows
/// by [`FILTER_GROWTH`] each time it is full (each growth adds a filter;
/// a key not in any is told by one or two bits of each).
const FILTER_FIRST_KEYS: usize = 4096;
const FILTER_GROWTH: usize = 4;
/// Bytes per key of room, for the memory estimate: ~10 bits per key at
/// 1 %, up to ~13 in the later filters (each is made a little stricter,
/// so that the errors of all of them together stay under 7 %), rounded
/// up.
const FILTER_BYTES_PER_KEY: usize = 2;
/// A mailing's filter is let go once none of its keys was claimed for this
/// long: its campaign is over, and a late open looks the table up.
const FILTER_IDLE: Duration = Duration::from_secs(3600);
/// At most this many mailings are remembered (an entry never leaves, see
/// [`Mailing`]); the claims of mailings past it always look the table up.
const MAX_MAILINGS: usize = 100_000;

/// Per mailing named by a claim since the start: whether the table can
/// hold firsts of it that this process did not claim.
///
/// An entry never leaves the map. A mailing first claimed with no rows in
/// the table is `New` only because every first of it since went through
/// [`Firsts::claim`]; a mailing forgotten and met again could have firsts
/// still held (not yet in the table), which would pass that test and then
/// be written without being in the new filter.
enum Mailing {
    /// It had firsts in the table before, or its filter was let go: every
    /// claim of a key not held looks the table up.
    Old,
    /// Every first of it in the table was claimed by this process and is
    /// in `filter`.
    New {
        filter: GrowableBloom,
        /// The commit time of its last claim.
        claimed: Instant,
    },
}

fn new_filter() -> GrowableBloom {
    GrowableBloomBuilder::new()
        .estimated_insertions(FILTER_FIRST_KEYS)
        .desired_error_ratio(FILTER_ERROR)
        .growth_factor(FILTER_GROWTH)
        .build()
}

/// A first held in memory: its key and its event time.
type Row = (Key, i64);

/// Every key held in memory (claimed by the open transaction, pending, or
/// in a flush not yet committed): a claim looks a key up here with one
/// hash, where sorted maps took ~20 byte-string comparisons each (those
/// comparisons were ~10 % of the writer's time at the batch peak).
type Held = HashSet<Key, foldhash::fast::RandomState>;

/// The rows of a flush: sorted in the table's order on a thread of their
/// own (sorting 200,000 keys on the writer would hold every request for
/// tens of milliseconds), then written from the front.
enum FlushRows {
    Sorting(std::thread::JoinHandle<Vec<Row>>),
    Sorted(VecDeque<Row>),
}

/// Sorts rows in the table's order (their keys' bytes).
fn sort_rows(rows: &mut [Row]) {
    rows.sort_unstable_by(|a, b| a.0.cmp(&b.0));
}

/// Sorts `rows` in the table's order, on a thread of its own when one can
/// be started.
fn sort(mut rows: Vec<Row>) -> FlushRows {
    if rows.len() < 4096 {
        sort_rows(&mut rows);
        return FlushRows::Sorted(rows.into());
    }
    // A failed spawn drops the closure, so the rows reach the thread
    // through a slot they can be taken back from.
    let slot = Arc::new(std::sync::Mutex::new(rows));
    let take = |slot: &std::sync::Mutex<Vec<Row>>| {
        std::mem::take(&mut *slot.lock().unwrap_or_else(|e| e.into_inner()))
    };
    let theirs = slot.clone();
    let spawned = std::thread::Builder::new()
        .name("store-firsts".into())
        .spawn(move || {
            let mut rows = take(&theirs);
            sort_rows(&mut rows);
            rows
        });
    match spawned {
        Ok(handle) => FlushRows::Sorting(handle),
        Err(e) => {
            tracing::warn!(error = %e, "could not start a thread to sort first opens/clicks; sorting on the writer");
            let mut rows = take(&slot);
            sort_rows(&mut rows);
            FlushRows::Sorted(rows.into())
        }
    }
}

/// A flush under way: the firsts gathered until it started, written a
/// chunk per commit in the table's order. Written rows leave it (and the
/// held keys) a chunk at a time, so finishing a flush frees nothing large
/// at once.
struct Flush {
    rows: FlushRows,
    /// Rows at the front written by the open transaction: dropped when it
    /// commits, written again by a later one if it fails.
    writing: usize,
    /// Every first of an event up to this id is in `rows` or the table.
    up_to_event: i64,
}

impl Flush {
    /// The rows in order, once sorted; `wait` waits for the sort.
    fn sorted(&mut self, wait: bool) -> anyhow::Result<Option<&mut VecDeque<Row>>> {
        if let FlushRows::Sorting(handle) = &self.rows {
            if !wait && !handle.is_finished() {
                return Ok(None);
            }
            let FlushRows::Sorting(handle) =
                std::mem::replace(&mut self.rows, FlushRows::Sorted(VecDeque::new()))
            else {
                unreachable!("matched above")
            };
            let rows = handle
                .join()
                .map_err(|_| anyhow::anyhow!("sorting first opens/clicks panicked"))?;
            self.rows = FlushRows::Sorted(rows.into());
        }
        match &mut self.rows {
            FlushRows::Sorted(rows) => Ok(Some(rows)),
            FlushRows::Sorting(_) => unreachable!("sorted above"),
        }
    }

    /// Writes up to `n` more rows in `tx` (none while they are still being
    /// sorted, unless `wait`). Returns whether every row is now written;
    /// the chunk that writes the last one also moves `firsts_written` on,
    /// in the same transaction.
    fn write(&mut self, tx: &Transaction<'_>, n: usize, wait: bool) -> anyhow::Result<bool> {
        let from = self.writing;
        let Some(rows) = self.sorted(wait)? else {
            return Ok(false);
        };
        let to = rows.len().min(from.saturating_add(n));
        let done = to == rows.len();
        let mut insert = tx.prepare_cached(INSERT)?;
        for (key, time) in rows.range(from..to) {
            insert_row(&mut insert, key, *time)?;
        }
        if done {
            tx.prepare_cached(SET_WRITTEN)?
                .execute([self.up_to_event])?;
        }
        self.writing = to;
        Ok(done)
    }

    /// The open transaction committed: the rows it wrote are in the table
    /// and leave memory. Returns whether the flush is done.
    fn committed(&mut self, held: &mut Held) -> bool {
        let n = std::mem::take(&mut self.writing);
        match &mut self.rows {
            FlushRows::Sorted(rows) => {
                for (key, _) in rows.drain(..n) {
                    held.remove(&key);
                }
                rows.is_empty()
            }
            FlushRows::Sorting(_) => false,
        }
    }
}

fn insert_row(insert: &mut CachedStatement<'_>, key: &[u8], time: i64) -> anyhow::Result<()> {
    let (mailing, recipient, kind) = unpack(key);
    insert.execute(params![mailing, recipient, kind.as_str(), time])?;
    Ok(())
}

/// The writer's firsts not yet in `engagement_firsts`. Owned by the writer
/// thread; the open transaction's claims are `staged` until it commits.
pub(crate) struct Firsts {
    policy: Policy,
    /// Every key below, for [`Firsts::claim`].
    held: Held,
    /// Claimed by the open transaction.
    staged: Vec<Row>,
    /// Committed, waiting for the next flush, in no order.
    pending: Vec<Row>,
    /// Since when `pending` gathers (the last flush's start).
    since: Instant,
    flushing: Option<Flush>,
    /// What `firsts_written` holds, as committed.
    written_up_to: i64,
    /// Scratch for packing a key.
    buf: Vec<u8>,
    /// The mailings named by claims since the start, with their filters.
    mailings: HashMap<Box<str>, Mailing, foldhash::fast::RandomState>,
    /// The filters' memory, estimated.
    filter_bytes: usize,
    /// When the last transaction committed: a claim's time, without a
    /// clock read per claim.
    now: Instant,
    /// When idle filters were last let go.
    swept: Instant,
    /// Claims of keys not held that looked the table up.
    table_lookups: u64,
}

/// The look-ups a claim may make in `engagement_firsts`, prepared once per
/// transaction.
pub(crate) struct Lookups<'tx> {
    /// Whether a key is in the table.
    key: CachedStatement<'tx>,
    /// Whether any key of a mailing is.
    mailing: CachedStatement<'tx>,
}

impl<'tx> Lookups<'tx> {
    pub(crate) fn prepare(tx: &'tx Transaction<'tx>) -> anyhow::Result<Lookups<'tx>> {
        Ok(Lookups {
            key: tx.prepare_cached(
                "SELECT 1 FROM engagement_firsts \
                 WHERE mailing_id = ?1 AND recipient = ?2 AND kind = ?3",
            )?,
            mailing: tx
                .prepare_cached("SELECT 1 FROM engagement_firsts WHERE mailing_id = ?1 LIMIT 1")?,
        })
    }
}
const INSERT: &str = "INSERT OR IGNORE INTO engagement_firsts (mailing_id, recipient, kind, \
     event_time) VALUES (?1, ?2, ?3, ?4)";
/// Rows a chunk writes besides twice the group's new firsts.
const MIN_CHUNK: usize = 16;
/// Rows one transaction writes while the writer is idle: a few
/// milliseconds of its time, which is what a request arriving then waits
/// at most.
const IDLE_CHUNK: usize = 1000;

/// What [`Firsts::write_idle`] left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Idle {
    /// Nothing is held that could be written now.
    Done,
    /// More rows wait.
    More,
    /// The flush's rows are still being sorted on their thread.
    Sorting,
}
const SET_WRITTEN: &str = "UPDATE firsts_written SET event_id = ?1";

impl Firsts {
    /// Nothing held yet; `conn` tells how far the table is written.
    pub(crate) fn load(policy: Policy, conn: &Connection) -> anyhow::Result<Firsts> {
        Ok(Firsts {
            policy,
            held: Held::default(),
            staged: Vec::new(),
            pending: Vec::new(),
            since: Instant::now(),
            flushing: None,
            written_up_to: written_up_to(conn)?,
            buf: Vec::new(),
            mailings: HashMap::default(),
            filter_bytes: 0,
            now: Instant::now(),
            swept: Instant::now(),
            table_lookups: 0,
        })
    }

    /// Every first of an event up to this id is in the table.
    pub(crate) fn written_up_to(&self) -> i64 {
        self.written_up_to
    }

    /// Firsts held in memory, not yet committed to the table.
    pub(crate) fn unwritten(&self) -> usize {
        self.held.len() - self.staged.len()
    }

    /// Whether this open or click is the recipient's first of the mailing;
    /// if so, claims it for the open transaction.
    pub(crate) fn claim(
        &mut self,
        lookups: &mut Lookups<'_>,
        mailing: &str,
        recipient: &str,
        kind: Kind,
        event_time: i64,
    ) -> anyhow::Result<bool> {
        pack(&mut self.buf, mailing, recipient, kind);
        if self.held.contains(&self.buf[..]) {
            return Ok(false);
        }
        if self.policy.filter_bytes > 0
            && self.mailings.len() < MAX_MAILINGS
            && !self.mailings.contains_key(mailing)
        {
            // The first claim of this mailing since the start: nothing of
            // it is held, so the table has all of its firsts.
            let m = if lookups.mailing.exists([mailing])? {
                Mailing::Old
            } else {
                Mailing::New {
                    filter: new_filter(),
                    claimed: self.now,
                }
            };
            self.mailings.insert(mailing.into(), m);
        }
        let filter = match self.mailings.get_mut(mailing) {
            Some(Mailing::New { filter, claimed }) => {
                *claimed = self.now;
                Some(filter)
            }
            _ => None,
        };
        // One pass over the filter's bits: `insert` sets them and tells
        // whether they were all set already ("maybe"); `contains` and then
        // `insert` read every sub-filter twice (perf on the writer, store
        // alone: the filter 7.2 % of its samples that way, 4.9 % so).
        // The key is in the filter before it can reach the table; one
        // that turns out not to be a first was in it already, and a claim
        // rolled back stays in it: a "maybe" too many, never a "no" too
        // many.
        let maybe_in_table = match filter {
            Some(filter) => {
                let room = filter.capacity();
                let added = filter.insert(&self.buf[..]);
                self.filter_bytes += (filter.capacity() - room) * FILTER_BYTES_PER_KEY;
                !added
            }
            None => true,
        };
        if maybe_in_table {
            self.table_lookups += 1;
            if lookups
                .key
                .exists(params![mailing, recipient, kind.as_str()])?
            {
                return Ok(false);
            }
        }
        let key: Key = self.buf[..].into();
        self.held.insert(key.clone());
        self.staged.push((key, event_time));
        Ok(true)
    }

    /// Lets go of the filters of mailings not claimed for [`FILTER_IDLE`]
    /// (looked at once a minute), then of the ones claimed longest ago
    /// while the filters use more than the policy allows.
    fn let_go_of_filters(&mut self) {
        let sweep = self.now.duration_since(self.swept) >= Duration::from_secs(60);
        if !sweep && self.filter_bytes <= self.policy.filter_bytes {
            return;
        }
        self.swept = self.now;
        let mut new: Vec<(Instant, &mut Mailing)> = Vec::new();
        for m in self.mailings.values_mut() {
            if let Mailing::New { claimed, .. } = m {
                new.push((*claimed, m));
            }
        }
        new.sort_unstable_by_key(|(claimed, _)| *claimed);
        for (claimed, m) in new {
            let idle = self.now.duration_since(claimed) >= FILTER_IDLE;
            if !idle && self.filter_bytes <= self.policy.filter_bytes {
                break;
            }
            if let Mailing::New { filter, .. } = std::mem::replace(m, Mailing::Old) {
                self.filter_bytes = self
                    .filter_bytes
                    .saturating_sub(filter.capacity() * FILTER_BYTES_PER_KEY);
            }
        }
    }

    /// The filters' memory (estimated) and how many claims looked the
    /// table up.
    pub(crate) fn filter_stats(&self) -> (usize, u64) {
        (self.filter_bytes, self.table_lookups)
    }

    /// Writes the next chunk of the flush under way in `tx`, the group's
    /// transaction: twice the firsts this group claimed, so a flush ends
    /// before the next one's rows have gathered, and a few more, so one
    /// ends when none arrive. Paced by the traffic rather than by the
    /// flush's size: a flush of 200,000 rows in 256 commits held the
    /// writer for ~2 ms more per commit until done, and the requests
    /// queued (p99 174 ms at 1,500 batches/s, against 3 ms at the median).
    /// The last chunk also moves `firsts_written` on. Nothing is written
    /// while the flush's rows are still being sorted.
    pub(crate) fn write_chunk(&mut self, tx: &Transaction<'_>) -> anyhow::Result<()> {
        let claimed = self.staged.len();
        let Some(f) = &mut self.flushing else {
            return Ok(());
        };
        f.write(tx, 2 * claimed + MIN_CHUNK, false)?;
        Ok(())
    }

    /// The group's transaction committed: its claims wait for the next
    /// flush, its chunk is written. Starts a flush when the policy says so
    /// (`conn` tells the last committed event).
    pub(crate) fn committed(&mut self, conn: &Connection) -> anyhow::Result<()> {
        self.now = Instant::now();
        self.let_go_of_filters();
        if self.pending.is_empty() {
            self.since = self.now;
        }
        self.pending.append(&mut self.staged);
        self.flush_committed();
        if self.flushing.is_none()
            && (self.pending.len() >= self.policy.rows || self.since.elapsed() >= self.policy.every)
        {
            self.start_flush(conn)?;
        }
        Ok(())
    }

    /// The chunk of the flush under way committed: its rows leave memory,
    /// and the last one ends the flush.
    fn flush_committed(&mut self) {
        if let Some(f) = &mut self.flushing {
            if f.committed(&mut self.held) {
                self.written_up_to = f.up_to_event;
                self.flushing = None;
            }
        }
    }

    /// The group's transaction failed: nothing it claimed or wrote stays.
    pub(crate) fn rolled_back(&mut self) {
        for (key, _) in self.staged.drain(..) {
            self.held.remove(&key);
        }
        if let Some(f) = &mut self.flushing {
            f.writing = 0;
        }
    }

    fn start_flush(&mut self, conn: &Connection) -> anyhow::Result<()> {
        let up_to_event = last_event_id(conn)?;
        tracing::debug!(rows = self.pending.len(), "writing first opens/clicks held");
        self.since = Instant::now();
        self.flushing = Some(Flush {
            rows: sort(std::mem::take(&mut self.pending)),
            writing: 0,
            up_to_event,
        });
        Ok(())
    }

    /// While no request waits: writes the next [`IDLE_CHUNK`] firsts held,
    /// in a transaction of its own, starting a flush of every pending one
    /// if none is under way. So a pause in the traffic writes what the
    /// load gathered, where it would otherwise be written during the
    /// load that follows the pause (a flush paced by the traffic, see
    /// [`Firsts::write_chunk`]). A request that arrives meanwhile waits
    /// for one chunk at most.
    pub(crate) fn write_idle(&mut self, conn: &mut Connection) -> anyhow::Result<Idle> {
        debug_assert!(self.staged.is_empty(), "no transaction is open");
        if self.flushing.is_none() {
            if self.pending.is_empty() {
                return Ok(Idle::Done);
            }
            self.start_flush(conn)?;
        }
        let f = self.flushing.as_mut().expect("started above");
        if let FlushRows::Sorting(handle) = &f.rows {
            if !handle.is_finished() {
                return Ok(Idle::Sorting);
            }
        }
        let written = (|| {
            let tx = conn.transaction()?;
            f.write(&tx, IDLE_CHUNK, false)?;
            tx.commit()?;
            anyhow::Ok(())
        })();
        if let Err(e) = written {
            f.writing = 0;
            return Err(e);
        }
        self.flush_committed();
        Ok(if self.flushing.is_none() && self.pending.is_empty() {
            Idle::Done
        } else {
            Idle::More
        })
    }

    /// Writes every first held, in one transaction of its own, and moves
    /// `firsts_written` to the last event: before retention deletes events
    /// (after which [`recover`] could not find their firsts) and at
    /// shutdown (so a restart has nothing to recover). Returns the rows
    /// written. Should it fail, every first stays held, to be written by
    /// a later flush.
    pub(crate) fn write_all(&mut self, conn: &mut Connection) -> anyhow::Result<usize> {
        debug_assert!(self.staged.is_empty(), "no transaction is open");
        let n = self.unwritten();
        // Asked first: should it fail, nothing has been taken out yet.
        let up_to_event = last_event_id(conn)?;
        // One flush of everything: what is left of the one under way (its
        // rows are sorted, and every one of them is before the newer
        // ones' mark) and the pending ones.
        let mut rows: Vec<Row> = match self.flushing.take() {
            Some(mut f) => {
                f.writing = 0;
                f.sorted(true)?
                    .map(|r| r.drain(..).collect())
                    .unwrap_or_default()
            }
            None => Vec::new(),
        };
        rows.append(&mut self.pending);
        sort_rows(&mut rows);
        self.since = Instant::now();
        let mut flush = Flush {
            rows: FlushRows::Sorted(rows.into()),
            writing: 0,
            up_to_event,
        };
        let written = (|| {
            let tx = conn.transaction()?;
            flush.write(&tx, usize::MAX, true)?;
            tx.commit()?;
            anyhow::Ok(())
        })();
        match written {
            Ok(()) => {
                flush.committed(&mut self.held);
                self.written_up_to = up_to_event;
                Ok(n)
            }
            Err(e) => {
                flush.writing = 0;
                self.flushing = Some(flush);
                Err(e)
            }
        }
    }
}

/// The last event's id, 0 for none.
fn last_event_id(conn: &Connection) -> anyhow::Result<i64> {
    Ok(conn.query_row("SELECT COALESCE(MAX(id), 0) FROM events", [], |r| r.get(0))?)
}

/// The event id `firsts_written` holds.
fn written_up_to(conn: &Connection) -> anyhow::Result<i64> {
    Ok(conn.query_row("SELECT event_id FROM firsts_written", [], |r| r.get(0))?)
}

/// After a crash: writes the firsts flagged on the events after
/// `firsts_written` (the ones that were still in memory) and moves it to
/// the last event. Returns how many events it read and how many firsts it
/// wrote. Runs before the writer starts, in one transaction.
pub(crate) fn recover(conn: &mut Connection) -> anyhow::Result<(u64, usize)> {
    let tx = conn.transaction()?;
    let after: i64 = tx.query_row("SELECT event_id FROM firsts_written", [], |r| r.get(0))?;
    let mut rows: Vec<(Key, i64)> = Vec::new();
    let mut last = after;
    let mut read = 0u64;
    {
        let mut stmt = tx.prepare(
            "SELECT id, mailing_id, COALESCE(recipient_id, address), first_open, first_click, \
             event_time FROM events WHERE id > ?1 ORDER BY id",
        )?;
        let mut q = stmt.query([after])?;
        let mut buf = Vec::new();
        while let Some(r) = q.next()? {
            read += 1;
            last = r.get(0)?;
            let (Some(mailing), Some(recipient)) = (
                r.get::<_, Option<String>>(1)?,
                r.get::<_, Option<String>>(2)?,
            ) else {
                continue;
            };
            for (col, kind) in [(3, Kind::Open), (4, Kind::Click)] {
                if r.get::<_, bool>(col)? {
                    pack(&mut buf, &mailing, &recipient, kind);
                    rows.push((buf.as_slice().into(), r.get(5)?));
                }
            }
        }
    }
    rows.sort_unstable();
    let n = rows.len();
    {
        let mut insert = tx.prepare_cached(INSERT)?;
        for (key, time) in &rows {
            insert_row(&mut insert, key, *time)?;
        }
    }
    if last != after {
        tx.execute(SET_WRITTEN, [last])?;
    }
    tx.commit()?;
    Ok((read, n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::schema;
    use proptest::prelude::*;

    fn store() -> Connection {
        let mut conn = Connection::open_in_memory().unwrap();
        schema::migrate(&mut conn).unwrap();
        conn
    }

    /// A store holding one event, `id`: how far a flush marks the firsts
    /// written.
    fn store_with_event(id: i64) -> Connection {
        let conn = store();
        conn.execute(
            "INSERT INTO events (id, dedup_key, source, type, type_raw, event_time, time_source, \
             received_at, raw) VALUES (?1, x'01', 's', 'open', 'open', 0, 'payload', 0, '')",
            [id],
        )
        .unwrap();
        conn
    }

    /// `n` distinct recipients in no order, as a campaign's opens come.
    fn scattered_recipients(n: u32) -> Vec<String> {
        (0..n)
            .map(|i| format!("r{}", i.wrapping_mul(2_654_435_761) % 1_000_000))
            .collect()
    }

    fn policy(rows: usize) -> Policy {
        Policy {
            rows,
            every: Duration::from_secs(3600),
            filter_bytes: 1 << 20,
        }
    }

    fn table(conn: &Connection) -> Vec<(String, String, String, i64)> {
        let mut stmt = conn
            .prepare(
                "SELECT mailing_id, recipient, kind, event_time FROM engagement_firsts \
                 ORDER BY mailing_id, recipient, kind",
            )
            .unwrap();
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap();
        rows.map(Result::unwrap).collect()
    }

    /// Claims in one transaction, then commits it (or rolls it back).
    fn group(
        conn: &mut Connection,
        firsts: &mut Firsts,
        claims: &[(&str, &str, Kind, i64)],
        commit: bool,
    ) -> Vec<bool> {
        let tx = conn.transaction().unwrap();
        let mut out = Vec::new();
        {
            let mut lookup = Lookups::prepare(&tx).unwrap();
            for &(m, r, k, t) in claims {
                out.push(firsts.claim(&mut lookup, m, r, k, t).unwrap());
            }
        }
        firsts.write_chunk(&tx).unwrap();
        if commit {
            tx.commit().unwrap();
            firsts.committed(conn).unwrap();
        } else {
            drop(tx);
            firsts.rolled_back();
        }
        out
    }

    #[test]
    fn keys_sort_like_the_table_and_unpack_to_what_was_packed() {
        let mut buf = Vec::new();
        let keys: Vec<(&str, &str, Kind)> = vec![
            ("m", "r2", Kind::Open),
            ("m", "r10", Kind::Click),
            ("m", "r10", Kind::Open),
            ("m", "r1", Kind::Open),
            ("m2", "a", Kind::Click),
            ("m", "", Kind::Open),
            ("", "é", Kind::Open),
            ("m\0", "r", Kind::Open),
            ("m\0x", "r", Kind::Open),
            ("m", "r\0\0", Kind::Click),
            ("m\u{1}", "r", Kind::Open),
            ("m\u{ff}", "\u{10ffff}", Kind::Open),
        ];
        let mut packed: Vec<Key> = keys
            .iter()
            .map(|&(m, r, k)| {
                pack(&mut buf, m, r, k);
                buf.as_slice().into()
            })
            .collect();
        for (p, &(m, r, k)) in packed.iter().zip(&keys) {
            let (pm, pr, pk) = unpack(p);
            assert_eq!((&*pm, &*pr, pk), (m, r, k));
        }
        packed.sort();
        // SQLite's own order of the same rows.
        let conn = store();
        for (m, r, k) in &keys {
            conn.execute(
                "INSERT INTO engagement_firsts VALUES (?1, ?2, ?3, 0)",
                params![m, r, k.as_str()],
            )
            .unwrap();
        }
        let sqlite: Vec<(String, String, String)> = table(&conn)
            .into_iter()
            .map(|(m, r, k, _)| (m, r, k))
            .collect();
        let ours: Vec<(String, String, String)> = packed
            .iter()
            .map(|p| {
                let (m, r, k) = unpack(p);
                (m.into_owned(), r.into_owned(), k.as_str().to_owned())
            })
            .collect();
        assert_eq!(ours, sqlite);
    }

    /// Text with 0 bytes and other small bytes, where an encoding of
    /// tuples most easily goes wrong.
    fn text() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            prop_oneof![Just('\0'), Just('\u{1}'), Just('a'), Just('é')],
            0..4,
        )
        .prop_map(|c| c.into_iter().collect())
    }

    fn kind() -> impl Strategy<Value = Kind> {
        prop_oneof![Just(Kind::Click), Just(Kind::Open)]
    }

    proptest! {
        /// Packing is one-to-one, and two keys compare as bytes as their
        /// (mailing, recipient, kind) tuples do.
        #[test]
        fn packed_keys_round_trip_and_order_like_their_tuples(
            a in (text(), text(), kind()),
            b in (text(), text(), kind()),
        ) {
            let (mut pa, mut pb) = (Vec::new(), Vec::new());
            pack(&mut pa, &a.0, &a.1, a.2);
            pack(&mut pb, &b.0, &b.1, b.2);
            let (m, r, k) = unpack(&pa);
            prop_assert_eq!((&*m, &*r, k), (a.0.as_str(), a.1.as_str(), a.2));
            let tuples = (a.0.as_bytes(), a.1.as_bytes(), a.2 as u8)
                .cmp(&(b.0.as_bytes(), b.1.as_bytes(), b.2 as u8));
            prop_assert_eq!(pa.cmp(&pb), tuples);
        }
    }

    #[test]
    fn a_first_is_claimed_once_whether_staged_pending_flushing_or_written() {
        let mut conn = store();
        let mut f = Firsts::load(policy(3), &conn).unwrap();
        let a = ("m", "a", Kind::Open, 1);
        // Twice in one transaction; a click is another first.
        let got = group(&mut conn, &mut f, &[a, a, ("m", "a", Kind::Click, 2)], true);
        assert_eq!(got, [true, false, true]);
        assert_eq!(f.unwritten(), 2);
        assert!(table(&conn).is_empty(), "written late, not at once");
        // Pending now; the third first starts a flush of all three.
        let got = group(&mut conn, &mut f, &[a, ("m", "b", Kind::Open, 3)], true);
        assert_eq!(got, [false, true]);
        assert!(f.flushing.is_some());
        // Flushing: still known. Each commit writes a chunk (`MIN_CHUNK`
        // rows and two per claim), so this one writes all three and moves
        // the mark.
        let got = group(&mut conn, &mut f, &[a, ("m", "c", Kind::Open, 4)], true);
        assert_eq!(got, [false, true]);
        assert_eq!(table(&conn).len(), 3);
        assert!(f.flushing.is_none());
        assert_eq!(f.unwritten(), 1);
        // A fresh writer (a restart) finds the written ones in the table.
        let mut f2 = Firsts::load(policy(3), &conn).unwrap();
        let got = group(&mut conn, &mut f2, &[a, ("m", "b", Kind::Open, 9)], true);
        assert_eq!(got, [false, false]);
    }

    #[test]
    fn a_rolled_back_transaction_claims_and_writes_nothing() {
        let mut conn = store();
        let mut f = Firsts::load(policy(1), &conn).unwrap();
        assert_eq!(
            group(&mut conn, &mut f, &[("m", "a", Kind::Open, 1)], true),
            [true]
        );
        assert!(f.flushing.is_some());
        // This group's claim and its chunk of the flush both go.
        assert_eq!(
            group(&mut conn, &mut f, &[("m", "b", Kind::Open, 2)], false),
            [true]
        );
        assert!(table(&conn).is_empty());
        assert_eq!(f.unwritten(), 1);
        assert_eq!(
            group(&mut conn, &mut f, &[("m", "b", Kind::Open, 2)], true),
            [true]
        );
        assert_eq!(table(&conn).len(), 1);
    }

    #[test]
    fn write_all_writes_every_first_held_and_moves_the_mark() {
        let mut conn = store_with_event(41);
        let mut f = Firsts::load(policy(20), &conn).unwrap();
        for i in 0..21 {
            group(
                &mut conn,
                &mut f,
                &[("m", &format!("r{i}"), Kind::Open, 1)],
                true,
            );
        }
        // The 20th commit started a flush of 20; the 21st wrote 18 of them
        // (`MIN_CHUNK`, and two for its claim) and left its own pending.
        assert_eq!(table(&conn).len(), 18);
        assert_eq!(f.unwritten(), 3);
        assert_eq!(f.write_all(&mut conn).unwrap(), 3);
        assert_eq!(table(&conn).len(), 21);
        assert_eq!(f.unwritten(), 0);
        assert_eq!(written_up_to(&conn).unwrap(), 41);
        assert_eq!(f.written_up_to, 41);
    }

    #[test]
    fn idle_writes_every_first_held_in_chunks_and_moves_the_mark() {
        let mut conn = store_with_event(7);
        // A policy that would not flush for a long time.
        let mut f = Firsts::load(policy(1_000_000), &conn).unwrap();
        assert_eq!(f.write_idle(&mut conn).unwrap(), Idle::Done);
        assert_eq!(f.unwritten(), 0);
        // Several idle chunks' worth, enough to be sorted on a thread of
        // their own, in no order.
        let n = 4 * IDLE_CHUNK + 500;
        let names = scattered_recipients(n as u32);
        let claims: Vec<(&str, &str, Kind, i64)> = names
            .iter()
            .map(|r| ("m", r.as_str(), Kind::Open, 1))
            .collect();
        assert!(group(&mut conn, &mut f, &claims, true).iter().all(|&c| c));
        assert!(table(&conn).is_empty());
        assert_eq!(f.unwritten(), n);
        let mut steps = Vec::new();
        loop {
            let step = f.write_idle(&mut conn).unwrap();
            if step == Idle::Sorting {
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
            steps.push((step, table(&conn).len(), f.unwritten()));
            if step == Idle::Done {
                break;
            }
        }
        // A chunk at a time, each committed; the mark moves with the last.
        let want: Vec<(Idle, usize, usize)> = (1..=4)
            .map(|i| (Idle::More, i * IDLE_CHUNK, n - i * IDLE_CHUNK))
            .chain([(Idle::Done, n, 0)])
            .collect();
        assert_eq!(steps, want);
        assert_eq!(f.unwritten(), 0);
        assert_eq!(written_up_to(&conn).unwrap(), 7);
        assert_eq!(f.written_up_to, 7);
        let rows = table(&conn);
        assert!(rows.windows(2).all(|w| w[0] < w[1]));
        // Written, they are still firsts already claimed.
        let again = group(&mut conn, &mut f, &claims[..3], true);
        assert_eq!(again, [false, false, false]);
        // Firsts claimed while a flush was under way are written after it.
        group(&mut conn, &mut f, &[("m", "new", Kind::Click, 2)], true);
        assert_eq!(f.write_idle(&mut conn).unwrap(), Idle::Done);
        assert_eq!(table(&conn).len(), n + 1);
    }

    /// Waits for a flush's sort thread, so the next chunk is written.
    fn sorted(f: &mut Firsts) {
        if let Some(flush) = &mut f.flushing {
            flush.sorted(true).unwrap();
        }
    }

    #[test]
    fn a_large_flush_is_sorted_aside_and_written_in_the_tables_order() {
        let mut conn = store();
        let mut f = Firsts::load(policy(5000), &conn).unwrap();
        // 5,000 firsts in no order, in one group: enough to sort on a
        // thread of their own.
        let names = scattered_recipients(5000);
        let claims: Vec<(&str, &str, Kind, i64)> = names
            .iter()
            .map(|r| ("m", r.as_str(), Kind::Open, 1))
            .collect();
        assert!(group(&mut conn, &mut f, &claims, true).iter().all(|&c| c));
        assert!(matches!(
            f.flushing.as_ref().map(|f| &f.rows),
            Some(FlushRows::Sorting(_))
        ));
        // Held while sorted and written: never claimed twice.
        let again = group(&mut conn, &mut f, &claims[..10], true);
        assert_eq!(again, [false; 10]);
        sorted(&mut f);
        let mut rounds = 0;
        while f.flushing.is_some() {
            group(&mut conn, &mut f, &[("m", "x", Kind::Click, 2)], true);
            rounds += 1;
            assert!(rounds < 1000, "the flush never ends");
        }
        // In chunks of `MIN_CHUNK` and two per claim.
        assert!(rounds > 100, "{rounds} chunks");
        let written = table(&conn);
        assert_eq!(written.len(), 5000);
        assert!(written.iter().all(|(m, _, k, _)| m == "m" && k == "open"));
        // Only the click is held now.
        assert_eq!(f.unwritten(), 1);
        assert_eq!(group(&mut conn, &mut f, &claims[..3], true), [false; 3]);
    }

    #[test]
    fn write_all_that_fails_keeps_every_first_held() {
        let mut conn = store();
        let mut f = Firsts::load(policy(2), &conn).unwrap();
        let claims = [("m", "a", Kind::Open, 1), ("m", "b", Kind::Open, 1)];
        group(&mut conn, &mut f, &claims, true);
        group(&mut conn, &mut f, &[("m", "c", Kind::Open, 1)], false);
        group(&mut conn, &mut f, &[("m", "d", Kind::Open, 1)], false);
        assert_eq!(f.unwritten(), 2);
        // The table is gone: the write fails.
        conn.execute_batch("ALTER TABLE engagement_firsts RENAME TO away")
            .unwrap();
        assert!(f.write_all(&mut conn).is_err());
        assert_eq!(f.unwritten(), 2);
        conn.execute_batch("ALTER TABLE away RENAME TO engagement_firsts")
            .unwrap();
        // Still held, and written by the next group's chunk.
        assert_eq!(group(&mut conn, &mut f, &claims, true), [false, false]);
        assert_eq!(table(&conn).len(), 2);
        assert_eq!(f.unwritten(), 0);
        assert_eq!(f.write_all(&mut conn).unwrap(), 0);
    }

    #[test]
    fn the_migration_marks_every_first_of_an_older_store_written() {
        let mut conn = Connection::open_in_memory().unwrap();
        schema::migrate_to(&mut conn, 7).unwrap();
        conn.execute_batch(
            "INSERT INTO events (id, dedup_key, source, type, type_raw, mailing_id, recipient_id, \
             event_time, time_source, received_at, first_open, raw) \
             VALUES (7, x'07', 's', 'open', 'open', 'm', 'a', 0, 'payload', 0, 1, ''); \
             INSERT INTO engagement_firsts VALUES ('m', 'a', 'open', 0);",
        )
        .unwrap();
        schema::migrate(&mut conn).unwrap();
        assert_eq!(written_up_to(&conn).unwrap(), 7);
        assert_eq!(recover(&mut conn).unwrap(), (0, 0));
        let mut empty = Connection::open_in_memory().unwrap();
        schema::migrate(&mut empty).unwrap();
        assert_eq!(written_up_to(&empty).unwrap(), 0);
    }

    #[test]
    fn recover_writes_the_firsts_flagged_after_the_mark() {
        let mut conn = store();
        let insert = |id: i64, recipient: Option<&str>, address: Option<&str>, o: bool, c: bool| {
            conn.execute(
                "INSERT INTO events (id, dedup_key, source, type, type_raw, mailing_id, \
                 recipient_id, address, event_time, time_source, received_at, first_open, \
                 first_click, raw) VALUES (?1, ?1, 's', 'open', 'open', 'm', ?2, ?3, ?1, \
                 'payload', 0, ?4, ?5, '')",
                params![id, recipient, address, o, c],
            )
            .unwrap();
        };
        insert(1, Some("before"), None, true, false);
        conn.execute("UPDATE firsts_written SET event_id = 1", [])
            .unwrap();
        insert(2, Some("a"), None, true, false);
        insert(3, Some("a"), None, false, false);
        insert(4, None, Some("b@x.example"), false, true);
        insert(5, Some("c"), None, false, false);
        assert_eq!(recover(&mut conn).unwrap(), (4, 2));
        let got: Vec<(String, String, String, i64)> = table(&conn);
        assert_eq!(
            got,
            [
                ("m".into(), "a".into(), "open".into(), 2),
                ("m".into(), "b@x.example".into(), "click".into(), 4)
            ]
        );
        assert_eq!(written_up_to(&conn).unwrap(), 5);
        // Nothing after the mark now.
        assert_eq!(recover(&mut conn).unwrap(), (0, 0));
    }

    /// Claims of keys not held that looked the table up so far.
    fn lookups(f: &Firsts) -> u64 {
        f.filter_stats().1
    }

    #[test]
    fn a_new_mailings_firsts_skip_the_table_and_stay_exact() {
        let mut conn = store();
        conn.execute(
            "INSERT INTO engagement_firsts VALUES ('old', 'x', 'open', 0)",
            [],
        )
        .unwrap();
        let mut f = Firsts::load(policy(4), &conn).unwrap();
        // A mailing with no firsts in the table: its new keys are told
        // apart by its filter, without a look-up.
        let keys: Vec<String> = (0..12).map(|i| format!("r{i}")).collect();
        for r in &keys {
            assert_eq!(
                group(&mut conn, &mut f, &[("new", r, Kind::Open, 1)], true),
                [true]
            );
        }
        assert_eq!(lookups(&f), 0);
        f.write_all(&mut conn).unwrap();
        assert_eq!(f.unwritten(), 0);
        assert_eq!(table(&conn).len(), 13);
        // Now they are in the table only: the filter says "maybe", the
        // table says "there".
        for r in &keys {
            assert_eq!(
                group(&mut conn, &mut f, &[("new", r, Kind::Open, 2)], true),
                [false]
            );
        }
        assert_eq!(lookups(&f), 12);
        // A click is another key, new to the filter.
        assert_eq!(
            group(&mut conn, &mut f, &[("new", "r0", Kind::Click, 3)], true),
            [true]
        );
        assert_eq!(lookups(&f), 12);
        // A mailing with firsts in the table before: every claim looks.
        assert_eq!(
            group(
                &mut conn,
                &mut f,
                &[("old", "x", Kind::Open, 4), ("old", "y", Kind::Open, 4)],
                true
            ),
            [false, true]
        );
        assert_eq!(lookups(&f), 14);
        assert!(f.filter_stats().0 > 0);
        // After a restart the new mailing has firsts in the table: it
        // looks them up, and still finds them.
        f.write_all(&mut conn).unwrap();
        let mut f = Firsts::load(policy(4), &conn).unwrap();
        assert_eq!(
            group(&mut conn, &mut f, &[("new", "r5", Kind::Open, 5)], true),
            [false]
        );
        assert_eq!(lookups(&f), 1);
    }

    #[test]
    fn without_filters_or_past_their_memory_every_claim_looks_the_table_up() {
        for filter_bytes in [0, 1] {
            let mut conn = store();
            let mut f = Firsts::load(
                Policy {
                    filter_bytes,
                    ..policy(2)
                },
                &conn,
            )
            .unwrap();
            let got = group(
                &mut conn,
                &mut f,
                &[("m", "a", Kind::Open, 1), ("m", "b", Kind::Open, 1)],
                true,
            );
            assert_eq!(got, [true, true]);
            // With no filters both looked; with 1 byte allowed, the
            // first commit let the filter go.
            let before = lookups(&f);
            assert_eq!(before, if filter_bytes == 0 { 2 } else { 0 });
            assert_eq!(f.filter_stats().0, 0, "{filter_bytes}");
            f.write_all(&mut conn).unwrap();
            let got = group(
                &mut conn,
                &mut f,
                &[("m", "a", Kind::Open, 2), ("m", "c", Kind::Open, 2)],
                true,
            );
            assert_eq!(got, [false, true]);
            assert_eq!(lookups(&f), before + 2);
        }
    }

    /// One step of the model test: a claim in a group, then its commit or
    /// rollback, or a write of everything held, or one idle chunk, or a
    /// restart.
    #[derive(Clone, Debug)]
    enum Step {
        Group(Vec<(u8, u8, bool)>, bool),
        WriteAll,
        Idle,
        Restart,
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            6 => (
                proptest::collection::vec((0u8..3, 0u8..6, any::<bool>()), 1..5),
                proptest::bool::weighted(0.8),
            )
                .prop_map(|(c, commit)| Step::Group(c, commit)),
            1 => Just(Step::WriteAll),
            1 => Just(Step::Idle),
            1 => Just(Step::Restart),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Whatever the flushes, idle writes, rollbacks, restarts and filter memory, a
        /// claim is a first exactly when no committed claim of the same
        /// key came before it.
        #[test]
        fn claims_match_a_model_of_committed_firsts(
            steps in proptest::collection::vec(step(), 1..40),
            rows in 1usize..6,
            filter_bytes in prop_oneof![Just(0usize), Just(1), Just(1 << 20)],
        ) {
            let p = Policy { filter_bytes, ..policy(rows) };
            let mut conn = store();
            let mut f = Firsts::load(p, &conn).unwrap();
            let mut committed = std::collections::HashSet::new();
            for s in steps {
                match s {
                    Step::Group(claims, commit) => {
                        let names: Vec<(String, String, Kind)> = claims
                            .iter()
                            .map(|&(m, r, click)| {
                                (format!("m{m}"), format!("r{r}"), if click { Kind::Click } else { Kind::Open })
                            })
                            .collect();
                        let args: Vec<(&str, &str, Kind, i64)> =
                            names.iter().map(|(m, r, k)| (m.as_str(), r.as_str(), *k, 1)).collect();
                        let got = group(&mut conn, &mut f, &args, commit);
                        let mut in_group = std::collections::HashSet::new();
                        for (key, first) in names.into_iter().zip(got) {
                            let want = !committed.contains(&key) && !in_group.contains(&key);
                            prop_assert_eq!(first, want, "{:?}", key);
                            in_group.insert(key);
                        }
                        if commit {
                            committed.extend(in_group);
                        }
                    }
                    Step::WriteAll => {
                        f.write_all(&mut conn).unwrap();
                    }
                    Step::Idle => {
                        f.write_idle(&mut conn).unwrap();
                    }
                    Step::Restart => {
                        f.write_all(&mut conn).unwrap();
                        f = Firsts::load(p, &conn).unwrap();
                    }
                }
            }
            f.write_all(&mut conn).unwrap();
            prop_assert_eq!(table(&conn).len(), committed.len());
        }
    }
}
