//! The REST API under `/api/v1` (documented in `openapi.json`, served at
//! `/api/v1/openapi.json`). Live numbers come from the engine's views; history
//! and raw events from the store. Every bad parameter is a 400 naming it.

use crate::error::ApiError;
use crate::metrics::MailingSettings;
use crate::store::raw::{RawReader, StoredRaw};
use crate::store::spans;
use crate::AppState;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use mailpulse_app::protocol::{
    Counters, MailingClass, MailingRow, Percentiles, Rates, Topic, TopicState, Window, WindowStats,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use subtle::ConstantTimeEq;

/// Query parameters, checked by name: unknown ones are refused too, so a
/// typo does not silently return unfiltered data.
struct Params {
    map: HashMap<String, String>,
}

impl Params {
    fn new(map: HashMap<String, String>, allowed: &[&str]) -> Result<Params, ApiError> {
        if let Some(k) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(ApiError::BadRequest(format!(
                "unknown parameter `{k}`; this endpoint takes: {}",
                allowed.join(", ")
            )));
        }
        Ok(Params { map })
    }

    fn get<T>(
        &self,
        name: &str,
        expected: &str,
        parse: impl Fn(&str) -> Option<T>,
    ) -> Result<Option<T>, ApiError> {
        match self.map.get(name) {
            None => Ok(None),
            Some(v) => parse(v).map(Some).ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "parameter `{name}`: expected {expected}, got {v:?}"
                ))
            }),
        }
    }

    fn text(&self, name: &str) -> Option<&str> {
        self.map.get(name).map(String::as_str)
    }
}

const WINDOWS: &str = "one of 1m, 5m, 15m, 1h, 24h";

fn parse_class(s: &str) -> Option<MailingClass> {
    MailingClass::parse(s)
}

/// RFC 3339 or epoch milliseconds.
fn parse_time(s: &str) -> Option<i64> {
    s.parse::<i64>().ok().or_else(|| {
        chrono::DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|d| d.timestamp_millis())
    })
}

fn bool_param(s: &str) -> Option<bool> {
    match s {
        "true" | "1" => Some(true),
        "false" | "0" => Some(false),
        _ => None,
    }
}

async fn view(state: &AppState, topic: Topic) -> Result<TopicState, ApiError> {
    state
        .live
        .view(topic.clone())
        .await
        .map(|p| p.state.clone())
        .ok_or_else(|| match topic {
            Topic::Mailing(id) => {
                ApiError::NotFound(format!("no event of mailing {id:?} is known"))
            }
            _ => ApiError::Unavailable {
                message: "the live state is not ready yet".into(),
                retry_after_secs: 5,
            },
        })
}

#[derive(Serialize)]
struct StatsOut {
    counters: Counters,
    rates: Rates,
    #[serde(skip_serializing_if = "Option::is_none")]
    lag: Option<Percentiles>,
}

impl From<WindowStats> for StatsOut {
    fn from(w: WindowStats) -> Self {
        StatsOut {
            counters: w.counters,
            rates: w.counters.rates(),
            lag: w.lag,
        }
    }
}

/// `GET /api/v1/summary?window=5m`
pub async fn summary(
    State(state): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let p = Params::new(q, &["window"])?;
    let window = p
        .get("window", WINDOWS, Window::parse)?
        .unwrap_or(Window::M5);
    let TopicState::Overview(o) = view(&state, Topic::Overview).await? else {
        return Err(ApiError::Internal(anyhow::anyhow!(
            "overview topic held another state"
        )));
    };
    let scope = |s: &mailpulse_app::protocol::ScopeStats| {
        json!({
            "window": StatsOut::from(s.window(window)),
            "totals": {"counters": s.totals, "rates": s.totals.rates()},
        })
    };
    Ok(Json(json!({
        "window": window.label(),
        "now": o.now,
        "overall": scope(&o.summary.overall),
        "transactional": scope(&o.summary.transactional),
        "campaign": scope(&o.summary.campaign),
        "feed": o.feed,
    })))
}

