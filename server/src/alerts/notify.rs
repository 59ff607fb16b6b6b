//! Delivering notifications: a task that reads due rows of the persisted
//! outbox, sends each to its channel (generic JSON webhook, Slack incoming
//! webhook, PagerDuty Events API v2, e-mail over SMTP) and marks it
//! delivered, or schedules a retry with backoff. Rows are sent in order, so
//! a resolved notice never overtakes its firing one. Delivery is
//! at-least-once: a crash between sending and marking resends that one row,
//! with the same id (`X-Mailpulse-Notification-Id`, PagerDuty's
//! `dedup_key`) so receivers can tell.

use crate::config::{ChannelConfig, Secret};
use crate::store::{Param, Store};
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Give up on a row after this many attempts (about a day with the backoff).
const MAX_ATTEMPTS: i64 = 300;
const PAGERDUTY_URL: &str = "https://events.pagerduty.com/v2/enqueue";

pub enum Channel {
    Webhook {
        url: Secret,
    },
    Slack {
        url: Secret,
    },
    PagerDuty {
        url: String,
        routing_key: Secret,
    },
    Email {
        transport: Box<AsyncSmtpTransport<Tokio1Executor>>,
        from: Mailbox,
        to: Vec<Mailbox>,
    },
}

impl Channel {
    /// Builds a channel from its configuration (already validated).
    pub fn from_config(c: &ChannelConfig) -> anyhow::Result<Channel> {
        let need = |what: &str| anyhow::anyhow!("channel {:?} needs `{what}`", c.display_name());
        Ok(match c.kind.as_str() {
            "webhook" => Channel::Webhook {
                url: c.url.clone().ok_or_else(|| need("url"))?,
            },
            "slack" => Channel::Slack {
                url: c.url.clone().ok_or_else(|| need("url"))?,
            },
            "pagerduty" => Channel::PagerDuty {
                url: c
                    .url
                    .as_ref()
                    .map_or(PAGERDUTY_URL.to_string(), |u| u.expose().to_string()),
                routing_key: c.routing_key.clone().ok_or_else(|| need("routing_key"))?,
            },
            "email" => {
                let host = c.smtp_host.clone().ok_or_else(|| need("smtp_host"))?;
                let mut b = match c.tls.as_deref().unwrap_or("starttls") {
                    "tls" => AsyncSmtpTransport::<Tokio1Executor>::relay(&host)?,
                    "starttls" => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&host)?,
                    "none" => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&host),
                    other => anyhow::bail!(
                        "channel {:?}: tls {other:?} is not tls, starttls or none",
                        c.display_name()
                    ),
                };
                if let Some(port) = c.smtp_port {
                    b = b.port(port);
                }
                if let (Some(u), Some(p)) = (&c.username, &c.password) {
                    b = b.credentials(Credentials::new(u.clone(), p.expose().to_string()));
                }
                let from: Mailbox = c
                    .from
                    .as_deref()
                    .ok_or_else(|| need("from"))?
                    .parse()
                    .map_err(|e| {
                        anyhow::anyhow!("channel {:?}: bad `from`: {e}", c.display_name())
                    })?;
                let to =
                    c.to.iter()
                        .map(|t| t.parse::<Mailbox>())
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|e| {
                            anyhow::anyhow!("channel {:?}: bad `to`: {e}", c.display_name())
                        })?;
                if to.is_empty() {
                    return Err(need("to"));
                }
                Channel::Email {
                    transport: Box::new(b.timeout(Some(Duration::from_secs(20))).build()),
                    from,
                    to,
                }
            }
            other => {
                anyhow::bail!("channel type {other:?} is not webhook, slack, pagerduty or email")
            }
        })
    }

    /// Whether reminders go to this channel.
    pub fn wants_repeats(&self) -> bool {
        !matches!(self, Channel::PagerDuty { .. })
    }

    async fn send(&self, http: &reqwest::Client, p: &Value) -> Result<(), String> {
        let text = p["text"].as_str().unwrap_or_default();
        let dashboard = p["dashboard_url"].as_str().unwrap_or_default();
        let chart = p["chart_url"].as_str().unwrap_or_default();
        let post = |url: &str, body: Value| {
            http.post(url)
                .header(
                    "x-mailpulse-notification-id",
                    p["id"].as_str().unwrap_or_default(),
                )
                .json(&body)
                .send()
        };
        let check = |r: Result<reqwest::Response, reqwest::Error>| async move {
            match r {
                Ok(r) if r.status().is_success() => Ok(()),
                Ok(r) => {
                    let status = r.status();
                    let body = r.text().await.unwrap_or_default();
                    Err(format!(
                        "{status}: {}",
                        body.chars().take(200).collect::<String>()
                    ))
                }
                Err(e) => Err(e.to_string()),
            }
        };
        match self {
            Channel::Webhook { url } => check(post(url.expose(), p.clone()).await).await,
            Channel::Slack { url } => {
                let icon = match p["kind"].as_str() {
                    Some("resolved") => ":white_check_mark:",
                    Some("acknowledged") => ":eyes:",
                    _ if p["severity"] == "critical" => ":rotating_light:",
                    _ => ":warning:",
                };
                let body = json!({
                    "text": format!("{icon} {text}\n<{dashboard}|Dashboard> · <{chart}|Chart, last 30 minutes>"),
                });
                check(post(url.expose(), body).await).await
            }
            Channel::PagerDuty { url, routing_key } => {
                let action = match p["kind"].as_str() {
                    Some("resolved") => "resolve",
                    Some("acknowledged") => "acknowledge",
                    _ => "trigger",
                };
                let body = json!({
                    "routing_key": routing_key.expose(),
                    "event_action": action,
                    "dedup_key": p["dedup_key"],
                    "payload": {
                        "summary": p["summary"].as_str().unwrap_or(text).chars().take(1024).collect::<String>(),
                        "source": "mailpulse",
                        "severity": p["severity"],
                        "timestamp": p["firing_at"],
                        "component": p["mailing"],
                        "group": p["scope"],
                        "class": p["rule"],
                        "custom_details": {
                            "value": p["value"], "threshold": p["threshold"], "unit": p["unit"],
                            "description": p["description"], "started_at": p["started_at"],
                        },
                    },
                    "links": [{"href": dashboard, "text": "mailpulse dashboard"}],
                    "images": [{"src": chart, "href": dashboard, "alt": "last 30 minutes"}],
                });
                check(post(url, body).await).await
            }
            Channel::Email {
                transport,
                from,
                to,
            } => {
                let mut b = Message::builder()
                    .from(from.clone())
                    .subject(text.chars().take(200).collect::<String>());
                for t in to {
                    b = b.to(t.clone());
                }
                let body = format!(
                    "{text}\n\nRule: {}\n{}\nScope: {}\nValue: {} (threshold {}, unit {})\nStarted: {}\n\nDashboard: {dashboard}\nChart of the last 30 minutes: {chart}\n",
                    p["rule"].as_str().unwrap_or_default(),
                    p["description"].as_str().unwrap_or_default(),
                    p["scope"].as_str().unwrap_or_default(),
                    p["value"],
                    p["threshold"],
                    p["unit"].as_str().unwrap_or_default(),
                    p["started_at"].as_str().unwrap_or_default(),
                );
                let msg = b.body(body).map_err(|e| e.to_string())?;
                transport
                    .send(msg)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
        }
    }
}

