//! yuba-worker: replicates S3 objects into GCS.
//!
//! One binary, two homes. Under Lambda (`AWS_LAMBDA_RUNTIME_API` set) it answers SQS-triggered
//! batches with partial batch failures; anywhere else (Fargate, a laptop) it long-polls
//! `YUBA_QUEUE_URL`. Either way every job goes through the same [`JobHandler`].
//!
//! On ECS (Fargate), where the agent sets `ECS_AGENT_URI`, the long-poll consumer also holds
//! the task's scale-in protection while jobs are in flight, so that a scale-in or a deployment
//! does not stop a task in the middle of a multi-GiB copy (`YUBA_TASK_PROTECTION_*`).

mod handler;

use anyhow::Context;
use yuba_aws::S3Source;
use yuba_consumer::lambda::{Home, SqsBatches};
use yuba_consumer::{Consumer, TaskProtectionSettings};
use yuba_gcs::{Gcs, GcsSettings};
use yuba_replicate::{Footprint, Replicator, ReplicatorSettings};
use yuba_startup::Env;
use yuba_startup::cancel_on_termination;

use crate::handler::JobHandler;

/// Jobs worked on at once by default: replication is I/O-bound, so more than the cores.
const DEFAULT_CONCURRENCY: u64 = 8;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let env = Env::from_process();
    yuba_startup::telemetry::init(&env).map_err(anyhow::Error::msg)?;
    let gcs_settings = GcsSettings::from_env(&env)?;
    let home = Home::from_env(&env, "YUBA_QUEUE_URL", DEFAULT_CONCURRENCY)?;
    let replicator_settings =
        ReplicatorSettings::from_env(&env, &Footprint::new(&gcs_settings, home.concurrency()))?;
    let force_path_style = env.flag("YUBA_S3_FORCE_PATH_STYLE", false)?;
    // Read and checked at start-up with the rest; only the long-poll home uses it (Lambda has
    // no ECS agent, and so no ECS_AGENT_URI: it is `None` there).
    let task_protection = TaskProtectionSettings::from_env(&env)?;

    let sdk = yuba_aws::load_sdk_config().await;
    let gcs = Gcs::connect(&gcs_settings).await?;
    // Which Google identity this process acts as, so a denied request can be traced to it.
    tracing::info!(gcs_credentials = %gcs_settings.credentials, "GCS client ready");
    let memory = &replicator_settings.memory;
    tracing::info!(
        memory_mib = memory.total_mib,
        memory_from = %memory.source,
        images_budget_mib = memory.images_bytes / (1024 * 1024),
        "memory budget for variants"
    );
    let replicator = Replicator::new(
        S3Source::new(&sdk, force_path_style),
        gcs,
        replicator_settings,
    );
    let handler = JobHandler::new(replicator);

    let sqs = aws_sdk_sqs::Client::new(&sdk);
    match home {
        Home::Lambda {
            concurrency,
            backoff,
        } => yuba_consumer::lambda::serve_sqs_batches(
            handler,
            SqsBatches::new(sqs, concurrency, backoff),
        )
        .await
        // The runtime's error is boxed: `anyhow!` keeps it, with its sources, under the context.
        .map_err(|error| anyhow::anyhow!(error).context("the Lambda runtime stopped")),
        Home::Service(settings) => {
            let shutdown = cancel_on_termination().context("installing signal handlers")?;
            Consumer::new(sqs, settings, handler)
                .with_task_protection(task_protection)
                .run(shutdown)
                .await;
            Ok(())
        }
    }
}
