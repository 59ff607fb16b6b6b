//! The traffic plan: a deterministic generator of what the simulator sends
//! and when, from the scenarios, their parameters and a seed. Pure: times
//! are offsets in ms from the start of the run, so the same seed gives the
//! same traffic, whenever it runs.
//!
//! Time model. `speed` compresses *simulated* time: the time of day of the
//! transactional rhythm and the delays of campaign follow-ups (opens hours
//! later, …) run `speed` times faster. Transactional dispatch delays and
//! webhook delivery lag are real time: they are what mailpulse watches
//! against absolute thresholds.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Exp, LogNormal};
use serde_json::{json, Value};
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Mailing ids of the simulated transactional mailings, with their names
/// and share of transactional traffic.
pub const TRANSACTIONAL: [(&str, &str, f64); 3] = [
    ("9001", "Password reset", 0.40),
    ("9002", "Order confirmation", 0.50),
    ("9003", "Shipping notice", 0.10),
];

/// Receiving domains of simulated recipients, with their share.
pub const DOMAINS: [(&str, f64); 10] = [
    ("gmail.com", 0.30),
    ("outlook.com", 0.09),
    ("hotmail.com", 0.06),
    ("yahoo.com", 0.10),
    ("gmx.de", 0.10),
    ("web.de", 0.08),
    ("t-online.de", 0.05),
    ("icloud.com", 0.05),
    ("aol.com", 0.02),
    ("example-corp.com", 0.15),
];

/// Deliveries planned up to this long after the end of the run are still
/// made (at the end, at once): webhook lag and quick follow-ups of the last
/// sends, so a campaign's numbers are complete. Later ones are dropped.
pub const DRAIN_MS: i64 = 30_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scenario {
    /// Transactional mail with a daily rhythm.
    Steady,
    /// A blast to `recipients` at `rate` per second.
    Campaign,
    /// Steady traffic whose `sent` events stop for a while, then recover.
    QueueStall,
    /// A campaign in which one receiving domain starts hard-bouncing.
    BounceStorm,
    /// Steady traffic and a campaign, and for a while nothing arrives (the
    /// held events come late afterwards).
    FeedOutage,
}

impl Scenario {
    pub fn parse(s: &str) -> Option<Scenario> {
        Some(match s {
            "steady" => Scenario::Steady,
            "campaign" => Scenario::Campaign,
            "queue-stall" => Scenario::QueueStall,
            "bounce-storm" => Scenario::BounceStorm,
            "feed-outage" => Scenario::FeedOutage,
            _ => return None,
        })
    }
}

/// Probabilities of a campaign recipient's fate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Fates {
    pub hard_bounce: f64,
    pub soft_bounce: f64,
    pub open: f64,
    /// Of the openers.
    pub click: f64,
    /// Of the openers.
    pub unsubscribe: f64,
    /// Of the openers.
    pub complaint: f64,
}

