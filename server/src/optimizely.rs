//! A small client of Optimizely Campaign's REST API: the sending state of a
//! transactional mail (`GET /{clientId}/transactionalmail/status?mailId=…`),
//! asked for stuck dispatches so on-call staff see whether Optimizely still
//! has them enqueued, vetoed them, or sent them without a webhook. Answers
//! are cached for a minute.

use crate::config::OptimizelyConfig;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const CACHE_FOR: Duration = Duration::from_secs(60);

/// When an answer was fetched, and the answer.
type Cached = (Instant, Result<String, String>);

pub struct Optimizely {
    http: reqwest::Client,
    config: OptimizelyConfig,
    cache: Mutex<HashMap<String, Cached>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SendStatus {
    send_status: String,
}

impl Optimizely {
    pub fn new(config: OptimizelyConfig) -> Optimizely {
        Optimizely {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .expect("HTTP client"),
            config,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// `enqueued`, `sending`, `sent`, `vetoed`, …, or why it is unknown.
    pub async fn mail_status(&self, mail_id: &str) -> Result<String, String> {
        if let Some((at, r)) = self.cache.lock().expect("cache lock").get(mail_id) {
            if at.elapsed() < CACHE_FOR {
                return r.clone();
            }
        }
        let url = format!(
            "{}/{}/transactionalmail/status",
            self.config.base_url.trim_end_matches('/'),
            self.config.client_id
        );
        let r = self
            .http
            .get(url)
            .query(&[("mailId", mail_id)])
            .basic_auth(&self.config.username, Some(self.config.password.expose()))
            .send()
            .await;
        let result = match r {
            Ok(r) if r.status().is_success() => r
                .json::<SendStatus>()
                .await
                .map(|s| s.send_status)
                .map_err(|e| format!("unreadable answer: {e}")),
            Ok(r) => Err(format!("Optimizely answered {}", r.status())),
            Err(e) => Err(format!("Optimizely unreachable: {e}")),
        };
        let mut cache = self.cache.lock().expect("cache lock");
        if cache.len() > 10_000 {
            cache.clear();
        }
        cache.insert(mail_id.to_string(), (Instant::now(), result.clone()));
        result
    }
}
