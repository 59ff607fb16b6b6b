//! The WAL fsyncs of a run, read from mailpulse's `/metrics`
//! (`mailpulse_store_wal_sync_seconds`), so that a latency table can say
//! how much of its tail the disk alone made. A request is answered only
//! after the fsync that makes its group durable (`synchronous=full`), and
//! its group waits for the fsync in flight: a stalled fsync holds every
//! request that arrives while it lasts.

use crate::report::ms;
use std::net::SocketAddr;
use std::time::Duration;

/// The histogram's name in mailpulse's `/metrics`.
const METRIC: &str = "mailpulse_store_wal_sync_seconds_bucket";

/// A cumulative histogram as `/metrics` gives it: each bucket's upper
/// bound (seconds) with the count of fsyncs up to it, rising.
#[derive(Debug, Clone, PartialEq)]
pub struct Fsyncs(Vec<(f64, u64)>);

impl Fsyncs {
    /// Reads the histogram from a running mailpulse.
    pub async fn read(addr: SocketAddr) -> anyhow::Result<Fsyncs> {
        let text = reqwest::Client::new()
            .get(format!("http://{addr}/metrics"))
            .timeout(Duration::from_secs(10))
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?;
        Fsyncs::parse(&text)
    }

    /// The buckets of [`METRIC`] in Prometheus/OpenMetrics text.
    fn parse(text: &str) -> anyhow::Result<Fsyncs> {
        let mut buckets = Vec::new();
        for line in text.lines() {
            let Some(rest) = line.strip_prefix(METRIC) else {
                continue;
            };
            let bound = rest
                .split_once("le=\"")
                .and_then(|(_, r)| r.split_once('"'))
                .map(|(le, _)| le)
                .ok_or_else(|| anyhow::anyhow!("no `le` label in {line:?}"))?;
            let bound = if bound == "+Inf" {
                f64::INFINITY
            } else {
                bound.parse()?
            };
            let count = line
                .rsplit(' ')
                .next()
                .and_then(|c| c.parse::<f64>().ok())
                .ok_or_else(|| anyhow::anyhow!("no count in {line:?}"))?;
            buckets.push((bound, count as u64));
        }
        anyhow::ensure!(!buckets.is_empty(), "no {METRIC} in /metrics");
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        Ok(Fsyncs(buckets))
    }

    /// The fsyncs that happened after `before` was read.
    pub fn since(&self, before: &Fsyncs) -> Fsyncs {
        Fsyncs(
            self.0
                .iter()
                .map(|&(bound, n)| {
                    let earlier = before
                        .0
                        .iter()
                        .find(|(b, _)| *b == bound)
                        .map_or(0, |&(_, m)| m);
                    (bound, n.saturating_sub(earlier))
                })
                .collect(),
        )
    }

    /// How many fsyncs there were.
    pub fn total(&self) -> u64 {
        self.0.last().map_or(0, |&(_, n)| n)
    }

    /// Each bucket as (lower bound, upper bound, fsyncs in it), in seconds.
    fn each(&self) -> impl Iterator<Item = (f64, f64, u64)> + '_ {
        let mut below = (0.0, 0);
        self.0.iter().map(move |&(bound, n)| {
            let bucket = (below.0, bound, n.saturating_sub(below.1));
            below = (bound, n);
            bucket
        })
    }

    /// Fsyncs known to have taken longer than `over`: those of the
    /// buckets whose lower bound is at least `over` (bounds are printed
    /// decimals: a nanosecond of slack).
    pub fn over(&self, over: Duration) -> u64 {
        let over = over.as_secs_f64() - 1e-9;
        self.each()
            .filter(|&(lo, _, _)| lo >= over)
            .map(|(_, _, n)| n)
            .sum()
    }

    /// The bounds of the bucket that holds the slowest fsync.
    pub fn slowest(&self) -> Option<(Duration, Option<Duration>)> {
        self.each()
            .filter(|&(_, _, n)| n > 0)
            .last()
            .map(|(lo, hi, _)| {
                (
                    Duration::from_secs_f64(lo),
                    hi.is_finite().then(|| Duration::from_secs_f64(hi)),
                )
            })
    }

    /// At least how many requests, arriving open loop at `rate` a second,
    /// the fsyncs alone kept waiting longer than `limit`: a request that
    /// arrives during an fsync is answered after it ends, so a stall of
    /// `d` > `limit` holds the arrivals of its first `d` − `limit` over
    /// the limit. Each stall counts at its bucket's lower bound.
    pub fn held_over(&self, limit: Duration, rate: f64) -> f64 {
        let limit = limit.as_secs_f64();
        self.each()
            .map(|(lo, _, n)| n as f64 * (lo - limit).max(0.0) * rate)
            .sum()
    }
}

