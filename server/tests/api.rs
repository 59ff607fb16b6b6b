//! The REST API and `/metrics` over real HTTP.

mod common;

use common::{get_text, now_ms, sample, TestServer};
use mailpulse::config::Secret;
use serde_json::{json, Value};
use std::time::Duration;

const HOOK: &str = "/webhooks/optimizely";

async fn get(server: &TestServer, path: &str) -> (u16, Value) {
    let r = server.http.get(server.url(path)).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Waits until the engine has published `path`'s numbers satisfying `ok`.
async fn eventually(server: &TestServer, path: &str, ok: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..100 {
        let (s, v) = get(server, path).await;
        if s == 200 && ok(&v) {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "{path} never satisfied the condition: {:?}",
        get(server, path).await
    );
}

async fn seed(server: &TestServer) {
    let t = now_ms();
    let mut batch = vec![];
    for i in 0..100 {
        batch.push(json!({"type": "sent", "mailingId": "spring", "recipientId": format!("s{i}"),
            "timestamp": t - 120_000, "mediaTypesToAddresses": {"EMAIL": format!("user{i}@example.com")}}));
    }
    for i in 0..25 {
        batch.push(json!({"type": "open", "mailingId": "spring", "recipientId": format!("s{i}"), "timestamp": t}));
    }
    for i in 0..4 {
        batch.push(
            json!({"type": "bounce", "mailingId": "spring", "recipientId": format!("s{i}"),
            "timestamp": t, "bounceCategory": if i == 0 { "soft" } else { "hard" },
            "mediaTypesToAddresses": {"EMAIL": format!("user{i}@example.com")}}),
        );
    }
    for i in 0..10 {
        batch.push(json!({"type": "sent", "mailingId": "reset-pw", "recipientId": format!("p{i}"), "timestamp": t}));
    }
    let r = server.post_json(HOOK, &Value::Array(batch), &[]).await;
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn summary_gives_counters_rates_and_lag_per_window() {
    let server = TestServer::start().await;
    seed(&server).await;
    // Lag percentiles refresh up to 200 ms after the counters.
    let v = eventually(&server, "/api/v1/summary?window=15m", |v| {
        v["overall"]["window"]["counters"]["sent"] == 110
            && v["overall"]["window"]["lag"]["count"] == 139
    })
    .await;
    assert_eq!(v["window"], "15m");
    let w = &v["overall"]["window"];
    assert_eq!(w["counters"]["unique_opens"], 25);
    assert_eq!(w["counters"]["hard_bounces"], 3);
    let open_rate = w["rates"]["open"].as_f64().unwrap();
    assert!((open_rate - 25.0 / 110.0).abs() < 1e-9);
    assert!(w["lag"]["p95"].as_u64().is_some());
    assert_eq!(v["campaign"]["window"]["counters"]["sent"], 110);
    assert_eq!(
        v["transactional"]["window"]["counters"]["sent"],
        Value::Null
    );
    // The 1-minute window does not hold the sends of two minutes ago.
    let (_, m1) = get(&server, "/api/v1/summary?window=1m").await;
    assert_eq!(m1["overall"]["window"]["counters"]["sent"], 10);
    server.stop().await;
}

#[tokio::test]
async fn bad_parameters_are_400_naming_the_parameter() {
    let server = TestServer::start().await;
    for (path, name) in [
        ("/api/v1/summary?window=2m", "`window`"),
        ("/api/v1/summary?windw=5m", "`windw`"),
        ("/api/v1/mailings?class=promo", "`class`"),
        ("/api/v1/mailings?sort=size", "`sort`"),
        ("/api/v1/series?metric=nope", "`metric`"),
        ("/api/v1/series?step=90s", "`step`"),
        ("/api/v1/series?from=yesterday", "`from`"),
        ("/api/v1/series?from=2000&to=1000", "`from`"),
        ("/api/v1/series?step=1m&from=0&to=1767000000000", "`step`"),
        ("/api/v1/series?scope=mailing:", "`scope`"),
        ("/api/v1/events?limit=0", "`limit`"),
        ("/api/v1/events?format=xml", "`format`"),
        ("/api/v1/events?type=opened", "`type`"),
        ("/api/v1/events?unmasked=yes", "`unmasked`"),
    ] {
        let (status, body) = get(&server, path).await;
        assert_eq!(status, 400, "{path}");
        assert_eq!(body["error"], "bad_request", "{path}");
        let msg = body["message"].as_str().unwrap();
        assert!(msg.contains(name), "{path}: {msg}");
    }
    let (status, body) = get(&server, "/api/v1/nothing").await;
    assert_eq!(status, 404);
    assert!(body["message"].as_str().unwrap().contains("openapi"));
    let (status, body) = get(&server, "/api/v1/mailings/unknown").await;
    assert_eq!(status, 404);
    assert!(body["message"].as_str().unwrap().contains("unknown"));
    server.stop().await;
}

#[tokio::test]
async fn mailings_can_be_filtered_searched_and_classified() {
    let server = TestServer::start().await;
    seed(&server).await;
    let v = eventually(&server, "/api/v1/mailings", |v| {
        v["mailings"].as_array().is_some_and(|m| m.len() == 2)
    })
    .await;
    let spring = v["mailings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == "spring")
        .unwrap();
    assert_eq!(spring["class"], "campaign");
    assert_eq!(spring["totals"]["sent"], 100);
    assert_eq!(spring["rates"]["hard_bounce"], 0.03);

    // Mark the password reset mailing transactional, with a name.
    let r = server
        .http
        .put(server.url("/api/v1/mailings/reset-pw"))
        .json(&json!({"class": "transactional", "name": "Password reset"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v = eventually(&server, "/api/v1/mailings?class=transactional", |v| {
        v["mailings"].as_array().is_some_and(|m| m.len() == 1)
    })
    .await;
    assert_eq!(v["mailings"][0]["name"], "Password reset");
    let (_, found) = get(&server, "/api/v1/mailings?q=PASSWORD").await;
    assert_eq!(found["mailings"][0]["id"], "reset-pw");
    // Its sends moved to the transactional class.
    eventually(&server, "/api/v1/summary?window=5m", |v| {
        v["transactional"]["window"]["counters"]["sent"] == 10
            && v["campaign"]["window"]["counters"]["sent"] == 100
    })
    .await;
    // Bad bodies.
    let r = server
        .http
        .put(server.url("/api/v1/mailings/reset-pw"))
        .json(&json!({"class": "promo"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = server
        .http
        .put(server.url("/api/v1/mailings/reset-pw"))
        .json(&json!({"colour": "red"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    server.stop().await;
}

#[tokio::test]
async fn writes_need_the_api_token_when_one_is_set() {
    let server = TestServer::start_with(|c| c.api_token = Some(Secret::new("tok-123"))).await;
    seed(&server).await;
    let put = |token: Option<&'static str>| {
        let mut r = server
            .http
            .put(server.url("/api/v1/mailings/spring"))
            .json(&json!({"name": "Spring sale"}));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send()
    };
    assert_eq!(put(None).await.unwrap().status(), 401);
    assert_eq!(put(Some("wrong")).await.unwrap().status(), 401);
    assert_eq!(put(Some("tok-123")).await.unwrap().status(), 200);
    server.stop().await;
}

#[tokio::test]
async fn mailing_detail_has_bounces_and_history_comes_from_rollups() {
    let server = TestServer::start().await;
    seed(&server).await;
    let v = eventually(&server, "/api/v1/mailings/spring", |v| {
        v["mailing"]["totals"]["bounces"] == 4
    })
    .await;
    assert_eq!(v["bounces"]["hard"], 3);
    assert_eq!(v["bounces"]["soft"], 1);
    assert_eq!(v["bounces"]["by_domain"][0]["domain"], "example.com");
    assert_eq!(v["windows"]["5m"]["counters"]["sent"], 100);

    let to = now_ms();
    let from = to - 3_600_000;
    let (s, series) = get(
        &server,
        &format!("/api/v1/mailings/spring/series?metric=sent&from={from}&to={to}&step=1m"),
    )
    .await;
    assert_eq!(s, 200, "{series}");
    let points = series["points"].as_array().unwrap();
    assert_eq!(points.len(), 61);
    let total: u64 = points.iter().map(|p| p["value"].as_u64().unwrap()).sum();
    assert_eq!(total, 100);
    let (_, rate) = get(
        &server,
        &format!("/api/v1/series?scope=overall&metric=open_rate&from={from}&to={to}&step=1h"),
    )
    .await;
    let values: Vec<&Value> = rate["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| &p["value"])
        .collect();
    assert!(values.iter().any(|v| v.is_f64()), "{rate}");
    server.stop().await;
}

#[tokio::test]
async fn events_come_as_json_ndjson_or_csv_with_addresses_masked() {
    let server = TestServer::start().await;
    seed(&server).await;
    let (s, v) = get(&server, "/api/v1/events?mailing=spring&type=bounce").await;
    assert_eq!(s, 200);
    let events = v["events"].as_array().unwrap();
    assert_eq!(events.len(), 4);
    let e = &events[0];
    assert_eq!(e["address"], "u***@example.com");
    assert!(!e["raw"].as_str().unwrap().contains("user3@"), "{e}");
    let (_, v) = get(
        &server,
        "/api/v1/events?mailing=spring&type=bounce&unmasked=true&limit=1",
    )
    .await;
    assert!(v["events"][0]["address"]
        .as_str()
        .unwrap()
        .starts_with("user"));

    let nd = server
        .http
        .get(server.url("/api/v1/events?mailing=reset-pw&format=ndjson"))
        .send()
        .await
        .unwrap();
    assert_eq!(nd.headers()["content-type"], "application/x-ndjson");
    assert_eq!(nd.text().await.unwrap().lines().count(), 10);

    let csv = server
        .http
        .get(server.url("/api/v1/events?mailing=spring&format=csv&limit=1000"))
        .send()
        .await
        .unwrap();
    assert!(csv.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .contains("mailpulse-events-spring.csv"));
    let body = csv.text().await.unwrap();
    let mut lines = body.lines();
    assert!(lines.next().unwrap().starts_with("id,source,type,"));
    assert_eq!(lines.count(), 129);
    // Paging with `before`.
    let (_, page1) = get(&server, "/api/v1/events?limit=5").await;
    let last = page1["events"][4]["id"].as_i64().unwrap();
    let (_, page2) = get(&server, &format!("/api/v1/events?limit=5&before={last}")).await;
    assert!(page2["events"][0]["id"].as_i64().unwrap() < last);
    // And within a mailing: pages follow each other without a gap or a
    // repeat, and hold only that mailing's events.
    let mut seen = Vec::new();
    let mut before = String::new();
    loop {
        let (s, page) = get(
            &server,
            &format!("/api/v1/events?mailing=spring&limit=7{before}"),
        )
        .await;
        assert_eq!(s, 200, "{page}");
        let events = page["events"].as_array().unwrap();
        if events.is_empty() {
            break;
        }
        for e in events {
            assert_eq!(e["mailing_id"], "spring", "{e}");
            seen.push(e["id"].as_i64().unwrap());
        }
        before = format!("&before={}", seen.last().unwrap());
    }
    assert_eq!(seen.len(), 129);
    assert!(seen.windows(2).all(|w| w[0] > w[1]), "{seen:?}");
    server.stop().await;
}

#[tokio::test]
async fn openapi_documents_every_route_and_metrics_are_prometheus_text() {
    let server = TestServer::start().await;
    seed(&server).await;
    let (s, doc) = get(&server, "/api/v1/openapi.json").await;
    assert_eq!(s, 200);
    let paths = doc["paths"].as_object().unwrap();
    for p in [
        "/webhooks/optimizely",
        "/webhooks/optimizely/{source}",
        "/api/v1/summary",
        "/api/v1/mailings",
        "/api/v1/mailings/{id}",
        "/api/v1/mailings/{id}/series",
        "/api/v1/series",
        "/api/v1/events",
        "/api/v1/dispatches",
        "/api/v1/dispatches/stuck",
        "/api/v1/transactional",
        "/api/v1/alerts",
        "/api/v1/alerts/{id}/ack",
        "/api/v1/alerts/{id}/chart.png",
        "/api/v1/silences",
        "/api/v1/silences/{id}",
        "/api/v1/alert-rules",
        "/api/v1/alert-rules/{name}",
        "/metrics",
        "/healthz",
        "/readyz",
    ] {
        assert!(paths.contains_key(p), "{p} undocumented");
    }
    // Every documented GET without path parameters answers (not 404).
    for (p, ops) in paths {
        if ops.get("get").is_some() && !p.contains('{') {
            let r = server.http.get(server.url(p)).send().await.unwrap();
            assert_ne!(r.status(), 404, "{p}");
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let text = get_text(&server.http, server.url("/metrics")).await;
    for name in [
        "mailpulse_events_accepted_total 139",
        "mailpulse_events_duplicate_total",
        "mailpulse_events_quarantined_total",
        "mailpulse_store_commit_seconds_bucket",
        "mailpulse_store_ingest_seconds_bucket",
        "mailpulse_store_wal_sync_seconds_bucket",
        "mailpulse_store_queue_depth 0",
        "mailpulse_store_queue_capacity 4096",
        "mailpulse_websocket_clients",
        "mailpulse_websocket_resyncs_total",
        "mailpulse_webhook_lag_p95_seconds",
    ] {
        assert!(text.contains(name), "{name} missing from:\n{text}");
    }
    // Every webhook request that was answered is timed.
    let ingests = sample(&text, "mailpulse_store_ingest_seconds_count");
    assert!(ingests > 0.0, "no ingest timed:\n{text}");
    // With the default `synchronous = "full"` the answers waited for WAL
    // fsyncs on the sync thread.
    let syncs = sample(&text, "mailpulse_store_wal_sync_seconds_count");
    assert!(syncs > 0.0, "no WAL fsync timed:\n{text}");
    server.stop().await;
}

#[tokio::test]
async fn large_answers_are_gzipped_for_clients_that_ask_and_receipts_are_not() {
    let server = TestServer::start().await;
    let r = server
        .http
        .get(server.url("/api/v1/openapi.json"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-encoding"], "gzip");
    let body = r.bytes().await.unwrap();
    assert_eq!(&body[..2], &[0x1f, 0x8b], "a gzip stream");
    // Without the header, plain JSON.
    let plain = server
        .http
        .get(server.url("/api/v1/openapi.json"))
        .send()
        .await
        .unwrap();
    assert!(plain.headers().get("content-encoding").is_none());
    serde_json::from_slice::<Value>(&plain.bytes().await.unwrap()).unwrap();
    // Webhook receipts (small, on the hot path) are never compressed.
    let receipt = server
        .post_json(
            "/webhooks/optimizely",
            &json!({"type": "sent", "mailingId": "1", "recipientId": "z"}),
            &[("accept-encoding", "gzip")],
        )
        .await;
    assert_eq!(receipt.status(), 200);
    assert!(receipt.headers().get("content-encoding").is_none());
    server.stop().await;
}

#[tokio::test]
async fn the_dashboard_bundle_is_served_gzipped_once_and_revalidated() {
    let site = tempfile::tempdir().unwrap();
    std::fs::create_dir(site.path().join("pkg")).unwrap();
    let wasm: Vec<u8> = (0..200_000u32)
        .flat_map(|i| (i % 251).to_le_bytes())
        .collect();
    std::fs::write(site.path().join("pkg/mailpulse.wasm"), &wasm).unwrap();
    let root = site.path().to_path_buf();
    let server = TestServer::start_with(move |c| c.site_root = root).await;
    let get = |enc: Option<&str>, etag: Option<&str>| {
        let mut req = server.http.get(server.url("/pkg/mailpulse.wasm"));
        if let Some(e) = enc {
            req = req.header("accept-encoding", e);
        }
        if let Some(t) = etag {
            req = req.header("if-none-match", t);
        }
        req.send()
    };

    let r = get(Some("gzip, br"), None).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/wasm");
    assert_eq!(r.headers()["content-encoding"], "gzip");
    let etag = r.headers()["etag"].to_str().unwrap().to_string();
    let body = r.bytes().await.unwrap();
    assert!(body.len() < wasm.len() / 2);
    // Compressed exactly once: one gunzip gives the file back.
    let mut plain = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&body[..]), &mut plain).unwrap();
    assert_eq!(plain, wasm);

    // Without gzip: the file as it is. With the ETag: 304, no body.
    let r = get(None, None).await.unwrap();
    assert!(r.headers().get("content-encoding").is_none());
    assert_eq!(r.bytes().await.unwrap(), wasm);
    let r = get(Some("gzip"), Some(&etag)).await.unwrap();
    assert_eq!(r.status(), 304);

    // A new build replaces the file: the next answer is the new one.
    std::fs::write(site.path().join("pkg/mailpulse.wasm"), b"\0asm new build").unwrap();
    let r = get(None, Some(&etag)).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(&r.bytes().await.unwrap()[..], b"\0asm new build");

    // Nothing else is served from there.
    for path in [
        "/pkg/missing.wasm",
        "/pkg/..%2FCargo.toml",
        "/pkg/mailpulse.d.ts",
    ] {
        let r = server.http.get(server.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 404, "{path}");
        let v: Value = r.json().await.unwrap();
        assert!(v["message"].is_string(), "{path}: {v}");
    }
    server.stop().await;
}
