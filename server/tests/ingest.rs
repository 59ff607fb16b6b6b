//! Webhook ingest over real HTTP: every answer the front door gives, and
//! that what was answered 200 is stored exactly once, across restarts.

mod common;

use common::{metric, now_ms, TestServer};
use mailpulse::config::{Secret, SourceAuth, SourceConfig};
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::time::Duration;

const HOOK: &str = "/webhooks/optimizely";

fn events(prefix: &str, n: usize) -> Value {
    Value::Array(
        (0..n)
            .map(|i| {
                json!({
                    "type": "sent",
                    "clientId": 7,
                    "mailingId": 1001,
                    "recipientId": format!("{prefix}-{i}"),
                    "timestamp": 1_766_999_000_000i64 + i as i64,
                    "mediaTypesToAddresses": {"EMAIL": format!("{prefix}{i}@example.com")}
                })
            })
            .collect(),
    )
}

async fn count(server: &TestServer, sql: &'static str) -> i64 {
    server
        .query(move |c| Ok(c.query_row(sql, [], |r| r.get::<_, i64>(0))?))
        .await
}

async fn error_of(resp: reqwest::Response) -> (u16, String, String) {
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.expect("error bodies are JSON");
    (
        status,
        body["error"].as_str().unwrap_or_default().to_string(),
        body["message"].as_str().unwrap_or_default().to_string(),
    )
}