#[derive(Serialize)]
struct RowOut {
    #[serde(flatten)]
    row: MailingRow,
    rates: Rates,
}

/// `GET /api/v1/mailings?class=&q=&sort=`
pub async fn mailings(
    State(state): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let p = Params::new(q, &["class", "q", "sort"])?;
    let class = p.get("class", "transactional or campaign", parse_class)?;
    let sort = p
        .get("sort", "one of recent, sent, name, id", |s| {
            ["recent", "sent", "name", "id"]
                .contains(&s)
                .then(|| s.to_string())
        })?
        .unwrap_or_else(|| "recent".into());
    let needle = p.text("q").map(str::to_lowercase);
    let TopicState::Mailings(m) = view(&state, Topic::Mailings).await? else {
        return Err(ApiError::Internal(anyhow::anyhow!(
            "mailings topic held another state"
        )));
    };
    let mut rows: Vec<MailingRow> = m
        .mailings
        .into_iter()
        .filter(|r| class.is_none_or(|c| r.class == c))
        .filter(|r| {
            needle.as_ref().is_none_or(|n| {
                r.id.to_lowercase().contains(n)
                    || r.name
                        .as_ref()
                        .is_some_and(|x| x.to_lowercase().contains(n))
            })
        })
        .collect();
    match sort.as_str() {
        "sent" => rows.sort_by_key(|r| std::cmp::Reverse(r.totals.sent)),
        "name" => rows.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.id.cmp(&b.id))),
        "id" => rows.sort_by(|a, b| a.id.cmp(&b.id)),
        _ => {}
    }
    let out: Vec<RowOut> = rows
        .into_iter()
        .map(|row| RowOut {
            rates: row.totals.rates(),
            row,
        })
        .collect();
    Ok(Json(json!({ "now": m.now, "mailings": out })))
}

/// `GET /api/v1/mailings/{id}`
pub async fn mailing(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let TopicState::Mailing(m) = view(&state, Topic::Mailing(id)).await? else {
        return Err(ApiError::Internal(anyhow::anyhow!(
            "mailing topic held another state"
        )));
    };
    let windows: BTreeMap<&str, StatsOut> = m
        .windows
        .iter()
        .map(|(w, s)| (w.label(), StatsOut::from(*s)))
        .collect();
    Ok(Json(json!({
        "now": m.now,
        "mailing": RowOut { rates: m.row.totals.rates(), row: m.row },
        "windows": windows,
        "bounces": m.bounces,
        "series": m.series,
    })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailingUpdate {
    /// `transactional`, `campaign`, or null to fall back to the config.
    #[serde(default)]
    class: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

/// May the caller change things? With an API token: it must present it.
/// Without one: only clients on this machine may.
pub struct WriteAccess;

impl axum::extract::FromRequestParts<AppState> for WriteAccess {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        match &state.config.api_token {
            Some(token) => {
                let given = parts
                    .headers
                    .get(header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Bearer "))
                    .unwrap_or("");
                let a = blake3::hash(given.as_bytes());
                let b = blake3::hash(token.expose().as_bytes());
                if bool::from(a.as_bytes().ct_eq(b.as_bytes())) {
                    Ok(WriteAccess)
                } else {
                    Err(ApiError::Unauthorized)
                }
            }
            None => {
                let loopback = parts
                    .extensions
                    .get::<ConnectInfo<SocketAddr>>()
                    .is_some_and(|c| c.0.ip().is_loopback());
                if loopback {
                    Ok(WriteAccess)
                } else {
                    Err(ApiError::Forbidden(
                        "changes need an API token (set MAILPULSE_API_TOKEN) when not on this machine"
                            .into(),
                    ))
                }
            }
        }
    }
}

/// `PUT /api/v1/mailings/{id}` with `{"class": …, "name": …}`.
pub async fn update_mailing(
    State(state): State<AppState>,
    _: WriteAccess,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let update: MailingUpdate =
        serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest(format!("body: {e}")))?;
    let class = match update.class.as_deref() {
        None => None,
        Some(c) => Some(parse_class(c).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "field `class`: expected transactional or campaign, got {c:?}"
            ))
        })?),
    };
    let name = update
        .name
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty());
    if name.as_ref().is_some_and(|n| n.chars().count() > 200) {
        return Err(ApiError::BadRequest(
            "field `name`: at most 200 characters".into(),
        ));
    }
    if id.is_empty() || id.len() > 200 {
        return Err(ApiError::BadRequest(
            "mailing id: 1 to 200 characters".into(),
        ));
    }
    state
        .store
        .save_mailing_settings(&id, class.map(MailingClass::as_str), name.as_deref())
        .await
        .map_err(|e| ApiError::Unavailable {
            message: format!("{e}"),
            retry_after_secs: 1,
        })?;
    state
        .live
        .set_mailing(id.clone(), MailingSettings { class, name })
        .await;
    Ok(Json(json!({ "id": id, "class": class, "saved": true })))
}

