//! Shared test harness: starts the real server (`mailpulse::run`) on a free
//! loopback port with its own data directory, and offers HTTP and websocket
//! clients against it.
#![allow(dead_code)]

use futures_util::StreamExt;
use mailpulse::config::Config;
use mailpulse::store::rusqlite;
use mailpulse_app::protocol::{ServerMsg, TopicState};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub struct TestServer {
    /// The running server's handles (store, engine, config).
    pub state: mailpulse::AppState,
    pub addr: SocketAddr,
    pub http: reqwest::Client,
    pub data_dir: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _dir: Option<tempfile::TempDir>,
}

impl TestServer {
    /// A server with the default test configuration.
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    /// A server whose configuration `tweak` may change.
    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut server = Self::start_in(dir.path().to_path_buf(), tweak).await;
        server._dir = Some(dir);
        server
    }

    /// A server on an existing data directory (for restart tests).
    pub async fn start_in(data_dir: PathBuf, tweak: impl FnOnce(&mut Config)) -> TestServer {
        let mut config = Config::for_tests(data_dir.clone());
        tweak(&mut config);
        let config = config.finish().expect("valid test configuration");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let started = mailpulse::Server::start(config).expect("server starts");
        let state = started.state().clone();
        let task = tokio::spawn(started.serve(listener, async {
            let _ = stopped.await;
        }));
        let server = TestServer {
            state,
            addr,
            http: reqwest::Client::new(),
            data_dir,
            stop: Some(stop),
            task: Some(task),
            _dir: None,
        };
        server.wait_ready().await;
        server
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    async fn wait_ready(&self) {
        wait_ready(&self.http, &self.url(""), Duration::from_secs(5)).await;
    }

    /// POSTs a webhook body (JSON) to `path` with optional extra headers.
    pub async fn post_json(
        &self,
        path: &str,
        body: &serde_json::Value,
        headers: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut req = self
            .http
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body.to_string());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.send().await.expect("request sent")
    }

    pub async fn ws(&self) -> Ws {
        let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", self.addr))
            .await
            .expect("websocket connects");
        ws
    }

    /// Runs a query on the store (read-only).
    pub async fn query<T: Send + 'static>(
        &self,
        f: impl FnOnce(&rusqlite::Connection) -> anyhow::Result<T> + Send + 'static,
    ) -> T {
        self.state.store.read(f).await.expect("query runs")
    }

    /// Stops the server gracefully and waits for it to finish.
    pub async fn stop(mut self) {
        self.shutdown().await;
    }

    async fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let res = tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .expect("server stops within 10 s");
            res.expect("server task").expect("server ran cleanly");
        }
    }
}

/// Now, in ms since the Unix epoch (the unit of event and receive times).
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Polls `{base}/readyz` until it answers 2xx; panics after `within`.
/// For servers started in process and for the real binary alike.
pub async fn wait_ready(http: &reqwest::Client, base: &str, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        if let Ok(r) = http.get(format!("{base}/readyz")).send().await {
            if r.status().is_success() {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{base} not ready within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The value of one sample in `/metrics`, by its full name.
pub async fn metric(server: &TestServer, name: &str) -> f64 {
    let text = get_text(&server.http, server.url("/metrics")).await;
    sample(&text, name)
}

/// The value of one sample in a `/metrics` text, by its full name.
pub fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} missing from:\n{text}"))
}

/// GETs `url` and decodes its JSON answer.
pub async fn get_json(http: &reqwest::Client, url: impl reqwest::IntoUrl) -> serde_json::Value {
    http.get(url)
        .send()
        .await
        .expect("request sent")
        .json()
        .await
        .expect("a JSON answer")
}

/// GETs `url` and returns its answer as text.
pub async fn get_text(http: &reqwest::Client, url: impl reqwest::IntoUrl) -> String {
    http.get(url)
        .send()
        .await
        .expect("request sent")
        .text()
        .await
        .expect("a text answer")
}

/// Next protocol message, skipping heartbeats and control frames.
pub async fn next_msg(ws: &mut Ws) -> ServerMsg {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a websocket message within 10 s")
            .expect("socket open")
            .expect("socket ok");
        if let tokio_tungstenite::tungstenite::Message::Text(t) = msg {
            let parsed: ServerMsg = serde_json::from_str(&t).expect("valid protocol message");
            if !matches!(parsed, ServerMsg::Heartbeat { .. }) {
                return parsed;
            }
        }
    }
}

/// A websocket client that keeps the state of its topic the way a browser
/// does: a snapshot, then deltas applied strictly in order.
pub struct Follower {
    pub ws: Ws,
    pub state: Option<TopicState>,
    pub seq: u64,
    /// Times (since the test's start) at which each message arrived.
    pub received: Vec<std::time::Instant>,
}

impl Follower {
    pub fn new(ws: Ws) -> Follower {
        Follower {
            ws,
            state: None,
            seq: 0,
            received: vec![],
        }
    }

    /// Handles one message; panics on a delta that does not follow.
    pub async fn step(&mut self) -> ServerMsg {
        let msg = next_msg(&mut self.ws).await;
        self.received.push(std::time::Instant::now());
        match &msg {
            ServerMsg::Snapshot { seq, state, .. } => {
                self.state = Some(state.clone());
                self.seq = *seq;
            }
            ServerMsg::Delta { seq, delta, .. } => {
                let s = self.state.as_mut().expect("a snapshot before any delta");
                assert_eq!(*seq, self.seq + 1, "deltas arrive in order, without gaps");
                assert!(s.apply(delta), "delta fits the topic");
                self.seq = *seq;
            }
            ServerMsg::Error { message } => panic!("server error: {message}"),
            _ => {}
        }
        msg
    }

    /// Steps until `done` holds for the state; returns a copy of it.
    pub async fn until(&mut self, done: impl Fn(&TopicState) -> bool) -> TopicState {
        loop {
            if let Some(s) = &self.state {
                if done(s) {
                    return s.clone();
                }
            }
            self.step().await;
        }
    }
}

/// The overall totals of an overview state.
pub fn overall(s: &TopicState) -> mailpulse_app::protocol::Counters {
    match s {
        TopicState::Overview(o) => o.summary.overall.totals,
        other => panic!("not an overview: {other:?}"),
    }
}
