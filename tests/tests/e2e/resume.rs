//! A large copy cut short resumes where it stopped: the next attempt at the same source
//! version reads S3 again (the replica records digests of the whole object) but uploads only
//! the parts GCS does not already hold intact. Against moto and fake-gcs-server, with a fault
//! proxy in front of S3 and parts of 256 KiB so that a 6 MiB object is 24 of them.

use std::time::Duration;

use anyhow::bail;
use yuba_aws::S3Source;
use yuba_e2e::fault_proxy::ResetDirection;
use yuba_e2e::{
    Stack, StackOptions, eventually, gcs_sha256, pseudo_random_bytes, replicate, sha256_hex,
    temporaries_under,
};
use yuba_gcs::{Gcs, GcsSettings, PARTS_PREFIX};
use yuba_model::{FailureKind, Job, keys};
use yuba_replicate::{Footprint, Outcome, Replicator, ReplicatorSettings};
use yuba_startup::Env;

const PART: usize = 256 * 1024;
const PARTS: usize = 24;
const TIMEOUT: Duration = Duration::from_secs(60);

/// The worker's replicator with 256 KiB parts, two uploading at once: S3 at `s3_endpoint`,
/// the stack's GCS.
async fn small_part_replicator(stack: &Stack, s3_endpoint: &str) -> anyhow::Result<Replicator> {
    let part = PART.to_string();
    let env = Env::from_pairs([
        ("YUBA_GCS_ENDPOINT", stack.var("YUBA_GCS_ENDPOINT")),
        ("YUBA_SOURCE_BUCKET", stack.source_bucket()),
        ("YUBA_GCS_BUCKET", stack.replica_bucket()),
        ("YUBA_GCS_RETRY_ATTEMPTS", "3"),
        ("YUBA_GCS_RETRY_SECONDS", "10"),
        ("YUBA_UPLOAD_CHUNK_BYTES", part.as_str()),
        ("YUBA_GCS_COMPOSE_THRESHOLD_BYTES", part.as_str()),
        ("YUBA_GCS_PARALLEL_UPLOADS", "2"),
    ]);
    let gcs_settings = GcsSettings::from_env(&env)?;
    let settings = ReplicatorSettings::from_env(&env, &Footprint::new(&gcs_settings, 1))?;
    let sdk = stack
        .sdk_config()
        .await
        .into_builder()
        .endpoint_url(s3_endpoint)
        .build();
    Ok(Replicator::new(
        S3Source::new(&sdk, true),
        Gcs::connect(&gcs_settings).await?,
        settings,
    ))
}

/// Every temporary in the replica bucket, with its generation.
async fn temporaries(gcs: &Gcs, bucket: &str) -> anyhow::Result<Vec<(String, i64)>> {
    temporaries_under(gcs, bucket, PARTS_PREFIX).await
}

/// Objects fake-gcs-server has been sent so far: one per part uploaded.
fn uploads(stack: &Stack) -> anyhow::Result<usize> {
    Ok(stack
        .gcs_requests()?
        .iter()
        .filter(|request| request.starts_with("POST /upload/"))
        .count())
}

/// Runs `job` again after a first attempt left `kept` parts, and checks that the replica is
/// the content, recorded as such, that only the other parts were uploaded, and that no
/// temporary is left.
async fn resume(
    stack: &Stack,
    replicator: &Replicator,
    job: &Job,
    content: &[u8],
    kept: usize,
) -> anyhow::Result<()> {
    let (gcs, bucket, key) = (stack.gcs().await?, stack.replica_bucket(), job.key());
    let uploaded = uploads(stack)?;
    let outcome = replicator.run(job).await?;
    let Outcome::Replicated {
        bytes, checksums, ..
    } = outcome
    else {
        bail!("{key}: {outcome:?}");
    };
    assert_eq!(bytes, content.len() as u64, "{key}");
    assert_eq!(checksums.sha256_hex(), sha256_hex(content), "{key}");
    assert_eq!(
        uploads(stack)? - uploaded,
        PARTS - kept,
        "{key}: the {kept} parts of the first attempt were uploaded again"
    );
    let replica = gcs.objects().get(bucket, key).await?.expect("the replica");
    assert_eq!(replica.crc32c, Some(crc32c::crc32c(content)), "{key}");
    assert_eq!(replica.metadata[keys::SHA256], sha256_hex(content), "{key}");
    assert_eq!(gcs_sha256(&gcs, bucket, key).await?, sha256_hex(content));
    assert_eq!(temporaries(&gcs, bucket).await?, Vec::new(), "{key}");
    Ok(())
}