impl Default for Fates {
    fn default() -> Self {
        Fates {
            hard_bounce: 0.015,
            soft_bounce: 0.025,
            open: 0.22,
            click: 0.16,
            unsubscribe: 0.01,
            complaint: 0.0015,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Params {
    pub scenarios: Vec<Scenario>,
    /// Campaign size.
    pub recipients: u64,
    /// Campaign sends per second.
    pub rate: f64,
    /// Transactional mails per minute at the daily peak.
    pub tx_per_min: f64,
    pub duration_ms: i64,
    pub speed: f64,
    pub seed: u64,
    /// Simulated hour of day at the start.
    pub start_hour: f64,
    pub fates: Fates,
    /// The campaign's mailing id.
    pub campaign_id: String,
    /// Queue stall: when it starts and how long it lasts (ms); by default
    /// from 30 % to 55 % of the run.
    pub stall: Option<(i64, i64)>,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            scenarios: vec![Scenario::Steady, Scenario::Campaign],
            recipients: 10_000,
            rate: 100.0,
            tx_per_min: 60.0,
            duration_ms: 600_000,
            speed: 1.0,
            seed: 1,
            start_hour: 8.0,
            fates: Fates::default(),
            campaign_id: "7101".into(),
            stall: None,
        }
    }
}

/// What to do at a moment.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// POST one webhook event; `event_time` is its payload time (offset ms).
    Webhook { event_time: i64, event: Value },
    /// Report a transactional dispatch accepted at `accepted_at` (offset).
    Dispatch {
        accepted_at: i64,
        mail_id: String,
        mailing_id: String,
        recipient_id: String,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Planned {
    /// When to deliver it (offset ms from the start).
    pub at: i64,
    pub action: Action,
}

/// Relative transactional volume at a simulated hour: quiet nights, a busy
/// morning, a lighter afternoon and evening.
pub fn daily_curve(hour: f64) -> f64 {
    let h = hour.rem_euclid(24.0);
    // Piecewise-linear through these points.
    const POINTS: [(f64, f64); 10] = [
        (0.0, 0.06),
        (5.0, 0.04),
        (7.0, 0.35),
        (9.5, 1.0),
        (12.0, 0.85),
        (14.0, 0.7),
        (17.0, 0.75),
        (20.0, 0.45),
        (22.5, 0.15),
        (24.0, 0.06),
    ];
    let i = POINTS.iter().rposition(|(x, _)| *x <= h).unwrap_or(0);
    let (x0, y0) = POINTS[i];
    let (x1, y1) = POINTS[(i + 1).min(POINTS.len() - 1)];
    if x1 <= x0 {
        y0
    } else {
        y0 + (y1 - y0) * (h - x0) / (x1 - x0)
    }
}

/// Windows (offsets ms) in which a scenario's disturbance happens, as
/// fractions of the run: queue stall 30-55 %, feed outage 40-55 %, bounce
/// storm from 30 % of the campaign's sends on.
fn window(p: &Params, from: f64, to: f64) -> (i64, i64) {
    (
        (p.duration_ms as f64 * from) as i64,
        (p.duration_ms as f64 * to) as i64,
    )
}

struct Recipient {
    id: String,
    address: String,
    domain: &'static str,
}

/// The generator. Yields [`Planned`] actions in delivery order.
pub struct Plan {
    p: Params,
    rng: ChaCha8Rng,
    heap: BinaryHeap<Reverse<(i64, u64, usize)>>,
    actions: Vec<Option<Action>>,
    seq: u64,
    next_campaign: u64,
    next_tx_at: Option<i64>,
    tx_count: u64,
    stall: Option<(i64, i64)>,
    outage: Option<(i64, i64)>,
    storm_from: Option<i64>,
    storm_domain: &'static str,
    campaign: bool,
    tx: bool,
}

impl Plan {
    pub fn new(p: Params) -> Plan {
        let has = |s| p.scenarios.contains(&s);
        let stall = has(Scenario::QueueStall).then(|| match p.stall {
            Some((after, length)) => (after, after + length),
            None => window(&p, 0.30, 0.55),
        });
        let outage = has(Scenario::FeedOutage).then(|| window(&p, 0.40, 0.55));
        let campaign =
            has(Scenario::Campaign) || has(Scenario::BounceStorm) || has(Scenario::FeedOutage);
        let tx = has(Scenario::Steady) || has(Scenario::QueueStall) || has(Scenario::FeedOutage);
        let storm_from = has(Scenario::BounceStorm).then(|| {
            let blast_ms = (p.recipients as f64 / p.rate * 1000.0) as i64;
            (blast_ms as f64 * 0.3) as i64
        });
        let mut plan = Plan {
            rng: ChaCha8Rng::seed_from_u64(p.seed),
            heap: BinaryHeap::new(),
            actions: Vec::new(),
            seq: 0,
            next_campaign: 0,
            next_tx_at: tx.then_some(0),
            tx_count: 0,
            stall,
            outage,
            storm_from,
            storm_domain: "yahoo.com",
            campaign,
            tx,
            p,
        };
        if plan.tx {
            plan.next_tx_at = Some(plan.next_tx_gap(0));
        }
        plan
    }

    pub fn params(&self) -> &Params {
        &self.p
    }

    /// Real ms → simulated hour of day.
    fn hour_at(&self, t: i64) -> f64 {
        self.p.start_hour + t as f64 * self.p.speed / 3_600_000.0
    }

    /// Gap to the next transactional dispatch after `t`: a Poisson process
    /// whose rate follows the daily curve (in real time, compressed by
    /// `speed` only through the curve's clock).
    fn next_tx_gap(&mut self, t: i64) -> i64 {
        let hour = self.hour_at(t);
        let per_ms = (self.p.tx_per_min * daily_curve(hour) * self.lull(hour) / 60_000.0).max(1e-9);
        let gap = Exp::new(per_ms).map_or(60_000.0, |e| e.sample(&mut self.rng));
        t + gap.clamp(1.0, 3_600_000.0) as i64
    }

    /// Natural lulls and busy spells: the rate of each simulated
    /// quarter-hour is scaled by a factor between 0.5 and 1.5, the same for
    /// the same seed.
    fn lull(&self, hour: f64) -> f64 {
        let segment = (hour * 4.0).floor() as i64;
        let mut r = ChaCha8Rng::seed_from_u64(
            self.p.seed ^ (segment as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
        );
        0.5 + r.random::<f64>()
    }

    fn push(&mut self, at: i64, action: Action) {
        // A feed outage holds everything that would arrive meanwhile; it all
        // arrives, late, in the minute after.
        let at = match self.outage {
            Some((from, to)) if at >= from && at < to => to + self.rng.random_range(0..60_000),
            _ => at,
        };
        if at >= self.p.duration_ms + DRAIN_MS {
            return;
        }
        self.actions.push(Some(action));
        self.heap
            .push(Reverse((at, self.seq, self.actions.len() - 1)));
        self.seq += 1;
    }

    /// Webhook delivery lag: mostly 1-4 s, now and then longer.
    fn lag(&mut self) -> i64 {
        if self.rng.random_bool(0.02) {
            self.rng.random_range(5_000..25_000)
        } else {
            self.rng.random_range(800..4_000)
        }
    }

    /// Simulated delay, compressed by `speed` (ms of real time).
    fn sim_delay(&mut self, mean_ms: f64) -> i64 {
        let d = Exp::new(1.0 / mean_ms).map_or(mean_ms, |e| e.sample(&mut self.rng));
        (d / self.p.speed) as i64
    }

    fn recipient(&mut self, prefix: &str, i: u64) -> Recipient {
        let mut x: f64 = self.rng.random();
        let mut domain = DOMAINS[0].0;
        for (d, share) in DOMAINS {
            if x < share {
                domain = d;
                break;
            }
            x -= share;
        }
        Recipient {
            id: format!("{prefix}{i}"),
            address: format!("{prefix}{i}@{domain}"),
            domain,
        }
    }

    fn webhook(&mut self, happened: i64, kind: &str, mailing: Value, r: &Recipient, extra: Value) {
        let mut event = json!({
            "type": kind,
            "clientId": 4711,
            "mailingId": mailing,
            "recipientId": r.id,
            "userListId": 31,
            "mediaTypesToAddresses": {"EMAIL": r.address},
        });
        if let (Value::Object(e), Value::Object(x)) = (&mut event, extra) {
            e.extend(x);
        }
        let at = happened + self.lag();
        self.push(
            at,
            Action::Webhook {
                event_time: happened,
                event,
            },
        );
    }

    fn plan_campaign_send(&mut self, i: u64) {
        let sent_at = (i as f64 / self.p.rate * 1000.0) as i64;
        let mailing = json!(self
            .p
            .campaign_id
            .parse::<u64>()
            .map(Value::from)
            .unwrap_or_else(|_| Value::from(self.p.campaign_id.clone())));
        let r = self.recipient("c", i);
        self.webhook(sent_at, "sent", mailing.clone(), &r, json!({}));
        let f = self.p.fates;
        let storm = self
            .storm_from
            .is_some_and(|from| sent_at >= from && r.domain == self.storm_domain);
        let fate: f64 = self.rng.random();
        if storm || fate < f.hard_bounce {
            let at = sent_at + self.sim_delay(20_000.0);
            let reason = if storm { "spam-related" } else { "other" };
            self.webhook(
                at,
                "bounce",
                mailing,
                &r,
                json!({"bounceCategory": "hardbounce", "reason": reason}),
            );
            return;
        }
        if fate < f.hard_bounce + f.soft_bounce {
            let at = sent_at + self.sim_delay(60_000.0);
            self.webhook(
                at,
                "bounce",
                mailing,
                &r,
                json!({"bounceCategory": "softbounce", "reason": "other"}),
            );
            return;
        }
        if !self.rng.random_bool(f.open) {
            return;
        }
        // Opens: many in the first hour, a long tail over the day.
        let mean = if self.rng.random_bool(0.45) {
            15.0 * 60_000.0
        } else {
            6.0 * 3_600_000.0
        };
        let first_open = sent_at + self.sim_delay(mean) + 1;
        let mut at = first_open;
        let opens = 1 + u32::from(self.rng.random_bool(0.3)) + u32::from(self.rng.random_bool(0.1));
        for _ in 0..opens {
            self.webhook(at, "open", mailing.clone(), &r, json!({}));
            at += self.sim_delay(30.0 * 60_000.0) + 1;
        }
        if self.rng.random_bool(f.click) {
            const LINKS: [&str; 3] = [
                "https://shop.example.com/sale",
                "https://shop.example.com/new",
                "https://example.com/blog",
            ];
            let clicks = 1 + u32::from(self.rng.random_bool(0.35));
            let mut c = first_open;
            for k in 0..clicks {
                c += self.sim_delay(2.0 * 60_000.0) + 1;
                let link = LINKS[(i as usize + k as usize) % LINKS.len()];
                self.webhook(c, "click", mailing.clone(), &r, json!({ "link": link }));
            }
        }
        if self.rng.random_bool(f.unsubscribe) {
            let u = at + self.sim_delay(5.0 * 60_000.0);
            self.webhook(u, "unsubscribe", mailing.clone(), &r, json!({}));
        }
        if self.rng.random_bool(f.complaint) {
            let c = at + self.sim_delay(10.0 * 60_000.0);
            self.webhook(c, "spamcomplaint", mailing, &r, json!({}));
        }
    }

    fn plan_transactional(&mut self, accepted_at: i64) {
        let n = self.tx_count;
        self.tx_count += 1;
        let mut x: f64 = self.rng.random();
        let mut mailing = TRANSACTIONAL[0].0;
        for (id, _, share) in TRANSACTIONAL {
            if x < share {
                mailing = id;
                break;
            }
            x -= share;
        }
        let r = self.recipient("t", n);
        let mail_id = format!("mail-{}-{n}", self.p.seed);
        self.push(
            accepted_at,
            Action::Dispatch {
                accepted_at,
                mail_id: mail_id.clone(),
                mailing_id: mailing.to_string(),
                recipient_id: r.id.clone(),
            },
        );
        // Optimizely's own queue: about 1.5 s, sometimes several seconds.
        let delay = LogNormal::new(1500f64.ln(), 0.6).map_or(1500.0, |d| d.sample(&mut self.rng));
        let mut sent_at = accepted_at + delay.min(30_000.0) as i64;
        if let Some((from, to)) = self.stall {
            if sent_at >= from && sent_at < to {
                // Stuck until the stall ends; the backlog drains over ~20 s.
                sent_at = to + self.rng.random_range(0..20_000);
            }
        }
        // Half the payloads carry the mailId (Optimizely does not document it).
        let extra = if n.is_multiple_of(2) {
            json!({"mailId": mail_id})
        } else {
            json!({})
        };
        self.webhook(sent_at, "sent", json!(mailing), &r, extra);
        if self.rng.random_bool(0.005) {
            let at = sent_at + self.sim_delay(30_000.0);
            self.webhook(
                at,
                "bounce",
                json!(mailing),
                &r,
                json!({"bounceCategory": "hardbounce"}),
            );
        } else if self.rng.random_bool(0.5) {
            let at = sent_at + self.sim_delay(10.0 * 60_000.0);
            self.webhook(at, "open", json!(mailing), &r, json!({}));
        }
    }
}

impl Iterator for Plan {
    type Item = Planned;

    fn next(&mut self) -> Option<Planned> {
        loop {
            let campaign_at = (self.campaign && self.next_campaign < self.p.recipients)
                .then(|| (self.next_campaign as f64 / self.p.rate * 1000.0) as i64)
                .filter(|t| *t < self.p.duration_ms);
            let tx_at = self.next_tx_at.filter(|t| *t < self.p.duration_ms);
            let queued = self.heap.peek().map(|Reverse((at, _, _))| *at);
            // Generate primaries until nothing due before the queue's head.
            let earliest_primary = [campaign_at, tx_at].into_iter().flatten().min();
            let primary_first = match (earliest_primary, queued) {
                (Some(p), Some(q)) => p <= q,
                (Some(_), None) => true,
                (None, _) => false,
            };
            if let (true, Some(p)) = (primary_first, earliest_primary) {
                if Some(p) == campaign_at {
                    let i = self.next_campaign;
                    self.next_campaign += 1;
                    self.plan_campaign_send(i);
                } else {
                    self.plan_transactional(p);
                    self.next_tx_at = Some(self.next_tx_gap(p));
                }
                continue;
            }
            let Reverse((at, _, idx)) = self.heap.pop()?;
            let action = self.actions[idx].take()?;
            if self.heap.is_empty() {
                self.actions.clear();
            }
            return Some(Planned { at, action });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(scenarios: Vec<Scenario>, seed: u64) -> Params {
        Params {
            scenarios,
            recipients: 2_000,
            rate: 500.0,
            duration_ms: 120_000,
            speed: 200.0,
            seed,
            ..Params::default()
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_traffic() {
        let a: Vec<Planned> =
            Plan::new(params(vec![Scenario::Steady, Scenario::Campaign], 42)).collect();
        let b: Vec<Planned> =
            Plan::new(params(vec![Scenario::Steady, Scenario::Campaign], 42)).collect();
        assert!(a.len() > 2_000);
        assert_eq!(a, b);
        let c: Vec<Planned> =
            Plan::new(params(vec![Scenario::Steady, Scenario::Campaign], 43)).collect();
        assert_ne!(a, c);
    }

    #[test]
    fn actions_come_in_delivery_order_within_the_run() {
        let plan: Vec<Planned> =
            Plan::new(params(vec![Scenario::Campaign, Scenario::Steady], 1)).collect();
        assert!(plan.windows(2).all(|w| w[0].at <= w[1].at));
        assert!(plan.iter().all(|p| p.at >= 0 && p.at < 120_000 + DRAIN_MS));
    }

    fn count(plan: &[Planned], kind: &str) -> usize {
        plan.iter()
            .filter(|p| matches!(&p.action, Action::Webhook { event, .. } if event["type"] == kind))
            .count()
    }

    #[test]
    fn a_campaign_has_its_promised_fates() {
        let mut p = params(vec![Scenario::Campaign], 7);
        p.recipients = 20_000;
        p.rate = 2_000.0;
        p.speed = 5_000.0;
        p.fates.hard_bounce = 0.02;
        let plan: Vec<Planned> = Plan::new(p).collect();
        assert_eq!(count(&plan, "sent"), 20_000);
        let hard = plan
            .iter()
            .filter(|x| matches!(&x.action, Action::Webhook { event, .. } if event["bounceCategory"] == "hardbounce"))
            .count() as f64
            / 20_000.0;
        assert!((hard - 0.02).abs() < 0.004, "{hard}");
        let openers: std::collections::HashSet<String> = plan
            .iter()
            .filter_map(|x| match &x.action {
                Action::Webhook { event, .. } if event["type"] == "open" => {
                    Some(event["recipientId"].as_str().unwrap().to_string())
                }
                _ => None,
            })
            .collect();
        let open_rate = openers.len() as f64 / 20_000.0;
        // Opens need no bounce: 22 % of the 96 % that did not bounce.
        assert!((open_rate - 0.22 * 0.955).abs() < 0.02, "{open_rate}");
    }

    #[test]
    fn transactional_traffic_follows_the_daily_rhythm() {
        assert!(daily_curve(3.0) < 0.1);
        assert!(daily_curve(10.0) > 0.9);
        assert!((daily_curve(24.0) - daily_curve(0.0)).abs() < 1e-9);
        let mut p = params(vec![Scenario::Steady], 3);
        p.tx_per_min = 600.0;
        p.duration_ms = 24 * 60_000; // a simulated day at 60x
        p.speed = 60.0;
        p.start_hour = 0.0;
        let plan: Vec<Planned> = Plan::new(p).collect();
        let dispatches_in = |from_h: f64, to_h: f64| {
            plan.iter()
                .filter(|x| matches!(x.action, Action::Dispatch { .. }))
                .filter(|x| {
                    let h = x.at as f64 * 60.0 / 3_600_000.0;
                    h >= from_h && h < to_h
                })
                .count()
        };
        assert!(dispatches_in(9.0, 11.0) > 8 * dispatches_in(2.0, 4.0));
    }

    #[test]
    fn a_queue_stall_withholds_sent_events_then_recovers() {
        let mut p = params(vec![Scenario::QueueStall], 5);
        p.tx_per_min = 1_200.0;
        p.start_hour = 10.0;
        let plan: Vec<Planned> = Plan::new(p).collect();
        let (from, to) = (36_000, 66_000);
        let sent_in_stall = plan
            .iter()
            .filter(|x| matches!(&x.action, Action::Webhook { event_time, event } if event["type"] == "sent" && *event_time >= from + 5_000 && *event_time < to))
            .count();
        let dispatched_in_stall = plan
            .iter()
            .filter(|x| matches!(&x.action, Action::Dispatch { accepted_at, .. } if *accepted_at >= from && *accepted_at < to))
            .count();
        assert_eq!(sent_in_stall, 0);
        assert!(dispatched_in_stall > 100);
        let sent_after = plan
            .iter()
            .filter(|x| matches!(&x.action, Action::Webhook { event_time, event } if event["type"] == "sent" && *event_time >= to && *event_time < to + 20_000))
            .count();
        assert!(sent_after >= dispatched_in_stall, "the backlog drains");
    }

    #[test]
    fn a_feed_outage_delivers_nothing_then_the_held_events_late() {
        let mut p = params(vec![Scenario::FeedOutage], 9);
        p.recipients = 40_000; // still sending during the outage
        let plan: Vec<Planned> = Plan::new(p).collect();
        let (from, to) = (48_000, 66_000);
        assert!(plan.iter().all(|x| x.at < from || x.at >= to));
        let late = plan
            .iter()
            .filter(|x| matches!(&x.action, Action::Webhook { event_time, .. } if *event_time < from && x.at >= to))
            .count();
        assert!(late > 100, "{late}");
    }

    #[test]
    fn a_bounce_storm_hits_one_domain() {
        let mut p = params(vec![Scenario::BounceStorm], 11);
        p.recipients = 10_000;
        p.rate = 1_000.0;
        let plan: Vec<Planned> = Plan::new(p).collect();
        let bounces_at = |domain: &str| {
            plan.iter()
                .filter(|x| matches!(&x.action, Action::Webhook { event, .. }
                    if event["type"] == "bounce" && event["mediaTypesToAddresses"]["EMAIL"].as_str().unwrap().ends_with(domain)))
                .count()
        };
        // ~10 % of recipients are at yahoo.com; 70 % of the blast is in the storm.
        assert!(
            bounces_at("@yahoo.com") > 500,
            "{}",
            bounces_at("@yahoo.com")
        );
        assert!(
            bounces_at("@gmail.com") < 150,
            "{}",
            bounces_at("@gmail.com")
        );
    }
}
