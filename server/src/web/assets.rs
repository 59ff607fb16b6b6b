//! The dashboard's bundle (`/pkg/*`: the wasm, its JS glue, the CSS),
//! gzipped once at the best level and served from memory. Why: every
//! dashboard, phone and wall screen downloads the ~1 MB wasm; compressing
//! it on the fly cost CPU per download and, at the default level, made it
//! bigger on the wire than the bundle's 400 KB budget. A file is read and
//! compressed again when its size or modification time changes (a new
//! build under `cargo leptos watch`), so what is served is never stale.

use crate::error::ApiError;
use axum::body::Body;
use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use flate2::write::GzEncoder;
use flate2::Compression;
use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// One file as served.
struct Entry {
    /// What the cached copy was made from.
    len: u64,
    modified: SystemTime,
    raw: Bytes,
    gzip: Bytes,
    etag: HeaderValue,
}

/// The bundle directory (`<site_root>/pkg`) and its compressed copies.
pub struct Assets {
    dir: PathBuf,
    cache: Mutex<HashMap<String, Arc<Entry>>>,
}

impl Assets {
    pub fn new(dir: PathBuf) -> Arc<Assets> {
        Arc::new(Assets {
            dir,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// `GET /pkg/{file}`.
    pub async fn serve(self: Arc<Self>, Path(file): Path<String>, headers: HeaderMap) -> Response {
        let Some(content_type) = content_type(&file) else {
            return not_found().into_response();
        };
        let entry = match tokio::task::spawn_blocking(move || self.entry(&file)).await {
            Ok(Ok(entry)) => entry,
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
                return not_found().into_response()
            }
            Ok(Err(e)) => return ApiError::Internal(e.into()).into_response(),
            Err(e) => return ApiError::Internal(e.into()).into_response(),
        };
        let mut res = if headers
            .get(header::IF_NONE_MATCH)
            .is_some_and(|v| v == entry.etag)
        {
            StatusCode::NOT_MODIFIED.into_response()
        } else if accepts_gzip(&headers) {
            let mut r = Body::from(entry.gzip.clone()).into_response();
            r.headers_mut()
                .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            r
        } else {
            Body::from(entry.raw.clone()).into_response()
        };
        let h = res.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        h.insert(header::ETAG, entry.etag.clone());
        h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
        // Names are not content-hashed: revalidate each time (a 304 is cheap).
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        res
    }

    /// The cached entry for `file`, made again if the file changed.
    fn entry(&self, file: &str) -> std::io::Result<Arc<Entry>> {
        let path = self.dir.join(file);
        let meta = std::fs::metadata(&path)?;
        let modified = meta.modified()?;
        let cached = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(file)
            .cloned();
        if let Some(e) = cached.filter(|e| e.len == meta.len() && e.modified == modified) {
            return Ok(e);
        }
        let raw = std::fs::read(&path)?;
        let mut gz = GzEncoder::new(Vec::with_capacity(raw.len() / 2), Compression::best());
        gz.write_all(&raw)?;
        let gzip = gz.finish()?;
        let etag = format!("\"{}\"", &blake3::hash(&raw).to_hex()[..16]);
        let entry = Arc::new(Entry {
            len: meta.len(),
            modified,
            etag: HeaderValue::from_str(&etag).expect("hex is a valid header value"),
            raw: raw.into(),
            gzip: gzip.into(),
        });
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(file.to_string(), entry.clone());
        Ok(entry)
    }
}

/// The content type of a bundle file; `None` for anything else (including
/// any name with a path in it), which is answered 404.
fn content_type(file: &str) -> Option<&'static str> {
    if file.contains(['/', '\\']) || file.starts_with('.') {
        return None;
    }
    match file.rsplit_once('.')?.1 {
        "wasm" => Some("application/wasm"),
        "js" => Some("text/javascript"),
        "css" => Some("text/css"),
        _ => None,
    }
}

fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|enc| {
            let mut parts = enc.split(';').map(str::trim);
            parts.next() == Some("gzip") && !parts.any(|p| p.replace(' ', "") == "q=0")
        })
}

fn not_found() -> ApiError {
    ApiError::NotFound("no such file in the dashboard bundle".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_bundle_files_have_a_type() {
        assert_eq!(content_type("mailpulse.wasm"), Some("application/wasm"));
        assert_eq!(content_type("mailpulse.js"), Some("text/javascript"));
        assert_eq!(content_type("mailpulse.css"), Some("text/css"));
        assert_eq!(content_type("../Cargo.toml"), None);
        assert_eq!(content_type("a/b.js"), None);
        assert_eq!(content_type(".hidden.js"), None);
        assert_eq!(content_type("mailpulse.d.ts"), None);
    }

    #[test]
    fn gzip_is_taken_unless_refused() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(header::ACCEPT_ENCODING, HeaderValue::from_str(v).unwrap());
            m
        };
        assert!(accepts_gzip(&h("gzip, deflate, br")));
        assert!(accepts_gzip(&h("br;q=1.0, gzip;q=0.8")));
        assert!(!accepts_gzip(&h("gzip;q=0")));
        assert!(!accepts_gzip(&h("br")));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }
}