/// The S3 read fails (cut more often than it resumes) part way: the job fails as transient,
/// keeps its parts, and its next run uploads only the rest. A new version of the key in
/// between is a new content: none of the old parts is used for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_composite_copy_that_failed_transiently_resumes_from_its_parts() -> anyhow::Result<()> {
    let (stack, proxies) =
        Stack::start_behind_proxies("resume-failed", StackOptions::default()).await?;
    let replicator = small_part_replicator(&stack, proxies.aws.url()).await?;
    let gcs = stack.gcs().await?;
    let bucket = stack.replica_bucket();

    let first_attempt = async |key: &str, content: &[u8]| -> anyhow::Result<usize> {
        stack.put(key, content).await?;
        // Each connection of the read is cut after 512 KiB; the source resumes three times,
        // so the fourth cut ends the read with some 2 MiB of the 6 read.
        proxies
            .aws
            .reset_next_toward(ResetDirection::ToClient, 10, 512 * 1024);
        let error = replicator
            .run(&replicate(stack.source_bucket(), key))
            .await
            .expect_err("the read was cut more often than it resumes");
        proxies
            .aws
            .reset_next_toward(ResetDirection::ToClient, 0, 0);
        assert_eq!(error.kind(), FailureKind::Transient, "{error}");
        assert!(gcs.objects().get(bucket, key).await?.is_none(), "{key}");
        let kept = temporaries(&gcs, bucket).await?.len();
        assert!((1..PARTS).contains(&kept), "{key}: {kept} parts kept");
        Ok(kept)
    };

    let key = "resume/failed.bin";
    let content = pseudo_random_bytes(PARTS * PART - 1000, 21);
    let kept = first_attempt(key, &content).await?;
    let read = proxies.aws.stats().bytes_to_client;
    let job = replicate(stack.source_bucket(), key);
    resume(&stack, &replicator, &job, &content, kept).await?;
    assert!(
        proxies.aws.stats().bytes_to_client - read >= content.len() as u64,
        "S3 is read whole again, for the digests of the whole object"
    );

    // Cut short on one version, then the key changes: the parts are another content's.
    let key = "resume/changed.bin";
    let v1 = pseudo_random_bytes(PARTS * PART - 1000, 22);
    let v2 = pseudo_random_bytes(PARTS * PART - 1000, 23);
    let left_by_v1 = first_attempt(key, &v1).await?;
    stack.put(key, &v2).await?;
    let uploaded = uploads(&stack)?;
    let outcome = replicator
        .run(&replicate(stack.source_bucket(), key))
        .await?;
    assert!(matches!(outcome, Outcome::Replicated { .. }), "{outcome:?}");
    assert_eq!(
        uploads(&stack)? - uploaded,
        PARTS,
        "every part of v2 uploaded"
    );
    assert_eq!(gcs_sha256(&gcs, bucket, key).await?, sha256_hex(&v2));
    assert_eq!(
        temporaries(&gcs, bucket).await?.len(),
        left_by_v1,
        "v1's parts are left to the lifecycle rule"
    );
    Ok(())
}

