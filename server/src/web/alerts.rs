//! Alert endpoints: the list of active and recent alerts, acknowledging,
//! silences, the rules (read, set, remove) and each alert's PNG chart.

use super::api::WriteAccess;
use crate::alerts::machine::Silence;
use crate::alerts::rules::RuleDef;
use crate::error::ApiError;
use crate::AppState;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

fn unavailable() -> ApiError {
    ApiError::Unavailable {
        message: "the live engine is not ready yet".into(),
        retry_after_secs: 5,
    }
}

fn body<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| ApiError::BadRequest(format!("body: {e}")))
}

/// `GET /api/v1/alerts`
pub async fn list(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let a = state.live.alerts().await.ok_or_else(unavailable)?;
    Ok(Json(
        json!({ "active": a.active, "recent": a.recent, "silences": a.silences }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AckBody {
    by: String,
    #[serde(default)]
    comment: String,
}

/// `POST /api/v1/alerts/{id}/ack` with `{"by": …, "comment": …}`
pub async fn ack(
    State(state): State<AppState>,
    _: WriteAccess,
    Path(id): Path<i64>,
    bytes: Bytes,
) -> Result<Json<Value>, ApiError> {
    let b: AckBody = body(&bytes)?;
    let by = b.by.trim();
    if by.is_empty() || by.len() > 100 || b.comment.len() > 2000 {
        return Err(ApiError::BadRequest(
            "`by` is required (at most 100 characters); `comment` at most 2000".into(),
        ));
    }
    state
        .live
        .ack(id, by.to_string(), b.comment.trim().to_string())
        .await
        .map_err(|e| {
            if e.contains("no open alert") {
                ApiError::NotFound(e)
            } else {
                ApiError::BadRequest(e)
            }
        })?;
    Ok(Json(json!({ "id": id, "acknowledged": true })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SilenceBody {
    #[serde(default)]
    rule: Option<String>,
    #[serde(default)]
    scope: Option<String>,
    /// How long, e.g. `2h`; or `ends_at` (RFC 3339).
    #[serde(default)]
    duration: Option<String>,
    #[serde(default)]
    ends_at: Option<String>,
    created_by: String,
    #[serde(default)]
    comment: String,
}

/// `POST /api/v1/silences`
pub async fn silence(
    State(state): State<AppState>,
    _: WriteAccess,
    bytes: Bytes,
) -> Result<Json<Silence>, ApiError> {
    let b: SilenceBody = body(&bytes)?;
    let now = chrono::Utc::now().timestamp_millis();
    let ends_at = match (&b.duration, &b.ends_at) {
        (Some(d), None) => {
            now + humantime::parse_duration(d)
                .map_err(|_| {
                    ApiError::BadRequest(format!("`duration`: expected e.g. 30m or 2h, got {d:?}"))
                })?
                .as_millis() as i64
        }
        (None, Some(t)) => chrono::DateTime::parse_from_rfc3339(t)
            .map_err(|_| ApiError::BadRequest(format!("`ends_at`: expected RFC 3339, got {t:?}")))?
            .timestamp_millis(),
        _ => {
            return Err(ApiError::BadRequest(
                "give exactly one of `duration` and `ends_at`".into(),
            ))
        }
    };
    if ends_at <= now {
        return Err(ApiError::BadRequest(
            "the silence would already be over".into(),
        ));
    }
    if b.rule.is_none() && b.scope.is_none() {
        return Err(ApiError::BadRequest(
            "a silence needs a `rule`, a `scope` or both (muting everything is not a silence)"
                .into(),
        ));
    }
    if b.created_by.trim().is_empty() {
        return Err(ApiError::BadRequest("`created_by` is required".into()));
    }
    let s = state
        .live
        .silence(Silence {
            id: 0,
            rule: b.rule,
            scope: b.scope,
            starts_at: now,
            ends_at,
            created_by: b.created_by.trim().to_string(),
            comment: b.comment,
        })
        .await
        .ok_or_else(unavailable)?;
    Ok(Json(s))
}

/// `DELETE /api/v1/silences/{id}`: ends it now.
pub async fn unsilence(
    State(state): State<AppState>,
    _: WriteAccess,
    Path(id): Path<i64>,
) -> Result<Json<Value>, ApiError> {
    if state.live.unsilence(id).await {
        Ok(Json(json!({ "id": id, "ended": true })))
    } else {
        Err(ApiError::NotFound(format!(
            "no active silence with id {id}"
        )))
    }
}

/// `GET /api/v1/alert-rules`: every rule with where it comes from.
pub async fn rules(State(state): State<AppState>) -> Json<Value> {
    Json(json!({ "rules": state.live.rules().await }))
}

/// `PUT /api/v1/alert-rules/{name}`: sets (or overrides) a rule.
pub async fn put_rule(
    State(state): State<AppState>,
    _: WriteAccess,
    Path(name): Path<String>,
    bytes: Bytes,
) -> Result<Json<Value>, ApiError> {
    let mut def: RuleDef = body(&bytes)?;
    if def.name.is_empty() {
        def.name = name.clone();
    }
    if def.name != name {
        return Err(ApiError::BadRequest(format!(
            "the body names rule {:?}, the path {name:?}",
            def.name
        )));
    }
    state
        .live
        .put_rule(def)
        .await
        .map_err(ApiError::BadRequest)?;
    Ok(Json(json!({ "name": name, "saved": true })))
}

/// `DELETE /api/v1/alert-rules/{name}`: removes a rule set through the API.
pub async fn delete_rule(
    State(state): State<AppState>,
    _: WriteAccess,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    state
        .live
        .delete_rule(name.clone())
        .await
        .map_err(ApiError::NotFound)?;
    Ok(Json(json!({ "name": name, "deleted": true })))
}

/// `GET /api/v1/alerts/{id}/chart.png`: the watched value, last 30 min.
pub async fn chart(
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    let data = state
        .live
        .chart(id)
        .await
        .ok_or_else(|| ApiError::NotFound(format!("no alert with id {id} in memory")))?;
    let now = chrono::Utc::now().timestamp_millis();
    let png = tokio::task::spawn_blocking(move || {
        crate::alerts::chart::render(&data.title, &data.unit, &data.points, data.threshold, now)
    })
    .await
    .map_err(|e| ApiError::Internal(e.into()))??;
    Ok((
        [
            (header::CONTENT_TYPE, "image/png"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        png,
    )
        .into_response())
}
