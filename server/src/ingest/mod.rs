//! The webhook front door: `POST /webhooks/optimizely` (the default source)
//! and `POST /webhooks/optimizely/{source}`. Owns the order of checks
//! (address, credentials, content type, size, JSON) and the hand-off to the
//! store; a request is answered 200 only once its events are committed.
//! Parsing is in [`parse`], sender checks in [`auth`].

pub mod auth;
pub mod parse;

use crate::config::{Config, DEFAULT_SOURCE};
use crate::error::ApiError;
use crate::AppState;
use auth::SourceGuard;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::Arc;

/// What a successful webhook POST answers.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Receipt {
    /// Events stored by this request.
    pub accepted: usize,
    /// Events already stored before (not stored again).
    pub duplicates: usize,
    /// Items that could not be understood, kept in quarantine.
    pub quarantined: usize,
}

/// The receipt's JSON, written directly: through `Json` (serde_json and
/// its escaping of every key) answering cost ~1.7k instructions of a
/// single-event request's ~39k on the tokio workers, this ~0.8k
/// (callgrind; docs/store.md). A test checks it against serde_json's.
impl IntoResponse for Receipt {
    fn into_response(self) -> Response {
        let mut n = itoa::Buffer::new();
        let mut json = Vec::with_capacity(64);
        for (key, value) in [
            (&b"{\"accepted\":"[..], self.accepted),
            (b",\"duplicates\":", self.duplicates),
            (b",\"quarantined\":", self.quarantined),
        ] {
            json.extend_from_slice(key);
            json.extend_from_slice(n.format(value).as_bytes());
        }
        json.push(b'}');
        let mut res = Response::new(Body::from(json));
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        res
    }
}

/// The configured sources by name, in a list: there are a few, and
/// comparing a few names costs less than hashing one with SipHash, which
/// every request did (callgrind; docs/store.md).
#[derive(Debug, Clone)]
pub struct Sources(Arc<[(String, Arc<SourceGuard>)]>);

impl Sources {
    pub fn from_config(config: &Config) -> Sources {
        Sources(
            config
                .sources
                .iter()
                .map(|(name, s)| (name.clone(), Arc::new(SourceGuard::new(name, s))))
                .collect(),
        )
    }

    fn get(&self, name: &str) -> Option<&Arc<SourceGuard>> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, g)| g)
    }
}

/// `POST /webhooks/optimizely`
pub async fn post_default(
    State(state): State<AppState>,
    req: Request,
) -> Result<Receipt, ApiError> {
    ingest(state, DEFAULT_SOURCE, req).await
}

/// `POST /webhooks/optimizely/{source}`
pub async fn post_source(
    State(state): State<AppState>,
    Path(source): Path<String>,
    req: Request,
) -> Result<Receipt, ApiError> {
    ingest(state, &source, req).await
}

async fn ingest(state: AppState, source: &str, req: Request) -> Result<Receipt, ApiError> {
    // Until the live state is rebuilt, events would be counted against a
    // wrong base; the sender retries.
    if !state.is_ready() {
        return Err(ApiError::Unavailable {
            message: "mailpulse is starting (rebuilding its live state); retry shortly".into(),
            retry_after_secs: 5,
        });
    }
    let guard = state
        .sources
        .get(source)
        .ok_or_else(|| ApiError::NotFound(format!("no webhook source named {source:?}")))?
        .clone();
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    guard.check_ip(peer, req.headers())?;
    guard.check_auth(req.headers())?;
    check_content_type(req.headers())?;
    let limit = state.config.ingest.max_body_bytes;
    let body = read_body(req.into_body(), limit).await?;
    let received_at = chrono::Utc::now().timestamp_millis();
    let batch =
        parse::parse_body(&body, received_at).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let outcome = state
        .store
        .ingest(guard.name.clone(), body, batch)
        .await
        .map_err(|e| ApiError::store_write(e, "events"))?;
    Ok(Receipt {
        accepted: outcome.accepted,
        duplicates: outcome.duplicates,
        quarantined: outcome.quarantined,
    })
}

/// JSON only: `application/json`, `text/json` or any `+json` type. A
/// missing content type is accepted (the body is checked as JSON anyway).
fn check_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    // Compared without a lowercased copy: this runs for every request.
    let ct = value.to_str().unwrap_or("");
    let essence = ct.split(';').next().unwrap_or("").trim();
    let ends_with_json = essence.len() >= 5
        && essence.as_bytes()[essence.len() - 5..].eq_ignore_ascii_case(b"+json");
    let json = essence.eq_ignore_ascii_case("application/json")
        || essence.eq_ignore_ascii_case("text/json")
        || ends_with_json;
    if json {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType(format!(
            "content type {:?} is not accepted; send application/json",
            essence.to_ascii_lowercase()
        )))
    }
}

/// Reads the body, refusing it (413) as soon as it passes `limit`.
async fn read_body(body: Body, limit: usize) -> Result<bytes::Bytes, ApiError> {
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            Err(ApiError::PayloadTooLarge { limit })
        }
        Err(e) => Err(ApiError::BadRequest(format!(
            "could not read the request body: {e}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn receipts_are_the_json_serde_writes() {
        for (accepted, duplicates, quarantined) in
            [(0, 0, 0), (1, 0, 0), (97, 2, 1), (usize::MAX, 10, 123_456)]
        {
            let receipt = Receipt {
                accepted,
                duplicates,
                quarantined,
            };
            let want = serde_json::to_vec(&receipt).unwrap();
            let res = receipt.into_response();
            assert_eq!(res.status(), axum::http::StatusCode::OK);
            assert_eq!(res.headers()[header::CONTENT_TYPE], "application/json");
            let body = res.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(body, want);
        }
    }

    #[test]
    fn content_types() {
        let check = |v: Option<&str>| {
            let mut h = HeaderMap::new();
            if let Some(v) = v {
                h.insert(header::CONTENT_TYPE, HeaderValue::from_str(v).unwrap());
            }
            check_content_type(&h).is_ok()
        };
        assert!(check(None));
        assert!(check(Some("application/json")));
        assert!(check(Some("Application/JSON; charset=utf-8")));
        assert!(check(Some("application/vnd.optimizely+json")));
        assert!(check(Some("text/json")));
        assert!(check(Some("application/vnd.optimizely+JSON")));
        assert!(!check(Some("json")));
        assert!(!check(Some("application/x-www-form-urlencoded")));
        assert!(!check(Some("text/plain")));
        assert!(!check(Some("application/xml")));
    }
}
