//! Runtime configuration: one typed struct, layered from built-in defaults,
//! then a TOML file (`mailpulse.toml`, or `--config` / `MAILPULSE_CONFIG`),
//! then `MAILPULSE_*` environment variables (nested keys joined with `__`,
//! e.g. `MAILPULSE_STORE__SYNCHRONOUS=normal`), then command-line flags.
//! Secrets are wrapped in [`Secret`] so they never reach logs.

use clap::Parser;
use figment::providers::{Env, Format, Toml};
use figment::Figment;
use ipnet::IpNet;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// A value that must never be printed: `Debug` and `Display` redact it.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The secret itself, for comparison or sending; never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_string()))
    }
}

/// `mailpulse` command line. Without a subcommand it serves.
#[derive(Debug, Parser)]
#[command(
    name = "mailpulse",
    version,
    about = "A live monitor for Optimizely Campaign mail dispatch",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Run the server (the default).
    Serve(ServeArgs),
    /// Send realistic Optimizely traffic to a running mailpulse.
    Simulate(crate::sim::SimArgs),
}

/// Flags of the server. Each overrides the file and the environment.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServeArgs {
    /// Configuration file [env: MAILPULSE_CONFIG] [default: ./mailpulse.toml if present]
    #[arg(long, env = "MAILPULSE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on [env: MAILPULSE_ADDR] [default: 127.0.0.1:3000]
    #[arg(long)]
    pub addr: Option<SocketAddr>,
    /// Directory for the event store [env: MAILPULSE_DATA_DIR] [default: ./data]
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Bearer secret of the default webhook source [env: MAILPULSE_WEBHOOK_SECRET]
    #[arg(long)]
    pub webhook_secret: Option<Secret>,
    /// Where the built site (wasm, JS, CSS) lives [env: MAILPULSE_SITE_ROOT]
    #[arg(long)]
    pub site_root: Option<PathBuf>,
    /// Also run the traffic simulator against this server (a live demo).
    #[arg(long)]
    pub demo: bool,
}

/// The name of the source served at `/webhooks/optimizely`.
pub const DEFAULT_SOURCE: &str = "default";

/// The whole configuration. Every field has a default.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address to listen on.
    pub addr: SocketAddr,
    /// Directory holding the SQLite store (`mailpulse.db`).
    pub data_dir: PathBuf,
    /// Where the built site (wasm, JS, CSS, assets) lives.
    pub site_root: PathBuf,
    /// Shorthand: when set, the default source requires
    /// `Authorization: Bearer <secret>` (overriding its configured auth).
    pub webhook_secret: Option<Secret>,
    /// Request limits of the webhook endpoints.
    pub ingest: IngestConfig,
    /// The embedded store.
    pub store: StoreConfig,
    /// Named webhook sources, each at `/webhooks/optimizely/{name}`; the one
    /// named `default` is also at `/webhooks/optimizely`.
    pub sources: BTreeMap<String, SourceConfig>,
    /// Token for the write endpoints of the REST API (`Authorization:
    /// Bearer <token>`). Without one, only loopback clients may write.
    pub api_token: Option<Secret>,
    /// The live engine.
    pub live: LiveConfig,
    /// Known mailings: which are transactional, and their names.
    pub mailings: MailingsConfig,
    /// Alert rules and where notifications go.
    pub alerts: AlertsConfig,
    /// A generic JSON webhook that receives every alert notification
    /// (12-factor shorthand for one `[[alerts.channels]]` of type webhook).
    pub alert_webhook_url: Option<Secret>,
    /// Optimizely's REST API, to ask the state of stuck transactional mails.
    pub optimizely: Option<OptimizelyConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertsConfig {
    /// Include the built-in rules (see docs/alerts.md).
    pub defaults: bool,
    /// Reminder interval of firing, unacknowledged alerts (default 30m).
    pub repeat_interval: String,
    /// Base URL of this mailpulse as people reach it, for links in messages
    /// (default: http://<addr>).
    pub dashboard_url: Option<String>,
    /// After a restart, no alert resolves for this long while the live
    /// windows refill (default 60s).
    pub startup_grace: String,
    pub rules: Vec<crate::alerts::rules::RuleDef>,
    pub channels: Vec<ChannelConfig>,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            defaults: true,
            repeat_interval: "30m".into(),
            dashboard_url: None,
            startup_grace: "60s".into(),
            rules: vec![],
            channels: vec![],
        }
    }
}

