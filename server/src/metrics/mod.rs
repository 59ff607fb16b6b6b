//! Live metrics: windows, rates and percentiles per scope (everything, each
//! mailing class, each mailing), the engine task that owns them, and the
//! rebuild from the store after a restart. The pure parts ([`buckets`],
//! [`durations`], [`scope`], [`state`]) take time as an argument and are
//! tested inline; [`engine`] is the task around them.

pub mod buckets;
pub mod dispatch;
pub mod durations;
pub mod engine;
pub mod rebuild;
pub mod scope;
pub mod state;

pub use engine::{channels, EngineConfig, LiveHandle};
pub use state::MailingSettings;