#[tokio::test]
async fn receipt_counts_accepted_duplicates_and_quarantined() {
    let server = TestServer::start().await;
    let mut batch = events("r", 5);
    batch.as_array_mut().unwrap().push(json!(42));
    batch.as_array_mut().unwrap().push(json!({"no": "type"}));
    let r = server.post_json(HOOK, &batch, &[]).await;
    assert_eq!(r.status(), 200);
    let receipt: Value = r.json().await.unwrap();
    assert_eq!(
        receipt,
        json!({"accepted": 5, "duplicates": 0, "quarantined": 2})
    );

    // The same batch again: nothing new is stored, the duplicates are counted.
    let again: Value = post_text(&server, &batch.to_string()).await;
    assert_eq!(
        again,
        json!({"accepted": 0, "duplicates": 5, "quarantined": 2})
    );
    assert_eq!(count(&server, "SELECT COUNT(*) FROM events").await, 5);
    // Quarantined items are kept with their reason and raw text.
    let rows: Vec<(String, String)> = server
        .query(|c| {
            let mut s = c.prepare("SELECT reason, raw FROM quarantine ORDER BY id")?;
            let rows = s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await;
    assert_eq!(rows.len(), 4);
    assert!(rows[0].0.contains("a number"));
    assert_eq!(rows[0].1, "42");
    assert!(rows[1].0.contains("no `type`"));
    assert_eq!(rows[1].1, r#"{"no":"type"}"#);
    server.stop().await;
}

#[tokio::test]
async fn stored_events_keep_raw_json_and_parsed_columns() {
    let server = TestServer::start().await;
    let body = json!({"type": "Bounce", "mailingId": "55", "recipientId": 9, "userListId": 3,
        "eventTime": "2025-12-29T09:03:20Z", "bounceCategory": "hardbounce", "reason": "other",
        "mediaTypesToAddresses": {"EMAIL": "Ann@Mail.Example.org"}, "vendor": {"x": [1, "ü"]}});
    let r = server.post_json(HOOK, &body, &[]).await;
    assert_eq!(r.status(), 200);
    let row: Vec<Option<String>> = server
        .query(|c| {
            Ok(c.query_row(
                "SELECT type, mailing_id, recipient_id, recipient_list_id, domain, bounce_category, \
                 bounce_reason, time_source, CAST(event_time AS TEXT), raw FROM events",
                [],
                |r| (0..10).map(|i| r.get(i)).collect(),
            )?)
        })
        .await;
    let row: Vec<&str> = row.iter().map(|v| v.as_deref().unwrap_or("")).collect();
    assert_eq!(
        &row[..9],
        &[
            "bounce",
            "55",
            "9",
            "3",
            "mail.example.org",
            "hard",
            "other",
            "payload",
            "1766999000000"
        ]
    );
    let raw: Value = serde_json::from_str(row[9]).unwrap();
    assert_eq!(raw["vendor"]["x"][1], "ü");
    server.stop().await;
}

/// POSTs `body` as sent (not re-serialised), JSON content type; checks
/// it is answered 200 and returns the receipt.
async fn post_text(server: &TestServer, body: &str) -> Value {
    let r = server
        .http
        .post(server.url(HOOK))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

#[tokio::test]
async fn a_batch_is_kept_once_compressed_and_each_event_reads_back_as_sent() {
    let server = TestServer::start().await;
    // Spacing, escapes, unicode and unknown fields, as a sender wrote them.
    let items = [
        r#"{"type":"sent", "mailingId":77,"recipientId":"a","timestamp":1766999000001,"x":"\u00fc ü"}"#,
        r#"{ "type" : "OPEN","mailingId":"77","recipientId":"b","timestamp":1766999000002 }"#,
        r#"{"type":"click","mailingId":77,"recipientId":"c","link":"https://e.test/?q=1&r=\"2\"","timestamp":1766999000003}"#,
    ];
    let body = format!("[\n  {},\n  {} ,{},7]", items[0], items[1], items[2]);
    let receipt = post_text(&server, &body).await;
    assert_eq!(
        receipt,
        json!({"accepted": 3, "duplicates": 0, "quarantined": 1})
    );
    // One compressed body; the events hold spans of it, not copies.
    assert_eq!(count(&server, "SELECT COUNT(*) FROM raw_bodies").await, 1);
    assert_eq!(
        count(
            &server,
            "SELECT COUNT(*) FROM events WHERE raw = '' AND body_id IS NOT NULL"
        )
        .await,
        3
    );
    // Read back through the API, newest first: each item exactly as sent.
    let listed = common::get_json(
        &server.http,
        server.url("/api/v1/events?mailing=77&unmasked=true"),
    )
    .await;
    let raws: Vec<&str> = listed["events"]
        .as_array()
        .unwrap_or_else(|| panic!("{listed}"))
        .iter()
        .map(|e| e["raw"].as_str().unwrap())
        .collect();
    assert_eq!(raws, [items[2], items[1], items[0]]);

    // The same batch again stores nothing, not even its body.
    let receipt = post_text(&server, &body).await;
    assert_eq!(receipt["duplicates"], 3);
    assert_eq!(count(&server, "SELECT COUNT(*) FROM raw_bodies").await, 1);
    // A single event stays inline.
    post_text(
        &server,
        r#"{"type":"sent","mailingId":77,"recipientId":"d","timestamp":1766999000004}"#,
    )
    .await;
    assert_eq!(count(&server, "SELECT COUNT(*) FROM raw_bodies").await, 1);
    assert_eq!(
        count(
            &server,
            "SELECT COUNT(*) FROM events WHERE body_id IS NULL AND raw LIKE '{%'"
        )
        .await,
        1
    );
    server.stop().await;
}

/// The writer binds a parameter only when it differs from the previous
/// event's: events whose columns come and go from one to the next, with a
/// duplicate among them, must each be stored with exactly their own values.
#[tokio::test]
async fn every_event_of_a_batch_is_stored_with_its_own_columns() {
    use mailpulse::ingest::parse::parse_body;
    let server = TestServer::start().await;
    let dup =
        r#"{"type":"sent","clientId":1,"mailingId":5,"recipientId":"d","timestamp":1766999000100}"#;
    post_text(&server, dup).await;
    let items = [
        r#"{"type":"sent","clientId":1,"mailingId":5,"userListId":9,"recipientId":"a","timestamp":1766999000001,"mediaTypesToAddresses":{"EMAIL":"a@one.test"}}"#,
        r#"{"type":"open","clientId":1,"mailingId":5,"recipientId":"a","timestamp":1766999000002}"#,
        dup,
        r#"{"type":"open","clientId":2,"mailingId":5,"recipientId":"a","timestamp":1766999000003,"mediaTypesToAddresses":{"EMAIL":"a@two.test"}}"#,
        r#"{"type":"click","mailingId":6,"recipientId":"b","link":"https://l.test/1","timestamp":1766999000004}"#,
        r#"{"type":"click","mailingId":6,"recipientId":"b","link":"https://l.test/2","timestamp":1766999000005}"#,
        r#"{"type":"bounce","mailingId":6,"recipientId":"c","bounceCategory":"soft","reason":"full","timestamp":1766999000006}"#,
        r#"{"type":"hardbounce","mailingId":6,"recipientId":"c","timestamp":1766999000007,"mailId":"m-1"}"#,
        r#"{"type":"Custom","recipientId":"c"}"#,
        r#"{"type":"sent","clientId":1,"mailingId":5,"userListId":9,"recipientId":"e","timestamp":1766999000008,"mediaTypesToAddresses":{"SMS":"+4912345"}}"#,
    ];
    let body = format!("[{}]", items.join(","));
    let receipt = post_text(&server, &body).await;
    assert_eq!(
        receipt,
        json!({"accepted": 9, "duplicates": 1, "quarantined": 0})
    );
    // Two events in a body too small to compress: the inline path.
    let small = format!(
        "[{},{}]",
        items[0].replace("\"a\"", "\"f\""),
        items[4].replace("\"b\"", "\"g\"")
    );
    post_text(&server, &small).await;

    type Row = (Vec<Option<String>>, (i64, i64, String));
    let rows: Vec<Row> = server
        .query(|c| {
            let mut s = c.prepare(
                "SELECT type, type_raw, client_id, mailing_id, recipient_list_id, recipient_id, \
                 media_type, address, domain, link, bounce_category, bounce_reason, mail_id, \
                 first_open, first_click, time_source FROM events ORDER BY id",
            )?;
            let rows = s.query_map([], |r| {
                Ok((
                    (0..13).map(|i| r.get(i)).collect::<Result<_, _>>()?,
                    (r.get(13)?, r.get(14)?, r.get(15)?),
                ))
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await;
    // As the server parsed them (times are judged against the receive time).
    let now = now_ms();
    let parse = |body: &str| parse_body(body.as_bytes(), now).unwrap().events;
    let mut expected = parse(dup);
    let mut batch = parse(&body);
    batch.remove(2); // the duplicate
    expected.extend(batch);
    expected.extend(parse(&small));
    assert_eq!(rows.len(), expected.len());
    // First opens/clicks: a's first open, b's first click.
    let firsts = [
        (0, 0),
        (0, 0),
        (1, 0),
        (0, 0),
        (0, 1),
        (0, 0),
        (0, 0),
        (0, 0),
        (0, 0),
        (0, 0),
        (0, 0),
        (0, 1),
    ];
    for (i, ((columns, (open, click, time_source)), e)) in rows.iter().zip(&expected).enumerate() {
        let want: Vec<Option<String>> = [
            Some(e.event_type.as_str()),
            Some(e.type_raw.as_str()),
            e.client_id.as_deref(),
            e.mailing_id.as_deref(),
            e.recipient_list_id.as_deref(),
            e.recipient_id.as_deref(),
            e.media_type.as_deref(),
            e.address.as_deref(),
            e.domain.as_deref(),
            e.link.as_deref(),
            e.bounce_category.map(|b| b.as_str()),
            e.bounce_reason.as_deref(),
            e.mail_id.as_deref(),
        ]
        .map(|v| v.map(str::to_string))
        .to_vec();
        assert_eq!(columns, &want, "event {i}");
        assert_eq!((*open, *click), firsts[i], "event {i}");
        assert_eq!(time_source, e.time_source.as_str(), "event {i}");
    }
    server.stop().await;
}

#[tokio::test]
async fn unique_openers_are_exact() {
    let server = TestServer::start().await;
    let open =
        |r: &str, t: i64| json!({"type": "open", "mailingId": 1, "recipientId": r, "timestamp": t});
    let body = json!([open("a", 1_766_999_000), open("a", 1_766_999_100), open("b", 1_766_999_200),
        {"type": "click", "mailingId": 1, "recipientId": "a", "timestamp": 1_766_999_300, "link": "x"},
        {"type": "click", "mailingId": 1, "recipientId": "a", "timestamp": 1_766_999_400, "link": "y"},
        open("a", 1_766_999_500)]);
    let receipt: Value = post_text(&server, &body.to_string()).await;
    assert_eq!(receipt["accepted"], 6);
    assert_eq!(
        count(&server, "SELECT SUM(first_open) FROM events").await,
        2
    );
    assert_eq!(
        count(&server, "SELECT SUM(first_click) FROM events").await,
        1
    );
    assert_eq!(
        count(
            &server,
            "SELECT SUM(opens) * 100 + SUM(unique_opens) FROM rollup_minute"
        )
        .await,
        402
    );
    // Later batches do not re-count a recipient.
    server
        .post_json(HOOK, &json!([open("b", 1_766_999_900)]), &[])
        .await;
    assert_eq!(
        count(&server, "SELECT SUM(first_open) FROM events").await,
        2
    );
    server.stop().await;
}

#[tokio::test]
async fn every_refusal_has_its_status_and_a_json_reason() {
    let server = TestServer::start_with(|c| {
        c.ingest.max_body_bytes = 2_000;
        c.sources.insert(
            "keyed".into(),
            SourceConfig {
                auth: SourceAuth::Key {
                    header: "X-Opti-Key".into(),
                    secrets: vec![Secret::new("old-key"), Secret::new("new-key")],
                },
                allow_ips: vec![],
                trusted_proxies: vec![],
            },
        );
        c.sources.insert(
            "basic".into(),
            SourceConfig {
                auth: SourceAuth::Basic {
                    username: "opti".into(),
                    passwords: vec![Secret::new("pw")],
                },
                allow_ips: vec![],
                trusted_proxies: vec![],
            },
        );
        c.sources.insert(
            "fenced".into(),
            SourceConfig {
                auth: SourceAuth::None,
                allow_ips: vec!["193.169.180.1/32".parse().unwrap()],
                trusted_proxies: vec!["127.0.0.1/32".parse().unwrap()],
            },
        );
    })
    .await;
    let one = json!({"type": "sent", "recipientId": "x"});

    // 400: malformed JSON, and JSON with no event.
    let r = server
        .http
        .post(server.url(HOOK))
        .header("content-type", "application/json")
        .body("[{\"type\":")
        .send()
        .await
        .unwrap();
    let (s, code, msg) = error_of(r).await;
    assert_eq!((s, code.as_str()), (400, "bad_request"));
    assert!(msg.contains("not valid JSON"), "{msg}");
    let (s, _, msg) = error_of(server.post_json(HOOK, &json!("hello"), &[]).await).await;
    assert_eq!(s, 400);
    assert!(msg.contains("a string"), "{msg}");

    // 401: key auth, both rotation keys work; a wrong or missing key does not.
    let keyed = format!("{HOOK}/keyed");
    for (headers, want) in [
        (vec![("x-opti-key", "old-key")], 200),
        (vec![("x-opti-key", "new-key")], 200),
        (vec![("x-opti-key", "other")], 401),
        (vec![], 401),
    ] {
        let r = server.post_json(&keyed, &one, &headers).await;
        assert_eq!(r.status().as_u16(), want, "{headers:?}");
        if want == 401 {
            let (_, code, msg) = error_of(r).await;
            assert_eq!(code, "unauthorized");
            assert!(!msg.contains("old-key") && !msg.contains("other"));
        }
    }
    // 401: basic auth.
    let basic = format!("{HOOK}/basic");
    let good = server
        .http
        .post(server.url(&basic))
        .basic_auth("opti", Some("pw"))
        .json(&one)
        .send()
        .await
        .unwrap();
    assert_eq!(good.status(), 200);
    let bad = server
        .http
        .post(server.url(&basic))
        .basic_auth("opti", Some("nope"))
        .json(&one)
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(bad).await.0, 401);

    // 403: not on the allow-list; the trusted proxy's X-Forwarded-For counts.
    let fenced = format!("{HOOK}/fenced");
    let (s, code, msg) = error_of(server.post_json(&fenced, &one, &[]).await).await;
    assert_eq!((s, code.as_str()), (403, "forbidden"));
    assert!(msg.contains("127.0.0.1"), "{msg}");
    let via_proxy = server
        .post_json(&fenced, &one, &[("x-forwarded-for", "193.169.180.1")])
        .await;
    assert_eq!(via_proxy.status(), 200);

    // 404: unknown source.
    let (s, _, msg) = error_of(server.post_json(&format!("{HOOK}/nope"), &one, &[]).await).await;
    assert_eq!(s, 404);
    assert!(msg.contains("nope"));

    // 413: over the configured limit, with or without a content length.
    let (s, code, msg) = error_of(server.post_json(HOOK, &events("big", 30), &[]).await).await;
    assert_eq!((s, code.as_str()), (413, "payload_too_large"));
    assert!(msg.contains("2000"), "{msg}");
    let chunks =
        futures_util::stream::iter((0..10).map(|_| Ok::<_, std::io::Error>(vec![b' '; 500])));
    let streamed = server
        .http
        .post(server.url(HOOK))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(streamed).await.0, 413);

    // 415: not JSON.
    let r = server
        .http
        .post(server.url(HOOK))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("type=sent")
        .send()
        .await
        .unwrap();
    let (s, code, msg) = error_of(r).await;
    assert_eq!((s, code.as_str()), (415, "unsupported_media_type"));
    assert!(msg.contains("application/json"), "{msg}");
    server.stop().await;
}

/// POSTs `body` to the default source on a task of its own, so the test
/// can go on while the request waits for the writer.
fn spawn_post(server: &TestServer, body: Value) -> tokio::task::JoinHandle<reqwest::Response> {
    let http = server.http.clone();
    let url = server.url(HOOK);
    tokio::spawn(async move {
        http.post(url)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap()
    })
}

/// Posts `n` requests of `size` events while writes are paused, so they
/// queue up, then lets the writer go; returns how many commits it took.
async fn commits_for_backlog(server: &TestServer, n: usize, size: usize) -> u64 {
    let commits = || server.state.store.stats.commits.load(Ordering::Relaxed);
    let before = commits();
    let pause = server.state.store.pause_writes();
    let mut pending = Vec::new();
    for i in 0..n {
        pending.push(spawn_post(
            server,
            events(&format!("g{n}-{size}-{i}"), size),
        ));
    }
    // All of them queued: the writer holds the first, the queue the rest.
    let queued = || server.state.store.queued();
    for _ in 0..200 {
        if queued() + 1 >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(queued() + 1, n, "every request queued behind the pause");
    drop(pause);
    for p in pending {
        assert_eq!(p.await.unwrap().status(), 200);
    }
    commits() - before
}

#[tokio::test]
async fn a_backlog_commits_in_groups_bounded_by_requests_and_by_events() {
    let server = TestServer::start_with(|c| {
        c.store.max_group_requests = 4;
        c.store.max_group_events = 250;
    })
    .await;
    // Single events: the request limit cuts 12 requests into 3 groups.
    assert_eq!(commits_for_backlog(&server, 12, 1).await, 3);
    // 100-event batches: the event limit, 3 batches (300 ≥ 250) per group
    // (the request limit alone would make 3 groups of 4).
    assert_eq!(commits_for_backlog(&server, 12, 100).await, 4);
    // A request larger than the limit is not split; it commits alone.
    assert_eq!(commits_for_backlog(&server, 2, 400).await, 2);
    assert_eq!(
        count(&server, "SELECT COUNT(*) FROM events").await,
        12 + 1_200 + 800
    );
    server.stop().await;
}

#[tokio::test]
async fn full_store_queue_answers_503_with_retry_after_and_loses_nothing() {
    let server = TestServer::start_with(|c| c.ingest.queue_capacity = 2).await;
    let pause = server.state.store.pause_writes();
    let mut pending = Vec::new();
    let mut refused = None;
    for i in 0..10 {
        let req = spawn_post(&server, events(&format!("q{i}"), 3));
        tokio::time::sleep(Duration::from_millis(150)).await;
        if req.is_finished() {
            refused = Some(req.await.unwrap());
            break;
        }
        pending.push(req);
    }
    let refused = refused.expect("a request is refused once the queue is full");
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers()["retry-after"], "1");
    let (_, code, msg) = error_of(refused).await;
    assert_eq!(code, "unavailable");
    assert!(msg.contains("busy"), "{msg}");
    // Writer (1) + queue (2) hold the waiting requests; `/metrics` shows
    // the full queue.
    assert_eq!(pending.len(), 3);
    assert_eq!(metric(&server, "mailpulse_store_queue_depth").await, 2.0);
    assert_eq!(metric(&server, "mailpulse_store_queue_capacity").await, 2.0);
    drop(pause);
    for p in pending {
        assert_eq!(p.await.unwrap().status(), 200);
    }
    assert_eq!(metric(&server, "mailpulse_store_queue_depth").await, 0.0);
    assert_eq!(count(&server, "SELECT COUNT(*) FROM events").await, 9);
    server.stop().await;
}

#[tokio::test]
async fn fifty_concurrent_senders_all_stored_once() {
    let server = TestServer::start().await;
    let mut senders = Vec::new();
    for s in 0..50 {
        let http = server.http.clone();
        let url = server.url(HOOK);
        senders.push(tokio::spawn(async move {
            let mut accepted = 0;
            for b in 0..10 {
                let body = events(&format!("s{s}b{b}"), 10);
                let r: Value = http
                    .post(&url)
                    .json(&body)
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                accepted += r["accepted"].as_u64().unwrap();
                // Every other batch is re-sent: at-least-once delivery.
                if b % 2 == 0 {
                    let again: Value = http
                        .post(&url)
                        .json(&body)
                        .send()
                        .await
                        .unwrap()
                        .json()
                        .await
                        .unwrap();
                    assert_eq!(again["duplicates"], 10);
                }
            }
            accepted
        }));
    }
    let mut total = 0;
    for s in senders {
        total += s.await.unwrap();
    }
    assert_eq!(total, 5_000);
    assert_eq!(count(&server, "SELECT COUNT(*) FROM events").await, 5_000);
    assert_eq!(
        count(&server, "SELECT COUNT(DISTINCT recipient_id) FROM events").await,
        5_000
    );
    assert_eq!(
        count(&server, "SELECT SUM(sent) FROM rollup_minute").await,
        5_000
    );
    server.stop().await;
}

#[tokio::test]
async fn restart_keeps_deduplication() {
    let dir = tempfile::tempdir().unwrap();
    let batch = events("restart", 20);
    let first = TestServer::start_in(dir.path().to_path_buf(), |_| {}).await;
    let r: Value = post_text(&first, &batch.to_string()).await;
    assert_eq!(r["accepted"], 20);
    first.stop().await;

    let second = TestServer::start_in(dir.path().to_path_buf(), |_| {}).await;
    let r: Value = post_text(&second, &batch.to_string()).await;
    assert_eq!(
        r,
        json!({"accepted": 0, "duplicates": 20, "quarantined": 0})
    );
    assert_eq!(count(&second, "SELECT COUNT(*) FROM events").await, 20);
    second.stop().await;
}

#[tokio::test]
async fn retention_deletes_old_events_and_rollups() {
    let server = TestServer::start().await;
    server.post_json(HOOK, &events("old", 12), &[]).await;
    assert_eq!(
        count(&server, "SELECT COUNT(*) FROM mailing_spans").await,
        1
    );
    let now = now_ms();
    // Nothing is old enough yet.
    let n = server
        .state
        .store
        .apply_retention(now - 86_400_000, 0)
        .await
        .unwrap();
    assert_eq!(n, 0);
    assert_eq!(count(&server, "SELECT COUNT(*) FROM events").await, 12);
    // Move the horizon past them: raw events go; rollups stay (longer horizon).
    let n = server
        .state
        .store
        .apply_retention(now + 1_000, 0)
        .await
        .unwrap();
    assert_eq!(n, 12 + 1);
    assert_eq!(count(&server, "SELECT COUNT(*) FROM events").await, 0);
    // So did the spans that found a mailing's events.
    assert_eq!(
        count(&server, "SELECT COUNT(*) FROM mailing_spans").await,
        0
    );
    // The batch's raw body went with its events.
    assert_eq!(count(&server, "SELECT COUNT(*) FROM raw_bodies").await, 0);
    assert_eq!(
        count(&server, "SELECT SUM(sent) FROM rollup_minute").await,
        12
    );
    // Then the rollups.
    server
        .state
        .store
        .apply_retention(now + 1_000, now + 1_000)
        .await
        .unwrap();
    assert_eq!(
        count(&server, "SELECT COUNT(*) FROM rollup_minute").await,
        0
    );
    // Dedup is per stored event: a resend after retention is stored again.
    let r: Value = post_text(&server, &events("old", 12).to_string()).await;
    assert_eq!(r["accepted"], 12);
    server.stop().await;
}

/// An open of `mailing` by `recipient` at `t`.
fn open(mailing: &str, recipient: &str, t: i64) -> Value {
    json!({"type": "open", "mailingId": mailing, "recipientId": recipient, "timestamp": t})
}

#[tokio::test]
async fn retention_deletes_old_rollups_and_the_first_opens_of_mailings_without_rollups() {
    let dir = tempfile::tempdir().unwrap();
    // No flush starts by age while the test posts.
    let hold = |c: &mut mailpulse::config::Config| c.store.firsts_flush_secs = 3_600;
    let server = TestServer::start_in(dir.path().to_path_buf(), hold).await;
    let now = now_ms();
    let old = now - 3 * 86_400_000;
    // More ended mailings than one retention step looks at, one with more
    // openers than one step deletes, and more bounce rollups (one per
    // receiving domain) than one step deletes.
    let mut ended: Vec<Value> = (0..300)
        .map(|i| open(&format!("ended-{i:03}"), "r", old))
        .collect();
    ended.extend((0..5_100).map(|i| open("ended-big", &format!("r{i}"), old)));
    ended.extend((0..5_100).map(|i| {
        json!({"type": "bounce", "mailingId": "ended-bounces", "recipientId": format!("b{i}"),
               "timestamp": old, "mediaTypesToAddresses": {"EMAIL": format!("b@d{i}.example")}})
    }));
    for chunk in ended.chunks(1_000) {
        server
            .post_json(HOOK, &Value::Array(chunk.to_vec()), &[])
            .await;
    }
    let live: Vec<Value> = (0..3)
        .map(|i| open("live", &format!("r{i}"), now))
        .collect();
    server.post_json(HOOK, &Value::Array(live), &[]).await;
    // First opens are held in memory and written late, in sorted chunks
    // (when the writer is idle, and the rest at a graceful stop).
    let firsts = "SELECT COUNT(*) FROM engagement_firsts";
    server.stop().await;
    let server = TestServer::start_in(dir.path().to_path_buf(), hold).await;
    let bounce_rollups = "SELECT COUNT(*) FROM rollup_bounce_day";
    assert_eq!(count(&server, firsts).await, 5_403);
    assert_eq!(count(&server, bounce_rollups).await, 5_100);
    // Rollups older than two days go (in several steps), and with them the
    // firsts of the mailings that have none left.
    server
        .state
        .store
        .apply_retention(0, now - 2 * 86_400_000)
        .await
        .unwrap();
    let mailings = "SELECT COUNT(DISTINCT mailing_id) FROM rollup_minute";
    assert_eq!(count(&server, mailings).await, 1);
    assert_eq!(count(&server, bounce_rollups).await, 0);
    let live = "SELECT COUNT(*) FROM engagement_firsts WHERE mailing_id = 'live'";
    assert_eq!(count(&server, live).await, 3);
    assert_eq!(count(&server, firsts).await, 3);
    // The raw events are kept (their horizon is another).
    assert_eq!(count(&server, "SELECT COUNT(*) FROM events").await, 10_503);
    server.stop().await;
}

#[tokio::test]
async fn an_idle_writer_writes_the_first_opens_it_holds() {
    // No flush would start by age or by count while the test runs.
    let server = TestServer::start_with(|c| {
        c.store.firsts_flush_secs = 3_600;
        c.store.firsts_flush_rows = 1_000_000;
    })
    .await;
    let now = now_ms();
    let opens: Vec<Value> = (0..5_000)
        .map(|i| open("idle", &format!("r{}", (i * 7_919) % 5_000), now))
        .collect();
    let clicks: Vec<Value> = (0..5_000)
        .map(|i| {
            json!({"type": "click", "mailingId": "idle", "recipientId": format!("r{i}"),
                   "timestamp": now, "url": "https://example.com/"})
        })
        .collect();
    for chunk in opens.chunks(1_000).chain(clicks.chunks(1_000)) {
        server
            .post_json(HOOK, &Value::Array(chunk.to_vec()), &[])
            .await;
    }
    // Held in memory at first; once no request has come for a moment the
    // writer writes them, a chunk per transaction, without a stop.
    let firsts = "SELECT COUNT(*) FROM engagement_firsts WHERE mailing_id = 'idle'";
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while count(&server, firsts).await < 10_000 {
        assert!(
            std::time::Instant::now() < deadline,
            "only {} of 10,000 firsts written",
            count(&server, firsts).await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let written = "SELECT event_id FROM firsts_written";
    let last = "SELECT MAX(id) FROM events";
    assert_eq!(count(&server, written).await, count(&server, last).await);
    // Written, they are still told apart from later opens.
    let again = vec![open("idle", "r1", now), open("idle", "new", now)];
    server.post_json(HOOK, &Value::Array(again), &[]).await;
    let flagged = "SELECT COUNT(*) FROM events WHERE first_open = 1";
    assert_eq!(count(&server, flagged).await, 5_001);
    server.stop().await;
}

#[tokio::test]
async fn retention_keeps_the_raw_bodies_of_kept_events() {
    let server = TestServer::start().await;
    server.post_json(HOOK, &events("older", 5), &[]).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let cut = now_ms();
    tokio::time::sleep(Duration::from_millis(20)).await;
    server.post_json(HOOK, &events("newer", 4), &[]).await;
    assert_eq!(count(&server, "SELECT COUNT(*) FROM raw_bodies").await, 2);
    let n = server.state.store.apply_retention(cut, 0).await.unwrap();
    assert_eq!(n, 5 + 1);
    assert_eq!(count(&server, "SELECT COUNT(*) FROM raw_bodies").await, 1);
    // The kept events still read back whole.
    let listed = common::get_json(&server.http, server.url("/api/v1/events?unmasked=true")).await;
    let listed = listed["events"].as_array().unwrap();
    assert_eq!(listed.len(), 4);
    for e in listed {
        let raw: Value = serde_json::from_str(e["raw"].as_str().unwrap()).unwrap();
        assert_eq!(raw["recipientId"], e["recipient_id"]);
    }
    server.stop().await;
}

#[tokio::test]
async fn events_whose_raw_spans_miss_their_body_fail_the_commit_without_killing_the_writer() {
    use mailpulse::ingest::parse::parse_body;
    let server = TestServer::start().await;
    let text = events("span", 3).to_string();
    let batch = parse_body(text.as_bytes(), 1_767_000_000_000).unwrap();
    let store = &server.state.store;
    // Stored inline (too short to compress), and compressed but too short.
    for wrong in [
        "[]".to_string(),
        "[".to_string() + &"{\"type\":\"sent\"},".repeat(20) + "1]",
    ] {
        assert!(wrong.len() < text.len());
        let err = store
            .ingest("default".into(), wrong.into(), batch.clone())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("not in its body"), "{err}");
    }
    assert_eq!(count(&server, "SELECT COUNT(*) FROM events").await, 0);
    assert_eq!(count(&server, "SELECT COUNT(*) FROM raw_bodies").await, 0);
    // The writer goes on.
    let r: Value = post_text(&server, &events("span", 3).to_string()).await;
    assert_eq!(r["accepted"], 3);
    server.stop().await;
}
