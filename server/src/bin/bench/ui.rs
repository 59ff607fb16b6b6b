//! The dashboard's budgets (issue 6) on a release build: the size of what a
//! browser downloads (wasm, JS, CSS, gzipped), the time the server takes to
//! render pages with realistic data in them, and the browser's CPU while a
//! page follows one update per second (Chromium via
//! `end2end/bench/browser-cpu.mjs`).

use crate::proc::Server;
use crate::report::{ms, Section};
use crate::Opts;
use mailpulse::sim::{self, SimArgs};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Gzipped size (level 9, as a static file server would precompress) of
/// the site's first file ending in `suffix`.
fn gz_size(pkg: &Path, suffix: &str) -> anyhow::Result<(String, u64, u64)> {
    let file = std::fs::read_dir(pkg)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with(suffix))
        .ok_or_else(|| anyhow::anyhow!("no *{suffix} in {}", pkg.display()))?;
    let raw = std::fs::read(&file)?;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&raw)?;
    let packed = gz.finish()?;
    let name = file
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    Ok((name, raw.len() as u64, packed.len() as u64))
}

fn kb(bytes: u64) -> String {
    format!("{:.0} KB", bytes as f64 / 1024.0)
}

/// Realistic state: a campaign blast and transactional mail with dispatch
/// reports, ten simulated minutes of it.
async fn seed(addr: std::net::SocketAddr) -> anyhow::Result<u64> {
    let args = SimArgs {
        scenario: vec!["steady".into(), "campaign".into()],
        target: format!("http://{addr}"),
        secret: None,
        api_token: None,
        recipients: 20_000,
        rate: 1000.0,
        tx_per_min: 120.0,
        // Real seconds: at speed 60 this is ten simulated minutes.
        duration: Duration::from_secs(10),
        seed: 6,
        speed: 60.0,
        start_hour: 10.0,
        hard_bounce: None,
        open: None,
        campaign_id: "7101".into(),
        stall_after: None,
        stall_for: None,
        backfill: Some(Duration::from_secs(1800)),
        quiet: true,
    };
    Ok(sim::run(&args, CancellationToken::new()).await?.events_sent)
}

/// Sequential GETs of `path`; returns (p50, p99, bytes).
async fn render_times(
    http: &reqwest::Client,
    addr: std::net::SocketAddr,
    path: &str,
    n: usize,
) -> anyhow::Result<(Duration, Duration, usize)> {
    let mut hist = crate::loadgen::latency_histogram();
    let mut size = 0;
    for i in 0..n + 10 {
        let t = Instant::now();
        let r = http.get(format!("http://{addr}{path}")).send().await?;
        anyhow::ensure!(r.status().is_success(), "GET {path}: {}", r.status());
        size = r.bytes().await?.len();
        // The first few warm caches and connections.
        if i >= 10 {
            hist.record(t.elapsed().as_micros().max(1) as u64)?;
        }
    }
    Ok((
        Duration::from_micros(hist.value_at_quantile(0.5)),
        Duration::from_micros(hist.value_at_quantile(0.99)),
        size,
    ))
}

/// The firing alerts by severity, e.g. "2 critical, 0 warning".
async fn firing_alerts(http: &reqwest::Client, addr: std::net::SocketAddr) -> String {
    let alerts: serde_json::Value = match http
        .get(format!("http://{addr}/api/v1/alerts"))
        .send()
        .await
    {
        Ok(r) => r.json().await.unwrap_or_default(),
        Err(e) => return format!("unknown ({e})"),
    };
    let count = |severity: &str| {
        alerts["active"].as_array().map_or(0, |a| {
            a.iter()
                .filter(|a| a["state"] == "firing" && a["severity"] == severity)
                .count()
        })
    };
    format!(
        "{} critical, {} warning",
        count("critical"),
        count("warning")
    )
}

/// Runs the Chromium script on `url` while this process posts one event
/// per second, so each second brings one websocket update.
async fn browser_cpu(
    addr: std::net::SocketAddr,
    path: &str,
    secs: u64,
) -> anyhow::Result<serde_json::Value> {
    let end2end = PathBuf::from("end2end");
    let child = tokio::process::Command::new("node")
        .current_dir(&end2end)
        .arg("bench/browser-cpu.mjs")
        .arg(format!("http://{addr}{path}"))
        .arg(secs.to_string())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| anyhow::anyhow!("node (for the browser CPU bench): {e}"))?;
    let http = reqwest::Client::new();
    let poster = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        for n in 0u64.. {
            tick.tick().await;
            let ev = serde_json::json!({
                "type": "sent", "mailingId": "7101", "recipientId": format!("ui-{n}"),
                "timestamp": chrono::Utc::now().timestamp_millis(),
            });
            let _ = http
                .post(format!("http://{addr}/webhooks/optimizely"))
                .json(&ev)
                .send()
                .await;
        }
    });
    let out = tokio::time::timeout(Duration::from_secs(secs + 90), child.wait_with_output())
        .await
        .map_err(|_| anyhow::anyhow!("browser CPU script timed out"))??;
    poster.abort();
    anyhow::ensure!(out.status.success(), "browser CPU script failed");
    let line = String::from_utf8_lossy(&out.stdout);
    let last = line.lines().last().unwrap_or_default();
    Ok(serde_json::from_str(last)?)
}

