//! The soak: 2,000 objects (and overwrites and deletes of some) go through the whole pipeline
//! while a fault proxy in front of each server resets, delays and black-holes connections,
//! fake-gcs-server is restarted, S3/SQS has an outage, and workers are killed (SIGKILL) and
//! replaced at random. Afterwards the reconciler's `verify --deep` finds no drift, and every
//! replica's sha256 is its source's. Bounded: it gives up after 20 minutes, or after 2 minutes
//! in which the backlog does not shrink.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use yuba_e2e::fault_proxy::Chaos;
use yuba_e2e::{
    Process, Stack, StackOptions, gcs_sha256, pseudo_random_bytes, queue_depth, sha256_hex,
};

const OBJECTS: usize = 2_000;
const OVERWRITTEN: usize = 100;
const DELETED: usize = 50;
/// Fixed, so a failing run can be replayed (as far as thread timing allows).
const SEED: u64 = 0x5eed_2026;
/// The soak gives up (and fails) if the pipeline has not converged by then. The pace is moto's
/// (one Python process, near a whole core here): some 400 s on an idle 2-core machine, and
/// more on a loaded one, so the bound is generous and a stall is caught sooner by
/// [`STALL_LIMIT`].
const CONVERGENCE_LIMIT: Duration = Duration::from_secs(1_200);
/// Once every upload is made, the backlog must shrink at least once in this long: a pipeline
/// that stops making progress fails here rather than at [`CONVERGENCE_LIMIT`].
const STALL_LIMIT: Duration = Duration::from_secs(120);
const MAX_KILLS: usize = 8;

/// The size of object `i`: mostly small, some of a few hundred KiB to 2 MiB, and a few over
/// one upload chunk, so they stream (and are in flight when workers die).
fn size_of(i: usize, rng: &mut StdRng) -> usize {
    match i % 200 {
        0 => rng.random_range(9 << 20..11 << 20),
        1..=10 => rng.random_range(256 << 10..2 << 20),
        _ => rng.random_range(1..48 << 10),
    }
}

fn key_of(i: usize) -> String {
    format!("soak/{:02}/object-{i:05}.bin", i % 37)
}

/// Puts `objects` into S3 (directly, not through a proxy: the faults are yuba's to bear), 16
/// at a time.
async fn put_all(stack: &Stack, objects: Vec<(String, Vec<u8>)>) -> anyhow::Result<()> {
    let s3 = stack.s3().await;
    let bucket = stack.source_bucket().to_owned();
    let slots = Arc::new(tokio::sync::Semaphore::new(16));
    let mut puts = tokio::task::JoinSet::new();
    for (key, content) in objects {
        let (s3, bucket, slot) = (
            s3.clone(),
            bucket.clone(),
            slots.clone().acquire_owned().await?,
        );
        puts.spawn(async move {
            let _slot = slot;
            s3.put_object()
                .bucket(bucket)
                .key(key)
                .body(ByteStream::from(content))
                .send()
                .await
        });
    }
    while let Some(put) = puts.join_next().await {
        put??;
    }
    Ok(())
}

async fn delete_all(stack: &Stack, keys: &[String]) -> anyhow::Result<()> {
    let s3 = stack.s3().await;
    for key in keys {
        s3.delete_object()
            .bucket(stack.source_bucket())
            .key(key)
            .send()
            .await?;
    }
    Ok(())
}

/// Messages still waiting or in flight on every queue of the pipeline.
async fn backlog(stack: &Stack) -> anyhow::Result<u64> {
    let sqs = stack.sqs().await;
    let mut total = 0;
    for queue in [
        "YUBA_EVENTS_QUEUE_URL",
        "YUBA_LAMBDA_QUEUE_URL",
        "YUBA_FARGATE_QUEUE_URL",
    ] {
        total += queue_depth(&sqs, stack.var(queue)).await?;
    }
    Ok(total)
}