/// How many fsyncs, how many took over 32 ms and the slowest one's bucket,
/// for a table cell: "3 of 2210 over 32 ms, the slowest 256 ms–512 ms".
pub fn brief(f: &Fsyncs) -> String {
    let slowest = match f.slowest() {
        Some((lo, Some(hi))) => format!("the slowest {}–{}", ms(lo), ms(hi)),
        Some((lo, None)) => format!("the slowest over {}", ms(lo)),
        None => "none".into(),
    };
    format!(
        "{} of {} over 32 ms, {slowest}",
        f.over(Duration::from_millis(32)),
        f.total()
    )
}

/// One run's fsyncs in words ([`brief`]), and (for an open-loop run at
/// `rate` requests a second that answered `requests`) at least how many
/// requests they kept waiting over `limit`, against the 1 % a p99 under
/// `limit` allows.
pub fn describe(f: &Fsyncs, rate: f64, requests: u64, limit: Duration) -> String {
    let held = f.held_over(limit, rate);
    if held < 0.5 {
        // Bucket bounds are all this knows: an fsync of the bucket that
        // holds `limit` may or may not have passed it.
        return format!(
            "fsyncs: {}; none is known to have kept a request waiting over {} by itself",
            brief(f),
            ms(limit)
        );
    }
    let share = 100.0 * held / requests.max(1) as f64;
    format!(
        "fsyncs: {}; they alone kept at least {held:.0} requests waiting over {} \
         ({share:.2} % of the run{})",
        brief(f),
        ms(limit),
        if share > 1.0 {
            ", more than the 1 % a p99 under it allows"
        } else {
            ""
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `/metrics` text with the fsync histogram's cumulative counts for
    /// the buckets 0.25, 0.5, …, 512 ms and +Inf.
    fn metrics(counts: [u64; 13]) -> String {
        let mut s = String::from(
            "# HELP mailpulse_store_wal_sync_seconds WAL fsyncs.\n\
             # TYPE mailpulse_store_wal_sync_seconds histogram\n\
             mailpulse_store_commit_seconds_bucket{le=\"0.00025\"} 99\n",
        );
        for (i, n) in counts.iter().enumerate() {
            let le = if i == 12 {
                "+Inf".to_string()
            } else {
                (0.00025 * f64::from(1u32 << i)).to_string()
            };
            s.push_str(&format!("{METRIC}{{le=\"{le}\"}} {n}\n"));
        }
        s
    }

    #[test]
    fn reads_the_histogram_and_takes_the_runs_part() {
        let before = Fsyncs::parse(&metrics([5, 8, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9])).unwrap();
        // Since then: 100 fsyncs under 0.25 ms, 2 of 32–64 ms, one of
        // 128–256 ms.
        let after = Fsyncs::parse(&metrics([
            105, 108, 109, 109, 109, 109, 109, 109, 111, 111, 112, 112, 112,
        ]))
        .unwrap();
        let run = after.since(&before);
        assert_eq!(run.total(), 103);
        assert_eq!(run.over(Duration::from_millis(32)), 3);
        assert_eq!(run.over(Duration::from_millis(64)), 1);
        assert_eq!(
            run.slowest(),
            Some((Duration::from_millis(128), Some(Duration::from_millis(256))))
        );
        // At 1,000 requests/s: the two 32 ms stalls hold 12 requests over
        // 20 ms each, the 128 ms one 108.
        let held = run.held_over(Duration::from_millis(20), 1000.0);
        assert!((held - 132.0).abs() < 1e-6, "{held}");
        let text = describe(&run, 1000.0, 10_000, Duration::from_millis(20));
        assert!(
            text.starts_with(
                "fsyncs: 3 of 103 over 32 ms, the slowest 128 ms–256 ms; they alone kept at \
                 least 132 requests waiting over 20 ms (1.32 % of the run, more than the 1 %"
            ),
            "{text}"
        );
    }

    #[test]
    fn a_quiet_disk_holds_no_request() {
        let run = Fsyncs::parse(&metrics([
            50, 60, 60, 60, 60, 60, 60, 60, 60, 60, 60, 60, 60,
        ]))
        .unwrap();
        assert_eq!(run.over(Duration::from_millis(32)), 0);
        assert_eq!(run.held_over(Duration::from_millis(20), 5000.0), 0.0);
        assert_eq!(
            run.slowest(),
            Some((Duration::from_micros(250), Some(Duration::from_micros(500))))
        );
        let text = describe(&run, 5000.0, 30_000, Duration::from_millis(20));
        assert!(
            text.starts_with("fsyncs: 0 of 60 over 32 ms, the slowest 0.25 ms–0.50 ms;"),
            "{text}"
        );
        assert!(
            text.ends_with("none is known to have kept a request waiting over 20 ms by itself"),
            "{text}"
        );
    }

    #[test]
    fn refuses_metrics_without_the_histogram() {
        assert!(Fsyncs::parse("mailpulse_store_commits_total 3\n").is_err());
    }
}
