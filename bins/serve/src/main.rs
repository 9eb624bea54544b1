//! yuba-serve: the delivery origin. Serves the GCS replica's originals and variants (made on
//! demand when missing) to CloudFront.
//!
//! One binary, two homes. Under Lambda (`AWS_LAMBDA_RUNTIME_API` set) it answers a function
//! URL's invocations with streamed responses; anywhere else (a container, the local stack) it
//! is an HTTP/1.1 server on `YUBA_SERVE_ADDRESS`. Either way every request goes to the same
//! [`Origin`].

mod metrics;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use yuba_gcs::{Gcs, GcsSettings};
use yuba_origin::{Origin, OriginSettings};
use yuba_startup::{Env, cancel_on_termination};

const DEFAULT_ADDRESS: &str = "127.0.0.1:8080";
/// How long open connections may finish their requests after SIGTERM (ECS waits 30 s by
/// default before it kills a task).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let env = Env::from_process();
    yuba_startup::telemetry::init(&env).map_err(anyhow::Error::msg)?;
    let gcs_settings = GcsSettings::from_env(&env)?;
    let settings = OriginSettings::from_env(&env)?;
    let on_lambda = env.is_set("AWS_LAMBDA_RUNTIME_API");
    // Read and checked at start-up with the rest, off Lambda only: a function URL invokes the
    // function, and there is nothing to listen on.
    let address: Option<SocketAddr> = if on_lambda {
        None
    } else {
        Some(env.parsed(
            "YUBA_SERVE_ADDRESS",
            DEFAULT_ADDRESS.parse().context("the default address")?,
        )?)
    };
    let gcs = Gcs::connect(&gcs_settings).await?;
    tracing::info!(gcs_credentials = %gcs_settings.credentials, "GCS client ready");
    let memory = &settings.memory;
    tracing::info!(
        memory_mib = memory.total_mib,
        memory_from = %memory.source,
        images_budget_mib = memory.images_bytes / (1024 * 1024),
        "memory budget for variants made on demand"
    );
    let origin = Origin::new(gcs, settings, Arc::new(metrics::Metrics));
    let Some(address) = address else {
        return yuba_origin::lambda::serve(origin)
            .await
            // The runtime's error is boxed: `anyhow!` keeps it, with its sources.
            .map_err(|error| anyhow::anyhow!(error).context("the Lambda runtime stopped"));
    };
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("listening on {address} (YUBA_SERVE_ADDRESS)"))?;
    tracing::info!(address = %listener.local_addr()?, "serving the replica");
    let shutdown = cancel_on_termination().context("installing signal handlers")?;
    yuba_origin::http::serve(listener, origin, shutdown, SHUTDOWN_GRACE).await;
    Ok(())
}
