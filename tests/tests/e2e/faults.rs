//! Faults: races between writers of one key, source reads cut half way, poison messages and
//! workers killed mid-upload, with a fault proxy between yuba and the servers.

use std::time::Duration;

use yuba_e2e::{
    Stack, StackOptions, THUMBNAIL_VARIANTS, eventually, gcs_sha256, gradient_jpeg,
    pseudo_random_bytes, queue_depth, replicate, sha256_hex,
};
use yuba_model::{Job, keys};
use yuba_replicate::{Outcome, ReplicateError};

const TIMEOUT: Duration = Duration::from_secs(60);

/// Job A reads v1 of a key; before A writes, v2 is put and job B replicates it. A's write must
/// lose: its precondition names the generation A saw (none), which B's write replaced. The S3
/// proxy holds A's response until B is done, so the interleaving is certain, not timed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_of_an_older_version_cannot_overwrite_a_newer_replica() -> anyhow::Result<()> {
    let (stack, proxies) = Stack::start_behind_proxies("race", StackOptions::default()).await?;
    let gcs = stack.gcs().await?;
    let bucket = stack.replica_bucket();
    let variants = [("YUBA_VARIANTS", THUMBNAIL_VARIANTS)];
    let slow = stack.replicator(proxies.aws.url(), &variants).await?;
    let fast = stack
        .replicator(stack.var("AWS_ENDPOINT_URL"), &variants)
        .await?;
    // A plain object, and an image whose loser also writes variants under the winner's names.
    let cases = [
        (
            "race/object.bin",
            pseudo_random_bytes(64 * 1024, 1),
            pseudo_random_bytes(64 * 1024, 2),
        ),
        (
            "race/photo.jpg",
            gradient_jpeg(64, 48, 20),
            gradient_jpeg(64, 48, 220),
        ),
    ];
    for (key, v1, v2) in cases {
        stack.put(key, &v1).await?;
        let job = replicate(stack.source_bucket(), key);
        proxies.aws.hold_responses();
        let answered = proxies.aws.stats().bytes_from_upstream;
        let a = {
            let (slow, job) = (slow.clone(), job.clone());
            tokio::spawn(async move { slow.run(&job).await })
        };
        eventually(TIMEOUT, "S3 answering A's read of v1", || async {
            let read = proxies.aws.stats().bytes_from_upstream - answered;
            Ok((read >= v1.len() as u64).then_some(()))
        })
        .await?;
        stack.put(key, &v2).await?;
        let b = fast.run(&job).await?;
        assert!(matches!(b, Outcome::Replicated { .. }), "{key}: B {b:?}");
        proxies.aws.release();
        let a = a.await??;
        // A looked again, found v2 replicated, and had nothing left to do but put its variants
        // right (a forced copy of the current source).
        match key {
            "race/object.bin" => assert!(
                matches!(a, Outcome::AlreadyReplicated { .. }),
                "{key}: A {a:?}"
            ),
            _ => assert!(matches!(a, Outcome::Replicated { .. }), "{key}: A {a:?}"),
        }
        assert_eq!(
            gcs_sha256(&gcs, bucket, key).await?,
            sha256_hex(&v2),
            "{key}"
        );
        if key.ends_with(".jpg") {
            let thumb = gcs
                .objects()
                .get(bucket, &format!("_variants/thumb/{key}"))
                .await?
                .expect("the variant");
            assert_eq!(
                thumb.metadata.get(keys::SOURCE_SHA256),
                Some(&sha256_hex(&v2)),
                "the variant is v2's"
            );
        }
    }
    Ok(())
}