/// A metric of the series endpoint: a counter, or a rate of two.
#[derive(Clone, Copy)]
enum Metric {
    Count(usize),
    Rate(usize),
}

const RATES: [(&str, &str); 7] = [
    ("bounce_rate", "bounces"),
    ("hard_bounce_rate", "hard_bounces"),
    ("soft_bounce_rate", "soft_bounces"),
    ("open_rate", "unique_opens"),
    ("click_rate", "unique_clicks"),
    ("unsubscribe_rate", "unsubscribes"),
    ("complaint_rate", "complaints"),
];

fn parse_metric(s: &str) -> Option<Metric> {
    if let Some(i) = Counters::FIELDS.iter().position(|f| *f == s) {
        return Some(Metric::Count(i));
    }
    let (_, field) = RATES.iter().find(|(r, _)| *r == s)?;
    Counters::FIELDS
        .iter()
        .position(|f| f == field)
        .map(Metric::Rate)
}

fn parse_step(s: &str) -> Option<i64> {
    let ms = match s {
        "1m" => 60_000,
        "5m" => 300_000,
        "15m" => 900_000,
        "1h" => 3_600_000,
        "1d" => 86_400_000,
        other => other.parse::<i64>().ok()?,
    };
    (ms >= 60_000 && ms % 60_000 == 0).then_some(ms)
}

/// `GET /api/v1/series?scope=overall&metric=sent&from=&to=&step=` — history
/// from the per-minute rollups, for any scope.
pub async fn series(
    State(state): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let p = Params::new(q, &["scope", "metric", "from", "to", "step"])?;
    let scope = p
        .get(
            "scope",
            "overall, transactional, campaign or mailing:<id>",
            |s| match s {
                "overall" | "transactional" | "campaign" => Some(s.to_string()),
                _ => s
                    .strip_prefix("mailing:")
                    .filter(|id| !id.is_empty())
                    .map(|_| s.to_string()),
            },
        )?
        .unwrap_or_else(|| "overall".into());
    history(state, scope, p).await
}

/// `GET /api/v1/mailings/{id}/series?metric=…`
pub async fn mailing_series(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let p = Params::new(q, &["metric", "from", "to", "step"])?;
    history(state, format!("mailing:{id}"), p).await
}

