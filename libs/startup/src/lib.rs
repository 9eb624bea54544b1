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

/// A yuba program: what reads the settings of [`catalog`] and emits the metrics of
/// [`metrics::catalog`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Program {
    Ingest,
    Worker,
    Reconciler,
    /// The delivery origin: serves the replica and its variants over HTTP.
    Serve,
}

impl Program {
    pub const ALL: [Program; 4] = [
        Program::Ingest,
        Program::Worker,
        Program::Reconciler,
        Program::Serve,
    ];

    /// Its short name, as README's tables give it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Program::Ingest => "ingest",
            Program::Worker => "worker",
            Program::Reconciler => "reconciler",
            Program::Serve => "serve",
        }
    }

    /// Its executable, as the packages name it and the CDK app runs it.
    pub const fn binary(self) -> &'static str {
        match self {
            Program::Ingest => "yuba-ingest",
            Program::Worker => "yuba-worker",
            Program::Reconciler => "yuba-reconciler",
            Program::Serve => "yuba-serve",
        }
    }
}