/// A source read cut half way resumes where it stopped, on the same version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_read_cut_half_way_resumes_on_the_same_version() -> anyhow::Result<()> {
    let (stack, proxies) = Stack::start_behind_proxies("resume", StackOptions::default()).await?;
    let gcs = stack.gcs().await?;
    let bucket = stack.replica_bucket();
    let replicator = stack.replicator(proxies.aws.url(), &[]).await?;
    // Streamed (over one 8 MiB chunk) and held whole: both read through the same source.
    for (key, size) in [("cut/big.bin", 12 << 20), ("cut/small.bin", 1 << 20)] {
        let content = pseudo_random_bytes(size, 3);
        stack.put(key, &content).await?;
        let resets = proxies.aws.stats().resets;
        proxies.aws.reset_next_toward(
            yuba_e2e::fault_proxy::ResetDirection::ToClient,
            1,
            (size / 3) as u64,
        );
        let outcome = replicator
            .run(&replicate(stack.source_bucket(), key))
            .await?;
        assert!(matches!(outcome, Outcome::Replicated { .. }), "{outcome:?}");
        assert_eq!(proxies.aws.stats().resets, resets + 1, "the read was cut");
        assert_eq!(gcs_sha256(&gcs, bucket, key).await?, sha256_hex(&content));
    }

    // Changed between the cut and the resumption: the read fails, nothing is written, and the
    // job's next run copies the new version.
    let key = "cut/changed.bin";
    let (v1, v2) = (
        pseudo_random_bytes(1 << 20, 4),
        pseudo_random_bytes(1 << 20, 5),
    );
    stack.put(key, &v1).await?;
    proxies.aws.hold_responses();
    let answered = proxies.aws.stats().bytes_from_upstream;
    proxies
        .aws
        .reset_next_toward(yuba_e2e::fault_proxy::ResetDirection::ToClient, 1, 300_000);
    let job = replicate(stack.source_bucket(), key);
    let run = {
        let (replicator, job) = (replicator.clone(), job.clone());
        tokio::spawn(async move { replicator.run(&job).await })
    };
    // Once S3 has answered past the cut, every byte the job will see from this read is v1's.
    eventually(
        TIMEOUT,
        "S3 answering the read of v1 past the cut",
        || async {
            let read = proxies.aws.stats().bytes_from_upstream - answered;
            Ok((read > 300_000).then_some(()))
        },
    )
    .await?;
    stack.put(key, &v2).await?;
    proxies.aws.release();
    let error = run
        .await?
        .expect_err("v1 cannot be finished from v2's bytes");
    assert!(
        matches!(&error, ReplicateError::Source(e) if e.kind.is_transient()),
        "{error}"
    );
    assert!(
        error
            .to_string()
            .contains("changed while it was being read"),
        "{error}"
    );
    assert_eq!(
        gcs.objects().get(bucket, key).await?,
        None,
        "nothing was written"
    );
    replicator.run(&job).await?;
    assert_eq!(gcs_sha256(&gcs, bucket, key).await?, sha256_hex(&v2));
    Ok(())
}

