//! The reconciler (`yuba-reconciler`) end to end, against moto and fake-gcs-server: `diff` and
//! `verify` find every kind of drift (and `verify` what a listing cannot see: lost or outdated
//! variants, content under a forged record), `backfill` repairs it inline or through the work
//! queues (routed by size, forced where the worker's own check would skip), an interrupted
//! backfill (SIGTERM, then SIGKILL) resumes from its checkpoint without copying anything twice,
//! the selection options (`--manifest`, `--since`) and the safety ones (`--dry-run`, orphans
//! kept without `--delete-orphans`) do what they say, errors exit with 2 and a message that
//! names the problem, and a repair that fails is a finding and exit code 1.
//!
//! Every run gets `--checkpoint` in the stack's own temporary directory or `--no-checkpoint`,
//! so nothing is written into the repository.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use serde_json::Value;
use yuba_e2e::{
    Finished, Stack, dump_logs, eventually, gcs_sha256, gradient_jpeg, logs_where,
    pseudo_random_bytes, queue_depth, replica_of, sha256_hex,
};
use yuba_gcs::{Gcs, ListQuery, ObjectUpdate, UploadSpec};

const RECONCILER: &str = "yuba-reconciler";
/// One reconciler run over a few hundred objects at most.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);
const REPLICA_TIMEOUT: Duration = Duration::from_secs(60);
const VARIANTS: &str = r#"{"profiles": [{"name": "thumb", "width": 64, "format": "webp"}]}"#;

/// Runs the reconciler with `args`, JSON output and its checkpoint at `checkpoint`.
pub(crate) async fn reconcile(
    stack: &Stack,
    args: &[&str],
    overrides: &[(&str, &str)],
    checkpoint: &Path,
) -> anyhow::Result<Finished> {
    let mut all = args.to_vec();
    all.extend([
        "--json",
        "--checkpoint",
        checkpoint.to_str().unwrap_or_default(),
    ]);
    stack.run(RECONCILER, &all, overrides, RUN_TIMEOUT).await
}

/// Runs a step of a sharded run (`plan`, `merge`: no checkpoint) with `args` and JSON output.
pub(crate) async fn reconciler_step(stack: &Stack, args: &[&str]) -> anyhow::Result<Finished> {
    let mut all = args.to_vec();
    all.push("--json");
    stack.run(RECONCILER, &all, &[], RUN_TIMEOUT).await
}

/// (kind, key) of each finding, the way the assertions compare them.
type Findings = BTreeSet<(String, String)>;

pub(crate) fn expected(pairs: &[(&str, &str)]) -> Findings {
    pairs
        .iter()
        .map(|(kind, key)| ((*kind).to_owned(), (*key).to_owned()))
        .collect()
}

/// The run's findings and its summary, checked for shape: every JSON line is a finding or
/// the one summary, which comes last and repeats the exit code (a shard's: 0, once it finished).
pub(crate) fn parse(run: &Finished) -> (Vec<Value>, Value) {
    let lines = run.json_lines();
    let (summary, findings) = lines
        .split_last()
        .unwrap_or_else(|| panic!("no JSON output:\n{}\n{}", run.stdout, run.stderr));
    assert_eq!(summary["type"], "summary", "{}", run.stdout);
    for finding in findings {
        assert_eq!(finding["type"], "finding", "{}", run.stdout);
    }
    // A shard exits 0 once it finished: its summary's exit code is for the merge.
    let exit_code = match summary.get("shard") {
        Some(_) => Some(0),
        None => summary["exit_code"].as_i64().map(|code| code as i32),
    };
    assert_eq!(
        exit_code, run.code,
        "the summary's exit code is the process's\n{}",
        run.stderr
    );
    (findings.to_vec(), summary.clone())
}

