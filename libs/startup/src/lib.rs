//! What every yuba program does at start-up, before its work: read its settings from the
//! environment and validate them ([`Env`], with the [`catalog`] of every setting), set up its
//! logs and metrics ([`telemetry`], [`metrics`]), and learn when it is asked to stop
//! ([`cancel_on_termination`]). The libraries take their own settings from an [`Env`]; the
//! binaries do the rest.

pub mod catalog;
mod env;
pub mod metrics;
mod signals;
pub mod telemetry;

pub use env::{ConfigError, Env};
pub use signals::cancel_on_termination;