/// Unparseable, unknown-version and impossible jobs are logged with their reason and reach the
/// DLQ after the queue's receives, while the job beside them is done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_messages_reach_the_dlq_without_blocking_their_batch() -> anyhow::Result<()> {
    let stack = Stack::start("poison", 2)?;
    let queue = stack.var("YUBA_LAMBDA_QUEUE_URL").to_owned();
    let dlq = stack.var("YUBA_LAMBDA_DLQ_URL").to_owned();
    let content = pseudo_random_bytes(10_000, 6);
    stack.put("poison/good.bin", &content).await?;
    let poison = [
        "not json at all".to_owned(),
        r#"{"v":7,"op":"replicate","bucket":"b","key":"k"}"#.to_owned(),
        format!(
            r#"{{"v":1,"op":"replicate","bucket":"{}","key":"poison/huge.bin","size":18446744073709551615}}"#,
            stack.source_bucket()
        ),
        r#"{"v":1,"op":"replicate","bucket":"b"}"#.to_owned(),
    ];
    let sqs = stack.sqs().await;
    for body in poison
        .iter()
        .cloned()
        .chain([replicate(stack.source_bucket(), "poison/good.bin").to_message()])
    {
        sqs.send_message()
            .queue_url(&queue)
            .message_body(body)
            .send()
            .await?;
    }
    let worker = stack.spawn("yuba-worker", "worker", &[("YUBA_QUEUE_URL", &queue)])?;
    let gcs = stack.gcs().await?;
    eventually(TIMEOUT, "the good job done", || async {
        Ok(gcs
            .objects()
            .get(stack.replica_bucket(), "poison/good.bin")
            .await?
            .map(|_| ()))
    })
    .await?;
    eventually(TIMEOUT, "the poison in the DLQ", || async {
        Ok((queue_depth(&sqs, &dlq).await? == poison.len() as u64).then_some(()))
    })
    .await?;
    let refusals: Vec<String> = worker
        .log_lines()
        .iter()
        .filter(|line| line["failure"] == "permanent")
        .map(|line| line["error"].as_str().unwrap_or_default().to_owned())
        .collect();
    // Each is refused on each of its 2 receives, with its reason.
    assert_eq!(refusals.len(), 2 * poison.len(), "{refusals:#?}");
    for reason in [
        "is not a yuba job",
        "format version 7",
        "larger than any S3 object",
        "missing field `key`",
    ] {
        assert!(
            refusals.iter().any(|r| r.contains(reason)),
            "{reason}: {refusals:#?}"
        );
    }
    // The good job's deletion is batched, so it may land a moment after its replica does.
    eventually(TIMEOUT, "the good job deleted from its queue", || async {
        Ok((queue_depth(&sqs, &queue).await? == 0).then_some(()))
    })
    .await?;
    Ok(())
}

/// A worker killed (SIGKILL) in the middle of an upload leaves no object in GCS; the message
/// comes back after its visibility timeout and the next worker completes the job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_upload_leaves_nothing_and_the_job_completes() -> anyhow::Result<()> {
    let (stack, proxies) = Stack::start_behind_proxies("killed", StackOptions::default()).await?;
    let key = "killed/big.bin";
    let content = pseudo_random_bytes(40 << 20, 7);
    stack.put(key, &content).await?;
    let queue = stack.var("YUBA_FARGATE_QUEUE_URL").to_owned();
    stack.enqueue_replicate(&queue, key).await?;
    // Slow GCS, so that the kill lands mid-upload.
    proxies.gcs.set_latency(Duration::from_millis(200));
    let mut env = proxies.overrides();
    env.extend([
        ("YUBA_QUEUE_URL", queue.as_str()),
        ("YUBA_VISIBILITY_TIMEOUT_SECONDS", "5"),
    ]);
    for composed in ["33554432", "0"] {
        let mut env = env.clone();
        env.push(("YUBA_GCS_COMPOSE_THRESHOLD_BYTES", composed));
        let mut worker = stack.spawn("yuba-worker", &format!("doomed-{composed}"), &env)?;
        let sent = proxies.gcs.stats().bytes_to_upstream;
        eventually(TIMEOUT, "the upload under way", || async {
            Ok((proxies.gcs.stats().bytes_to_upstream - sent > 10 << 20).then_some(()))
        })
        .await?;
        worker.kill()?;
        let gcs = stack.gcs().await?;
        assert_eq!(
            gcs.objects().get(stack.replica_bucket(), key).await?,
            None,
            "a partial upload became visible (compose threshold {composed})"
        );
    }
    proxies.gcs.heal();
    let _worker = stack.spawn("yuba-worker", "survivor", &env)?;
    let gcs = stack.gcs().await?;
    eventually(Duration::from_secs(120), "the job redone", || async {
        Ok(gcs
            .objects()
            .get(stack.replica_bucket(), key)
            .await?
            .map(|_| ()))
    })
    .await?;
    assert_eq!(
        gcs_sha256(&gcs, stack.replica_bucket(), key).await?,
        sha256_hex(&content)
    );
    Ok(())
}