async fn history(state: AppState, scope: String, p: Params) -> Result<Json<Value>, ApiError> {
    let metric_name = p.text("metric").unwrap_or("sent").to_string();
    let metric = p
        .get(
            "metric",
            "a counter (sent, opens, unique_opens, bounces, …) or a rate (bounce_rate, open_rate, click_rate, …)",
            parse_metric,
        )?
        .unwrap_or(Metric::Count(0));
    let now = chrono::Utc::now().timestamp_millis();
    let to = p
        .get("to", "RFC 3339 or epoch milliseconds", parse_time)?
        .unwrap_or(now);
    let from = p
        .get("from", "RFC 3339 or epoch milliseconds", parse_time)?
        .unwrap_or(to - 86_400_000);
    let step = p
        .get(
            "step",
            "1m, 5m, 15m, 1h, 1d or a multiple of 60000 ms",
            parse_step,
        )?
        .unwrap_or(300_000);
    if from >= to {
        return Err(ApiError::BadRequest(
            "parameter `from`: must be before `to`".into(),
        ));
    }
    let buckets = (to - from).div_euclid(step) + 1;
    if buckets > 10_000 {
        return Err(ApiError::BadRequest(format!(
            "parameter `step`: {buckets} points requested, at most 10000; use a larger step"
        )));
    }
    // Which mailings the scope covers (classes are a live notion).
    let mailings: Option<Vec<String>> = match scope.as_str() {
        "overall" => None,
        "transactional" | "campaign" => {
            let TopicState::Mailings(m) = view(&state, Topic::Mailings).await? else {
                return Err(ApiError::Internal(anyhow::anyhow!("bad mailings state")));
            };
            let class = MailingClass::parse(&scope);
            let mut ids: Vec<String> = m
                .mailings
                .into_iter()
                .filter(|r| Some(r.class) == class)
                .map(|r| r.id)
                .collect();
            // Events without a mailing id count as campaign.
            if class == Some(MailingClass::Campaign) {
                ids.push(String::new());
            }
            Some(ids)
        }
        other => Some(vec![other.trim_start_matches("mailing:").to_string()]),
    };
    let (first, last) = (from.div_euclid(step) * step, to.div_euclid(step) * step);
    let sums = state
        .store
        .read(move |conn| {
            let cols = Counters::FIELDS
                .iter()
                .map(|f| format!("SUM({f})"))
                .collect::<Vec<_>>()
                .join(", ");
            let step_min = step / 60_000;
            let filter = match &mailings {
                None => String::new(),
                Some(ids) => format!(
                    "AND mailing_id IN ({})",
                    ids.iter().map(|_| "?").collect::<Vec<_>>().join(", ")
                ),
            };
            let sql = format!(
                "SELECT (minute / {step_min}) * {step_min}, {cols} FROM rollup_minute \
                 WHERE minute >= {} AND minute <= {} {filter} GROUP BY 1",
                first / 60_000,
                (last + step) / 60_000 - 1
            );
            let mut stmt = conn.prepare(&sql)?;
            let ids = mailings.unwrap_or_default();
            let mut rows = stmt.query(r2d2_sqlite::rusqlite::params_from_iter(ids.iter()))?;
            let mut out = BTreeMap::new();
            while let Some(r) = rows.next()? {
                let minute: i64 = r.get(0)?;
                let mut a = [0u64; 18];
                for (i, v) in a.iter_mut().enumerate() {
                    *v = r.get::<_, Option<i64>>(i + 1)?.unwrap_or(0) as u64;
                }
                out.insert(minute * 60_000, a);
            }
            Ok(out)
        })
        .await?;
    let sent_idx = 0;
    let points: Vec<Value> = (0..buckets)
        .map(|i| first + i * step)
        .filter(|t| *t <= last)
        .map(|t| {
            let a = sums.get(&t).copied().unwrap_or([0; 18]);
            let value = match metric {
                Metric::Count(i) => json!(a[i]),
                Metric::Rate(i) => {
                    if a[sent_idx] == 0 {
                        Value::Null
                    } else {
                        json!(a[i] as f64 / a[sent_idx] as f64)
                    }
                }
            };
            json!({ "t": t, "value": value })
        })
        .collect();
    Ok(Json(json!({
        "scope": scope,
        "metric": metric_name,
        "from": first,
        "to": last,
        "step_ms": step,
        "points": points,
    })))
}

