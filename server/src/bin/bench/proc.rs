//! Processes under test: the release `mailpulse` binary (or the bare-axum
//! ceiling) started on a free loopback port, with their CPU time and
//! memory read from `/proc`; and mailpulse's store and background tasks
//! started inside the bench process itself, without HTTP.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    /// The store's log lines (debug and up, when the server was started
    /// with `mailpulse::store=debug`), each with its time: the slow
    /// commits, fsyncs and checkpoints that a latency tail is made of.
    store_log: Arc<Mutex<Vec<LogLine>>>,
}

/// One line of the server's log and the time it starts with.
pub type LogLine = (chrono::DateTime<chrono::Utc>, String);

/// The server's log level unless its command sets `RUST_LOG` itself.
pub const RUST_LOG: &str = "warn,mailpulse=info";

/// A process's resident memory, in bytes.
#[derive(Clone, Copy, Debug)]
pub struct Memory {
    /// All of it (`VmRSS`).
    pub resident: u64,
    /// The file-backed part (`RssFile`): the binary, and the store's pages
    /// the writer reads through its memory map: the kernel's page cache,
    /// shared and reclaimable, not the server's own memory.
    pub file: u64,
}

impl Memory {
    /// The heap, stacks and other anonymous memory: what the server itself
    /// holds.
    pub fn own(&self) -> u64 {
        self.resident.saturating_sub(self.file)
    }
}

impl Server {
    /// Starts `cmd` (which must log `listening addr=<addr>`) and waits for it.
    pub fn start(mut cmd: Command) -> anyhow::Result<Server> {
        if !cmd.get_envs().any(|(k, _)| k == "RUST_LOG") {
            cmd.env("RUST_LOG", RUST_LOG);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdout = child.stdout.take().expect("piped");
        let (tx, rx) = std::sync::mpsc::channel();
        let store_log = Arc::new(Mutex::new(Vec::new()));
        let kept = store_log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                // The server's warnings (slow commits, refused requests)
                // explain outliers in the tables: keep them visible.
                if line.contains(" WARN ") || line.contains(" ERROR ") {
                    eprintln!("server: {line}");
                }
                if let Some(rest) = line.split("listening addr=").nth(1) {
                    let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_string());
                }
                if line.contains(" mailpulse::store") {
                    if let Some(at) = line
                        .split_whitespace()
                        .next()
                        .and_then(|t| t.parse::<chrono::DateTime<chrono::Utc>>().ok())
                    {
                        kept.lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push((at, line));
                    }
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(600))
            .map_err(|_| anyhow::anyhow!("server did not report its address"))?
            .parse()?;
        Ok(Server {
            child,
            addr,
            store_log,
        })
    }

    /// The store's log lines from `from` for `length`.
    pub fn store_log(&self, from: chrono::DateTime<chrono::Utc>, length: Duration) -> Vec<LogLine> {
        let to = from + length;
        self.store_log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(at, _)| *at >= from && *at <= to)
            .cloned()
            .collect()
    }

    /// The release mailpulse on a fresh data dir.
    pub fn mailpulse(
        bin: &Path,
        data_dir: &Path,
        extra_env: &[(&str, &str)],
    ) -> anyhow::Result<Server> {
        let mut cmd = Command::new(bin);
        cmd.arg("serve")
            .env("MAILPULSE_ADDR", "127.0.0.1:0")
            .env("MAILPULSE_DATA_DIR", data_dir);
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        Server::start(cmd)
    }

    /// Waits until `/readyz` answers 200.
    pub async fn wait_ready(&self) -> anyhow::Result<Duration> {
        let started = std::time::Instant::now();
        let url = format!("http://{}/readyz", self.addr);
        let http = reqwest::Client::new();
        loop {
            if let Ok(r) = http.get(&url).send().await {
                if r.status().is_success() {
                    return Ok(started.elapsed());
                }
            }
            if started.elapsed() > Duration::from_secs(900) {
                anyhow::bail!("server never became ready");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// CPU seconds (user + system) the process has used so far.
    pub fn cpu_seconds(&self) -> f64 {
        cpu_seconds(self.child.id())
    }

    /// [`Self::cpu_seconds`] as (user, system) seconds: the system part,
    /// spent in the kernel, tells the server's own code from the syscalls,
    /// wake-ups and network stack it drives.
    pub fn cpu_times(&self) -> (f64, f64) {
        stat_times(&stat_path(self.child.id()))
    }

    /// CPU seconds used so far by the process's threads named `name`.
    pub fn thread_cpu_seconds(&self, name: &str) -> f64 {
        thread_cpu_seconds(self.child.id(), name)
    }

    /// Resident memory, in bytes, both parts from one read of
    /// `/proc/<pid>/status` (so they describe the same moment).
    pub fn memory(&self) -> Memory {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        let kib = |field: &str| {
            status
                .lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
                .unwrap_or(0)
        };
        Memory {
            resident: kib("VmRSS:") * 1024,
            file: kib("RssFile:") * 1024,
        }
    }

    pub fn stop(mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

/// CPU seconds used so far by the threads of process `pid` named `name`
/// (the store's writer and checkpointer name theirs), so a table can say
/// which thread limits a run. Threads that ended are not counted.
pub fn thread_cpu_seconds(pid: u32, name: &str) -> f64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0.0;
    };
    tasks
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim_end() == name)
        })
        .map(|t| stat_cpu_seconds(&t.path().join("stat")))
        .sum()
}

pub fn cpu_seconds(pid: u32) -> f64 {
    stat_cpu_seconds(&stat_path(pid))
}

fn stat_path(pid: u32) -> std::path::PathBuf {
    format!("/proc/{pid}/stat").into()
}

/// utime + stime of a `/proc/…/stat` file (a process's or a thread's).
fn stat_cpu_seconds(path: &Path) -> f64 {
    let (user, system) = stat_times(path);
    user + system
}

/// (utime, stime) of a `/proc/…/stat` file, in seconds.
fn stat_times(path: &Path) -> (f64, f64) {
    let Ok(stat) = std::fs::read_to_string(path) else {
        return (0.0, 0.0);
    };
    // Fields after the command name (which may contain spaces).
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after ')'.
    (ticks(11) / 100.0, ticks(12) / 100.0)
}

/// CPU seconds of this (the load generator's) process.
pub fn own_cpu_seconds() -> f64 {
    cpu_seconds(std::process::id())
}

/// mailpulse inside this process: its store (writer, sync thread,
/// checkpointer) and background tasks (the live engine among them), fed
/// through [`mailpulse::store::Store`] directly, without HTTP.
pub struct InProcess(mailpulse::Server);

impl InProcess {
    /// Starts it and waits until the live state is rebuilt (so the engine
    /// drains the writer's hand-offs).
    pub async fn start(config: mailpulse::config::Config) -> anyhow::Result<InProcess> {
        let server = mailpulse::Server::start(config)?;
        while !server.state().is_ready() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(InProcess(server))
    }

    pub fn store(&self) -> mailpulse::store::Store {
        self.0.state().store.clone()
    }

    /// Stops the background tasks and closes the store, as `serve` does on
    /// shutdown (it needs a listener; nothing connects to it).
    pub async fn stop(self) -> anyhow::Result<()> {
        self.0.state().shutdown.cancel();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        self.0.serve(listener, async {}).await
    }
}
