//! Tracing set-up shared by the binaries: JSON lines in the cloud (CloudWatch Logs parses them),
//! readable colourless-or-coloured lines on a terminal.
//!
//! The format is chosen by `YUBA_LOG_FORMAT` (`json` or `pretty`); unset, it is JSON when running
//! on Lambda or ECS or when stderr is not a terminal. The level comes from `RUST_LOG`
//! (default `info`). Metrics ([`crate::metrics`]) ride along in JSON mode, in the namespace
//! `YUBA_METRICS_NAMESPACE` names (default `yuba`), with the Lambda function version
//! (`AWS_LAMBDA_FUNCTION_VERSION`) as a second dimension set of the per-version metrics.

use std::io::IsTerminal;

use crate::{ConfigError, Env, metrics};
use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

impl LogFormat {
    /// The format an environment asks for.
    pub fn from_env(env: &Env) -> Result<LogFormat, ConfigError> {
        match env.optional("YUBA_LOG_FORMAT").as_deref() {
            Some("json") => Ok(LogFormat::Json),
            Some("pretty") => Ok(LogFormat::Pretty),
            None => {
                let in_the_cloud = env.is_set("AWS_LAMBDA_RUNTIME_API")
                    || env.is_set("ECS_CONTAINER_METADATA_URI_V4");
                Ok(if in_the_cloud || !std::io::stderr().is_terminal() {
                    LogFormat::Json
                } else {
                    LogFormat::Pretty
                })
            }
            Some(_) => Err(env.invalid(
                "YUBA_LOG_FORMAT",
                "set it to `json` or `pretty`, or leave it unset",
            )),
        }
    }
}

/// Installs the global subscriber. Logs go to stderr so that stdout stays free for a program's
/// own output (reports, tables).
pub fn init(env: &Env) -> Result<LogFormat, String> {
    let format = LogFormat::from_env(env).map_err(|error| error.to_string())?;
    let namespace = metrics::namespace_from_env(env).map_err(|error| error.to_string())?;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let installed = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        LogFormat::Pretty => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
    };
    installed.map_err(|error| format!("could not install the log subscriber: {error}"))?;
    metrics::enable((format == LogFormat::Json).then(|| metrics::Sink {
        namespace,
        version: metrics::function_version_from_env(env),
    }));
    Ok(format)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_formats_win() {
        let env = Env::from_pairs([
            ("YUBA_LOG_FORMAT", "pretty"),
            ("AWS_LAMBDA_RUNTIME_API", "x"),
        ]);
        assert_eq!(LogFormat::from_env(&env), Ok(LogFormat::Pretty));
        let env = Env::from_pairs([("YUBA_LOG_FORMAT", "json")]);
        assert_eq!(LogFormat::from_env(&env), Ok(LogFormat::Json));
    }

    #[test]
    fn the_cloud_gets_json() {
        let env = Env::from_pairs([("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9001")]);
        assert_eq!(LogFormat::from_env(&env), Ok(LogFormat::Json));
    }

    #[test]
    fn a_bad_value_is_named() {
        let error =
            LogFormat::from_env(&Env::from_pairs([("YUBA_LOG_FORMAT", "xml")])).unwrap_err();
        let error = error.to_string();
        assert!(
            error.contains("YUBA_LOG_FORMAT=\"xml\"") && error.contains("json"),
            "{error}"
        );
    }
}
