//! Transactional mail endpoints: dispatch reports from users' systems
//! (`POST /api/v1/dispatches`), the live health (`GET
//! /api/v1/transactional`) and the stuck list (`GET
//! /api/v1/dispatches/stuck`, JSON or CSV, with Optimizely's own view of
//! each mail when API credentials are configured).

use super::api::WriteAccess;
use crate::error::ApiError;
use crate::store::dispatch::{DispatchOutcome, DispatchReport};
use crate::AppState;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use mailpulse_app::protocol::{Topic, TopicState};
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::HashMap;

/// Most dispatches one request may report.
const MAX_REPORTS: usize = 10_000;

fn text_field(
    item: &serde_json::Map<String, Value>,
    name: &str,
    i: usize,
) -> Result<String, ApiError> {
    match item.get(name) {
        Some(Value::String(s)) if !s.trim().is_empty() && s.len() <= 200 => {
            Ok(s.trim().to_string())
        }
        Some(Value::Number(n)) => Ok(n.to_string()),
        Some(_) => Err(ApiError::BadRequest(format!(
            "item {i}: field `{name}` must be a non-empty string or number (at most 200 characters)"
        ))),
        None => Err(ApiError::BadRequest(format!(
            "item {i}: field `{name}` is missing"
        ))),
    }
}

/// Reads one report; `acceptedAt` may be RFC 3339 or epoch s/ms.
fn report(v: &Value, i: usize) -> Result<DispatchReport, ApiError> {
    let Value::Object(item) = v else {
        return Err(ApiError::BadRequest(format!("item {i}: not an object")));
    };
    let accepted_at = match item.get("acceptedAt") {
        None => {
            return Err(ApiError::BadRequest(format!(
                "item {i}: field `acceptedAt` is missing"
            )))
        }
        Some(t) => crate::ingest::parse::parse_time(t).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "item {i}: field `acceptedAt` must be RFC 3339 or epoch seconds/milliseconds"
            ))
        })?,
    };
    let now = chrono::Utc::now().timestamp_millis();
    if accepted_at > now + 300_000 {
        return Err(ApiError::BadRequest(format!(
            "item {i}: `acceptedAt` lies more than 5 minutes in the future"
        )));
    }
    Ok(DispatchReport {
        mail_id: text_field(item, "mailId", i)?,
        mailing_id: text_field(item, "mailingId", i)?,
        recipient_id: text_field(item, "recipientId", i)?,
        accepted_at,
    })
}

/// `POST /api/v1/dispatches`: one report or an array; idempotent by `mailId`.
pub async fn post_dispatches(
    State(state): State<AppState>,
    _: WriteAccess,
    body: Bytes,
) -> Result<Json<DispatchOutcome>, ApiError> {
    if !state.is_ready() {
        return Err(ApiError::Unavailable {
            message: "mailpulse is starting; retry shortly".into(),
            retry_after_secs: 5,
        });
    }
    if body.len() > state.config.ingest.max_body_bytes {
        return Err(ApiError::PayloadTooLarge {
            limit: state.config.ingest.max_body_bytes,
        });
    }
    let v: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("body is not valid JSON: {e}")))?;
    let items = match v {
        Value::Array(a) => a,
        o @ Value::Object(_) => vec![o],
        _ => {
            return Err(ApiError::BadRequest(
                "body must be a dispatch object or an array of them".into(),
            ))
        }
    };
    if items.is_empty() {
        return Err(ApiError::BadRequest("body holds no dispatch".into()));
    }
    if items.len() > MAX_REPORTS {
        return Err(ApiError::BadRequest(format!(
            "at most {MAX_REPORTS} dispatches per request"
        )));
    }
    let reports = items
        .iter()
        .enumerate()
        .map(|(i, v)| report(v, i))
        .collect::<Result<Vec<_>, _>>()?;
    state
        .store
        .record_dispatches(reports)
        .await
        .map(Json)
        .map_err(|e| ApiError::store_write(e, "dispatches"))
}

/// `GET /api/v1/transactional`: queue, delays, silence per mailing.
pub async fn health(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let p = state
        .live
        .view(Topic::Overview)
        .await
        .ok_or(ApiError::Unavailable {
            message: "the live state is not ready yet".into(),
            retry_after_secs: 5,
        })?;
    let TopicState::Overview(o) = &p.state else {
        return Err(ApiError::Internal(anyhow::anyhow!(
            "overview held another state"
        )));
    };
    Ok(Json(
        json!({ "now": o.now, "transactional": o.transactional }),
    ))
}

