//! The walking skeleton end to end: webhook in, count out over `/ws`, and
//! the front door's refusals.

mod common;

use common::{get_text, overall, Follower, TestServer};
use mailpulse::config::Secret;
use mailpulse_app::protocol::{ServerMsg, TopicState};
use serde_json::{json, Value};

#[tokio::test]
async fn posted_event_reaches_websocket_client() {
    let server = TestServer::start().await;
    let mut ws = Follower::new(server.ws().await);
    assert!(matches!(
        ws.step().await,
        ServerMsg::Hello { protocol: 1, .. }
    ));
    let first = ws.until(|_| true).await;
    assert!(matches!(first, TopicState::Overview(_)));
    assert_eq!(overall(&first).sent, 0);

    let resp = server
        .post_json(
            "/webhooks/optimizely",
            &json!([
                {"type": "sent", "mailingId": 1, "recipientId": "a"},
                {"type": "SENT", "mailingId": 1, "recipientId": "b"},
                {"type": "open", "mailingId": 1, "recipientId": "a"}
            ]),
            &[],
        )
        .await;
    assert_eq!(resp.status(), 200);
    let receipt: Value = resp.json().await.unwrap();
    assert_eq!(receipt["accepted"], 3);

    // The deltas that follow, applied in order, add up to the posted events.
    let state = ws
        .until(|s| overall(s).sent >= 2 && overall(s).opens >= 1)
        .await;
    let c = overall(&state);
    assert_eq!((c.sent, c.opens, c.unique_opens), (2, 1, 1));
    server.stop().await;
}

#[tokio::test]
async fn wrong_or_missing_secret_is_401_with_json() {
    let server =
        TestServer::start_with(|c| c.webhook_secret = Some(Secret::new("s3cret-token"))).await;
    let body = json!({"type": "sent"});
    for headers in [
        vec![],
        vec![("authorization", "Bearer wrong")],
        vec![("authorization", "Bearer s3cret-tokenX")],
        vec![("authorization", "Basic czNjcmV0LXRva2Vu")],
    ] {
        let resp = server
            .post_json("/webhooks/optimizely", &body, &headers)
            .await;
        assert_eq!(resp.status(), 401, "{headers:?}");
        let err: Value = resp.json().await.unwrap();
        assert_eq!(err["error"], "unauthorized");
        assert!(err["message"].as_str().unwrap().contains("credentials"));
    }
    let ok = server
        .post_json(
            "/webhooks/optimizely",
            &body,
            &[("authorization", "Bearer s3cret-token")],
        )
        .await;
    assert_eq!(ok.status(), 200);
    server.stop().await;
}

#[tokio::test]
async fn malformed_json_is_400_saying_what_was_wrong() {
    let server = TestServer::start().await;
    let resp = server
        .http
        .post(server.url("/webhooks/optimizely"))
        .header("content-type", "application/json")
        .body("{\"type\": \"sent\",")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"], "bad_request");
    let msg = err["message"].as_str().unwrap();
    assert!(msg.contains("not valid JSON"), "{msg}");
    assert!(msg.contains("line 1"), "{msg}");

    let empty = server
        .post_json("/webhooks/optimizely", &json!([]), &[])
        .await;
    assert_eq!(empty.status(), 400);
    let err: Value = empty.json().await.unwrap();
    assert!(err["message"].as_str().unwrap().contains("no event"));
    server.stop().await;
}

#[tokio::test]
async fn health_endpoints() {
    let server = TestServer::start().await;
    let h = server
        .http
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(h.status(), 200);
    let r = server.http.get(server.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["status"], "ready");
    server.stop().await;
}

#[tokio::test]
async fn overview_is_rendered_on_the_server_with_counts() {
    let server = TestServer::start().await;
    server
        .post_json(
            "/webhooks/optimizely",
            &json!([{"type": "click", "recipientId": "a"}, {"type": "click", "recipientId": "b"}]),
            &[],
        )
        .await;
    // The engine publishes on its tick; wait for the page to show it.
    let mut html = String::new();
    for _ in 0..50 {
        html = get_text(&server.http, server.url("/")).await;
        if count_in_html(&html, "click") == Some(2) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(count_in_html(&html, "click"), Some(2), "{html}");
    let missing = server
        .http
        .get(server.url("/no/such/page"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    server.stop().await;
}

/// The number in the element `data-testid="count-<kind>"` of server HTML.
fn count_in_html(html: &str, kind: &str) -> Option<u64> {
    let marker = format!(r#"data-testid="count-{kind}""#);
    let rest = &html[html.find(&marker)? + marker.len()..];
    let text = &rest[rest.find('>')? + 1..];
    text[..text.find('<')?].trim().parse().ok()
}
