//! Runtime configuration: one typed struct, read from flags and the
//! environment. Secrets are wrapped in [`Secret`] so they never reach logs.

use clap::Parser;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

/// A value that must never be printed: `Debug` and `Display` redact it.
#[derive(Clone, PartialEq, Eq)]
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
}

/// Options of the server.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "MAILPULSE_ADDR", default_value = "127.0.0.1:3000")]
    pub addr: SocketAddr,
    /// Directory for the event store.
    #[arg(long, env = "MAILPULSE_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// When set, webhook POSTs must carry `Authorization: Bearer <secret>`.
    #[arg(long, env = "MAILPULSE_WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<Secret>,
    /// Where the built site (wasm, JS, CSS, assets) lives.
    #[arg(long, env = "MAILPULSE_SITE_ROOT", default_value = "target/site")]
    pub site_root: PathBuf,
}

/// The validated configuration the server runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    pub webhook_secret: Option<Secret>,
    pub site_root: PathBuf,
}

impl Config {
    /// Checks the combination of settings; refuses what would be unsafe.
    pub fn from_args(args: ServeArgs) -> anyhow::Result<Config> {
        let config = Config {
            addr: args.addr,
            data_dir: args.data_dir,
            webhook_secret: args.webhook_secret.filter(|s| !s.expose().is_empty()),
            site_root: args.site_root,
        };
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> anyhow::Result<()> {
        if !self.addr.ip().is_loopback() && self.webhook_secret.is_none() {
            anyhow::bail!(
                "refusing to listen on {} without a webhook secret: set MAILPULSE_WEBHOOK_SECRET \
                 (anyone who can reach this address could otherwise inject events)",
                self.addr
            );
        }
        Ok(())
    }

    /// A configuration for tests: loopback, the given data dir, no secret.
    pub fn for_tests(data_dir: PathBuf) -> Config {
        Config {
            addr: "127.0.0.1:0".parse().expect("static address"),
            data_dir,
            webhook_secret: None,
            site_root: PathBuf::from("target/site"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(addr: &str, secret: Option<&str>) -> ServeArgs {
        ServeArgs {
            addr: addr.parse().unwrap(),
            data_dir: "./data".into(),
            webhook_secret: secret.map(Secret::new),
            site_root: "target/site".into(),
        }
    }

    #[test]
    fn public_address_needs_a_secret() {
        assert!(Config::from_args(args("0.0.0.0:3000", None)).is_err());
        assert!(Config::from_args(args("0.0.0.0:3000", Some(""))).is_err());
        assert!(Config::from_args(args("0.0.0.0:3000", Some("s3cret"))).is_ok());
        assert!(Config::from_args(args("127.0.0.1:3000", None)).is_ok());
        assert!(Config::from_args(args("[::1]:3000", None)).is_ok());
    }

    #[test]
    fn secrets_are_redacted_in_debug() {
        let c = Config::from_args(args("127.0.0.1:1", Some("hunter2"))).unwrap();
        let printed = format!("{c:?}");
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(printed.contains("redacted"));
    }
}
