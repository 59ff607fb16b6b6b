//! The webhook front door: `POST /webhooks/optimizely`. Owns authentication
//! of the sender, the request limits and the hand-off of parsed events; the
//! parsing itself is in [`parse`].

pub mod parse;

use crate::error::ApiError;
use crate::AppState;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::Json;
use serde::Serialize;
use subtle::ConstantTimeEq;

/// What a successful webhook POST answers.
#[derive(Debug, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Receipt {
    /// Events stored by this request.
    pub accepted: usize,
    /// Events already stored before (not stored again).
    pub duplicates: usize,
    /// Items that could not be understood, kept in quarantine.
    pub quarantined: usize,
}

pub async fn post_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Receipt>, ApiError> {
    check_bearer(&headers, state.config.webhook_secret.as_ref())?;
    let received_at = chrono::Utc::now().timestamp_millis();
    let batch =
        parse::parse_body(&body, received_at).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let receipt = Receipt {
        accepted: batch.events.len(),
        duplicates: 0,
        quarantined: batch.quarantined.len(),
    };
    state.live.submit(batch.events).await;
    Ok(Json(receipt))
}

/// `Authorization: Bearer <secret>`, compared in constant time.
fn check_bearer(
    headers: &HeaderMap,
    secret: Option<&crate::config::Secret>,
) -> Result<(), ApiError> {
    let Some(secret) = secret else {
        return Ok(());
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or(ApiError::Unauthorized)?;
    if bool::from(given.as_bytes().ct_eq(secret.expose().as_bytes())) {
        Ok(())
    } else {
        Err(ApiError::Unauthorized)
    }
}