#[derive(Serialize)]
pub struct Stuck {
    mail_id: String,
    mailing_id: String,
    recipient_id: String,
    accepted_at: String,
    age_s: i64,
    /// Optimizely's sending state of the mail, when credentials are set
    /// (asked for the oldest 50).
    optimizely_status: Option<String>,
}

/// Open dispatches accepted more than `older_than` ms ago, oldest first;
/// the oldest 50 with Optimizely's state of the mail when configured.
pub async fn stuck_list(
    state: &AppState,
    older_than: i64,
    mailing: Option<String>,
    limit: i64,
) -> Result<Vec<Stuck>, ApiError> {
    let now = chrono::Utc::now().timestamp_millis();
    let cutoff = now - older_than;
    let rows = state
        .store
        .read(move |c| {
            let mut sql = String::from(
                "SELECT mail_id, mailing_id, recipient_id, accepted_at FROM dispatches \
                 WHERE sent_at IS NULL AND accepted_at < ?1",
            );
            if mailing.is_some() {
                sql.push_str(" AND mailing_id = ?2");
            }
            sql.push_str(&format!(" ORDER BY accepted_at LIMIT {limit}"));
            let mut s = c.prepare(&sql)?;
            let map = |r: &r2d2_sqlite::rusqlite::Row<'_>| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                ))
            };
            let rows = match &mailing {
                Some(m) => s
                    .query_map(r2d2_sqlite::rusqlite::params![cutoff, m], map)?
                    .collect::<Result<Vec<_>, _>>()?,
                None => s.query_map([cutoff], map)?.collect::<Result<Vec<_>, _>>()?,
            };
            Ok(rows)
        })
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for (i, (mail_id, mailing_id, recipient_id, accepted_at)) in rows.into_iter().enumerate() {
        // Ask Optimizely about the oldest 50 only: it is a remote API.
        let optimizely_status = match (&state.optimizely, i < 50) {
            (Some(o), true) => Some(
                o.mail_status(&mail_id)
                    .await
                    .unwrap_or_else(|e| format!("unknown ({e})")),
            ),
            _ => None,
        };
        out.push(Stuck {
            age_s: (now - accepted_at) / 1000,
            accepted_at: chrono::DateTime::from_timestamp_millis(accepted_at)
                .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
                .unwrap_or_default(),
            mail_id,
            mailing_id,
            recipient_id,
            optimizely_status,
        });
    }
    Ok(out)
}

/// `GET /api/v1/dispatches/stuck?older_than=2m&mailing=&format=json|csv`
pub async fn stuck(
    State(state): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    for k in q.keys() {
        if !["older_than", "mailing", "format", "limit"].contains(&k.as_str()) {
            return Err(ApiError::BadRequest(format!(
                "unknown parameter `{k}`; this endpoint takes: older_than, mailing, format, limit"
            )));
        }
    }
    let older_than = match q.get("older_than") {
        None => 60_000,
        Some(v) => humantime::parse_duration(v)
            .map(|d| d.as_millis() as i64)
            .map_err(|_| {
                ApiError::BadRequest(format!(
                    "parameter `older_than`: expected a duration like 90s or 5m, got {v:?}"
                ))
            })?,
    };
    let limit: i64 = match q.get("limit") {
        None => 10_000,
        Some(v) => v
            .parse()
            .ok()
            .filter(|n| (1..=100_000).contains(n))
            .ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "parameter `limit`: expected 1 to 100000, got {v:?}"
                ))
            })?,
    };
    let format = q.get("format").map(String::as_str).unwrap_or("json");
    if !["json", "csv"].contains(&format) {
        return Err(ApiError::BadRequest(format!(
            "parameter `format`: expected json or csv, got {format:?}"
        )));
    }
    let now = chrono::Utc::now().timestamp_millis();
    let out = stuck_list(&state, older_than, q.get("mailing").cloned(), limit).await?;
    if format == "csv" {
        let mut w = csv::Writer::from_writer(Vec::new());
        for s in &out {
            w.serialize(s).map_err(|e| ApiError::Internal(e.into()))?;
        }
        let body = w
            .into_inner()
            .map_err(|e| ApiError::Internal(anyhow::anyhow!("{e}")))?;
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/csv; charset=utf-8"),
        );
        headers.insert(
            header::CONTENT_DISPOSITION,
            HeaderValue::from_static("attachment; filename=\"mailpulse-stuck-dispatches.csv\""),
        );
        return Ok((headers, body).into_response());
    }
    Ok(
        Json(json!({ "now": now, "older_than_s": older_than / 1000, "stuck": out }))
            .into_response(),
    )
}