/// Backoff after `attempts` failures: 2 s doubling to 5 minutes.
pub fn backoff_ms(attempts: i64) -> i64 {
    (2_000i64 << attempts.clamp(0, 8)).min(300_000)
}

/// Sends due outbox rows until `shutdown`.
pub async fn run(store: Store, channels: HashMap<String, Channel>, shutdown: CancellationToken) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .expect("HTTP client");
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = shutdown.cancelled() => return,
        }
        let now = chrono::Utc::now().timestamp_millis();
        let due = store
            .read(move |c| {
                let mut s = c.prepare(
                    "SELECT id, channel, payload, attempts, next_attempt_at FROM alert_outbox \
                     WHERE delivered_at IS NULL ORDER BY id LIMIT 200",
                )?;
                let rows = s.query_map([], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, i64>(3)?,
                        r.get::<_, i64>(4)? > now,
                    ))
                })?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await;
        let due = match due {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the alert outbox");
                continue;
            }
        };
        // A channel whose oldest row waits for a retry waits as a whole:
        // later rows must not overtake it (a resolved notice before its
        // firing one).
        let mut blocked: Vec<String> = Vec::new();
        for (id, channel, payload, attempts, not_yet) in due {
            if blocked.contains(&channel) {
                continue;
            }
            if not_yet {
                blocked.push(channel);
                continue;
            }
            let Some(ch) = channels.get(&channel) else {
                tracing::warn!(channel, "outbox row for an unknown channel; dropped");
                let _ = store
                    .execute(vec![(
                        "UPDATE alert_outbox SET delivered_at = -1, last_error = 'channel no longer configured' WHERE id = ?1",
                        vec![Param::Int(id)],
                    )])
                    .await;
                continue;
            };
            let p: Value = serde_json::from_str(&payload).unwrap_or(Value::Null);
            let result = ch.send(&http, &p).await;
            let now = chrono::Utc::now().timestamp_millis();
            let op = match &result {
                Ok(()) => {
                    tracing::info!(
                        channel,
                        id = p["id"].as_str().unwrap_or_default(),
                        "alert notification delivered"
                    );
                    (
                        "UPDATE alert_outbox SET delivered_at = ?2, attempts = attempts + 1 WHERE id = ?1",
                        vec![Param::Int(id), Param::Int(now)],
                    )
                }
                Err(e) if attempts + 1 >= MAX_ATTEMPTS => {
                    tracing::error!(channel, error = %e, "alert notification abandoned after {MAX_ATTEMPTS} attempts");
                    (
                        "UPDATE alert_outbox SET attempts = attempts + 1, delivered_at = -1, last_error = ?2 WHERE id = ?1",
                        vec![Param::Int(id), Param::Text(Some(e.clone()))],
                    )
                }
                Err(e) => {
                    tracing::warn!(channel, error = %e, attempts = attempts + 1, "alert notification failed; will retry");
                    blocked.push(channel.clone());
                    (
                        "UPDATE alert_outbox SET attempts = attempts + 1, next_attempt_at = ?2, last_error = ?3 WHERE id = ?1",
                        vec![Param::Int(id), Param::Int(now + backoff_ms(attempts)), Param::Text(Some(e.clone()))],
                    )
                }
            };
            if let Err(e) = store.execute(vec![op]).await {
                tracing::error!(error = %e, "cannot record an alert delivery");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_five_minutes() {
        assert_eq!(backoff_ms(0), 2_000);
        assert_eq!(backoff_ms(1), 4_000);
        assert_eq!(backoff_ms(20), 300_000);
    }
}