/// Permanent failures (a bucket that does not exist, on either side) go to the DLQ after the
/// queue's receives, labelled permanent with what to check; a transient one (GCS unreachable
/// for a while) is retried until it succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_failures_are_told_apart_from_transient_ones() -> anyhow::Result<()> {
    let (stack, proxies) = Stack::start_behind_proxies(
        "permanent",
        StackOptions {
            max_receives: 5,
            ..StackOptions::default()
        },
    )
    .await?;
    let content = pseudo_random_bytes(5_000, 8);
    stack.put("kinds/good.bin", &content).await?;
    let sqs = stack.sqs().await;
    let (queue, dlq) = (
        stack.var("YUBA_LAMBDA_QUEUE_URL").to_owned(),
        stack.var("YUBA_LAMBDA_DLQ_URL").to_owned(),
    );
    let send = |job: Job| {
        let (sqs, queue) = (sqs.clone(), queue.clone());
        async move {
            sqs.send_message()
                .queue_url(queue)
                .message_body(job.to_message())
                .send()
                .await
        }
    };
    let mut env = proxies.overrides();
    env.push(("YUBA_QUEUE_URL", queue.as_str()));
    let mut misconfigured = env.clone();
    misconfigured.push(("YUBA_GCS_BUCKET", "no-such-replica-bucket"));
    let mut no_source = env.clone();
    no_source.push(("YUBA_SOURCE_BUCKET", "no-such-source-bucket"));
    // A source bucket that does not exist, then a replica bucket that does not.
    let cases = [
        (
            replicate("no-such-source-bucket", "kinds/any.bin"),
            &no_source,
            "NoSuchBucket",
        ),
        (
            replicate(stack.source_bucket(), "kinds/good.bin"),
            &misconfigured,
            "check YUBA_GCS_BUCKET",
        ),
    ];
    for (dead, (job, env, hint)) in cases.into_iter().enumerate() {
        send(job).await?;
        let worker = stack.spawn("yuba-worker", &format!("permanent-{dead}"), env)?;
        eventually(TIMEOUT, "the job in the DLQ", || async {
            Ok((queue_depth(&sqs, &dlq).await? == dead as u64 + 1).then_some(()))
        })
        .await?;
        let failed: Vec<(String, String)> = worker
            .log_lines()
            .iter()
            .filter(|line| line["message"] == "job failed")
            .map(|line| {
                let text = |field: &str| line[field].as_str().unwrap_or_default().to_owned();
                (text("failure"), text("error"))
            })
            .collect();
        assert!(!failed.is_empty(), "{hint}: no failure logged");
        for (kind, error) in &failed {
            assert_eq!(kind, "permanent", "{error}");
            assert!(error.contains(hint), "{hint}: {error}");
        }
    }

    // GCS unreachable: transient, retried with backoff until it is back.
    proxies.gcs.blackhole_for(Duration::from_secs(3));
    send(replicate(stack.source_bucket(), "kinds/good.bin")).await?;
    let mut patient = env.clone();
    patient.push(("YUBA_GCS_RETRY_SECONDS", "1"));
    let worker = stack.spawn("yuba-worker", "patient", &patient)?;
    let gcs = stack.gcs().await?;
    eventually(TIMEOUT, "the job done once GCS is back", || async {
        Ok(gcs
            .objects()
            .get(stack.replica_bucket(), "kinds/good.bin")
            .await?
            .map(|_| ()))
    })
    .await?;
    let kinds: Vec<String> = worker
        .log_lines()
        .iter()
        .filter(|line| line["message"] == "job failed")
        .map(|line| line["failure"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(!kinds.is_empty(), "the black hole failed no attempt");
    assert!(kinds.iter().all(|kind| kind == "transient"), "{kinds:?}");
    assert_eq!(
        queue_depth(&sqs, &dlq).await?,
        2,
        "nothing more dead-lettered"
    );
    Ok(())
}