/// A recipient address with the local part hidden: `j***@example.com`.
pub fn mask_address(a: &str) -> String {
    match a.rsplit_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!("{first}***@{domain}")
        }
        None => {
            let keep: String = a.chars().take(3).collect();
            format!("{keep}***")
        }
    }
}

#[derive(Serialize)]
struct EventOut {
    id: i64,
    source: String,
    #[serde(rename = "type")]
    event_type: String,
    type_raw: String,
    client_id: Option<String>,
    mailing_id: Option<String>,
    recipient_list_id: Option<String>,
    recipient_id: Option<String>,
    event_time: String,
    time_source: String,
    received_at: String,
    media_type: Option<String>,
    address: Option<String>,
    domain: Option<String>,
    link: Option<String>,
    bounce_category: Option<String>,
    bounce_reason: Option<String>,
    mail_id: Option<String>,
    first_open: bool,
    first_click: bool,
    raw: String,
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// `GET /api/v1/events?mailing=&type=&limit=&before=&format=json|ndjson|csv&unmasked=`
/// — raw events, newest first. Addresses are masked unless `unmasked=true`.
pub async fn events(
    State(state): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let p = Params::new(
        q,
        &["mailing", "type", "limit", "before", "format", "unmasked"],
    )?;
    let limit = p
        .get("limit", "a number from 1 to 100000", |s| {
            s.parse::<usize>()
                .ok()
                .filter(|n| (1..=100_000).contains(n))
        })?
        .unwrap_or(100);
    let before = p.get("before", "an event id", |s| s.parse::<i64>().ok())?;
    let format = p
        .get("format", "json, ndjson or csv", |s| {
            ["json", "ndjson", "csv"]
                .contains(&s)
                .then(|| s.to_string())
        })?
        .unwrap_or_else(|| "json".into());
    let unmasked = p
        .get("unmasked", "true or false", bool_param)?
        .unwrap_or(false);
    let event_type = p.get(
        "type",
        "an event type (sent, open, click, bounce, unsubscribe, spamcomplaint, …, other)",
        |s| {
            let t = mailpulse_app::protocol::EventType::from_wire(s);
            (t.as_str() == s.to_ascii_lowercase()).then(|| t.as_str().to_string())
        },
    )?;
    let mailing = p.text("mailing").map(str::to_string);
    let file_tag = mailing.clone().unwrap_or_else(|| "all".into());
    let rows = state
        .store
        .read(move |conn| {
            let mut sql = String::from(
                "SELECT id, source, type, type_raw, client_id, mailing_id, recipient_list_id, \
                 recipient_id, event_time, time_source, received_at, media_type, address, domain, \
                 link, bounce_category, bounce_reason, mail_id, first_open, first_click, raw, \
                 body_id, raw_start, raw_len FROM events WHERE 1=1",
            );
            // Parameters by number: ?1 type, ?2 lowest id, ?3 highest id,
            // ?4 mailing, ?5 how many.
            if event_type.is_some() {
                sql.push_str(" AND type = ?1");
            }
            sql.push_str(" AND id BETWEEN ?2 AND ?3");
            if mailing.is_some() {
                sql.push_str(" AND mailing_id = ?4");
            }
            sql.push_str(" ORDER BY id DESC LIMIT ?5");
            let mut stmt = conn.prepare(&sql)?;
            let mut raws = RawReader::new(conn);
            let mut out = Vec::new();
            // Rows with ids in `lo..=hi`, newest first, until `limit`; false
            // once it is reached.
            let mut read = |lo: i64, hi: i64, out: &mut Vec<EventOut>| -> anyhow::Result<bool> {
                let left = (limit - out.len()) as i64;
                let mut rows = stmt.query(r2d2_sqlite::rusqlite::params![
                    event_type, lo, hi, mailing, left
                ])?;
                while let Some(r) = rows.next()? {
                    let address: Option<String> = r.get(12)?;
                    let mut raw = raws.text(StoredRaw::from_row(r, 20)?)?;
                    let shown = address.as_ref().map(|a| {
                        if unmasked {
                            a.clone()
                        } else {
                            let m = mask_address(a);
                            raw = raw.replace(a.as_str(), &m);
                            m
                        }
                    });
                    out.push(EventOut {
                        id: r.get(0)?,
                        source: r.get(1)?,
                        event_type: r.get(2)?,
                        type_raw: r.get(3)?,
                        client_id: r.get(4)?,
                        mailing_id: r.get(5)?,
                        recipient_list_id: r.get(6)?,
                        recipient_id: r.get(7)?,
                        event_time: rfc3339(r.get(8)?),
                        time_source: r.get(9)?,
                        received_at: rfc3339(r.get(10)?),
                        media_type: r.get(11)?,
                        address: shown,
                        domain: r.get(13)?,
                        link: r.get(14)?,
                        bounce_category: r.get(15)?,
                        bounce_reason: r.get(16)?,
                        mail_id: r.get(17)?,
                        first_open: r.get(18)?,
                        first_click: r.get(19)?,
                        raw,
                    });
                }
                Ok(out.len() < limit)
            };
            match &mailing {
                // A mailing's events lie in its id spans (no index per event).
                Some(m) => spans::newest_first(conn, m, before, |lo, hi| read(lo, hi, &mut out))?,
                None => {
                    read(
                        i64::MIN,
                        before.map_or(i64::MAX, |b| b.saturating_sub(1)),
                        &mut out,
                    )?;
                }
            }
            Ok(out)
        })
        .await?;
    let mut headers = HeaderMap::new();
    let body = match format.as_str() {
        "csv" => {
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/csv; charset=utf-8"),
            );
            let safe: String = file_tag
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            if let Ok(v) = HeaderValue::from_str(&format!(
                "attachment; filename=\"mailpulse-events-{safe}.csv\""
            )) {
                headers.insert(header::CONTENT_DISPOSITION, v);
            }
            let mut w = csv::Writer::from_writer(Vec::new());
            for r in &rows {
                w.serialize(r).map_err(|e| ApiError::Internal(e.into()))?;
            }
            w.into_inner()
                .map_err(|e| ApiError::Internal(anyhow::anyhow!("{e}")))?
        }
        "ndjson" => {
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/x-ndjson"),
            );
            let mut out = Vec::new();
            for r in &rows {
                serde_json::to_writer(&mut out, r).map_err(|e| ApiError::Internal(e.into()))?;
                out.push(b'\n');
            }
            out
        }
        _ => {
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            serde_json::to_vec(&json!({ "events": rows }))
                .map_err(|e| ApiError::Internal(e.into()))?
        }
    };
    Ok((headers, body).into_response())
}

/// `GET /api/v1/openapi.json`
pub async fn openapi() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("openapi.json"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masking_keeps_the_domain() {
        assert_eq!(mask_address("jane.doe@example.com"), "j***@example.com");
        assert_eq!(mask_address("+4912345678"), "+49***");
        assert_eq!(mask_address("ö@x.de"), "ö***@x.de");
    }

    #[test]
    fn metrics_steps_and_times_parse() {
        assert!(matches!(parse_metric("sent"), Some(Metric::Count(0))));
        assert!(matches!(parse_metric("open_rate"), Some(Metric::Rate(_))));
        assert!(parse_metric("nope").is_none());
        assert_eq!(parse_step("5m"), Some(300_000));
        assert_eq!(parse_step("120000"), Some(120_000));
        assert_eq!(parse_step("90000"), None);
        assert_eq!(parse_step("1000"), None);
        assert_eq!(parse_time("2025-12-29T09:03:20Z"), Some(1_766_999_000_000));
        assert_eq!(parse_time("1766999000000"), Some(1_766_999_000_000));
        assert_eq!(parse_time("yesterday"), None);
    }
}
