//! The HTTP error type of every mailpulse endpoint. Each variant fixes its
//! status code; the body is always JSON `{"error": <code>, "message": <text>}`
//! with a stable code and a message that says what was wrong. Internal
//! detail goes to the log, never to the client.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request itself is wrong: bad JSON, a bad parameter, no events.
    #[error("{0}")]
    BadRequest(String),
    /// Missing or wrong credentials. The message never says which.
    #[error("missing or invalid credentials")]
    Unauthorized,
    /// The caller's address is not allowed.
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The store cannot keep up or is failing; the client should retry.
    #[error("{message}")]
    Unavailable {
        message: String,
        retry_after_secs: u32,
    },
    /// A bug or an unexpected failure; details are logged, not returned.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    message: String,
}

impl ApiError {
    /// The answer to a write the store did not do, or cannot vouch for:
    /// 503 with how long to wait. `what` names what was sent ("events",
    /// "dispatches"). Every case is safe to retry: a retry is deduplicated.
    pub fn store_write(e: StoreError, what: &str) -> ApiError {
        match e {
            StoreError::Busy(_) => ApiError::Unavailable {
                message: format!("{e}; retry shortly"),
                retry_after_secs: 1,
            },
            StoreError::NotDurable(_) => ApiError::Unavailable {
                message: format!(
                    "the store's disk failed to sync, so the {what} may not be durable; \
                     retry (a retry is not stored twice)"
                ),
                retry_after_secs: 30,
            },
            StoreError::Failed(_) | StoreError::Closed => ApiError::Unavailable {
                message: format!(
                    "the store could not commit the {what}; nothing was stored, retry"
                ),
                retry_after_secs: 5,
            },
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Unauthorized => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::Unavailable { .. } => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(err) = &self {
            tracing::error!(error = ?err, "internal error answering a request");
        }
        let status = self.status();
        let body = ErrorBody {
            error: self.code(),
            message: self.to_string(),
        };
        let mut resp = (status, Json(body)).into_response();
        match &self {
            ApiError::Unavailable {
                retry_after_secs, ..
            } => {
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
            }
            ApiError::Unauthorized => {
                resp.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"mailpulse\""),
                );
            }
            _ => {}
        }
        resp
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(err: anyhow::Error) -> Self {
        ApiError::Internal(err)
    }
}
