//! The simulator against a real server: its scenarios produce the numbers
//! they promise, as mailpulse measures them, and it fails clearly when the
//! target is not there.

mod common;

use clap::Parser;
use common::{get_json, TestServer};
use mailpulse::sim::{self, SimArgs};
use serde_json::Value;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
struct Wrapper {
    #[command(flatten)]
    args: SimArgs,
}

fn args(target: &str, extra: &[&str]) -> SimArgs {
    let mut argv = vec!["simulate", "--target", target, "--quiet"];
    argv.extend_from_slice(extra);
    Wrapper::parse_from(argv).args
}

async fn mailing(server: &TestServer, id: &str) -> Value {
    server
        .http
        .get(server.url(&format!("/api/v1/mailings/{id}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_lands_at_its_promised_hard_bounce_rate() {
    let server = TestServer::start().await;
    let target = format!("http://{}", server.addr);
    let a = args(
        &target,
        &[
            "--scenario",
            "campaign",
            "--recipients",
            "10000",
            "--rate",
            "5000",
            "--hard-bounce",
            "0.02",
            "--speed",
            "2000",
            "--duration",
            "8s",
            "--seed",
            "21",
        ],
    );
    let report = sim::run(&a, CancellationToken::new()).await.unwrap();
    assert_eq!(report.failed_requests, 0);
    assert_eq!(report.duplicates, 0);
    assert_eq!(report.accepted, report.events_sent);
    // The engine publishes on its tick.
    let mut m = Value::Null;
    for _ in 0..50 {
        m = mailing(&server, "7101").await;
        if m["mailing"]["totals"]["sent"] == 10_000 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(m["mailing"]["totals"]["sent"], 10_000, "{m}");
    let hard = m["mailing"]["rates"]["hard_bounce"].as_f64().unwrap();
    assert!((hard - 0.02).abs() < 0.005, "hard-bounce rate {hard}");
    let open = m["mailing"]["rates"]["open"].as_f64().unwrap_or(0.0);
    assert!(open > 0.05, "opens arrive too: {open}");
    // A realistic mix of receiving domains.
    let domains = m["bounces"]["by_domain"].as_array().unwrap();
    assert!(domains.len() >= 8, "{domains:?}");
    assert_eq!(domains[0]["domain"], "gmail.com");
    server.stop().await;
}

/// What was stored, independent of when the run started: each event's
/// type, mailing, recipient, link and bounce category, and its time relative
/// to the first event.
async fn stored_traffic(server: &TestServer) -> Vec<(String, i64)> {
    let v = get_json(
        &server.http,
        server.url("/api/v1/events?limit=100000&unmasked=true"),
    )
    .await;
    let events = v["events"].as_array().unwrap();
    let time = |e: &Value| {
        chrono::DateTime::parse_from_rfc3339(e["event_time"].as_str().unwrap())
            .unwrap()
            .timestamp_millis()
    };
    let first = events.iter().map(time).min().unwrap();
    let mut out: Vec<(String, i64)> = events
        .iter()
        .map(|e| {
            let key = format!(
                "{} {} {} {} {} {}",
                e["type"],
                e["mailing_id"],
                e["recipient_id"],
                e["address"],
                e["link"],
                e["bounce_category"]
            );
            (key, time(e) - first)
        })
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn the_same_seed_sends_the_same_traffic() {
    let flags = [
        "--scenario",
        "campaign,steady",
        "--recipients",
        "400",
        "--rate",
        "2000",
        "--tx-per-min",
        "600",
        "--speed",
        "5000",
        "--duration",
        "2s",
        "--seed",
        "5",
    ];
    let mut runs = vec![];
    for seed in ["5", "5", "6"] {
        let server = TestServer::start().await;
        let mut f = flags;
        f[f.len() - 1] = seed;
        let r = sim::run(
            &args(&format!("http://{}", server.addr), &f),
            CancellationToken::new(),
        )
        .await
        .unwrap();
        assert!(r.accepted > 400, "{r:?}");
        assert_eq!(r.duplicates, 0);
        runs.push(stored_traffic(&server).await);
        server.stop().await;
    }
    assert_eq!(runs[0], runs[1], "same seed, same traffic");
    assert_ne!(runs[0], runs[2], "another seed, other traffic");
}

#[tokio::test]
async fn an_unreachable_target_fails_clearly() {
    // A port nobody listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let a = args(&format!("http://127.0.0.1:{port}"), &["--duration", "1s"]);
    let started = std::time::Instant::now();
    let err = tokio::time::timeout(
        Duration::from_secs(60),
        sim::run(&a, CancellationToken::new()),
    )
    .await
    .unwrap()
    .unwrap_err()
    .to_string();
    assert!(err.contains("cannot reach"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[tokio::test]
async fn a_wrong_secret_is_reported_as_a_refusal() {
    let server = TestServer::start_with(|c| {
        c.webhook_secret = Some(mailpulse::config::Secret::new("right"))
    })
    .await;
    let a = args(
        &format!("http://{}", server.addr),
        &[
            "--secret",
            "wrong",
            "--scenario",
            "campaign",
            "--duration",
            "2s",
            "--rate",
            "1000",
        ],
    );
    let err = sim::run(&a, CancellationToken::new())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("refused") && err.contains("401"), "{err}");
    server.stop().await;
}
