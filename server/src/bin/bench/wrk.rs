//! A second load generator for the single-event comparison: `wrk` (the
//! issue's own example, from Debian's package), driven by a Lua script that
//! sends the same unique events as [`crate::ingest::event_json`]. Its
//! ceiling-to-mailpulse ratio shows whether the bench's verdict depends on
//! its own hyper-based generator, whose CPU per request differs between the
//! two servers (see BENCHMARKS.md's note on what limits single events).

use crate::proc::Server;
use std::path::Path;
use std::time::{Duration, Instant};

/// The request script. wrk's threads each run their own Lua state: `setup`
/// numbers them so every thread's recipient ids are distinct, and the run's
/// tag (the script's argument) keeps runs apart. Recipient ids end in the
/// request number's digits reversed, scattered as in `event_json`. The
/// event time is the time of sending in milliseconds, as with the bench's
/// own generator: a whole-second clock (`os.time()`) would put each
/// second's events into the middle of the time-ordered unique index
/// (measured 2026-12-06: 29–36 µs of server CPU per request against
/// 24–29).
const SCRIPT: &str = r#"
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_usec; } mp_timeval;
int gettimeofday(mp_timeval *tv, void *tz);
]]
local tv = ffi.new("mp_timeval")
local function now_ms()
  ffi.C.gettimeofday(tv, nil)
  return tonumber(tv.tv_sec) * 1000 + math.floor(tonumber(tv.tv_usec) / 1000)
end
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
function init(args)
  n = 0
  prefix = args[1] .. "-" .. tid .. "-"
  hdrs = { ["Content-Type"] = "application/json", ["Host"] = "bench" }
end
function request()
  n = n + 1
  local m = n % 10
  local kind, link = "sent", ""
  if m == 7 or m == 8 then
    kind = "open"
  elseif m == 9 then
    kind = "click"
    link = ',"link":"https://example.com/offer"'
  end
  local body = string.format(
    '{"type":"%s","clientId":7,"mailingId":4711,"userListId":12,"recipientId":"%s%s",'
      .. '"timestamp":%d,"mediaTypesToAddresses":{"EMAIL":"user%d@example.com"}%s}',
    kind, prefix, string.reverse(tostring(n)), now_ms(), n, link)
  return wrk.format("POST", "/webhooks/optimizely", hdrs, body)
end
"#;

/// Bounded: a wrk that hangs must not hang the bench.
const TIMEOUT_SLACK: Duration = Duration::from_secs(30);

/// One closed-loop wrk run.
pub struct WrkRun {
    pub rps: f64,
    /// Answers other than 2xx/3xx, and socket errors.
    pub errors: u64,
    /// The server's CPU over the run, in cores.
    pub server_cpu: f64,
    /// The whole machine's busy share over the run (0–1).
    pub busy: f64,
}

/// Whether `wrk` can be run here.
pub fn available() -> bool {
    std::process::Command::new("wrk").arg("-v").output().is_ok()
}

/// Writes the script into `dir` and returns its path.
pub fn write_script(dir: &Path) -> anyhow::Result<std::path::PathBuf> {
    let path = dir.join("mailpulse-single.lua");
    std::fs::write(&path, SCRIPT)?;
    Ok(path)
}

/// Runs wrk (2 threads, one per core, as its docs advise) against
/// `server`'s webhook path for `secs`, `conns` connections; `tag` makes the
/// run's events unique.
pub async fn run(
    script: &Path,
    server: &Server,
    conns: usize,
    secs: f64,
    tag: &str,
) -> anyhow::Result<WrkRun> {
    let (c0, m0, t0) = (server.cpu_seconds(), machine_busy_seconds(), Instant::now());
    let mut cmd = tokio::process::Command::new("wrk");
    cmd.args(["-t2", &format!("-c{conns}"), &format!("-d{secs:.0}s"), "-s"])
        .arg(script)
        .arg(format!("http://{}/webhooks/optimizely", server.addr))
        .args(["--", tag])
        .kill_on_drop(true);
    let limit = Duration::from_secs_f64(secs) + TIMEOUT_SLACK;
    let out = tokio::time::timeout(limit, cmd.output())
        .await
        .map_err(|_| anyhow::anyhow!("wrk ran over {limit:?}"))??;
    let wall = t0.elapsed().as_secs_f64();
    let (c1, m1) = (server.cpu_seconds(), machine_busy_seconds());
    let text = String::from_utf8_lossy(&out.stdout);
    anyhow::ensure!(
        out.status.success(),
        "wrk failed: {}{}",
        text,
        String::from_utf8_lossy(&out.stderr)
    );
    let (rps, errors) = parse(&text)?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    Ok(WrkRun {
        rps,
        errors,
        server_cpu: (c1 - c0) / secs,
        busy: ((m1 - m0) / (wall * cores)).clamp(0.0, 1.0),
    })
}

/// Requests/s and errors from wrk's report.
fn parse(text: &str) -> anyhow::Result<(f64, u64)> {
    let after = |label: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(label).map(str::trim))
    };
    let rps: f64 = after("Requests/sec:")
        .ok_or_else(|| anyhow::anyhow!("no Requests/sec in wrk's report: {text}"))?
        .parse()?;
    let non_2xx: u64 = after("Non-2xx or 3xx responses:").map_or(Ok(0), str::parse)?;
    // "Socket errors: connect 0, read 0, write 0, timeout 0"
    let socket: u64 = after("Socket errors:").map_or(0, |s| {
        s.split(',')
            .filter_map(|part| part.split_whitespace().nth(1)?.parse::<u64>().ok())
            .sum()
    });
    Ok((rps, non_2xx + socket))
}

/// CPU seconds the whole machine spent busy (all but idle and iowait),
/// from the first line of `/proc/stat`.
fn machine_busy_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
        return 0.0;
    };
    let f: Vec<f64> = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let total: f64 = f.iter().take(8).sum();
    let idle = f.get(3).unwrap_or(&0.0) + f.get(4).unwrap_or(&0.0);
    (total - idle) / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_wrk_report() {
        let report = "Running 6s test @ http://127.0.0.1:1/webhooks/optimizely\n  \
            2 threads and 256 connections\n  Thread Stats   Avg      Stdev     Max   +/- Stdev\n    \
            Latency     5.21ms    1.02ms  30.11ms   80.00%\n  290000 requests in 6.00s, 40 MB read\n  \
            Socket errors: connect 0, read 2, write 1, timeout 0\n  \
            Non-2xx or 3xx responses: 3\nRequests/sec:  48333.21\nTransfer/sec:      6.7MB\n";
        let (rps, errors) = parse(report).unwrap();
        assert!((rps - 48333.21).abs() < 1e-6);
        assert_eq!(errors, 6);
        assert!(parse("wrk: connection refused").is_err());
    }

    #[test]
    fn script_sends_the_bench_events_shape() {
        // The Lua format string must name the same fields as event_json.
        let mut s = String::new();
        crate::ingest::event_json("r", 9, 1, &mut s);
        for field in [
            "\"type\"",
            "\"clientId\":7",
            "\"mailingId\":4711",
            "\"userListId\":12",
            "\"recipientId\"",
            "\"timestamp\"",
            "\"mediaTypesToAddresses\":{\"EMAIL\"",
            "\"link\":\"https://example.com/offer\"",
        ] {
            assert!(s.contains(field), "event_json lost {field}");
            assert!(SCRIPT.contains(field), "the wrk script lacks {field}");
        }
    }
}