/// One place alert notifications go. `Default` is an empty channel, so code
/// that builds one names only what it sets.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelConfig {
    /// Unique name (default: the type, numbered if repeated).
    pub name: Option<String>,
    /// `webhook`, `slack`, `pagerduty` or `email`.
    #[serde(rename = "type")]
    pub kind: String,
    /// webhook / slack: the URL to POST to; pagerduty: the Events API URL
    /// (default https://events.pagerduty.com/v2/enqueue).
    pub url: Option<Secret>,
    /// pagerduty: the integration's routing key.
    pub routing_key: Option<Secret>,
    /// email: the SMTP relay.
    pub smtp_host: Option<String>,
    pub smtp_port: Option<u16>,
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// `starttls` (default), `tls` or `none`.
    pub tls: Option<String>,
    pub from: Option<String>,
    #[serde(default)]
    pub to: Vec<String>,
    /// Only notifications of this severity or worse (default warning: all).
    #[serde(default)]
    pub min_severity: mailpulse_app::protocol::Severity,
}

impl ChannelConfig {
    pub fn display_name(&self) -> String {
        self.name.clone().unwrap_or_else(|| self.kind.clone())
    }
}

/// Credentials of Optimizely's REST API (an API user).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimizelyConfig {
    pub client_id: String,
    pub username: String,
    pub password: Secret,
    /// Default https://api.campaign.episerver.net/rest
    #[serde(default = "optimizely_base_url")]
    pub base_url: String,
}

fn optimizely_base_url() -> String {
    "https://api.campaign.episerver.net/rest".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LiveConfig {
    /// How often deltas are published to websocket clients, in ms.
    pub tick_ms: u64,
}

impl Default for LiveConfig {
    fn default() -> Self {
        LiveConfig { tick_ms: 100 }
    }
}

/// Mailing classes and names. The API can change both later; its settings
/// win over these.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MailingsConfig {
    /// Mailing ids of transactional mailings (all others are campaigns).
    pub transactional: Vec<String>,
    /// Display names by mailing id.
    pub names: BTreeMap<String, String>,
}

/// Top-level keys, so stray `MAILPULSE_*` variables (e.g. of test tools) are
/// not mistaken for settings.
const TOP_LEVEL_KEYS: [&str; 13] = [
    "addr",
    "data_dir",
    "site_root",
    "webhook_secret",
    "ingest",
    "store",
    "sources",
    "api_token",
    "live",
    "mailings",
    "alerts",
    "alert_webhook_url",
    "optimizely",
];

impl Default for Config {
    fn default() -> Self {
        Config {
            addr: "127.0.0.1:3000".parse().expect("static address"),
            data_dir: PathBuf::from("./data"),
            site_root: PathBuf::from("target/site"),
            webhook_secret: None,
            ingest: IngestConfig::default(),
            store: StoreConfig::default(),
            sources: BTreeMap::new(),
            api_token: None,
            live: LiveConfig::default(),
            mailings: MailingsConfig::default(),
            alerts: AlertsConfig::default(),
            alert_webhook_url: None,
            optimizely: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngestConfig {
    /// Largest accepted request body, in bytes (larger: 413).
    pub max_body_bytes: usize,
    /// Requests waiting for the store's writer; when full, ingest answers
    /// 503 with `Retry-After` instead of queueing without bound.
    pub queue_capacity: usize,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            max_body_bytes: 1024 * 1024,
            queue_capacity: 4096,
        }
    }
}

/// SQLite's `synchronous` setting for the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    /// Every commit's WAL is fsynced before its requests are answered: an
    /// answered event survives power loss. The fsync runs on a thread of
    /// its own while the writer gathers the next group, which commits once
    /// that fsync is done unless it is full first (`store/sync.rs`).
    Full,
    /// WAL without fsync per commit: survives a process crash, may lose the
    /// last commits on power loss. Faster.
    Normal,
    /// SQLite's own EXTRA: the fsync inside every commit (the writer waits
    /// for it), and the directory synced on WAL reset.
    Extra,
}