/// The job is cancelled part way (its future dropped, as the Fargate worker's drain does to a
/// job that outlasts the stop timeout): the parts stay, and the next attempt uploads only the
/// rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_composite_copy_resumes_from_its_parts() -> anyhow::Result<()> {
    let (stack, proxies) =
        Stack::start_behind_proxies("resume-cancelled", StackOptions::default()).await?;
    let replicator = small_part_replicator(&stack, proxies.aws.url()).await?;
    let gcs = stack.gcs().await?;
    let bucket = stack.replica_bucket();
    let key = "resume/cancelled.bin";
    let content = pseudo_random_bytes(PARTS * PART - 1000, 24);
    stack.put(key, &content).await?;
    let job = replicate(stack.source_bucket(), key);

    // A slow S3 (some 3 MiB/s through the proxy), so that the cancellation lands part way.
    proxies.aws.set_latency(Duration::from_millis(300));
    let run = {
        let (replicator, job) = (replicator.clone(), job.clone());
        tokio::spawn(async move { replicator.run(&job).await })
    };
    eventually(TIMEOUT, "some parts uploaded", || async {
        Ok((temporaries(&gcs, bucket).await?.len() >= 2).then_some(()))
    })
    .await?;
    run.abort();
    let cancelled = run.await;
    assert!(
        cancelled.as_ref().is_err_and(|e| e.is_cancelled()),
        "the job ended before it was cancelled: {cancelled:?}"
    );
    proxies.aws.heal();
    // A part whose request had reached GCS in full is still made: let it land.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(gcs.objects().get(bucket, key).await?.is_none());
    let kept = temporaries(&gcs, bucket).await?.len();
    assert!((2..PARTS).contains(&kept), "{kept} parts kept");
    resume(&stack, &replicator, &job, &content, kept).await
}

/// The Fargate worker drains on SIGTERM: a large copy that does not finish within the grace is
/// aborted and its message released. The parts stay, and the worker that takes the job next
/// uploads only the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_the_worker_drain_aborts_resumes_in_the_next_worker() -> anyhow::Result<()> {
    const DRAINED_PARTS: usize = 40;
    let (stack, proxies) =
        Stack::start_behind_proxies("resume-drained", StackOptions::default()).await?;
    let gcs = stack.gcs().await?;
    let bucket = stack.replica_bucket();
    let key = "resume/drained.bin";
    let content = pseudo_random_bytes(DRAINED_PARTS * PART - 1000, 25);
    stack.put(key, &content).await?;
    let queue = stack.var("YUBA_FARGATE_QUEUE_URL").to_owned();
    stack.enqueue_replicate(&queue, key).await?;
    let part = PART.to_string();
    let mut env = proxies.overrides();
    env.extend([
        ("YUBA_QUEUE_URL", queue.as_str()),
        ("YUBA_VISIBILITY_TIMEOUT_SECONDS", "30"),
        ("YUBA_SHUTDOWN_GRACE_SECONDS", "1"),
        ("YUBA_UPLOAD_CHUNK_BYTES", part.as_str()),
        ("YUBA_GCS_COMPOSE_THRESHOLD_BYTES", part.as_str()),
        ("YUBA_GCS_PARALLEL_UPLOADS", "2"),
    ]);

    // A slow S3 (some 2 MiB/s through the proxy): the 10 MiB copy outlasts the grace.
    proxies.aws.set_latency(Duration::from_millis(500));
    let mut doomed = stack.spawn("yuba-worker", "doomed", &env)?;
    eventually(TIMEOUT, "some parts uploaded", || async {
        Ok((temporaries(&gcs, bucket).await?.len() >= 2).then_some(()))
    })
    .await?;
    doomed.terminate(Duration::from_secs(15))?;
    assert!(
        gcs.objects().get(bucket, key).await?.is_none(),
        "the copy finished within the grace: {}",
        doomed.raw_log()
    );
    proxies.aws.heal();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let kept = temporaries(&gcs, bucket).await?.len();
    assert!((2..DRAINED_PARTS).contains(&kept), "{kept} parts kept");

    let uploaded = uploads(&stack)?;
    let _survivor = stack.spawn("yuba-worker", "survivor", &env)?;
    eventually(TIMEOUT, "the job done by the next worker", || async {
        Ok(gcs.objects().get(bucket, key).await?.map(|_| ()))
    })
    .await?;
    assert_eq!(
        uploads(&stack)? - uploaded,
        DRAINED_PARTS - kept,
        "the {kept} parts of the drained attempt were uploaded again"
    );
    assert_eq!(gcs_sha256(&gcs, bucket, key).await?, sha256_hex(&content));
    // The worker deletes the parts after the compose has made the object, so the object can be
    // seen a moment before they are gone.
    eventually(TIMEOUT, "the parts deleted after the compose", || async {
        Ok(temporaries(&gcs, bucket).await?.is_empty().then_some(()))
    })
    .await?;
    Ok(())
}
