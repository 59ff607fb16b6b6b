//! `mailpulse simulate`: realistic Optimizely traffic, sent over HTTP to a
//! running mailpulse through the same front door Optimizely uses, plus the
//! dispatch reports a shop's backend would make. [`scenario`] plans what to
//! send and when (deterministic per seed); this module sends it on time,
//! batched the way webhooks arrive, and reports progress.

pub mod scenario;

use indicatif::{ProgressBar, ProgressStyle};
use scenario::{Action, Params, Plan, Planned, Scenario};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Events per webhook POST at most (Optimizely's verify sends 1-100; live
/// batches may be larger).
const MAX_BATCH: usize = 500;
/// POSTs in flight at once.
const IN_FLIGHT: usize = 8;

#[derive(Debug, Clone, clap::Args)]
pub struct SimArgs {
    /// Scenarios to run together: steady, campaign, queue-stall, bounce-storm, feed-outage.
    #[arg(long, value_delimiter = ',', default_value = "steady,campaign")]
    pub scenario: Vec<String>,
    /// mailpulse to send to.
    #[arg(long, default_value = "http://127.0.0.1:3000")]
    pub target: String,
    /// Bearer secret of the webhook endpoint.
    #[arg(long, env = "MAILPULSE_WEBHOOK_SECRET", hide_env_values = true)]
    pub secret: Option<String>,
    /// API token for dispatch reports.
    #[arg(long, env = "MAILPULSE_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,
    /// Recipients of the campaign.
    #[arg(long, default_value_t = 10_000)]
    pub recipients: u64,
    /// Campaign sends per second.
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// Transactional mails per minute at the daily peak.
    #[arg(long, default_value_t = 60.0)]
    pub tx_per_min: f64,
    /// How long to run (e.g. 10m, 90s, 1h).
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Seed: the same seed gives the same traffic.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Time compression of simulated time (daily rhythm, open/click delays).
    #[arg(long, default_value_t = 1.0)]
    pub speed: f64,
    /// Simulated hour of day at the start.
    #[arg(long, default_value_t = 8.0)]
    pub start_hour: f64,
    /// Probability of a hard bounce per campaign recipient.
    #[arg(long)]
    pub hard_bounce: Option<f64>,
    /// Probability of an open per campaign recipient.
    #[arg(long)]
    pub open: Option<f64>,
    /// The campaign's mailing id.
    #[arg(long, default_value = "7101")]
    pub campaign_id: String,
    /// queue-stall: when the stall starts (default: at 30 % of the run).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub stall_after: Option<Duration>,
    /// queue-stall: how long it lasts (default: 25 % of the run).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub stall_for: Option<Duration>,
    /// Before starting, send this much past transactional traffic at once
    /// (with past timestamps), so rates and baselines have history.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub backfill: Option<Duration>,
    /// No progress bar (for logs and tests).
    #[arg(long)]
    pub quiet: bool,
}

impl SimArgs {
    pub fn params(&self) -> anyhow::Result<Params> {
        let scenarios = self
            .scenario
            .iter()
            .map(|s| {
                Scenario::parse(s.trim()).ok_or_else(|| {
                    anyhow::anyhow!(
                        "unknown scenario {s:?}: use steady, campaign, queue-stall, bounce-storm or feed-outage"
                    )
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        if !(self.rate > 0.0 && self.speed > 0.0 && self.tx_per_min > 0.0) {
            anyhow::bail!("--rate, --speed and --tx-per-min must be positive");
        }
        let mut fates = scenario::Fates::default();
        for (v, name) in [(self.hard_bounce, "--hard-bounce"), (self.open, "--open")] {
            if v.is_some_and(|p| !(0.0..=1.0).contains(&p)) {
                anyhow::bail!("{name} is a probability between 0 and 1");
            }
        }
        if let Some(h) = self.hard_bounce {
            fates.hard_bounce = h;
        }
        if let Some(o) = self.open {
            fates.open = o;
        }
        Ok(Params {
            scenarios,
            recipients: self.recipients,
            rate: self.rate,
            tx_per_min: self.tx_per_min,
            duration_ms: self.duration.as_millis() as i64,
            speed: self.speed,
            seed: self.seed,
            start_hour: self.start_hour,
            fates,
            campaign_id: self.campaign_id.clone(),
            stall: match (self.stall_after, self.stall_for) {
                (None, None) => None,
                (after, length) => {
                    let d = self.duration.as_millis() as i64;
                    Some((
                        after.map_or(d * 3 / 10, |a| a.as_millis() as i64),
                        length.map_or(d / 4, |l| l.as_millis() as i64),
                    ))
                }
            },
        })
    }
}

/// What a run did.
#[derive(Debug, Default)]
pub struct Report {
    pub events_sent: u64,
    pub accepted: u64,
    pub duplicates: u64,
    pub dispatches: u64,
    pub failed_requests: u64,
}

#[derive(Default)]
struct Counters {
    events: AtomicU64,
    accepted: AtomicU64,
    duplicates: AtomicU64,
    dispatches: AtomicU64,
    failed: AtomicU64,
    /// Set when the target has no dispatch endpoint (an older mailpulse).
    no_dispatch_endpoint: std::sync::atomic::AtomicBool,
}

struct Client {
    http: reqwest::Client,
    target: String,
    secret: Option<String>,
    api_token: Option<String>,
    counters: Arc<Counters>,
}

impl Client {
    /// Fails clearly when the target cannot be reached or is not mailpulse.
    async fn check(&self) -> anyhow::Result<()> {
        let url = format!("{}/readyz", self.target);
        // A starting server (503) gets a minute to rebuild; one that does
        // not answer at all, a few seconds.
        let started = Instant::now();
        let deadline = started + Duration::from_secs(60);
        let unreachable_deadline = started + Duration::from_secs(5);
        loop {
            match self.http.get(&url).send().await {
                Ok(r) if r.status().is_success() => return Ok(()),
                Ok(r) if r.status() == 503 && Instant::now() < deadline => {}
                Ok(r) => anyhow::bail!(
                    "{} answered {} to /readyz; is it a mailpulse server?",
                    self.target,
                    r.status()
                ),
                Err(e) if Instant::now() >= unreachable_deadline => anyhow::bail!(
                    "cannot reach {}: {e}; is mailpulse running there?",
                    self.target
                ),
                Err(_) => {}
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// POSTs with retries on 503 and connection errors; refusals end the run.
    async fn post(
        &self,
        path: &str,
        body: Value,
        bearer: Option<&str>,
    ) -> anyhow::Result<Option<Value>> {
        let url = format!("{}{}", self.target, path);
        let mut delay = Duration::from_millis(100);
        for _ in 0..8 {
            let mut req = self.http.post(&url).json(&body);
            if let Some(t) = bearer {
                req = req.bearer_auth(t);
            }
            match req.send().await {
                Ok(r) if r.status().is_success() => return Ok(r.json().await.ok()),
                Ok(r) if r.status() == 503 => {}
                Ok(r) if r.status() == 404 && path.starts_with("/api/") => return Ok(None),
                Ok(r) => {
                    let status = r.status();
                    let text = r.text().await.unwrap_or_default();
                    anyhow::bail!("{url} refused the request: {status} {text}");
                }
                Err(e) if e.is_connect() => {}
                Err(e) => return Err(e.into()),
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
        }
        self.counters.failed.fetch_add(1, Ordering::Relaxed);
        Ok(None)
    }

    async fn send_events(&self, events: Vec<Value>) -> anyhow::Result<()> {
        let n = events.len() as u64;
        let receipt = self
            .post(
                "/webhooks/optimizely",
                Value::Array(events),
                self.secret.as_deref(),
            )
            .await?;
        let c = &self.counters;
        c.events.fetch_add(n, Ordering::Relaxed);
        if let Some(r) = receipt {
            c.accepted
                .fetch_add(r["accepted"].as_u64().unwrap_or(0), Ordering::Relaxed);
            c.duplicates
                .fetch_add(r["duplicates"].as_u64().unwrap_or(0), Ordering::Relaxed);
        }
        Ok(())
    }

    async fn send_dispatches(&self, dispatches: Vec<Value>) -> anyhow::Result<()> {
        if self.counters.no_dispatch_endpoint.load(Ordering::Relaxed) {
            return Ok(());
        }
        let n = dispatches.len() as u64;
        match self
            .post(
                "/api/v1/dispatches",
                Value::Array(dispatches),
                self.api_token.as_deref(),
            )
            .await?
        {
            Some(_) => {
                self.counters.dispatches.fetch_add(n, Ordering::Relaxed);
            }
            None => {
                if !self
                    .counters
                    .no_dispatch_endpoint
                    .swap(true, Ordering::Relaxed)
                {
                    tracing::warn!(
                        "the target does not take dispatch reports; sending webhooks only"
                    );
                }
            }
        }
        Ok(())
    }
}

/// A planned action as what goes on the wire, with times relative to
/// `base` (ms since epoch).
enum Item {
    Event(Value),
    Dispatch(Value),
}

fn render(p: Planned, base: i64) -> Item {
    match p.action {
        Action::Webhook {
            event_time,
            mut event,
        } => {
            // Mixed time formats, as a tolerant receiver must accept.
            let t = base + event_time;
            if event_time % 3 == 0 {
                event["eventTime"] = json!(iso(t));
            } else {
                event["timestamp"] = json!(t);
            }
            Item::Event(event)
        }
        Action::Dispatch {
            accepted_at,
            mail_id,
            mailing_id,
            recipient_id,
        } => Item::Dispatch(json!({
            "mailId": mail_id,
            "mailingId": mailing_id,
            "recipientId": recipient_id,
            "acceptedAt": iso(base + accepted_at),
        })),
    }
}

/// Sends `span` of past steady traffic ending at `now` at once.
async fn backfill(
    client: &Arc<Client>,
    params: &Params,
    span: Duration,
    now: i64,
) -> anyhow::Result<()> {
    let ms = span.as_millis() as i64;
    let past = Params {
        scenarios: vec![Scenario::Steady],
        duration_ms: ms,
        start_hour: params.start_hour - ms as f64 * params.speed / 3_600_000.0,
        seed: params.seed ^ 0x5EED_BAC4,
        stall: None,
        ..params.clone()
    };
    let (mut events, mut dispatches) = (Vec::new(), Vec::new());
    for p in Plan::new(past) {
        match render(p, now - ms) {
            Item::Event(e) => events.push(e),
            Item::Dispatch(d) => dispatches.push(d),
        }
    }
    // Dispatches first, so their sent events close them.
    for chunk in dispatches.chunks(MAX_BATCH) {
        client.send_dispatches(chunk.to_vec()).await?;
    }
    for chunk in events.chunks(MAX_BATCH) {
        client.send_events(chunk.to_vec()).await?;
    }
    Ok(())
}

fn iso(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// Runs the plan against the target until its duration ends or `stop`.
pub async fn run(args: &SimArgs, stop: CancellationToken) -> anyhow::Result<Report> {
    let params = args.params()?;
    let client = Arc::new(Client {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?,
        target: args.target.trim_end_matches('/').to_string(),
        secret: args.secret.clone().filter(|s| !s.is_empty()),
        api_token: args.api_token.clone().filter(|s| !s.is_empty()),
        counters: Arc::new(Counters::default()),
    });
    client.check().await?;
    if let Some(span) = args.backfill {
        backfill(
            &client,
            &params,
            span,
            chrono::Utc::now().timestamp_millis(),
        )
        .await?;
    }

    let duration = Duration::from_millis(params.duration_ms as u64);
    let bar = if args.quiet {
        ProgressBar::hidden()
    } else {
        let b = ProgressBar::new(duration.as_secs());
        b.set_style(ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} s  {msg}",
        )?);
        b
    };
    let start = Instant::now();
    let start_wall = chrono::Utc::now().timestamp_millis();
    let mut plan = Plan::new(params).peekable();
    let mut in_flight: JoinSet<anyhow::Result<()>> = JoinSet::new();
    let mut last_report = Instant::now();
    let mut last_events = 0u64;
    let duration_ms = duration.as_millis() as i64;
    loop {
        let mut elapsed = start.elapsed().as_millis() as i64;
        if elapsed >= duration_ms {
            // The end: deliver what is still planned (lag, quick follow-ups).
            elapsed = duration_ms + scenario::DRAIN_MS;
        }
        let mut events = Vec::new();
        let mut dispatches = Vec::new();
        while let Some(p) = plan.next_if(|p| p.at <= elapsed) {
            match p.action {
                Action::Webhook {
                    event_time,
                    mut event,
                } => {
                    // Mixed time formats, as a tolerant receiver must accept.
                    let t = start_wall + event_time;
                    if event_time % 3 == 0 {
                        event["eventTime"] = json!(iso(t));
                    } else {
                        event["timestamp"] = json!(t);
                    }
                    events.push(event);
                }
                Action::Dispatch {
                    accepted_at,
                    mail_id,
                    mailing_id,
                    recipient_id,
                } => dispatches.push(json!({
                    "mailId": mail_id,
                    "mailingId": mailing_id,
                    "recipientId": recipient_id,
                    "acceptedAt": iso(start_wall + accepted_at),
                })),
            }
        }
        for chunk in events.chunks(MAX_BATCH) {
            let (c, chunk) = (client.clone(), chunk.to_vec());
            in_flight.spawn(async move { c.send_events(chunk).await });
        }
        for chunk in dispatches.chunks(MAX_BATCH) {
            let (c, chunk) = (client.clone(), chunk.to_vec());
            in_flight.spawn(async move { c.send_dispatches(chunk).await });
        }
        while in_flight.len() > IN_FLIGHT {
            if let Some(r) = in_flight.join_next().await {
                r??;
            }
        }
        while let Some(r) = in_flight.try_join_next() {
            r??;
        }
        if last_report.elapsed() >= Duration::from_millis(500) {
            let c = &client.counters;
            let events = c.events.load(Ordering::Relaxed);
            let rate = (events - last_events) as f64 / last_report.elapsed().as_secs_f64();
            bar.set_position(start.elapsed().as_secs());
            bar.set_message(format!(
                "{events} events ({rate:.0}/s), {} dispatches, {} failed",
                c.dispatches.load(Ordering::Relaxed),
                c.failed.load(Ordering::Relaxed)
            ));
            last_events = events;
            last_report = Instant::now();
        }
        let next_at = plan.peek().map(|p| p.at);
        if next_at.is_none() || elapsed >= duration_ms {
            break;
        }
        let wait = next_at
            .map(|t| (t - start.elapsed().as_millis() as i64).clamp(0, 100))
            .unwrap_or(100);
        // Batches form naturally: at most one POST per 25 ms tick.
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(wait.max(25) as u64)) => {}
            _ = stop.cancelled() => break,
        }
    }
    while let Some(r) = in_flight.join_next().await {
        r??;
    }
    bar.finish_and_clear();
    let c = &client.counters;
    Ok(Report {
        events_sent: c.events.load(Ordering::Relaxed),
        accepted: c.accepted.load(Ordering::Relaxed),
        duplicates: c.duplicates.load(Ordering::Relaxed),
        dispatches: c.dispatches.load(Ordering::Relaxed),
        failed_requests: c.failed.load(Ordering::Relaxed),
    })
}

/// Demo traffic against our own server, forever: a new campaign every few
/// minutes over steady transactional mail, with a queue stall or a bounce
/// storm now and then.
pub async fn demo(
    target: String,
    secret: Option<String>,
    api_token: Option<String>,
    stop: CancellationToken,
) {
    let mut round = 0u64;
    while !stop.is_cancelled() {
        let scenario = match round % 4 {
            1 => "steady,campaign,queue-stall",
            3 => "steady,bounce-storm",
            _ => "steady,campaign",
        };
        let args = SimArgs {
            scenario: scenario.split(',').map(str::to_string).collect(),
            target: target.clone(),
            secret: secret.clone(),
            api_token: api_token.clone(),
            recipients: 20_000,
            rate: 60.0,
            tx_per_min: 90.0,
            duration: Duration::from_secs(6 * 60),
            seed: 1000 + round,
            speed: 30.0,
            start_hour: (8 + round * 3) as f64 % 24.0,
            hard_bounce: None,
            open: None,
            campaign_id: format!("{}", 7101 + round % 50),
            stall_after: None,
            stall_for: None,
            backfill: None,
            quiet: true,
        };
        match run(&args, stop.clone()).await {
            Ok(r) => tracing::info!(round, events = r.events_sent, "demo round done"),
            Err(e) => {
                tracing::warn!(error = %e, "demo traffic failed; retrying in 5 s");
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        }
        round += 1;
    }
}

/// The transactional mailings the simulator uses, as configuration.
pub fn demo_mailings() -> (Vec<String>, std::collections::BTreeMap<String, String>) {
    let tx = scenario::TRANSACTIONAL
        .iter()
        .map(|(id, _, _)| id.to_string())
        .collect();
    let names = scenario::TRANSACTIONAL
        .iter()
        .map(|(id, name, _)| (id.to_string(), name.to_string()))
        .chain((0..50).map(|k| (format!("{}", 7101 + k), format!("Newsletter #{}", 101 + k))))
        .collect();
    (tx, names)
}