impl Synchronous {
    pub fn pragma(self) -> &'static str {
        match self {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
            Synchronous::Extra => "EXTRA",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    pub synchronous: Synchronous,
    /// Raw events are deleted after this many days.
    pub events_retention_days: u32,
    /// Per-minute rollups (and first-open/first-click records) are deleted
    /// after this many days.
    pub rollups_retention_days: u32,
    /// How often the retention job runs, in seconds.
    pub retention_interval_secs: u64,
    /// Most requests one transaction commits together (group commit).
    pub max_group_requests: usize,
    /// A group stops taking requests once it holds this many items (events
    /// and quarantined items). It bounds how long one commit keeps the
    /// writer, and so how long the requests behind it wait; a single
    /// request is never split, so one larger than this commits alone.
    pub max_group_events: usize,
    /// First opens/clicks are held in memory and written to their table in
    /// sorted order once this many have gathered (or `firsts_flush_secs`
    /// passed): a campaign's recipients open in no order, and written one
    /// by one each rewrote a page of the table. ~100 bytes of memory each,
    /// up to twice this many held.
    pub firsts_flush_rows: usize,
    /// ... or once the oldest has waited this many seconds. After a crash,
    /// the start reads the events of about this long to recover them.
    pub firsts_flush_secs: u64,
    /// Memory (MiB) for the filters that let a first open or click of a
    /// mailing new since the start skip the look-up in the table of
    /// firsts: a Bloom filter per such mailing, of every first it had.
    /// Past this, the filters of the mailings claimed longest ago are let
    /// go (their claims look the table up again). 0 turns them off.
    pub firsts_filter_mib: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            synchronous: Synchronous::Full,
            events_retention_days: 30,
            rollups_retention_days: 400,
            retention_interval_secs: 3600,
            max_group_requests: 512,
            max_group_events: 500,
            firsts_flush_rows: 200_000,
            firsts_flush_secs: 10,
            firsts_filter_mib: 64,
        }
    }
}

/// One webhook sender (an Optimizely client, usually).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    pub auth: SourceAuth,
    /// When non-empty, only these networks may POST (others: 403).
    #[serde(default)]
    pub allow_ips: Vec<IpNet>,
    /// Reverse proxies whose `X-Forwarded-For` is believed. The client is
    /// the right-most address in that header that is not a trusted proxy.
    #[serde(default)]
    pub trusted_proxies: Vec<IpNet>,
}

/// How a source proves who it is. Optimizely's webhook `authentication`
/// offers `keyAuth` (a header and a value) and `basicAuth`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum SourceAuth {
    /// No credentials; only allowed when listening on loopback.
    None,
    /// `Authorization: Bearer <secret>`.
    Bearer { secrets: Vec<Secret> },
    /// Optimizely keyAuth: header `header` carries one of `secrets`.
    #[serde(alias = "keyAuth", alias = "keyauth")]
    Key {
        header: String,
        secrets: Vec<Secret>,
    },
    /// Optimizely basicAuth: `username` with one of `passwords`.
    #[serde(alias = "basicAuth", alias = "basicauth")]
    Basic {
        username: String,
        passwords: Vec<Secret>,
    },
}

impl SourceAuth {
    fn secrets(&self) -> &[Secret] {
        match self {
            SourceAuth::None => &[],
            SourceAuth::Bearer { secrets } | SourceAuth::Key { secrets, .. } => secrets,
            SourceAuth::Basic { passwords, .. } => passwords,
        }
    }
}

impl Config {
    /// Loads the layered configuration for `args`.
    pub fn load(args: ServeArgs) -> anyhow::Result<Config> {
        let mut figment = Figment::new();
        match &args.config {
            Some(path) => {
                if !path.exists() {
                    anyhow::bail!("configuration file {} does not exist", path.display());
                }
                figment = figment.merge(Toml::file_exact(path));
            }
            None if Path::new("mailpulse.toml").exists() => {
                figment = figment.merge(Toml::file_exact("mailpulse.toml"));
            }
            None => {}
        }
        figment = figment.merge(Env::prefixed("MAILPULSE_").split("__").filter(|k| {
            // `split` may already have turned `__` into `.`.
            let first = k.as_str().split('.').next().unwrap_or_default();
            let first = first.split("__").next().unwrap_or_default();
            TOP_LEVEL_KEYS.iter().any(|t| t.eq_ignore_ascii_case(first))
        }));
        let mut config: Config = figment
            .extract()
            .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
        if let Some(a) = args.addr {
            config.addr = a;
        }
        if let Some(d) = args.data_dir {
            config.data_dir = d;
        }
        if let Some(s) = args.webhook_secret {
            config.webhook_secret = Some(s);
        }
        if let Some(s) = args.site_root {
            config.site_root = s;
        }
        config.finish()
    }