pub async fn run(opts: &Opts, site: &Path) -> anyhow::Result<Section> {
    let browser_secs = (opts.seconds * 3.0).max(20.0) as u64;
    let mut s = Section::new(
        "Dashboard budgets (issue 6)",
        format!(
            "Release build (`cargo leptos build --release`, wasm through wasm-opt). Sizes are \
             the files under `{}/pkg` gzipped at level 9. Render times are sequential GETs \
             measured at the client over loopback (so they include the HTTP hop) after the \
             simulator ran 10 s at 60× (ten simulated minutes, after 30 minutes of backfill): \
             a 20,000-recipient campaign at 1,000 sends/s, its opens, clicks and bounces, and \
             transactional mail with dispatch reports. Browser \
             CPU: headless Debian Chromium at 1920×1080 follows the page for {browser_secs} s \
             while one event per second arrives (one websocket update per second); \"main \
             thread\" is the page's busy time from the DevTools protocol (TaskDuration, what \
             DevTools' performance monitor calls CPU usage), \"all processes\" adds the \
             browser, GPU and network processes from /proc.",
            site.display()
        ),
        &["budget", "measured", "target", "verdict"],
    );
    let verdict = |ok: bool| if ok { "met" } else { "**missed**" }.to_string();

    let pkg = site.join("pkg");
    let (wasm, wasm_raw, wasm_gz) = gz_size(&pkg, ".wasm")?;
    let (_, js_raw, js_gz) = gz_size(&pkg, ".js")?;
    let (_, css_raw, css_gz) = gz_size(&pkg, ".css")?;
    s.row(vec![
        format!("{wasm} gzipped"),
        format!("{} ({} raw)", kb(wasm_gz), kb(wasm_raw)),
        "< 400 KB".into(),
        verdict(wasm_gz < 400 * 1024),
    ]);
    s.row(vec![
        "JS glue + CSS gzipped".into(),
        format!(
            "{} + {} ({} + {} raw)",
            kb(js_gz),
            kb(css_gz),
            kb(js_raw),
            kb(css_raw)
        ),
        "—".into(),
        "—".into(),
    ]);

    let dir = tempfile::tempdir()?;
    let site_root = site.to_string_lossy().into_owned();
    let server = Server::mailpulse(
        &opts.mailpulse,
        dir.path(),
        &[
            ("MAILPULSE_SITE_ROOT", &site_root),
            (
                "MAILPULSE_MAILINGS__TRANSACTIONAL",
                r#"["9001","9002","9003"]"#,
            ),
        ],
    )?;
    server.wait_ready().await?;
    // What a browser actually downloads: the server gzips on the fly.
    let served = reqwest::Client::new()
        .get(format!("http://{}/pkg/{wasm}", server.addr))
        .header("accept-encoding", "gzip")
        .send()
        .await?;
    let encoding = served
        .headers()
        .get("content-encoding")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("identity")
        .to_string();
    let served_bytes = served.bytes().await?.len() as u64;
    s.row(vec![
        format!("{wasm} as served (`accept-encoding: gzip`)"),
        format!("{} ({encoding})", kb(served_bytes)),
        "< 400 KB".into(),
        verdict(served_bytes < 400 * 1024),
    ]);
    let events = seed(server.addr).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let http = reqwest::Client::new();
    for (path, target) in [
        ("/", Some(50)),
        ("/mailings", None),
        ("/mailings/7101", None),
        ("/wall", None),
    ] {
        let (p50, p99, size) = render_times(&http, server.addr, path, 200).await?;
        s.row(vec![
            format!("server render of `{path}` ({} KB of HTML)", size / 1024),
            format!("p50 {} · p99 {}", ms(p50), ms(p99)),
            target.map_or("—".into(), |t| format!("< {t} ms")),
            target.map_or("—".into(), |t| {
                verdict(p99 < Duration::from_millis(t as u64))
            }),
        ]);
    }
    for path in ["/", "/wall"] {
        match browser_cpu(server.addr, path, browser_secs).await {
            Ok(v) => {
                let f = |k: &str| v[k].as_f64().unwrap_or(f64::NAN);
                s.row(vec![
                    format!("browser CPU on `{path}`, 1 update/s"),
                    format!(
                        "main thread {:.1} % (script {:.1} %, style+layout {:.1} %) · all \
                         processes {:.1} % · JS heap {:.1} MB",
                        f("main_thread_pct"),
                        f("script_pct"),
                        f("layout_pct"),
                        f("all_processes_pct"),
                        f("js_heap_bytes") / 1e6,
                    ),
                    "< 5 % of one core".into(),
                    verdict(f("main_thread_pct") < 5.0),
                ]);
                if let Some(errors) = v["errors"].as_array().filter(|e| !e.is_empty()) {
                    s.note(format!("Page errors on `{path}`: {errors:?}"));
                }
            }
            Err(e) => s.row(vec![
                format!("browser CPU on `{path}`, 1 update/s"),
                format!("not measured: {e}"),
                "< 5 % of one core".into(),
                "—".into(),
            ]),
        }
    }
    // The wall costs more while it shows a critical alert (it blinks), and
    // whether one fires depends on how the simulated traffic ended.
    let firing = firing_alerts(&http, server.addr).await;
    server.stop();
    s.note(format!(
        "The server held {events} simulated events when pages were rendered. The budget \
         says \"at the server\": the client-side figure here is an upper bound. Alerts \
         firing after the browser runs: {firing} (the wall shows the first critical one, \
         blinking)."
    ));
    Ok(s)
}