pub(crate) fn kinds_and_keys(findings: &[Value]) -> Findings {
    findings
        .iter()
        .map(|f| {
            (
                f["kind"].as_str().unwrap_or_default().to_owned(),
                f["key"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// key → action of a backfill's findings.
fn actions(findings: &[Value]) -> HashMap<String, String> {
    findings
        .iter()
        .map(|f| {
            (
                f["key"].as_str().unwrap_or_default().to_owned(),
                f["action"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

pub(crate) fn count(summary: &Value, field: &str) -> u64 {
    summary[field]
        .as_u64()
        .unwrap_or_else(|| panic!("no {field} in {summary}"))
}

/// Every object in the replica bucket and its generation.
async fn generations(gcs: &Gcs, bucket: &str) -> anyhow::Result<HashMap<String, i64>> {
    let mut all = HashMap::new();
    let mut token: Option<String> = None;
    loop {
        let page = gcs
            .objects()
            .list(
                bucket,
                &ListQuery {
                    page_token: token.as_deref(),
                    page_size: 1000,
                    ..ListQuery::default()
                },
            )
            .await?;
        all.extend(page.objects.into_iter().map(|o| (o.name, o.generation)));
        match page.next_page_token {
            Some(next) => token = Some(next),
            None => return Ok(all),
        }
    }
}

/// Starts the reconciler with `args`, its output (but for stderr, in `label.log`) discarded.
fn start(stack: &Stack, args: &[&str], label: &str) -> anyhow::Result<Child> {
    let mut command = stack.command(RECONCILER, &[])?;
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(
            stack.dir.join(format!("{label}.log")),
        )?);
    Ok(command.spawn()?)
}

/// Waits until the run's checkpoint counts at least `repaired` repairs, and returns it. The
/// run must still be going.
async fn wait_for_progress(
    run: &mut Child,
    checkpoint: &Path,
    repaired: u64,
) -> anyhow::Result<Value> {
    let deadline = Instant::now() + RUN_TIMEOUT;
    loop {
        if let Ok(text) = std::fs::read_to_string(checkpoint)
            && let Ok(saved) = serde_json::from_str::<Value>(&text)
            && saved["counts"]["repaired"].as_u64().unwrap_or_default() >= repaired
        {
            return Ok(saved);
        }
        anyhow::ensure!(
            run.try_wait()?.is_none(),
            "the run ended before it could be interrupted"
        );
        if Instant::now() > deadline {
            run.kill()?;
            anyhow::bail!("no checkpoint with {repaired} repairs after {RUN_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn wait_for_exit(run: &mut Child, within: Duration) -> anyhow::Result<ExitStatus> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = run.try_wait()? {
            return Ok(status);
        }
        if Instant::now() > deadline {
            run.kill()?;
            anyhow::bail!("the run did not exit within {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Asserts that each key's replica holds exactly its source's bytes.
async fn assert_replicas_equal_sources(
    stack: &Stack,
    gcs: &Gcs,
    objects: &[(&str, Vec<u8>)],
) -> anyhow::Result<()> {
    for (key, body) in objects {
        assert_eq!(
            gcs_sha256(gcs, stack.replica_bucket(), key).await?,
            sha256_hex(body),
            "the replica of {key:?} holds its source's bytes"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_drift_is_found_and_repaired() -> anyhow::Result<()> {
    let stack = Stack::start("reconcile-drift", 3)?;
    let s3 = stack.s3().await;
    let gcs = stack.gcs().await?;
    let bucket = stack.replica_bucket();
    let checkpoint = stack.dir.join("drift.checkpoint.json");
    // Objects over 256 KiB are streamed (their digests recorded by a second request).
    let variants = [
        ("YUBA_VARIANTS", VARIANTS),
        ("YUBA_UPLOAD_CHUNK_BYTES", "262144"),
    ];

    // Replicated in sync first, with the thumb profile configured.
    let unicode_key = "in sync/ünïcödé 日本語 file.txt";
    let mut objects: Vec<(&str, Vec<u8>)> = vec![
        ("in sync/plain.bin", pseudo_random_bytes(3_000, 1)),
        ("in sync/streamed.bin", pseudo_random_bytes(600_000, 3)),
        (unicode_key, b"spaces and unicode".to_vec()),
        ("in sync/sea side.jpg", gradient_jpeg(160, 120, 1)),
        ("forged.txt", b"what the source holds".to_vec()),
        ("mismatch.txt", b"the original replica content".to_vec()),
        ("orphan.jpg", gradient_jpeg(160, 120, 2)),
        ("stale.txt", b"version one".to_vec()),
        ("variant-deleted.jpg", gradient_jpeg(160, 120, 3)),
        ("variant-outdated.jpg", gradient_jpeg(160, 120, 7)),
    ];
    for (key, body) in &objects {
        stack.put(key, body).await?;
    }
    let first = reconcile(&stack, &["backfill", "--inline"], &variants, &checkpoint).await?;
    let (findings, summary) = parse(&first);
    assert_eq!(first.code, Some(0), "{}", first.stderr);
    assert_eq!(findings.len(), objects.len(), "{}", first.stdout);
    assert_eq!(count(&summary, "repaired"), objects.len() as u64);
    for (key, _) in &objects {
        assert!(
            gcs.objects().get(bucket, key).await?.is_some(),
            "{key:?} replicated"
        );
    }
    for image in [
        "in sync/sea side.jpg",
        "orphan.jpg",
        "variant-deleted.jpg",
        "variant-outdated.jpg",
    ] {
        let variant = format!("_variants/thumb/{image}.webp");
        assert!(
            gcs.objects().get(bucket, &variant).await?.is_some(),
            "{variant}"
        );
    }

    // An image replicated while no profile was configured: its record lists no variant.
    let no_variants = ("no-variants.jpg", gradient_jpeg(160, 120, 4));
    stack.put(no_variants.0, &no_variants.1).await?;
    // Only that key: with no profile configured, the other images' variants are orphans.
    let plain = reconcile(
        &stack,
        &["backfill", "--inline", "--prefix", no_variants.0],
        &[],
        &checkpoint,
    )
    .await?;
    assert_eq!(
        kinds_and_keys(&parse(&plain).0),
        expected(&[("missing", "no-variants.jpg")]),
        "{}",
        plain.stderr
    );
    assert_eq!(plain.code, Some(0));
    let record = gcs
        .objects()
        .get(bucket, no_variants.0)
        .await?
        .expect("replicated");
    assert!(
        !record.metadata.contains_key("yuba-variants"),
        "{:?}",
        record.metadata
    );
    objects.push(no_variants);

    // The drift.
    let missing = ("missing.txt", pseudo_random_bytes(500, 2));
    stack.put(missing.0, &missing.1).await?;
    objects.push(missing);
    let stale_bytes = b"version two, longer".to_vec();
    stack.put("stale.txt", &stale_bytes).await?;
    objects.retain(|(key, _)| *key != "stale.txt");
    objects.push(("stale.txt", stale_bytes));
    // Other bytes of the same length under the old record, as a botched manual copy would.
    let replica = gcs
        .objects()
        .get(bucket, "mismatch.txt")
        .await?
        .expect("replica");
    gcs.upload(
        UploadSpec {
            bucket: bucket.to_owned(),
            name: "mismatch.txt".to_owned(),
            content_type: replica.content_type.clone(),
            metadata: replica.metadata.clone().into_iter().collect(),
            ..UploadSpec::default()
        },
        "THE ORIGINAL REPLICA CONTENT".to_owned(),
    )
    .await?;
    let tampered = gcs
        .objects()
        .get(bucket, "mismatch.txt")
        .await?
        .expect("replica");
    assert_eq!(tampered.metadata, replica.metadata);
    assert_ne!(tampered.crc32c, replica.crc32c);
    // Other bytes under a record rewritten to match them: the listing cannot tell, only the
    // content (S3's checksum, or both streams) can, and only a forced job repairs it.
    let replica = gcs
        .objects()
        .get(bucket, "forged.txt")
        .await?
        .expect("replica");
    let forged = gcs
        .upload(
            UploadSpec {
                bucket: bucket.to_owned(),
                name: "forged.txt".to_owned(),
                content_type: replica.content_type.clone(),
                metadata: replica.metadata.clone().into_iter().collect(),
                ..UploadSpec::default()
            },
            "what the replica held".to_owned(),
        )
        .await?;
    let crc32c = yuba_model::crc32c_to_base64(forged.crc32c.expect("GCS computes a crc32c"));
    gcs.objects()
        .update(
            bucket,
            "forged.txt",
            forged.generation,
            ObjectUpdate {
                metadata: vec![("yuba-crc32c".to_owned(), crc32c)],
                ..ObjectUpdate::default()
            },
        )
        .await?;
    s3.delete_object()
        .bucket(stack.source_bucket())
        .key("orphan.jpg")
        .send()
        .await?;
    objects.retain(|(key, _)| *key != "orphan.jpg");
    assert!(
        gcs.objects()
            .delete(bucket, "_variants/thumb/variant-deleted.jpg.webp", None)
            .await?
    );
    // A variant left from other content (a lost update): there, but not of these bytes.
    let outdated = "_variants/thumb/variant-outdated.jpg.webp";
    let variant = gcs.objects().get(bucket, outdated).await?.expect("variant");
    gcs.objects()
        .update(
            bucket,
            outdated,
            variant.generation,
            ObjectUpdate {
                metadata: vec![("yuba-source-sha256".to_owned(), sha256_hex(b"other"))],
                ..ObjectUpdate::default()
            },
        )
        .await?;

    let listing_drift = [
        ("missing", "missing.txt"),
        ("stale", "stale.txt"),
        ("mismatch", "mismatch.txt"),
        ("orphan", "orphan.jpg"),
        ("variants-missing", "no-variants.jpg"),
    ];
    let diff = reconcile(&stack, &["diff"], &variants, &checkpoint).await?;
    let (findings, summary) = parse(&diff);
    assert_eq!(
        kinds_and_keys(&findings),
        expected(&listing_drift),
        "diff sees what the listings show: not the variants' state, not the forged content\n{}",
        diff.stdout
    );
    assert_eq!(diff.code, Some(1), "{}", diff.stderr);
    assert_eq!(count(&summary, "in_sync"), 7, "{summary}");
    assert_eq!(count(&summary, "listed_source"), 11, "{summary}");
    assert_eq!(count(&summary, "listed_replica"), 11, "{summary}");
    assert_eq!(
        count(&summary, "listed_variants"),
        3,
        "the thumbs of sea side.jpg, orphan.jpg and variant-outdated.jpg: {summary}"
    );
    assert!(
        findings.iter().all(|f| f.get("action").is_none()),
        "diff repairs nothing: {}",
        diff.stdout
    );

    let verify = reconcile(&stack, &["verify"], &variants, &checkpoint).await?;
    let (findings, summary) = parse(&verify);
    let mut content_drift = listing_drift.to_vec();
    content_drift.push(("variants-missing", "variant-deleted.jpg"));
    content_drift.push(("variants-missing", "variant-outdated.jpg"));
    content_drift.push(("mismatch", "forged.txt"));
    assert_eq!(
        kinds_and_keys(&findings),
        expected(&content_drift),
        "verify also finds the deleted and the outdated variant, and the forged content\n{}",
        verify.stdout
    );
    assert_eq!(verify.code, Some(1), "{}", verify.stderr);
    assert_eq!(count(&summary, "verified"), 4, "{summary}");
    let deep = reconcile(&stack, &["verify", "--deep"], &variants, &checkpoint).await?;
    assert_eq!(
        kinds_and_keys(&parse(&deep).0),
        expected(&content_drift),
        "{}",
        deep.stdout
    );
    assert_eq!(deep.code, Some(1), "{}", deep.stderr);
    let detail = |key: &str| {
        findings
            .iter()
            .find(|f| f["key"] == key)
            .and_then(|f| f["detail"].as_str())
            .unwrap_or_default()
            .to_owned()
    };
    let deleted_variant = detail("variant-deleted.jpg");
    assert!(
        deleted_variant.contains("_variants/thumb/variant-deleted.jpg.webp"),
        "{deleted_variant}"
    );
    let outdated_variant = detail("variant-outdated.jpg");
    assert!(
        outdated_variant.contains(outdated) && outdated_variant.contains("other content"),
        "{outdated_variant}"
    );

    let before_repair = generations(&gcs, bucket).await?;
    let repair = reconcile(
        &stack,
        &["backfill", "--inline", "--verify", "--delete-orphans"],
        &variants,
        &checkpoint,
    )
    .await?;
    let (findings, summary) = parse(&repair);
    assert_eq!(repair.code, Some(0), "{}\n{}", repair.stdout, repair.stderr);
    assert_eq!(kinds_and_keys(&findings), expected(&content_drift));
    let done = actions(&findings);
    for (_, key) in &content_drift {
        let wanted = match *key {
            "orphan.jpg" => "deleted",
            // Its record lacks the profile: the variant is made, the original not sent again.
            "no-variants.jpg" => "variants-added",
            _ => "replicated",
        };
        assert_eq!(done[*key], wanted, "{key}: {}", repair.stdout);
    }
    assert_eq!(count(&summary, "repaired"), content_drift.len() as u64);
    assert_eq!(count(&summary, "failed"), 0);
    assert!(!checkpoint.exists(), "a finished run leaves no checkpoint");
    let after_repair = generations(&gcs, bucket).await?;
    for untouched in [
        "no-variants.jpg",
        "in sync/plain.bin",
        unicode_key,
        "in sync/streamed.bin",
        "in sync/sea side.jpg",
        "_variants/thumb/in sync/sea side.jpg.webp",
    ] {
        assert_eq!(
            after_repair.get(untouched),
            before_repair.get(untouched),
            "{untouched}'s content was in sync and is not rewritten"
        );
    }

    // In sync, deeply.
    let again = reconcile(&stack, &["verify"], &variants, &checkpoint).await?;
    let (findings, summary) = parse(&again);
    assert!(findings.is_empty(), "{}", again.stdout);
    assert_eq!(again.code, Some(0), "{}", again.stderr);
    assert_eq!(count(&summary, "verified"), objects.len() as u64);
    assert_replicas_equal_sources(&stack, &gcs, &objects).await?;
    for gone in ["orphan.jpg", "_variants/thumb/orphan.jpg.webp"] {
        assert!(
            gcs.objects().get(bucket, gone).await?.is_none(),
            "{gone} deleted with the orphan"
        );
    }
    for image in [
        "variant-deleted.jpg",
        "variant-outdated.jpg",
        "no-variants.jpg",
    ] {
        let record = gcs.objects().get(bucket, image).await?.expect("replica");
        let variant = gcs
            .objects()
            .get(bucket, &format!("_variants/thumb/{image}.webp"))
            .await?
            .unwrap_or_else(|| panic!("the thumb of {image} was made again"));
        assert_eq!(
            variant.metadata["yuba-source-sha256"],
            record.metadata["yuba-sha256"]
        );
        assert_eq!(record.metadata["yuba-variants"], "thumb.webp");
    }
    let deep = reconcile(&stack, &["verify", "--deep"], &variants, &checkpoint).await?;
    let (findings, summary) = parse(&deep);
    assert!(findings.is_empty(), "{}", deep.stdout);
    assert_eq!(deep.code, Some(0), "{}", deep.stderr);
    assert_eq!(count(&summary, "verified"), objects.len() as u64);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_backfill_resumes_without_copying_twice() -> anyhow::Result<()> {
    const OBJECTS: usize = 300;
    let stack = Stack::start("reconcile-resume", 3)?;
    let s3 = stack.s3().await;
    let gcs = stack.gcs().await?;
    let bucket = stack.replica_bucket();
    // Directories and keys between them: the listing is split into ranges listed at once, and
    // the checkpoint must still mean "every key up to here is done".
    let keys: Vec<String> = (0..OBJECTS)
        .map(|i| match i % 60 {
            0 => format!("batch/{i:04}.bin"),
            _ => format!("batch/{}/{i:04}.bin", i % 4),
        })
        .collect();
    for (chunk_index, chunk) in keys.chunks(16).enumerate() {
        let mut puts = tokio::task::JoinSet::new();
        for (index, key) in chunk.iter().enumerate() {
            let (s3, source, key) = (s3.clone(), stack.source_bucket().to_owned(), key.clone());
            let seed = (chunk_index * 16 + index) as u64;
            let body = pseudo_random_bytes(64 + seed as usize, seed);
            puts.spawn(async move {
                s3.put_object()
                    .bucket(source)
                    .key(key)
                    .body(ByteStream::from(body))
                    .send()
                    .await
            });
        }
        while let Some(put) = puts.join_next().await {
            put??;
        }
    }

    let checkpoint = stack.dir.join("resume.checkpoint.json");
    let checkpoint_arg = checkpoint.to_str().unwrap_or_default().to_owned();
    let args = [
        "backfill",
        "--inline",
        "--json",
        "--page-size",
        "10",
        "--concurrency",
        "2",
        "--max-rate",
        "40",
        "--checkpoint",
        &checkpoint_arg,
    ];
    // Stopped (SIGTERM) once a few pages are saved: it says how to go on, and exits 130.
    let mut first = start(&stack, &args, "backfill-terminated")?;
    wait_for_progress(&mut first, &checkpoint, 30).await?;
    std::process::Command::new("kill")
        .args(["-TERM", &first.id().to_string()])
        .status()?;
    let status = wait_for_exit(&mut first, Duration::from_secs(15)).await?;
    let log = std::fs::read_to_string(stack.dir.join("backfill-terminated.log"))?;
    assert_eq!(status.code(), Some(130), "{log}");
    // batch/0/, the keys directly under batch/, then batch/1/ to batch/3/.
    assert!(log.contains(r#""ranges":5"#), "{log}");
    assert!(
        log.contains(&checkpoint_arg) && log.contains("--resume"),
        "{log}"
    );
    assert!(
        checkpoint.exists(),
        "an interrupted run keeps its checkpoint"
    );
    let after_term = generations(&gcs, bucket).await?;
    assert!(
        after_term.len() < OBJECTS / 2,
        "stopped well before the end: {} replicas",
        after_term.len()
    );

    // Resumed, then killed (SIGKILL: no chance to tidy up) a few pages further on.
    let mut resume = args.to_vec();
    resume.push("--resume");
    let mut second = start(&stack, &resume, "backfill-killed")?;
    let saved = wait_for_progress(&mut second, &checkpoint, after_term.len() as u64 + 30).await?;
    second.kill()?;
    second.wait()?;
    let after_kill = generations(&gcs, bucket).await?;
    assert!(
        after_kill.len() < OBJECTS * 3 / 4,
        "interrupted well before the end: {} replicas, checkpoint {saved}",
        after_kill.len()
    );
    for (name, generation) in &after_term {
        assert_eq!(
            after_kill.get(name),
            Some(generation),
            "{name} was not copied again by the first resume"
        );
    }
    assert!(checkpoint.exists(), "the checkpoint survives the kill");
    let saved_text = std::fs::read_to_string(&checkpoint)?;

    // The checkpoint continues only the run that wrote it.
    let mut other = args.to_vec();
    other.extend(["--resume", "--prefix", "other/"]);
    let refused = stack.run(RECONCILER, &other, &[], RUN_TIMEOUT).await?;
    assert_eq!(refused.code, Some(2), "{}", refused.stderr);
    assert!(
        refused.stderr.contains(&checkpoint_arg) && refused.stderr.contains("another run"),
        "{}",
        refused.stderr
    );
    assert_eq!(
        std::fs::read_to_string(&checkpoint)?,
        saved_text,
        "a refused resume leaves the checkpoint alone"
    );

    let resumed = stack.run(RECONCILER, &resume, &[], RUN_TIMEOUT).await?;
    let (findings, summary) = parse(&resumed);
    assert_eq!(resumed.code, Some(0), "{}", resumed.stderr);
    assert_eq!(summary["resumed"], true, "{summary}");
    assert!(
        !checkpoint.exists(),
        "a finished run removes its checkpoint"
    );
    assert!(
        findings.iter().all(|f| f["action"] == "replicated"),
        "{}",
        resumed.stdout
    );
    // Counted once each across the three runs: the keys before a checkpoint were not listed
    // again, and the ones copied after it were found in sync.
    assert_eq!(
        count(&summary, "listed_source"),
        OBJECTS as u64,
        "{summary}"
    );
    assert_eq!(
        count(&summary, "missing") + count(&summary, "in_sync"),
        OBJECTS as u64,
        "{summary}"
    );
    assert_eq!(count(&summary, "repaired"), count(&summary, "missing"));
    assert!(
        findings
            .iter()
            .all(|f| !after_kill.contains_key(f["key"].as_str().unwrap_or_default())),
        "nothing replicated before the kill is copied again: {}",
        resumed.stdout
    );

    let after_resume = generations(&gcs, bucket).await?;
    assert_eq!(after_resume.len(), OBJECTS);
    for (name, generation) in &after_kill {
        assert_eq!(
            after_resume.get(name),
            Some(generation),
            "{name} was written once, not again by the resumed run"
        );
    }
    let verify = stack
        .run(
            RECONCILER,
            &["verify", "--json", "--no-checkpoint"],
            &[],
            RUN_TIMEOUT,
        )
        .await?;
    let (findings, summary) = parse(&verify);
    assert!(findings.is_empty(), "{}", verify.stdout);
    assert_eq!(verify.code, Some(0));
    assert_eq!(count(&summary, "verified"), OBJECTS as u64);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_enqueues_jobs_routed_by_size_for_the_workers() -> anyhow::Result<()> {
    let stack = Stack::start("reconcile-enqueue", 3)?;
    let s3 = stack.s3().await;
    let sqs = stack.sqs().await;
    let gcs = stack.gcs().await?;
    let bucket = stack.replica_bucket();
    let variants = [("YUBA_VARIANTS", VARIANTS)];
    let threshold = [
        ("YUBA_ROUTE_THRESHOLD_BYTES", "1000"),
        ("YUBA_VARIANTS", VARIANTS),
    ];
    let small = [
        ("small/a.txt", pseudo_random_bytes(10, 1)),
        ("small/b c.txt", pseudo_random_bytes(999, 2)),
        ("small/edge.bin", pseudo_random_bytes(1000, 3)),
    ];
    let large = [
        ("large/d.bin", pseudo_random_bytes(1001, 4)),
        ("large/e.bin", pseudo_random_bytes(300_000, 5)),
    ];
    // A replica whose source is deleted: its delete job moves no bytes and goes to Lambda.
    stack.put("gone.txt", b"soon gone").await?;
    // An image whose variant is lost: only a content check sees it, and only a forced job
    // (the worker would skip an unforced one: the record is complete) makes it again.
    let image = gradient_jpeg(160, 120, 5);
    assert!(image.len() > 1000);
    stack.put("photos/p.jpg", &image).await?;
    let seeded = stack
        .run(
            RECONCILER,
            &["backfill", "--inline", "--no-checkpoint"],
            &variants,
            RUN_TIMEOUT,
        )
        .await?;
    assert_eq!(seeded.code, Some(0), "{}", seeded.stderr);
    s3.delete_object()
        .bucket(stack.source_bucket())
        .key("gone.txt")
        .send()
        .await?;
    let thumb = "_variants/thumb/photos/p.jpg.webp";
    assert!(gcs.objects().delete(bucket, thumb, None).await?);
    for (key, body) in small.iter().chain(&large) {
        stack.put(key, body).await?;
    }

    let checkpoint = stack.dir.join("enqueue.checkpoint.json");
    let enqueue = stack
        .run(
            RECONCILER,
            &[
                "backfill",
                "--verify",
                "--delete-orphans",
                "--json",
                "--checkpoint",
                checkpoint.to_str().unwrap_or_default(),
            ],
            &threshold,
            RUN_TIMEOUT,
        )
        .await?;
    let (findings, summary) = parse(&enqueue);
    assert_eq!(enqueue.code, Some(0), "{}", enqueue.stderr);
    let done = actions(&findings);
    let mut wanted: HashMap<String, String> = small
        .iter()
        .map(|(key, _)| ((*key).to_owned(), "enqueued:lambda".to_owned()))
        .chain(
            large
                .iter()
                .map(|(key, _)| ((*key).to_owned(), "enqueued:fargate".to_owned())),
        )
        .collect();
    wanted.insert("gone.txt".to_owned(), "enqueued:lambda".to_owned());
    wanted.insert("photos/p.jpg".to_owned(), "enqueued:fargate".to_owned());
    assert_eq!(done, wanted, "{}", enqueue.stdout);
    // On a queue is not repaired: counted apart.
    assert_eq!(count(&summary, "enqueued"), 7, "{summary}");
    assert_eq!(count(&summary, "repaired"), 0, "{summary}");
    assert_eq!(count(&summary, "variants_missing"), 1, "{summary}");
    assert!(!checkpoint.exists());
    let lambda_queue = stack.var("YUBA_LAMBDA_QUEUE_URL");
    let fargate_queue = stack.var("YUBA_FARGATE_QUEUE_URL");
    assert_eq!(queue_depth(&sqs, lambda_queue).await?, 4);
    assert_eq!(queue_depth(&sqs, fargate_queue).await?, 3);
    assert!(
        gcs.objects().get(bucket, "gone.txt").await?.is_some(),
        "enqueuing changes nothing by itself"
    );

    let workers = [
        stack.spawn(
            "yuba-worker",
            "worker-lambda",
            &[
                ("YUBA_QUEUE_URL", lambda_queue),
                ("YUBA_VARIANTS", VARIANTS),
            ],
        )?,
        stack.spawn(
            "yuba-worker",
            "worker-fargate",
            &[
                ("YUBA_QUEUE_URL", fargate_queue),
                ("YUBA_VARIANTS", VARIANTS),
            ],
        )?,
    ];
    let photos = [("photos/p.jpg", image)];
    for (key, body) in small.iter().chain(&large).chain(&photos) {
        replica_of(&workers, &gcs, bucket, key, REPLICA_TIMEOUT).await?;
        assert_eq!(gcs_sha256(&gcs, bucket, key).await?, sha256_hex(body));
    }
    for (key, _) in large.iter().chain(&photos) {
        let by = logs_where(&workers, "key", key);
        assert!(
            by.iter().all(|(label, _)| *label == "worker-fargate"),
            "{key} is worked on by the Fargate worker: {by:?}"
        );
    }
    let record = gcs
        .objects()
        .get(bucket, "photos/p.jpg")
        .await?
        .expect("replica");
    let variant = gcs
        .objects()
        .get(bucket, thumb)
        .await?
        .expect("the forced job made the lost variant again");
    assert_eq!(
        variant.metadata["yuba-source-sha256"],
        record.metadata["yuba-sha256"]
    );
    eventually(REPLICA_TIMEOUT, "the orphan to be deleted", || async {
        Ok(gcs
            .objects()
            .get(bucket, "gone.txt")
            .await?
            .is_none()
            .then_some(()))
    })
    .await
    .map_err(|e| e.context(dump_logs(&workers)))?;

    for command in ["diff", "verify"] {
        let check = stack
            .run(
                RECONCILER,
                &[command, "--json", "--no-checkpoint"],
                &variants,
                RUN_TIMEOUT,
            )
            .await?;
        let (findings, summary) = parse(&check);
        assert!(findings.is_empty(), "{command}: {}", check.stdout);
        assert_eq!(check.code, Some(0), "{command}: {}", check.stderr);
        assert_eq!(count(&summary, "in_sync"), 6, "{command}: {summary}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selection_and_safety_options_limit_what_is_touched() -> anyhow::Result<()> {
    let stack = Stack::start("reconcile-select", 3)?;
    let s3 = stack.s3().await;
    let gcs = stack.gcs().await?;
    let bucket = stack.replica_bucket();
    let checkpoint = stack.dir.join("select.checkpoint.json");

    for key in ["synced/1.txt", "synced/2.txt", "orphan.txt"] {
        stack.put(key, key.as_bytes()).await?;
    }
    assert_eq!(
        reconcile(&stack, &["backfill", "--inline"], &[], &checkpoint)
            .await?
            .code,
        Some(0)
    );
    s3.delete_object()
        .bucket(stack.source_bucket())
        .key("orphan.txt")
        .send()
        .await?;
    for key in ["missing/a.txt", "missing/b.txt"] {
        stack.put(key, key.as_bytes()).await?;
    }
    let all_drift = expected(&[
        ("missing", "missing/a.txt"),
        ("missing", "missing/b.txt"),
        ("orphan", "orphan.txt"),
    ]);

    // --manifest: only the keys it names; a key found nowhere is no finding.
    let manifest = stack.dir.join("manifest.txt");
    std::fs::write(
        &manifest,
        "missing/a.txt\nsynced/1.txt\nnowhere/at-all.txt\n",
    )?;
    let manifest = manifest.to_str().unwrap_or_default();
    let diff = reconcile(&stack, &["diff", "--manifest", manifest], &[], &checkpoint).await?;
    let (findings, summary) = parse(&diff);
    assert_eq!(
        kinds_and_keys(&findings),
        expected(&[("missing", "missing/a.txt")]),
        "{}",
        diff.stdout
    );
    assert_eq!(diff.code, Some(1));
    assert_eq!(count(&summary, "listed_source"), 2, "{summary}");
    assert_eq!(count(&summary, "listed_replica"), 1, "{summary}");
    assert_eq!(count(&summary, "not_found"), 1, "{summary}");
    assert_eq!(
        count(&summary, "in_sync"),
        1,
        "a key found nowhere is not in sync: {summary}"
    );
    let backfill = reconcile(
        &stack,
        &["backfill", "--inline", "--manifest", manifest],
        &[],
        &checkpoint,
    )
    .await?;
    let (findings, _) = parse(&backfill);
    assert_eq!(backfill.code, Some(0), "{}", backfill.stderr);
    assert_eq!(
        actions(&findings),
        HashMap::from([("missing/a.txt".to_owned(), "replicated".to_owned())])
    );
    assert!(gcs.objects().get(bucket, "missing/a.txt").await?.is_some());
    assert!(
        gcs.objects().get(bucket, "missing/b.txt").await?.is_none(),
        "a key outside the manifest is not touched"
    );
    let mut drift = all_drift;
    drift.remove(&("missing".to_owned(), "missing/a.txt".to_owned()));

    // --since: sources last modified since then (orphans: as their record says).
    let past = reconcile(&stack, &["diff", "--since", "2000-01-01"], &[], &checkpoint).await?;
    assert_eq!(kinds_and_keys(&parse(&past).0), drift, "{}", past.stdout);
    // In the future: every key is outside the window, so nothing is done.
    let future = reconcile(
        &stack,
        &[
            "backfill",
            "--inline",
            "--delete-orphans",
            "--since",
            "2999-01-01",
        ],
        &[],
        &checkpoint,
    )
    .await?;
    let (findings, summary) = parse(&future);
    assert!(findings.is_empty(), "{}", future.stdout);
    assert_eq!(future.code, Some(0), "{}", future.stderr);
    assert_eq!(count(&summary, "skipped"), 5, "{summary}");
    assert_eq!(count(&summary, "repaired"), 0, "{summary}");
    assert!(gcs.objects().get(bucket, "missing/b.txt").await?.is_none());
    assert!(gcs.objects().get(bucket, "orphan.txt").await?.is_some());

    // --dry-run: says what it would do, does nothing, and leaves the checkpoint file alone.
    std::fs::write(&checkpoint, "another run's checkpoint")?;
    let dry = reconcile(
        &stack,
        &["backfill", "--inline", "--delete-orphans", "--dry-run"],
        &[],
        &checkpoint,
    )
    .await?;
    let (findings, summary) = parse(&dry);
    assert_eq!(dry.code, Some(1), "a dry run that finds drift exits 1");
    assert_eq!(summary["dry_run"], true);
    assert_eq!(
        actions(&findings),
        HashMap::from([
            ("missing/b.txt".to_owned(), "would-copy".to_owned()),
            ("orphan.txt".to_owned(), "would-delete".to_owned()),
        ])
    );
    assert_eq!(
        std::fs::read_to_string(&checkpoint)?,
        "another run's checkpoint"
    );
    std::fs::remove_file(&checkpoint)?;
    let diff = reconcile(&stack, &["diff"], &[], &checkpoint).await?;
    assert_eq!(kinds_and_keys(&parse(&diff).0), drift, "{}", diff.stdout);
    assert!(gcs.objects().get(bucket, "orphan.txt").await?.is_some());

    // Without --delete-orphans an orphan is kept, and said to be: drift left unrepaired (exit 1).
    let keep = reconcile(&stack, &["backfill", "--inline"], &[], &checkpoint).await?;
    let (findings, summary) = parse(&keep);
    assert_eq!(keep.code, Some(1), "{}", keep.stderr);
    assert_eq!(
        actions(&findings),
        HashMap::from([
            ("missing/b.txt".to_owned(), "replicated".to_owned()),
            ("orphan.txt".to_owned(), "kept".to_owned()),
        ])
    );
    assert_eq!(count(&summary, "kept"), 1);
    assert!(gcs.objects().get(bucket, "orphan.txt").await?.is_some());
    let diff = reconcile(&stack, &["diff"], &[], &checkpoint).await?;
    assert_eq!(
        kinds_and_keys(&parse(&diff).0),
        expected(&[("orphan", "orphan.txt")])
    );

    // --delete-orphans deletes what yuba wrote, never an object someone else put there, nor a
    // part of a composite upload (which may still be going on).
    gcs.upload(
        UploadSpec {
            bucket: bucket.to_owned(),
            name: "someone-elses.txt".to_owned(),
            ..UploadSpec::default()
        },
        "not a replica".to_owned(),
    )
    .await?;
    let part = "_yuba-parts/00112233445566778899aabbccddeeff/00000";
    gcs.upload_bytes(
        UploadSpec {
            bucket: bucket.to_owned(),
            name: part.to_owned(),
            metadata: vec![(yuba_model::keys::PART_OF.to_owned(), "big.bin".to_owned())],
            ..UploadSpec::default()
        },
        bytes::Bytes::from_static(b"the first part"),
    )
    .await?;
    let delete = reconcile(
        &stack,
        &["backfill", "--inline", "--delete-orphans"],
        &[],
        &checkpoint,
    )
    .await?;
    assert_eq!(
        actions(&parse(&delete).0),
        HashMap::from([
            ("orphan.txt".to_owned(), "deleted".to_owned()),
            ("someone-elses.txt".to_owned(), "kept".to_owned()),
        ])
    );
    assert_eq!(
        delete.code,
        Some(1),
        "a kept orphan is drift left: {}",
        delete.stdout
    );
    assert!(gcs.objects().get(bucket, "orphan.txt").await?.is_none());
    assert!(
        gcs.objects()
            .get(bucket, "someone-elses.txt")
            .await?
            .is_some()
    );
    assert!(gcs.objects().get(bucket, part).await?.is_some());
    assert_eq!(
        count(&parse(&delete).1, "listed_upload_parts"),
        1,
        "{}",
        delete.stdout
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_exit_2_with_a_message_and_failed_repairs_exit_1() -> anyhow::Result<()> {
    let stack = Stack::start("reconcile-errors", 3)?;
    let mut command = stack.command(RECONCILER, &[])?;
    command
        .args(["diff", "--json", "--no-checkpoint"])
        .env_remove("YUBA_SOURCE_BUCKET");
    let unset = yuba_e2e::run_to_end(command, RUN_TIMEOUT).await?;
    assert_eq!(unset.code, Some(2), "{}", unset.stderr);
    assert!(
        unset.stderr.contains("YUBA_SOURCE_BUCKET is not set"),
        "{}",
        unset.stderr
    );
    assert!(
        unset.json_lines().is_empty(),
        "no summary for a run that never started: {}",
        unset.stdout
    );

    let no_bucket = stack
        .run(
            RECONCILER,
            &["verify", "--json", "--no-checkpoint"],
            &[("YUBA_GCS_BUCKET", "no-such-replica-bucket")],
            RUN_TIMEOUT,
        )
        .await?;
    assert_eq!(no_bucket.code, Some(2), "{}", no_bucket.stderr);
    assert!(
        no_bucket.stderr.contains("no-such-replica-bucket")
            && no_bucket.stderr.contains("does not exist")
            && no_bucket.stderr.contains("YUBA_GCS_BUCKET"),
        "{}",
        no_bucket.stderr
    );

    // A source bucket that does not exist: an error, not an empty bucket.
    let no_source = stack
        .run(
            RECONCILER,
            &["diff", "--json", "--no-checkpoint"],
            &[("YUBA_SOURCE_BUCKET", "no-such-source-bucket")],
            RUN_TIMEOUT,
        )
        .await?;
    assert_eq!(no_source.code, Some(2), "{}", no_source.stderr);
    assert!(
        no_source.stderr.contains("no-such-source-bucket")
            && no_source.stderr.contains("does not exist"),
        "{}",
        no_source.stderr
    );

    let bad_time = stack
        .run(
            RECONCILER,
            &["diff", "--since", "yesterday", "--no-checkpoint"],
            &[],
            RUN_TIMEOUT,
        )
        .await?;
    assert_eq!(bad_time.code, Some(2), "{}", bad_time.stderr);
    assert!(bad_time.stderr.contains("RFC 3339"), "{}", bad_time.stderr);

    // A repair that cannot be made is a finding that failed, and exit code 1, not an error.
    stack.put("unrepaired.txt", b"no queue for me").await?;
    let lambda_queue = stack.var("YUBA_LAMBDA_QUEUE_URL");
    let no_queue = format!(
        "{}/no-such-queue",
        lambda_queue.rsplit_once('/').map_or("", |(base, _)| base)
    );
    let failed = stack
        .run(
            RECONCILER,
            &["backfill", "--json", "--no-checkpoint"],
            &[("YUBA_LAMBDA_QUEUE_URL", &no_queue)],
            RUN_TIMEOUT,
        )
        .await?;
    let (findings, summary) = parse(&failed);
    assert_eq!(failed.code, Some(1), "{}", failed.stderr);
    assert_eq!(findings.len(), 1, "{}", failed.stdout);
    assert_eq!(findings[0]["action"], "failed");
    assert!(
        findings[0]["error"]
            .as_str()
            .is_some_and(|error| error.contains("no-such-queue")),
        "{}",
        failed.stdout
    );
    assert_eq!(count(&summary, "failed"), 1);
    Ok(())
}

/// A manifest may be made from a listing of the replica bucket, variants included. A variant is
/// not a replica: listing runs leave variants out of the join, and a manifest run must not
/// take one for an orphan (and delete it with `--delete-orphans`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_that_names_a_variant_does_not_make_it_an_orphan() -> anyhow::Result<()> {
    let stack = Stack::start("reconcile-manifest-variant", 3)?;
    let gcs = stack.gcs().await?;
    let bucket = stack.replica_bucket();
    let checkpoint = stack.dir.join("manifest-variant.checkpoint.json");
    let variants = [("YUBA_VARIANTS", VARIANTS)];
    stack
        .put("photos/a.jpg", &gradient_jpeg(160, 120, 6))
        .await?;
    let seeded = reconcile(&stack, &["backfill", "--inline"], &variants, &checkpoint).await?;
    assert_eq!(seeded.code, Some(0), "{}", seeded.stderr);
    let thumb = "_variants/thumb/photos/a.jpg.webp";
    assert!(gcs.objects().get(bucket, thumb).await?.is_some());
    let manifest = stack.dir.join("manifest.txt");
    std::fs::write(&manifest, format!("photos/a.jpg\n{thumb}\n"))?;
    let manifest = manifest.to_str().unwrap_or_default();

    let backfill = reconcile(
        &stack,
        &[
            "backfill",
            "--inline",
            "--delete-orphans",
            "--manifest",
            manifest,
        ],
        &variants,
        &checkpoint,
    )
    .await?;
    let (findings, _) = parse(&backfill);
    // A variant named by a manifest is counted as a variant, never an orphan to delete.
    assert!(
        findings.is_empty(),
        "a variant named by a manifest is no orphan: {}",
        backfill.stdout
    );
    assert!(
        gcs.objects().get(bucket, thumb).await?.is_some(),
        "--delete-orphans --manifest deleted the variant {thumb}"
    );
    assert_eq!(backfill.code, Some(0), "{}", backfill.stderr);
    Ok(())
}

/// Orphan variants of each kind (original gone, made from content the original no longer
/// holds, of a profile no longer configured) are reported as `orphan-variant`, kept while
/// younger than `--orphan-variant-min-age`, and deleted by `--delete-orphans`; the variants of
/// current originals, the ones their records list included, are in sync and left alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphan_variants_of_each_kind_are_found_and_deleted() -> anyhow::Result<()> {
    let stack = Stack::start("reconcile-orphan-variants", 3)?;
    let gcs = stack.gcs().await?;
    let bucket = stack.replica_bucket();
    let checkpoint = stack.dir.join("orphan-variants.checkpoint.json");
    let thumb_only = [("YUBA_VARIANTS", VARIANTS)];
    let with_square = [(
        "YUBA_VARIANTS",
        r#"{"profiles": [{"name": "thumb", "width": 64, "format": "webp"},
                         {"name": "square", "width": 32, "height": 32, "fit": "cover",
                          "format": "webp"}]}"#,
    )];
    let thumb = |key: &str| format!("_variants/thumb/{key}.webp");
    for (key, seed) in [("keep", 1), ("gone", 2), ("text", 3)] {
        stack
            .put(&format!("photos/{key}.jpg"), &gradient_jpeg(160, 120, seed))
            .await?;
    }
    let seeded = reconcile(&stack, &["backfill", "--inline"], &thumb_only, &checkpoint).await?;
    assert_eq!(seeded.code, Some(0), "{}", seeded.stdout);
    stack
        .put("photos/old.jpg", &gradient_jpeg(160, 120, 4))
        .await?;
    let seeded = reconcile(
        &stack,
        &["backfill", "--inline", "--prefix", "photos/old.jpg"],
        &with_square,
        &checkpoint,
    )
    .await?;
    assert_eq!(seeded.code, Some(0), "{}", seeded.stdout);
    let square = "_variants/square/photos/old.jpg.webp";
    assert!(gcs.objects().get(bucket, square).await?.is_some());

    // Original gone: the source and its replica deleted, the variant left (a delete that
    // raced a write of the variants).
    stack
        .s3()
        .await
        .delete_object()
        .bucket(stack.source_bucket())
        .key("photos/gone.jpg")
        .send()
        .await?;
    gcs.objects()
        .delete(bucket, "photos/gone.jpg", None)
        .await?;
    // Other content: the photo overwritten by text, which gets no variants. The worker removes
    // the photo's variant in the same job; a removal that failed leaves it, put back here.
    let text_thumb = thumb("photos/text.jpg");
    let photos_thumb = gcs
        .objects()
        .get(bucket, &text_thumb)
        .await?
        .expect("the photo's variant");
    stack.put("photos/text.jpg", b"no longer a photo").await?;
    let overwritten = reconcile(
        &stack,
        &["backfill", "--inline", "--prefix", "photos/text.jpg"],
        &thumb_only,
        &checkpoint,
    )
    .await?;
    assert_eq!(overwritten.code, Some(0), "{}", overwritten.stdout);
    assert!(
        gcs.objects().get(bucket, &text_thumb).await?.is_none(),
        "the worker left the overwritten photo's variant"
    );
    gcs.upload(
        UploadSpec {
            bucket: bucket.to_owned(),
            name: text_thumb.clone(),
            content_type: photos_thumb.content_type.clone(),
            metadata: photos_thumb.metadata.clone().into_iter().collect(),
            ..UploadSpec::default()
        },
        "the previous photo's thumbnail".to_owned(),
    )
    .await?;
    let orphans = [thumb("photos/gone.jpg"), text_thumb, square.to_owned()];
    let in_sync = [thumb("photos/keep.jpg"), thumb("photos/old.jpg")];

    // The square profile is no longer configured.
    let diff = reconcile(&stack, &["diff"], &thumb_only, &checkpoint).await?;
    let (findings, summary) = parse(&diff);
    let orphan_findings: Findings = orphans
        .iter()
        .map(|name| ("orphan-variant".to_owned(), name.clone()))
        .collect();
    assert_eq!(
        kinds_and_keys(&findings),
        orphan_findings,
        "{}",
        diff.stdout
    );
    let details: Vec<&str> = findings
        .iter()
        .filter_map(|f| f["detail"].as_str())
        .collect();
    for expected in ["is gone", "content other than", "no longer configured"] {
        assert!(
            details.iter().any(|detail| detail.contains(expected)),
            "no finding says {expected:?}: {details:?}"
        );
    }
    assert_eq!(count(&summary, "orphan_variants"), 3, "{}", diff.stdout);
    assert_eq!(count(&summary, "listed_variants"), 5, "{}", diff.stdout);
    assert_eq!(diff.code, Some(1), "{}", diff.stderr);

    // Just made: kept, as a variant whose original is still being written would be.
    let young = reconcile(
        &stack,
        &["backfill", "--inline", "--delete-orphans"],
        &thumb_only,
        &checkpoint,
    )
    .await?;
    let (findings, _) = parse(&young);
    for finding in &findings {
        assert_eq!(finding["action"], "kept", "{}", young.stdout);
        let error = finding["error"].as_str().unwrap_or_default();
        assert!(error.contains("--orphan-variant-min-age"), "{error}");
    }
    assert_eq!(findings.len(), 3, "{}", young.stdout);
    assert_eq!(young.code, Some(1), "{}", young.stderr);

    let old_enough = ["--orphan-variant-min-age", "0"];
    let mut dry_run = vec!["backfill", "--inline", "--delete-orphans", "--dry-run"];
    dry_run.extend(old_enough);
    let dry_run = reconcile(&stack, &dry_run, &thumb_only, &checkpoint).await?;
    let planned = actions(&parse(&dry_run).0);
    let would_delete: HashMap<String, String> = orphans
        .iter()
        .map(|name| (name.clone(), "would-delete".to_owned()))
        .collect();
    assert_eq!(planned, would_delete, "{}", dry_run.stdout);
    for name in &orphans {
        assert!(
            gcs.objects().get(bucket, name).await?.is_some(),
            "--dry-run deleted {name}"
        );
    }

    let mut delete = vec!["backfill", "--inline", "--delete-orphans"];
    delete.extend(old_enough);
    let delete = reconcile(&stack, &delete, &thumb_only, &checkpoint).await?;
    let deleted: HashMap<String, String> = orphans
        .iter()
        .map(|name| (name.clone(), "deleted".to_owned()))
        .collect();
    assert_eq!(actions(&parse(&delete).0), deleted, "{}", delete.stdout);
    assert_eq!(delete.code, Some(0), "{}", delete.stderr);
    for name in &orphans {
        assert!(
            gcs.objects().get(bucket, name).await?.is_none(),
            "{name} is still there"
        );
    }
    for name in &in_sync {
        assert!(
            gcs.objects().get(bucket, name).await?.is_some(),
            "{name} was deleted"
        );
    }
    let after = reconcile(&stack, &["diff"], &thumb_only, &checkpoint).await?;
    assert_eq!(after.code, Some(0), "{}", after.stdout);
    Ok(())
}

/// The deployment canary's replicas (`_yuba-canary/...`) come from a bucket of the stack's own,
/// so the reconciler never lists their sources: they must not look like orphans, be deleted by
/// `--delete-orphans`, or make a run exit with drift. The worker's own code writes the replica
/// here, from a second bucket, as the canary's forced job does (so it carries a complete
/// record: without the prefix rule it would be a deletable "source gone" orphan).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_canarys_replicas_are_neither_orphans_nor_deleted() -> anyhow::Result<()> {
    let stack = Stack::start("reconcile-canary", 3)?;
    let gcs = stack.gcs().await?;
    let bucket = stack.replica_bucket();
    let checkpoint = stack.dir.join("canary.checkpoint.json");
    let s3 = stack.s3().await;
    let canary_bucket = "yuba-test-canary";
    s3.create_bucket().bucket(canary_bucket).send().await?;
    let canary_key = format!("{}probe.txt", yuba_model::CANARY_PREFIX);
    s3.put_object()
        .bucket(canary_bucket)
        .key(&canary_key)
        .body(ByteStream::from_static(b"canary"))
        .send()
        .await?;
    let job = yuba_model::Job::Replicate(yuba_model::ReplicateJob {
        bucket: canary_bucket.to_owned(),
        key: canary_key.clone(),
        version_id: None,
        etag: None,
        size: None,
        sequencer: None,
        event_time: None,
        force: true,
    });
    let replicator = stack
        .replicator(
            stack.var("AWS_ENDPOINT_URL"),
            &[("YUBA_CANARY_BUCKET", canary_bucket)],
        )
        .await?;
    // The worker does not refuse the prefix (it does refuse `_yuba-parts/`).
    let outcome = replicator.run(&job).await?;
    assert_eq!(outcome.as_str(), "replicated", "{outcome:?}");
    assert!(gcs.objects().get(bucket, &canary_key).await?.is_some());
    // A real orphan beside it, so the run is seen to delete orphans at all.
    stack.put("gone.txt", b"short-lived").await?;
    let seeded = reconcile(&stack, &["backfill", "--inline"], &[], &checkpoint).await?;
    assert_eq!(seeded.code, Some(0), "{}", seeded.stdout);
    s3.delete_object()
        .bucket(stack.source_bucket())
        .key("gone.txt")
        .send()
        .await?;

    let diff = reconcile(&stack, &["diff"], &[], &checkpoint).await?;
    let (findings, summary) = parse(&diff);
    assert_eq!(
        kinds_and_keys(&findings),
        expected(&[("orphan", "gone.txt")]),
        "{}",
        diff.stdout
    );
    assert_eq!(count(&summary, "listed_canary"), 1, "{}", diff.stdout);

    let delete = reconcile(
        &stack,
        &["backfill", "--inline", "--delete-orphans"],
        &[],
        &checkpoint,
    )
    .await?;
    assert_eq!(
        actions(&parse(&delete).0),
        HashMap::from([("gone.txt".to_owned(), "deleted".to_owned())]),
        "{}",
        delete.stdout
    );
    assert_eq!(delete.code, Some(0), "{}", delete.stdout);
    assert!(gcs.objects().get(bucket, "gone.txt").await?.is_none());
    assert!(
        gcs.objects().get(bucket, &canary_key).await?.is_some(),
        "--delete-orphans deleted the canary's replica {canary_key}"
    );
    Ok(())
}

/// The scheduled run (`backfill --verify-enqueued`): a job on a queue is not a repair until the
/// key is found in sync once the workers took it. With workers that fail every job, the run
/// exits 1 and counts each key failed with what it still is; with workers that work, the same
/// run counts them repaired, and does not wait for queues that other work keeps busy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_that_verifies_what_it_enqueued_tells_failed_jobs_from_repairs()
-> anyhow::Result<()> {
    // A failing job goes to its DLQ at its second receive, so the queue empties soon.
    let stack = Stack::start("reconcile-verify-enqueued", 1)?;
    let checkpoint = stack.dir.join("verify-enqueued.checkpoint.json");
    for key in ["enqueued/a.txt", "enqueued/b.txt"] {
        stack.put(key, key.as_bytes()).await?;
    }
    let queue = stack.var("YUBA_LAMBDA_QUEUE_URL").to_owned();
    let args = ["backfill", "--verify-enqueued", "60"];

    // Workers that fail every job: the replica bucket they write to does not exist.
    let failing = stack.spawn(
        "yuba-worker",
        "failing-worker",
        &[
            ("YUBA_QUEUE_URL", &queue),
            ("YUBA_GCS_BUCKET", "no-such-replica-bucket"),
        ],
    )?;
    let run = reconcile(&stack, &args, &[], &checkpoint).await?;
    let (findings, summary) = parse(&run);
    assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
    assert_eq!(
        (count(&summary, "enqueued"), count(&summary, "rechecked")),
        (2, 2),
        "{summary}"
    );
    assert_eq!(
        (count(&summary, "failed"), count(&summary, "repaired")),
        (2, 0),
        "{summary}"
    );
    let failed: Vec<&Value> = findings
        .iter()
        .filter(|f| f["action"] == "failed")
        .collect();
    assert_eq!(failed.len(), 2, "{}", run.stdout);
    for finding in failed {
        let error = finding["error"].as_str().unwrap_or_default();
        assert!(error.starts_with("still missing"), "{error}");
    }
    drop(failing);

    // Working workers, and a message on the other work queue that no worker takes: the queues
    // never empty, yet the run ends once the keys are found in sync, long before its wait of
    // ten minutes would (the run's own timeout is a minute).
    let sqs = stack.sqs().await;
    let busy = stack.var("YUBA_FARGATE_QUEUE_URL");
    sqs.send_message()
        .queue_url(busy)
        .message_body("other work, for a pool that is not running")
        .send()
        .await?;
    let _worker = stack.spawn("yuba-worker", "worker", &[("YUBA_QUEUE_URL", &queue)])?;
    let run = reconcile(
        &stack,
        &["backfill", "--verify-enqueued", "600"],
        &[],
        &checkpoint,
    )
    .await?;
    let (findings, summary) = parse(&run);
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    assert_eq!(
        queue_depth(&sqs, busy).await?,
        1,
        "the other work is still there"
    );
    assert_eq!(
        (count(&summary, "enqueued"), count(&summary, "repaired")),
        (2, 2),
        "{summary}"
    );
    assert_eq!(count(&summary, "failed"), 0, "{summary}");
    assert!(
        findings.iter().all(|f| f["action"] != "failed"),
        "{}",
        run.stdout
    );
    Ok(())
}

/// Metadata follows the source (issue 19, promise 4), for the reconciler: an in-place change of
/// a source's headers and user metadata that no event brought (no worker runs here) is what
/// `verify --metadata` reports as `attributes`, where `verify` alone sees nothing; a record
/// written without the attributes' digest cannot show them current and is drift too. `backfill
/// --verify --metadata --inline` brings the replicas' attributes up to date in a metadata
/// update: the same generation, no byte sent again. Then the run is clean.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_metadata_finds_attribute_drift_and_backfill_repairs_it_without_a_copy()
-> anyhow::Result<()> {
    let stack = Stack::start("reconcile-attributes", 3)?;
    let s3 = stack.s3().await;
    let gcs = stack.gcs().await?;
    let (source, bucket) = (stack.source_bucket(), stack.replica_bucket());
    let checkpoint = stack.dir.join("attributes.checkpoint.json");
    let (changed, undigested, untouched) = (
        "notes/changed.txt",
        "notes/undigested.txt",
        "notes/untouched.txt",
    );
    for key in [changed, undigested, untouched] {
        s3.put_object()
            .bucket(source)
            .key(key)
            .body(ByteStream::from(key.as_bytes().to_vec()))
            .content_type("text/plain")
            .cache_control("max-age=60")
            .metadata("owner", "ann")
            .send()
            .await?;
    }
    let seeded = reconcile(&stack, &["backfill", "--inline"], &[], &checkpoint).await?;
    assert_eq!(seeded.code, Some(0), "{}", seeded.stdout);

    // S3's way to change an object's metadata; its event waits on a queue no worker reads.
    s3.copy_object()
        .bucket(source)
        .key(changed)
        .copy_source(format!("{source}/{changed}"))
        .metadata_directive(aws_sdk_s3::types::MetadataDirective::Replace)
        .content_type("text/markdown")
        .cache_control("public, max-age=3600")
        .metadata("owner", "bob")
        .send()
        .await?;
    // A replica written before yuba kept the attributes' digest: the same content and record,
    // less that key (fake-gcs-server keeps a key a PATCH removes, as an empty string).
    let written = gcs
        .objects()
        .get(bucket, undigested)
        .await?
        .expect("replica");
    let mut metadata: Vec<(String, String)> = written.metadata.into_iter().collect();
    metadata.retain(|(key, _)| key != yuba_model::keys::SOURCE_ATTRIBUTES);
    gcs.upload(
        UploadSpec {
            bucket: bucket.to_owned(),
            name: undigested.to_owned(),
            content_type: written.content_type,
            cache_control: written.cache_control,
            metadata,
            ..UploadSpec::default()
        },
        undigested.to_owned(),
    )
    .await?;
    let before = HashMap::from([
        (
            changed,
            gcs.objects().get(bucket, changed).await?.expect("replica"),
        ),
        (
            undigested,
            gcs.objects()
                .get(bucket, undigested)
                .await?
                .expect("replica"),
        ),
    ]);

    let content_only = reconcile(&stack, &["verify"], &[], &checkpoint).await?;
    assert_eq!(content_only.code, Some(0), "{}", content_only.stdout);
    let verify = reconcile(&stack, &["verify", "--metadata"], &[], &checkpoint).await?;
    let (findings, summary) = parse(&verify);
    let drift = expected(&[("attributes", changed), ("attributes", undigested)]);
    assert_eq!(kinds_and_keys(&findings), drift, "{}", verify.stdout);
    assert_eq!(verify.code, Some(1), "{}", verify.stderr);
    assert_eq!(count(&summary, "attributes"), 2, "{summary}");
    assert_eq!(count(&summary, "verified"), 1, "{summary}");
    let detail = |key: &str| {
        findings
            .iter()
            .find(|f| f["key"] == key)
            .map(|f| f["detail"].as_str().unwrap_or_default().to_owned())
            .unwrap_or_default()
    };
    assert!(
        detail(changed).contains("\"text/markdown\""),
        "{}",
        verify.stdout
    );
    assert!(
        detail(undigested).contains("no digest"),
        "{}",
        verify.stdout
    );
    // --deep streams the content and reads the attributes with a HEAD of their own.
    let deep = reconcile(
        &stack,
        &["verify", "--deep", "--metadata"],
        &[],
        &checkpoint,
    )
    .await?;
    assert_eq!(kinds_and_keys(&parse(&deep).0), drift, "{}", deep.stdout);

    let repair = ["backfill", "--inline", "--verify", "--metadata"];
    let dry_run = reconcile(
        &stack,
        &[&repair[..], &["--dry-run"]].concat(),
        &[],
        &checkpoint,
    )
    .await?;
    let would: HashMap<String, String> = [changed, undigested]
        .map(|key| (key.to_owned(), "would-update".to_owned()))
        .into();
    assert_eq!(actions(&parse(&dry_run).0), would, "{}", dry_run.stdout);

    let uploads = |requests: &[String]| {
        requests
            .iter()
            .filter(|r| r.starts_with("POST /upload/"))
            .count()
    };
    let uploads_before = uploads(&stack.gcs_requests()?);
    let backfill = reconcile(&stack, &repair, &[], &checkpoint).await?;
    let (findings, summary) = parse(&backfill);
    let updated: HashMap<String, String> = [changed, undigested]
        .map(|key| (key.to_owned(), "attributes-updated".to_owned()))
        .into();
    assert_eq!(actions(&findings), updated, "{}", backfill.stdout);
    assert_eq!(backfill.code, Some(0), "{}", backfill.stderr);
    assert_eq!(count(&summary, "repaired"), 2, "{summary}");
    assert_eq!(count(&summary, "bytes_copied"), 0, "{summary}");
    assert_eq!(
        uploads(&stack.gcs_requests()?),
        uploads_before,
        "no content sent"
    );
    for (key, was) in &before {
        let now = gcs.objects().get(bucket, key).await?.expect("replica");
        assert_eq!(now.generation, was.generation, "{key}: the same content");
        let requests = stack.gcs_requests()?;
        let name = key.rsplit('/').next().unwrap_or(key);
        assert!(
            requests
                .iter()
                .any(|r| r.starts_with("PATCH ") && r.contains(name)),
            "{key}: {requests:#?}"
        );
        let record = yuba_model::ReplicaRecord::from_metadata(&now.metadata)?.expect("record");
        assert!(record.source.attributes.is_some(), "{key}: {record:?}");
    }
    let followed = gcs.objects().get(bucket, changed).await?.expect("replica");
    assert_eq!(followed.content_type.as_deref(), Some("text/markdown"));
    assert_eq!(
        followed.cache_control.as_deref(),
        Some("public, max-age=3600")
    );
    assert_eq!(
        followed.metadata.get("owner").map(String::as_str),
        Some("bob")
    );

    let clean = reconcile(&stack, &["verify", "--metadata"], &[], &checkpoint).await?;
    let (findings, summary) = parse(&clean);
    assert!(findings.is_empty(), "{}", clean.stdout);
    assert_eq!(clean.code, Some(0), "{}", clean.stderr);
    assert_eq!(count(&summary, "verified"), 3, "{summary}");
    Ok(())
}