    /// Fills in the default source and checks the whole; refuses what would
    /// be unsafe or cannot work.
    pub fn finish(mut self) -> anyhow::Result<Config> {
        if let Some(secret) = self.webhook_secret.take() {
            if !secret.expose().is_empty() {
                let default = self
                    .sources
                    .entry(DEFAULT_SOURCE.to_string())
                    .or_insert_with(|| SourceConfig {
                        auth: SourceAuth::None,
                        allow_ips: vec![],
                        trusted_proxies: vec![],
                    });
                default.auth = SourceAuth::Bearer {
                    secrets: vec![secret.clone()],
                };
                self.webhook_secret = Some(secret);
            }
        }
        self.sources
            .entry(DEFAULT_SOURCE.to_string())
            .or_insert_with(|| SourceConfig {
                auth: SourceAuth::None,
                allow_ips: vec![],
                trusted_proxies: vec![],
            });
        self.validate()?;
        Ok(self)
    }

    fn validate(&self) -> anyhow::Result<()> {
        let loopback = self.addr.ip().is_loopback();
        for (name, source) in &self.sources {
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
            {
                anyhow::bail!(
                    "source name {name:?} must be lowercase letters, digits, '-' or '_' (it is a URL path segment)"
                );
            }
            if matches!(source.auth, SourceAuth::None) && !loopback {
                anyhow::bail!(
                    "refusing to listen on {} with source {name:?} unauthenticated: set \
                     MAILPULSE_WEBHOOK_SECRET or give the source an `auth` (anyone who can reach \
                     this address could otherwise inject events)",
                    self.addr
                );
            }
            let secrets = source.auth.secrets();
            if !matches!(source.auth, SourceAuth::None) {
                if secrets.is_empty() || secrets.len() > 2 {
                    anyhow::bail!(
                        "source {name:?} needs one secret, or two while rotating (it has {})",
                        secrets.len()
                    );
                }
                if secrets.iter().any(|s| s.expose().is_empty()) {
                    anyhow::bail!("source {name:?} has an empty secret");
                }
            }
            if let SourceAuth::Key { header, .. } = &source.auth {
                if axum::http::HeaderName::from_bytes(header.as_bytes()).is_err() {
                    anyhow::bail!("source {name:?}: {header:?} is not a valid header name");
                }
            }
        }
        if self.ingest.max_body_bytes == 0 || self.ingest.queue_capacity == 0 {
            anyhow::bail!("ingest.max_body_bytes and ingest.queue_capacity must be positive");
        }
        if !(10..=10_000).contains(&self.live.tick_ms) {
            anyhow::bail!("live.tick_ms must be between 10 and 10000");
        }
        if self
            .api_token
            .as_ref()
            .is_some_and(|t| t.expose().is_empty())
        {
            anyhow::bail!("api_token is set but empty");
        }
        crate::alerts::channels(self)?;
        crate::alerts::rule_set(self, &[]).map_err(|e| anyhow::anyhow!("alert rules: {e}"))?;
        if self.store.max_group_requests == 0 {
            anyhow::bail!("store.max_group_requests must be positive");
        }
        if self.store.max_group_events == 0 {
            anyhow::bail!("store.max_group_events must be positive");
        }
        if self.store.firsts_flush_rows == 0 || self.store.firsts_flush_secs == 0 {
            anyhow::bail!("store.firsts_flush_rows and store.firsts_flush_secs must be positive");
        }
        Ok(())
    }

    /// The configured mailing classes and names, by mailing id.
    pub fn mailing_settings(
        &self,
    ) -> std::collections::HashMap<String, crate::metrics::MailingSettings> {
        let mut map: std::collections::HashMap<String, crate::metrics::MailingSettings> =
            std::collections::HashMap::new();
        for id in &self.mailings.transactional {
            map.entry(id.clone()).or_default().class =
                Some(mailpulse_app::protocol::MailingClass::Transactional);
        }
        for (id, name) in &self.mailings.names {
            map.entry(id.clone()).or_default().name = Some(name.clone());
        }
        map
    }

    /// A configuration for tests: loopback port 0 and the given data dir.
    /// Call [`Config::finish`] after changing it.
    pub fn for_tests(data_dir: PathBuf) -> Config {
        Config {
            addr: "127.0.0.1:0".parse().expect("static address"),
            data_dir,
            ..Config::default()
        }
    }
}