/// How many log lines of `processes` satisfy `wanted`.
fn count_lines(processes: &[Process], wanted: impl Fn(&serde_json::Value) -> bool) -> usize {
    processes
        .iter()
        .flat_map(Process::log_lines)
        .filter(|line| wanted(line))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_objects_survive_faults_kills_and_restarts() -> anyhow::Result<()> {
    let options = StackOptions {
        max_receives: 10,
        gcs_backend: Some("filesystem"),
        ..StackOptions::default()
    };
    let (stack, proxies) = Stack::start_behind_proxies("soak", options).await?;
    let mut rng = StdRng::seed_from_u64(SEED);

    // What S3 will hold at the end: key → sha256 (None: deleted).
    let mut truth: BTreeMap<String, Option<String>> = BTreeMap::new();
    let mut first = Vec::with_capacity(OBJECTS);
    let mut bytes = 0;
    for i in 0..OBJECTS {
        let content = pseudo_random_bytes(size_of(i, &mut rng), i as u64);
        bytes += content.len();
        truth.insert(key_of(i), Some(sha256_hex(&content)));
        first.push((key_of(i), content));
    }
    let mut later = Vec::new();
    for i in (0..OBJECTS)
        .step_by(OBJECTS / OVERWRITTEN)
        .take(OVERWRITTEN)
    {
        let content = pseudo_random_bytes(size_of(i, &mut rng), (OBJECTS + i) as u64);
        truth.insert(key_of(i), Some(sha256_hex(&content)));
        later.push((key_of(i), content));
    }
    let deleted: Vec<String> = (0..OBJECTS)
        .skip(7)
        .step_by(OBJECTS / DELETED)
        .take(DELETED)
        .map(key_of)
        .collect();
    for key in &deleted {
        truth.insert(key.clone(), None);
    }

    let chaos = |seed| Chaos {
        seed,
        reset_probability: 0.03,
        max_reset_after_bytes: 64 << 10,
        latency_probability: 0.1,
        max_latency: Duration::from_millis(300),
    };
    proxies.aws.set_chaos(Some(chaos(SEED)));
    proxies.gcs.set_chaos(Some(chaos(SEED + 1)));

    let mut env = proxies.overrides();
    env.extend([
        ("YUBA_VISIBILITY_TIMEOUT_SECONDS", "5"),
        ("YUBA_ROUTE_THRESHOLD_BYTES", "8388608"),
    ]);
    let queues = [
        stack.var("YUBA_LAMBDA_QUEUE_URL").to_owned(),
        stack.var("YUBA_FARGATE_QUEUE_URL").to_owned(),
    ];
    let spawn_worker = |slot: usize, generation: usize| {
        let mut env = env.clone();
        env.push(("YUBA_QUEUE_URL", queues[slot % 2].as_str()));
        stack.spawn("yuba-worker", &format!("worker-{slot}-{generation}"), &env)
    };
    let mut retired: Vec<Process> = vec![stack.spawn("yuba-ingest", "ingest", &env)?];
    let mut workers: Vec<Process> = (0..3)
        .map(|slot| spawn_worker(slot, 0))
        .collect::<Result<_, _>>()?;

    let started = Instant::now();
    let uploads = {
        let stack_env = (first, later, deleted.clone());
        let stack = &stack;
        async move {
            let (first, later, deleted) = stack_env;
            put_all(stack, first).await?;
            put_all(stack, later).await?;
            delete_all(stack, &deleted).await?;
            anyhow::Ok(Instant::now())
        }
    };
    tokio::pin!(uploads);
    let mut uploaded_at: Option<Instant> = None;
    // The smallest backlog seen since the uploads ended, and when it was first seen.
    let mut progress: Option<(u64, Instant)> = None;
    let mut kills = 0;
    let mut next_kill = started + Duration::from_millis(rng.random_range(2_000..5_000));
    let (mut blackholed, mut restarted, mut outage, mut healed) = (false, false, false, false);
    loop {
        if uploaded_at.is_none() {
            tokio::select! {
                done = &mut uploads => uploaded_at = Some(done?),
                () = tokio::time::sleep(Duration::from_millis(250)) => {}
            }
        } else {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let now = Instant::now();
        let elapsed = now - started;
        anyhow::ensure!(
            elapsed < CONVERGENCE_LIMIT,
            "no convergence within {CONVERGENCE_LIMIT:?}: backlog {}, {}",
            backlog(&stack).await?,
            proxies.report()
        );
        if !blackholed && elapsed > Duration::from_secs(8) {
            proxies.gcs.blackhole_for(Duration::from_secs(3));
            blackholed = true;
        }
        if !restarted && elapsed > Duration::from_secs(16) {
            let stack = &stack;
            tokio::task::block_in_place(|| stack.restart_gcs())?;
            restarted = true;
        }
        if !outage && elapsed > Duration::from_secs(24) {
            // moto keeps its state in memory only; an outage at the proxy is its restart.
            proxies.aws.outage_for(Duration::from_secs(3));
            outage = true;
        }
        if kills < MAX_KILLS && now >= next_kill {
            let slot = rng.random_range(0..workers.len());
            let mut doomed = std::mem::replace(&mut workers[slot], spawn_worker(slot, kills + 1)?);
            doomed.kill()?;
            retired.push(doomed);
            kills += 1;
            next_kill = now + Duration::from_millis(rng.random_range(2_000..6_000));
        }
        // Faults go on for a while after the last upload, then stop so the run ends.
        if let Some(at) = uploaded_at
            && !healed
            && now - at > Duration::from_secs(10)
        {
            proxies.aws.heal();
            proxies.gcs.heal();
            healed = true;
        }
        if uploaded_at.is_some() {
            let left = backlog(&stack).await?;
            if healed && left == 0 {
                break;
            }
            match progress {
                Some((least, since)) if left >= least => anyhow::ensure!(
                    now - since < STALL_LIMIT,
                    "no progress for {STALL_LIMIT:?}: backlog {left}, {}",
                    proxies.report()
                ),
                _ => progress = Some((left, now)),
            }
        }
    }
    let converged = started.elapsed();
    let faults = proxies.report();
    retired.append(&mut workers);

    // The reconciler, straight to the servers, reads every byte of both sides.
    let verify = stack
        .run(
            "yuba-reconciler",
            &["verify", "--deep", "--json", "--no-checkpoint"],
            &[],
            Duration::from_secs(240),
        )
        .await?;
    let lines = verify.json_lines();
    let findings: Vec<_> = lines.iter().filter(|l| l["type"] == "finding").collect();
    let summary = lines.last().cloned().unwrap_or_default();

    // And the test's own check, replica against what was put.
    let gcs = stack.gcs().await?;
    let (mut lost, mut corrupt, mut stale) = (Vec::new(), Vec::new(), Vec::new());
    for (key, want) in &truth {
        let replica = gcs.objects().get(stack.replica_bucket(), key).await?;
        match (want, replica) {
            (Some(_), None) => lost.push(key.clone()),
            (Some(want), Some(_)) => {
                if &gcs_sha256(&gcs, stack.replica_bucket(), key).await? != want {
                    corrupt.push(key.clone());
                }
            }
            (None, Some(_)) => stale.push(key.clone()),
            (None, None) => {}
        }
    }
    let sqs = stack.sqs().await;
    let mut dead = 0;
    for dlq in [
        "YUBA_EVENTS_DLQ_URL",
        "YUBA_LAMBDA_DLQ_URL",
        "YUBA_FARGATE_DLQ_URL",
    ] {
        dead += queue_depth(&sqs, stack.var(dlq)).await?;
    }
    let retries = count_lines(&retired, |line| {
        line["message"]
            .as_str()
            .is_some_and(|m| m.contains("retrying") || m.contains("resuming"))
    });
    let transient_failures = count_lines(&retired, |line| line["message"] == "job failed");
    let redeliveries: u64 = retired
        .iter()
        .flat_map(Process::log_lines)
        .filter(|line| line["message"] == "job done")
        .filter_map(|line| line["span"]["receive_count"].as_u64())
        .map(|count| count.saturating_sub(1))
        .sum();
    let lost_races = count_lines(&retired, |line| {
        line["message"]
            .as_str()
            .is_some_and(|m| m.contains("came first") || m.contains("changed while"))
    });

    println!("soak figures (seed {SEED:#x}):");
    println!(
        "  objects: {OBJECTS} put ({} MiB), {OVERWRITTEN} overwritten, {DELETED} deleted, in \
         {:.1} s; converged in {:.1} s",
        bytes >> 20,
        uploaded_at.map_or(0.0, |at| (at - started).as_secs_f64()),
        converged.as_secs_f64()
    );
    println!("  faults injected: {faults}");
    println!(
        "  also: one 3 s GCS black hole, one fake-gcs-server restart, one 3 s S3/SQS outage, \
         {kills} workers killed with SIGKILL"
    );
    println!(
        "  retries within jobs: {retries}; job failures (retried): {transient_failures}; \
         redeliveries of completed jobs: {redeliveries}; lost races: {lost_races}; DLQ: {dead}"
    );
    println!(
        "  verify --deep: exit {:?}, {} findings, {} verified",
        verify.code,
        findings.len(),
        summary["verified"]
    );
    println!(
        "  lost = {}, corrupt = {}, not deleted = {}",
        lost.len(),
        corrupt.len(),
        stale.len()
    );

    assert!(lost.is_empty(), "lost: {lost:?}");
    assert!(corrupt.is_empty(), "corrupt: {corrupt:?}");
    assert!(stale.is_empty(), "deleted in S3 but replicated: {stale:?}");
    assert_eq!(dead, 0, "messages in a DLQ");
    assert!(
        findings.is_empty(),
        "verify --deep found drift: {findings:#?}"
    );
    assert_eq!(verify.code, Some(0), "{}", verify.stderr);
    assert!(kills > 0 && redeliveries > 0, "the soak killed nothing");
    Ok(())
}
