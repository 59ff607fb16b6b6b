//! Transactional monitoring and alerts end to end: dispatches reported over
//! the API, `sent` events stopped, the alert firing within a minute with one
//! notification to a real HTTP receiver, exactly one resolved notice, and a
//! kill of the real binary while firing that loses nothing and sends
//! nothing twice. Also the alert API, the channels' message shapes and the
//! stuck list with Optimizely's view (a mock of Optimizely's API).

mod common;

use axum::routing::{get, post};
use axum::{Json, Router};
use common::{get_json, get_text, now_ms, wait_ready, TestServer};
use mailpulse::config::{ChannelConfig, OptimizelyConfig, Secret};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const HOOK: &str = "/webhooks/optimizely";
const TX: &str = "9001";

/// A real HTTP server that records what it receives.
#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<(String, Value)>>>,
}

impl Receiver {
    async fn start() -> (Receiver, String) {
        let r = Receiver::default();
        let got = r.got.clone();
        let app = Router::new().route(
            "/{*path}",
            post(move |uri: axum::http::Uri, Json(v): Json<Value>| {
                let got = got.clone();
                async move {
                    got.lock().unwrap().push((uri.path().to_string(), v));
                    (axum::http::StatusCode::ACCEPTED, "ok")
                }
            }),
        );
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(l, app).await });
        (r, format!("http://{addr}"))
    }

    fn all(&self, path: &str) -> Vec<Value> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _)| p == path)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// The notifications of one rule (other rules may fire too).
    fn of(&self, path: &str, rule: &str) -> Vec<Value> {
        self.all(path)
            .into_iter()
            .filter(|v| v["rule"] == rule)
            .collect()
    }

    fn kinds(&self, path: &str, rule: &str) -> Vec<String> {
        self.of(path, rule)
            .iter()
            .map(|v| v["kind"].as_str().unwrap().to_string())
            .collect()
    }

    async fn wait_for(
        &self,
        path: &str,
        rule: &str,
        kind: &str,
        within: Duration,
    ) -> Option<Duration> {
        let start = Instant::now();
        while start.elapsed() < within {
            if self.kinds(path, rule).iter().any(|k| k == kind) {
                return Some(start.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        None
    }
}

fn sent(recipient: &str, t: i64) -> Value {
    json!({"type": "sent", "mailingId": TX, "recipientId": recipient, "timestamp": t})
}

fn dispatch(mail: &str, recipient: &str, t: i64) -> Value {
    json!({"mailId": mail, "mailingId": TX, "recipientId": recipient, "acceptedAt": t})
}

/// The last ten minutes of normal traffic: 60 mails a minute, each
/// dispatched and sent 1.5 s later.
async fn post_history(http: &reqwest::Client, base: &str) {
    let now = now_ms();
    let mut dispatches = vec![];
    let mut events = vec![];
    for i in 0..600 {
        let t = now - 600_000 + i * 1000;
        dispatches.push(dispatch(&format!("h{i}"), &format!("r{i}"), t));
        events.push(sent(&format!("r{i}"), t + 1500));
    }
    let r = http
        .post(format!("{base}/api/v1/dispatches"))
        .json(&dispatches)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let r = http
        .post(format!("{base}{HOOK}"))
        .json(&events)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// Keeps dispatching (one mail every 500 ms) without any sent event.
fn stall(http: reqwest::Client, base: String, tag: &'static str) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        for i in 0.. {
            let d = dispatch(&format!("{tag}{i}"), &format!("{tag}-r{i}"), now_ms());
            let _ = http
                .post(format!("{base}/api/v1/dispatches"))
                .json(&d)
                .send()
                .await;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
}

/// Sends the sent events of every open dispatch: the queue drains.
async fn recover(http: &reqwest::Client, base: &str) {
    let v: Value = get_json(
        http,
        format!("{base}/api/v1/dispatches/stuck?older_than=0s"),
    )
    .await;
    let events: Vec<Value> = v["stuck"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            json!({"type": "sent", "mailingId": TX, "recipientId": s["recipient_id"],
                        "mailId": s["mail_id"], "timestamp": now_ms()})
        })
        .collect();
    if !events.is_empty() {
        let r = http
            .post(format!("{base}{HOOK}"))
            .json(&events)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stall_fires_within_a_minute_and_resolves_once() {
    let (receiver, url) = Receiver::start().await;
    let server = TestServer::start_with(|c| {
        c.mailings.transactional = vec![TX.into()];
        c.alert_webhook_url = Some(Secret::new(format!("{url}/hook")));
        c.alerts.startup_grace = "5s".into();
    })
    .await;
    let base = format!("http://{}", server.addr);
    post_history(&server.http, &base).await;
    let stalled_at = Instant::now();
    let dispatcher = stall(server.http.clone(), base.clone(), "s");

    let fired = receiver
        .wait_for(
            "/hook",
            "transactional-silent",
            "firing",
            Duration::from_secs(75),
        )
        .await
        .expect("the silence alert fires");
    let detection = stalled_at.elapsed();
    println!("stall detected after {detection:?} (notification seen after {fired:?})");
    assert!(
        detection < Duration::from_secs(60),
        "detected after {detection:?}"
    );
    let firing = receiver.of("/hook", "transactional-silent");
    let n = &firing[0];
    assert_eq!(n["severity"], "critical");
    assert_eq!(n["mailing"], TX);
    assert!(n["text"].as_str().unwrap().contains("no sent event"), "{n}");
    assert!(n["dashboard_url"]
        .as_str()
        .unwrap()
        .ends_with("/mailings/9001"));
    assert!(n["chart_url"].as_str().unwrap().contains("/api/v1/alerts/"));
    assert!(n["value"].as_f64().unwrap() >= n["threshold"].as_f64().unwrap());

    // The API and the live state agree.
    let a = active_alert(&server.http, &server.url(""), "transactional-silent").await;
    assert_eq!(a["state"], "firing");
    let chart = server
        .http
        .get(server.url(&format!("/api/v1/alerts/{}/chart.png", a["id"])))
        .send()
        .await
        .unwrap();
    assert_eq!(chart.headers()["content-type"], "image/png");
    assert_eq!(&chart.bytes().await.unwrap()[1..4], b"PNG");
    let health: Value = get_json(&server.http, server.url("/api/v1/transactional")).await;
    assert_eq!(health["transactional"]["status"], "critical");
    assert!(health["transactional"]["queue_depth"].as_u64().unwrap() > 10);

    dispatcher.abort();
    recover(&server.http, &base).await;
    receiver
        .wait_for(
            "/hook",
            "transactional-silent",
            "resolved",
            Duration::from_secs(30),
        )
        .await
        .expect("a resolved notice");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        receiver.kinds("/hook", "transactional-silent"),
        vec!["firing", "resolved"],
        "one notification per transition"
    );
    server.stop().await;
}

/// The real binary, killed when the test ends (even by a panic).
struct Binary(Child);

impl Binary {
    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        self.kill();
    }
}

fn start_binary(data_dir: &std::path::Path, port: u16, hook: &str) -> Binary {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mailpulse"))
        .arg("serve")
        .env("MAILPULSE_ADDR", format!("127.0.0.1:{port}"))
        .env("MAILPULSE_DATA_DIR", data_dir)
        .env("MAILPULSE_ALERT_WEBHOOK_URL", hook)
        .env("MAILPULSE_MAILINGS__TRANSACTIONAL", format!("[\"{TX}\"]"))
        .env("MAILPULSE_ALERTS__STARTUP_GRACE", "5s")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("binary starts");
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || for _ in BufReader::new(out).lines() {});
    Binary(child)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_while_firing_loses_nothing_and_sends_nothing_twice() {
    let (receiver, url) = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let hook = format!("{url}/hook");

    let mut child = start_binary(dir.path(), port, &hook);
    wait_ready(&http, &base, Duration::from_secs(15)).await;
    post_history(&http, &base).await;
    let dispatcher = stall(http.clone(), base.clone(), "k");
    receiver
        .wait_for(
            "/hook",
            "transactional-silent",
            "firing",
            Duration::from_secs(75),
        )
        .await
        .expect("fires");
    // Let the delivery be recorded, then kill without warning.
    tokio::time::sleep(Duration::from_secs(2)).await;
    dispatcher.abort();
    child.kill();
    let incident = receiver.of("/hook", "transactional-silent")[0]["incident_id"].clone();

    let _restarted = start_binary(dir.path(), port, &hook);
    wait_ready(&http, &base, Duration::from_secs(15)).await;
    // Still stalled after the restart: still firing, not notified again.
    let dispatcher = stall(http.clone(), base.clone(), "k2");
    tokio::time::sleep(Duration::from_secs(8)).await;
    let a = active_alert(&http, &base, "transactional-silent").await;
    assert_eq!(a["state"], "firing");
    assert_eq!(a["id"], incident, "the same incident continues");
    assert_eq!(
        receiver.kinds("/hook", "transactional-silent"),
        vec!["firing"]
    );

    dispatcher.abort();
    recover(&http, &base).await;
    receiver
        .wait_for(
            "/hook",
            "transactional-silent",
            "resolved",
            Duration::from_secs(30),
        )
        .await
        .expect("resolved after the restart");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        receiver.kinds("/hook", "transactional-silent"),
        vec!["firing", "resolved"]
    );
    let resolved = receiver
        .of("/hook", "transactional-silent")
        .into_iter()
        .find(|v| v["kind"] == "resolved")
        .unwrap();
    assert_eq!(resolved["incident_id"], incident);
}

/// The active alert of `rule`, from `GET /api/v1/alerts`.
async fn active_alert(http: &reqwest::Client, base: &str, rule: &str) -> Value {
    let alerts: Value = get_json(http, format!("{base}/api/v1/alerts")).await;
    alerts["active"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["rule"] == rule)
        .unwrap_or_else(|| panic!("no active {rule} alert in {alerts}"))
        .clone()
}

fn channel(kind: &str, url: String) -> ChannelConfig {
    ChannelConfig {
        name: Some(kind.into()),
        kind: kind.into(),
        url: Some(Secret::new(url)),
        routing_key: (kind == "pagerduty").then(|| Secret::new("R0UT1NG")),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ack_silence_rules_and_the_channels_message_shapes() {
    let (receiver, url) = Receiver::start().await;
    let server = TestServer::start_with(|c| {
        c.mailings.transactional = vec![TX.into()];
        c.alerts.channels = vec![
            channel("slack", format!("{url}/slack")),
            channel("pagerduty", format!("{url}/pd")),
        ];
        c.alerts.startup_grace = "1s".into();
    })
    .await;
    // A rule through the API: it fires at once on any sent event.
    let bad = server
        .http
        .put(server.url("/api/v1/alert-rules/any-send"))
        .json(&json!({"name": "any-send", "metric": "sent", "window": "2m", "above": 0}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    assert!(bad.text().await.unwrap().contains("window"));
    let ok = server
        .http
        .put(server.url("/api/v1/alert-rules/any-send"))
        .json(
            &json!({"name": "any-send", "metric": "sent", "scope": "class:transactional",
                      "window": "1m", "above": 0, "severity": "critical"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200, "{}", ok.text().await.unwrap());
    let rules: Value = get_json(&server.http, server.url("/api/v1/alert-rules")).await;
    let r = rules["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "any-send")
        .unwrap();
    assert_eq!(r["origin"], "api");

    server
        .post_json(HOOK, &json!([sent("x1", now_ms())]), &[])
        .await;
    let deadline = Instant::now() + Duration::from_secs(15);
    while receiver.all("/pd").is_empty() || receiver.all("/slack").is_empty() {
        assert!(Instant::now() < deadline, "no notifications");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pd = &receiver.all("/pd")[0];
    assert_eq!(pd["event_action"], "trigger");
    assert_eq!(pd["routing_key"], "R0UT1NG");
    assert_eq!(pd["dedup_key"], "mailpulse:any-send:class:transactional");
    assert_eq!(pd["payload"]["severity"], "critical");
    assert!(pd["images"][0]["src"]
        .as_str()
        .unwrap()
        .ends_with("chart.png"));
    let slack = &receiver.all("/slack")[0];
    assert!(
        slack["text"].as_str().unwrap().contains("[CRITICAL]"),
        "{slack}"
    );

    // Acknowledge: PagerDuty hears it; no reminders follow.
    let id = active_alert(&server.http, &server.url(""), "any-send").await["id"]
        .as_i64()
        .unwrap();
    let r = server
        .http
        .post(server.url(&format!("/api/v1/alerts/{id}/ack")))
        .json(&json!({"by": "jane", "comment": "looking into it"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    while receiver.all("/pd").len() < 2 {
        assert!(Instant::now() < deadline, "no acknowledge event");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(receiver.all("/pd")[1]["event_action"], "acknowledge");
    let again = server
        .http
        .post(server.url("/api/v1/alerts/99999/ack"))
        .json(&json!({"by": "jane"}))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 404);

    // A silence is listed, and can be ended.
    let s: Value = server
        .http
        .post(server.url("/api/v1/silences"))
        .json(&json!({"rule": "webhook-lag", "duration": "1h", "created_by": "jane", "comment": "known"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let listed: Value = get_json(&server.http, server.url("/api/v1/alerts")).await;
    assert_eq!(listed["silences"][0]["comment"], "known");
    let d = server
        .http
        .delete(server.url(&format!("/api/v1/silences/{}", s["id"])))
        .send()
        .await
        .unwrap();
    assert_eq!(d.status(), 200);
    let bad = server
        .http
        .post(server.url("/api/v1/silences"))
        .json(&json!({"duration": "1h", "created_by": "jane"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);

    // Removing the rule resolves its alert: PagerDuty gets the resolve.
    let d = server
        .http
        .delete(server.url("/api/v1/alert-rules/any-send"))
        .send()
        .await
        .unwrap();
    assert_eq!(d.status(), 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !receiver
        .all("/pd")
        .iter()
        .any(|v| v["event_action"] == "resolve")
    {
        assert!(Instant::now() < deadline, "no resolve event");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let d = server
        .http
        .delete(server.url("/api/v1/alert-rules/webhook-lag"))
        .send()
        .await
        .unwrap();
    assert_eq!(d.status(), 404, "built-in rules are disabled, not deleted");
    server.stop().await;
}

#[tokio::test]
async fn dispatches_are_idempotent_and_the_stuck_list_asks_optimizely() {
    // A stand-in for Optimizely's REST API (outside this machine).
    let asked: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = asked.clone();
    let mock = Router::new().route(
        "/rest/{client}/transactionalmail/status",
        get(
            move |axum::extract::Path(client): axum::extract::Path<String>,
                  axum::extract::Query(q): axum::extract::Query<
                std::collections::HashMap<String, String>,
            >,
                  headers: axum::http::HeaderMap| {
                let seen = seen.clone();
                async move {
                    assert_eq!(client, "4711");
                    assert!(headers["authorization"]
                        .to_str()
                        .unwrap()
                        .starts_with("Basic "));
                    seen.lock().unwrap().push(q["mailId"].clone());
                    Json(json!({"sendStatus": "enqueued", "mailId": q["mailId"]}))
                }
            },
        ),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mock_url = format!("http://{}/rest", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, mock).await });

    let server = TestServer::start_with(|c| {
        c.mailings.transactional = vec![TX.into()];
        c.optimizely = Some(OptimizelyConfig {
            client_id: "4711".into(),
            username: "api-user".into(),
            password: Secret::new("pw"),
            base_url: mock_url,
        });
    })
    .await;
    let t = now_ms() - 300_000;
    let batch = json!([
        dispatch("m1", "r1", t),
        dispatch("m2", "r2", t + 1000),
        dispatch("m3", "r3", now_ms())
    ]);
    let r: Value = server
        .http
        .post(server.url("/api/v1/dispatches"))
        .json(&batch)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        r,
        json!({"accepted": 3, "duplicates": 0, "already_sent": 0})
    );
    let r: Value = server
        .http
        .post(server.url("/api/v1/dispatches"))
        .json(&batch)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["duplicates"], 3);
    // m2's sent event (by recipient, no mailId) closes it.
    server
        .post_json(HOOK, &json!([sent("r2", t + 2500)]), &[])
        .await;
    // A sent event before its dispatch report: matched when the report comes.
    server.post_json(HOOK, &json!([{"type": "sent", "mailingId": TX, "recipientId": "r9", "mailId": "m9", "timestamp": now_ms()}]), &[]).await;
    let r: Value = server
        .http
        .post(server.url("/api/v1/dispatches"))
        .json(&dispatch("m9", "r9", now_ms() - 2000))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["already_sent"], 1);

    let stuck: Value = get_json(
        &server.http,
        server.url("/api/v1/dispatches/stuck?older_than=1m"),
    )
    .await;
    let list = stuck["stuck"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{stuck}");
    assert_eq!(list[0]["mail_id"], "m1");
    assert_eq!(list[0]["recipient_id"], "r1");
    assert_eq!(list[0]["optimizely_status"], "enqueued");
    assert_eq!(*asked.lock().unwrap(), vec!["m1".to_string()]);
    let csv = get_text(
        &server.http,
        server.url("/api/v1/dispatches/stuck?older_than=1m&format=csv"),
    )
    .await;
    assert!(
        csv.lines().nth(1).unwrap().starts_with("m1,9001,r1,"),
        "{csv}"
    );
    // Bad reports say which item and field.
    let bad = server
        .http
        .post(server.url("/api/v1/dispatches"))
        .json(
            &json!([dispatch("ok", "r", t), {"mailId": "x", "mailingId": TX, "recipientId": "r"}]),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    assert!(bad
        .text()
        .await
        .unwrap()
        .contains("item 1: field `acceptedAt` is missing"));
    let bad = server
        .http
        .get(server.url("/api/v1/dispatches/stuck?older_than=soon"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    // The queue figures are live.
    let mut depth = 0;
    for _ in 0..50 {
        let h: Value = get_json(&server.http, server.url("/api/v1/transactional")).await;
        depth = h["transactional"]["queue_depth"].as_u64().unwrap();
        if depth == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(depth, 2, "m1 and m3 are open");
    server.stop().await;
}

/// A tiny SMTP sink (stands in for a mail relay outside this machine).
async fn smtp_sink() -> (u16, Arc<Mutex<Vec<String>>>) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let mails: Arc<Mutex<Vec<String>>> = Arc::default();
    let store = mails.clone();
    tokio::spawn(async move {
        loop {
            let (sock, _) = l.accept().await.unwrap();
            let store = store.clone();
            tokio::spawn(async move {
                let (r, mut w) = sock.into_split();
                let mut lines = BufReader::new(r).lines();
                w.write_all(b"220 sink ESMTP\r\n").await.unwrap();
                let mut data: Option<String> = None;
                while let Ok(Some(line)) = lines.next_line().await {
                    if let Some(d) = data.as_mut() {
                        if line == "." {
                            store.lock().unwrap().push(data.take().unwrap());
                            w.write_all(b"250 queued\r\n").await.unwrap();
                        } else {
                            d.push_str(&line);
                            d.push('\n');
                        }
                        continue;
                    }
                    let upper = line.to_ascii_uppercase();
                    let reply: &[u8] = if upper.starts_with("EHLO") || upper.starts_with("HELO") {
                        b"250 sink\r\n"
                    } else if upper.starts_with("DATA") {
                        data = Some(String::new());
                        b"354 go on\r\n"
                    } else if upper.starts_with("QUIT") {
                        let _ = w.write_all(b"221 bye\r\n").await;
                        break;
                    } else {
                        b"250 ok\r\n"
                    };
                    w.write_all(reply).await.unwrap();
                }
            });
        }
    });
    (port, mails)
}

#[tokio::test]
async fn email_notifications_go_over_smtp() {
    let (port, mails) = smtp_sink().await;
    let server = TestServer::start_with(|c| {
        c.alerts.channels = vec![ChannelConfig {
            name: Some("oncall-mail".into()),
            kind: "email".into(),
            smtp_host: Some("127.0.0.1".into()),
            smtp_port: Some(port),
            tls: Some("none".into()),
            from: Some("mailpulse <mailpulse@example.com>".into()),
            to: vec!["oncall@example.com".into()],
            ..Default::default()
        }];
        c.alerts.rules = vec![serde_json::from_value(json!({
            "name": "any-send", "metric": "sent", "window": "1m", "above": 0, "severity": "warning"
        }))
        .unwrap()];
    })
    .await;
    server
        .post_json(HOOK, &json!([sent("e1", now_ms())]), &[])
        .await;
    let deadline = Instant::now() + Duration::from_secs(15);
    while mails.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "no mail");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mail = mails.lock().unwrap()[0].clone();
    assert!(mail.contains("Subject: [WARNING]"), "{mail}");
    assert!(mail.contains("oncall@example.com"), "{mail}");
    assert!(mail.contains("chart.png"), "{mail}");
    server.stop().await;
}

#[tokio::test]
async fn retention_deletes_dispatches_accepted_or_sent_before_the_horizon() {
    let server = TestServer::start_with(|c| c.mailings.transactional = vec![TX.into()]).await;
    let now = now_ms();
    let old = now - 3 * 86_400_000;
    let r = server
        .http
        .post(server.url("/api/v1/dispatches"))
        .json(&json!([
            dispatch("old-open", "r1", old),
            dispatch("old-sent", "r2", old),
            dispatch("new-open", "r3", now),
            dispatch("old-accepted-new-sent", "r4", old),
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    server
        .post_json(HOOK, &json!([sent("r2", old + 1500), sent("r4", now)]), &[])
        .await;
    let mails = || {
        server.query(|c| {
            let mut s = c.prepare("SELECT mail_id FROM dispatches ORDER BY mail_id")?;
            let rows = s.query_map([], |r| r.get::<_, String>(0))?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    };
    assert_eq!(mails().await.len(), 4);
    server
        .state
        .store
        .apply_retention(now - 2 * 86_400_000, 0)
        .await
        .unwrap();
    // An open dispatch goes by when it was accepted, a closed one by when
    // it was sent (with its sent event).
    assert_eq!(mails().await, ["new-open", "old-accepted-new-sent"]);
    server.stop().await;
}
