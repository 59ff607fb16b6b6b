//! Crash safety: the real `mailpulse` binary under steady ingest is killed
//! with SIGKILL at random moments, several rounds in a row, and restarted on
//! the same data dir. Every event that was answered 200 must be in the store
//! exactly once, and every recipient who opened has exactly one first open:
//! first opens are held in memory and written to their table late, so a
//! kill loses the ones held and the next start must recover them.

mod common;

use common::wait_ready;
use mailpulse::store::raw::{RawReader, StoredRaw};
use mailpulse::store::{rusqlite, DB_FILE};
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const ROUNDS: usize = 5;
const SENDERS: usize = 4;
/// Sent events per batch, each to a recipient of its own.
const BATCH: usize = 25;
/// Opens per batch, each by a recipient drawn from `POOL`, so recipients
/// open again in later rounds, after kills.
const OPENS: usize = 25;
const POOL: usize = 3_000;

/// The real binary, killed with SIGKILL when dropped (also on a panic).
struct Binary(Child);

impl Binary {
    fn sigkill(&mut self) {
        let _ = self.0.kill(); // SIGKILL on unix
        let _ = self.0.wait();
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        self.sigkill();
    }
}

/// Starts the binary on a free port; returns it and its address.
fn start(data_dir: &Path) -> (Binary, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mailpulse"))
        .arg("serve")
        .env("MAILPULSE_ADDR", "127.0.0.1:0")
        .env("MAILPULSE_DATA_DIR", data_dir)
        .env("RUST_LOG", "info")
        // Flushes of first opens start often, so kills land in them too.
        .env("MAILPULSE_STORE__FIRSTS_FLUSH_ROWS", "500")
        .env("MAILPULSE_STORE__FIRSTS_FLUSH_SECS", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("mailpulse binary starts");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    // Keep draining stdout so the server never blocks on a full pipe.
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("listening addr=").nth(1) {
                let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_string());
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("server reports its address");
    (Binary(child), addr)
}

/// `BATCH` sent events of recipients named after `tag`, and `OPENS` opens
/// by recipients of the pool, at times no other open has (`unique` counts
/// the batches of all senders apart), so none is a duplicate.
fn batch(tag: &str, unique: i64, rng: &mut impl Rng) -> Value {
    let sent = (0..BATCH).map(|i| {
        json!({"type": "sent", "mailingId": 77, "recipientId": format!("{tag}-{i}"),
               "timestamp": 1_766_999_000_000i64})
    });
    let opens = (0..OPENS as i64).map(|i| {
        json!({"type": "open", "mailingId": 88,
               "recipientId": format!("p{}", rng.random_range(0..POOL)),
               "timestamp": 1_766_999_000_000i64 + unique * OPENS as i64 + i})
    });
    Value::Array(sent.chain(opens).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_events_survive_sigkill_exactly_once() {
    let seed: u64 = rand::rng().random();
    println!("crash test seed: {seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();

    for round in 0..ROUNDS {
        let (mut child, addr) = start(dir.path());
        let url = format!("http://{addr}/webhooks/optimizely");
        let stop = Arc::new(AtomicBool::new(false));
        let mut senders = Vec::new();
        let before = acked.lock().unwrap().len();
        for s in 0..SENDERS {
            let (http, url, stop, acked) = (http.clone(), url.clone(), stop.clone(), acked.clone());
            let mut rng = rand::rngs::StdRng::seed_from_u64(rng.random());
            senders.push(tokio::spawn(async move {
                let mut seq = 0i64;
                while !stop.load(Ordering::Relaxed) {
                    let tag = format!("r{round}s{s}n{seq}");
                    let unique = (round * SENDERS + s) as i64 * 1_000_000 + seq;
                    seq += 1;
                    let body = batch(&tag, unique, &mut rng);
                    let Ok(resp) = http.post(&url).json(&body).send().await else {
                        continue;
                    };
                    if resp.status() == 200 {
                        let receipt: Value = match resp.json().await {
                            Ok(v) => v,
                            Err(_) => continue,
                        };
                        assert_eq!(receipt["accepted"], (BATCH + OPENS) as u64, "{receipt}");
                        let mut a = acked.lock().unwrap();
                        a.extend((0..BATCH).map(|i| format!("{tag}-{i}")));
                    }
                }
            }));
        }
        // The random moment is counted from readiness: before it ingest
        // answers 503 (the live state is being rebuilt), and a start that
        // recovers a large WAL can take longer than the shortest lifetime,
        // which left a round with nothing acknowledged (a CI flake).
        wait_ready(&http, &format!("http://{addr}"), Duration::from_secs(30)).await;
        let lifetime = Duration::from_millis(rng.random_range(200..1400));
        tokio::time::sleep(lifetime).await;
        child.sigkill();
        stop.store(true, Ordering::Relaxed);
        for s in senders {
            s.await.unwrap();
        }
        let gained = acked.lock().unwrap().len() - before;
        println!("round {round}: killed {lifetime:?} after ready, {gained} events acknowledged");
        assert!(
            gained > 0,
            "round {round} acknowledged nothing; the test proves nothing"
        );
    }

    // A last start proves the store opens cleanly after the kills.
    let (mut child, _) = start(dir.path());
    child.sigkill();

    let conn = rusqlite::Connection::open(dir.path().join(DB_FILE)).unwrap();
    let mut stmt = conn
        .prepare(
            "SELECT recipient_id, COUNT(*) FROM events WHERE type = 'sent' GROUP BY recipient_id",
        )
        .unwrap();
    let mut stored = HashSet::new();
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
        .unwrap();
    for row in rows {
        let (id, n) = row.unwrap();
        assert_eq!(n, 1, "{id} stored {n} times");
        stored.insert(id);
    }
    let acked = acked.lock().unwrap();
    let missing: Vec<_> = acked.iter().filter(|id| !stored.contains(*id)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged events lost, e.g. {:?}",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(5)]
    );
    println!(
        "{} acknowledged events all stored once ({} stored in all)",
        acked.len(),
        stored.len()
    );

    // Every stored event's raw JSON reads back from its batch's body: the
    // body and its events commit together or not at all.
    let mut raws = RawReader::new(&conn);
    let mut stmt = conn
        .prepare("SELECT recipient_id, raw, body_id, raw_start, raw_len FROM events ORDER BY id")
        .unwrap();
    let mut rows = stmt.query([]).unwrap();
    let mut read = 0;
    while let Some(r) = rows.next().unwrap() {
        let id: String = r.get(0).unwrap();
        let stored_raw = StoredRaw::from_row(r, 1).unwrap();
        let text = raws
            .text(stored_raw)
            .unwrap_or_else(|e| panic!("raw of {id}: {e}"));
        let raw: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(raw["recipientId"], id.as_str(), "{text}");
        read += 1;
    }
    let events: i64 = conn
        .query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))
        .unwrap();
    assert_eq!(read, events as usize);
    // They are batches, so all of them were read from compressed bodies.
    let in_bodies: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM events WHERE body_id IS NOT NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(in_bodies as usize, read);

    // Every recipient who opened has exactly one open flagged first (one
    // lost at a kill and not recovered would let a later open be first
    // again), and the firsts' table holds exactly those, with their time.
    let mut stmt = conn
        .prepare(
            "SELECT recipient_id, SUM(first_open) FROM events WHERE type = 'open' \
             GROUP BY recipient_id",
        )
        .unwrap();
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
        .unwrap();
    let mut openers = HashSet::new();
    for row in rows {
        let (id, firsts) = row.unwrap();
        assert_eq!(firsts, 1, "{id} has {firsts} first opens");
        openers.insert(id);
    }
    assert!(openers.len() > 100, "too few openers to prove anything");
    let mut stmt = conn
        .prepare(
            "SELECT f.recipient FROM engagement_firsts f JOIN events e \
             ON e.mailing_id = f.mailing_id AND e.recipient_id = f.recipient \
             AND e.first_open = 1 AND e.event_time = f.event_time \
             WHERE f.mailing_id = '88' AND f.kind = 'open'",
        )
        .unwrap();
    let recorded: HashSet<String> = stmt
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let all: i64 = conn
        .query_row("SELECT COUNT(*) FROM engagement_firsts", [], |r| r.get(0))
        .unwrap();
    assert_eq!(recorded, openers);
    assert_eq!(all as usize, openers.len());
    println!("{} openers, each with one first open", openers.len());
}