#[cfg(test)]
// figment's Jail API fixes the closure's (large) error type.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;
    use figment::Jail;

    fn args() -> ServeArgs {
        ServeArgs::default()
    }

    #[test]
    fn public_address_needs_a_secret() {
        Jail::expect_with(|jail| {
            jail.set_env("MAILPULSE_ADDR", "0.0.0.0:3000");
            assert!(Config::load(args()).is_err());
            jail.set_env("MAILPULSE_WEBHOOK_SECRET", "");
            assert!(Config::load(args()).is_err());
            jail.set_env("MAILPULSE_WEBHOOK_SECRET", "s3cret");
            let c = Config::load(args()).unwrap();
            assert!(matches!(
                c.sources[DEFAULT_SOURCE].auth,
                SourceAuth::Bearer { .. }
            ));
            jail.set_env("MAILPULSE_ADDR", "127.0.0.1:3000");
            jail.set_env("MAILPULSE_WEBHOOK_SECRET", "");
            assert!(Config::load(args()).is_ok());
            jail.set_env("MAILPULSE_ADDR", "[::1]:3000");
            assert!(Config::load(args()).is_ok());
            Ok(())
        });
    }

    #[test]
    fn layers_file_then_env_then_flags() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "mailpulse.toml",
                r#"
                addr = "127.0.0.1:4000"
                data_dir = "/var/lib/mp"
                [store]
                synchronous = "normal"
                events_retention_days = 7
                [sources.eu]
                auth = { type = "keyAuth", header = "X-Api-Key", secrets = ["old", "new"] }
                allow_ips = ["193.169.180.1/32"]
                [sources.us]
                auth = { type = "basic", username = "opti", passwords = ["pw"] }
                "#,
            )?;
            jail.set_env("MAILPULSE_DATA_DIR", "/tmp/env-dir");
            jail.set_env("MAILPULSE_STORE__EVENTS_RETENTION_DAYS", "9");
            jail.set_env("MAILPULSE_BIN", "/not/a/setting");
            let c = Config::load(ServeArgs {
                addr: Some("127.0.0.1:5000".parse().unwrap()),
                ..args()
            })
            .unwrap();
            assert_eq!(c.addr.port(), 5000);
            assert_eq!(c.data_dir, PathBuf::from("/tmp/env-dir"));
            assert_eq!(c.store.synchronous, Synchronous::Normal);
            assert_eq!(c.store.events_retention_days, 9);
            assert_eq!(c.sources.len(), 3);
            assert!(
                matches!(&c.sources["eu"].auth, SourceAuth::Key { header, secrets } if header == "X-Api-Key" && secrets.len() == 2)
            );
            assert_eq!(c.sources["eu"].allow_ips.len(), 1);
            assert!(matches!(c.sources[DEFAULT_SOURCE].auth, SourceAuth::None));
            Ok(())
        });
    }

    #[test]
    fn bad_files_are_refused_with_the_reason() {
        Jail::expect_with(|jail| {
            jail.create_file("typo.toml", "adrr = \"127.0.0.1:1\"")?;
            let err = Config::load(ServeArgs {
                config: Some("typo.toml".into()),
                ..args()
            })
            .unwrap_err()
            .to_string();
            assert!(err.contains("adrr"), "{err}");
            jail.create_file(
                "three.toml",
                "[sources.x]\nauth = { type = \"bearer\", secrets = [\"a\",\"b\",\"c\"] }",
            )?;
            let err = Config::load(ServeArgs {
                config: Some("three.toml".into()),
                ..args()
            })
            .unwrap_err()
            .to_string();
            assert!(err.contains("two while rotating"), "{err}");
            jail.create_file(
                "name.toml",
                "[sources.\"Bad Name\"]\nauth = { type = \"none\" }",
            )?;
            assert!(Config::load(ServeArgs {
                config: Some("name.toml".into()),
                ..args()
            })
            .is_err());
            assert!(Config::load(ServeArgs {
                config: Some("missing.toml".into()),
                ..args()
            })
            .is_err());
            Ok(())
        });
    }

    #[test]
    fn documented_example_is_valid() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "example.toml",
                include_str!("../../docs/mailpulse.example.toml"),
            )?;
            let c = Config::load(ServeArgs {
                config: Some("example.toml".into()),
                ..args()
            })
            .unwrap();
            assert_eq!(c.sources.len(), 3);
            Ok(())
        });
    }

    #[test]
    fn secrets_are_redacted_in_debug() {
        Jail::expect_with(|jail| {
            jail.set_env("MAILPULSE_WEBHOOK_SECRET", "hunter2");
            jail.create_file(
                "mailpulse.toml",
                "[sources.k]\nauth = { type = \"key\", header = \"X-K\", secrets = [\"swordfish\"] }",
            )?;
            let c = Config::load(args()).unwrap();
            let printed = format!("{c:?}");
            assert!(!printed.contains("hunter2"), "{printed}");
            assert!(!printed.contains("swordfish"), "{printed}");
            assert!(printed.contains("redacted"));
            Ok(())
        });
    }
}
