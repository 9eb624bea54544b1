//! Smoke tests of what AWS runs: the arm64 binaries `make package` put into the Lambda zip and
//! the Fargate image (scripts/package.py), run with qemu-user against the local stack, each
//! replicating a photo with its variant (and the delivery origin's zip serving it back). The zip's bootstrap runs under the loopback Lambda
//! Runtime API; the image's worker and reconciler run from the unpacked image as its non-root
//! user on a read-only root, as ECS runs them.
//!
//! They need the package, so they are ignored by a plain `cargo test`; `make test` builds the
//! package and runs them (`cargo nextest run -p yuba-e2e --run-ignored only -E 'test(/^package::/)'`).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use anyhow::ensure;
use serde_json::json;
use yuba_delivery::path::{original_path, variant_path};
use yuba_e2e::lambda_api::{
    InvocationResult, RuntimeApi, function_url_event, s3_notification, sqs_record,
};
use yuba_e2e::package::{ARM64_SYSROOT, Package, arm64};
use yuba_e2e::{
    Stack, THUMBNAIL_VARIANTS, dump_logs, first_message, gcs_sha256, gradient_jpeg, replica_of,
    replicate, run_to_end, sha256_hex,
};

/// Emulated arm64 is several times slower than the machine: generous, but bounded.
const TIMEOUT: Duration = Duration::from_secs(120);
const KEY: &str = "smoke/photo.jpg";
const VARIANT: &str = "_variants/thumb/smoke/photo.jpg";

/// Uploads the photo the smoke tests replicate; returns its sha256 and size.
async fn upload_photo(stack: &Stack) -> anyhow::Result<(String, usize)> {
    let photo = gradient_jpeg(640, 480, 7);
    stack.put(KEY, &photo).await?;
    Ok((sha256_hex(&photo), photo.len()))
}

/// The replica holds the photo's bytes and its variant exists.
async fn assert_replicated(
    stack: &Stack,
    workers: &[yuba_e2e::Process],
    sha256: &str,
) -> anyhow::Result<()> {
    let gcs = stack.gcs().await?;
    let bucket = stack.replica_bucket();
    replica_of(workers, &gcs, bucket, KEY, TIMEOUT).await?;
    assert_eq!(gcs_sha256(&gcs, bucket, KEY).await?, sha256);
    let variant = gcs.objects().get(bucket, VARIANT).await?;
    ensure!(variant.is_some(), "no {VARIANT}: {}", dump_logs(workers));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs `make package`; `make test` runs it after packaging"]
async fn the_lambda_zips_carry_a_photo_from_its_notification_to_its_replica() -> anyhow::Result<()>
{
    let package = Package::open()?;
    let stack = Stack::start("package-lambda", 3)?;
    let sysroot = Path::new(ARM64_SYSROOT);
    // Each function under its own Runtime API, as Lambda runs them.
    let mut functions = Vec::new();
    for (bin, extra) in [
        ("yuba-ingest", None),
        ("yuba-worker", Some(("YUBA_VARIANTS", THUMBNAIL_VARIANTS))),
        ("yuba-serve", Some(("YUBA_VARIANTS", THUMBNAIL_VARIANTS))),
    ] {
        let bootstrap = package.unzip_lambda(bin, &stack.dir.join(bin))?;
        // Lambda runs the bootstrap as unzipped: the zip must record it as executable.
        let mode = std::fs::metadata(&bootstrap)?.permissions().mode();
        assert_eq!(
            mode & 0o111,
            0o111,
            "{bin}'s bootstrap unzips with mode {mode:o}"
        );
        let api = RuntimeApi::start().await?;
        let env = api.env();
        let mut overrides: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        overrides.extend(extra);
        let process =
            stack.spawn_command(stack.configure(arm64(&bootstrap, sysroot), &overrides), bin)?;
        functions.push((api, process));
    }
    let [
        (ingest_api, ingest),
        (worker_api, worker),
        (serve_api, serve),
    ] = <[_; 3]>::try_from(functions).map_err(|_| anyhow::anyhow!("three functions"))?;
    let (ingest, worker, serve) = ([ingest], [worker], [serve]);

    // S3 notifies ingest, which routes the photo's job to the Lambda work queue...
    let (sha256, size) = upload_photo(&stack).await?;
    // The job copies what S3 holds now: the ETag of the event only lets a job skip work done.
    let notification = s3_notification(stack.source_bucket(), KEY, size, "etag-of-the-event");
    assert_eq!(
        ingest_api
            .invoke(&notification, TIMEOUT)
            .await
            .map_err(|e| e.context(dump_logs(&ingest)))?,
        InvocationResult::Response(serde_json::Value::Null),
        "{}",
        dump_logs(&ingest)
    );
    let sqs = stack.sqs().await;
    let job = first_message(&sqs, stack.var("YUBA_LAMBDA_QUEUE_URL"), TIMEOUT).await?;

    // ... whose trigger hands it to the worker.
    let answer = worker_api
        .invoke(
            &json!({"Records": [sqs_record("photo", job.body().unwrap_or_default())]}),
            TIMEOUT,
        )
        .await
        .map_err(|e| e.context(dump_logs(&worker)))?;
    assert_eq!(
        answer,
        InvocationResult::Response(json!({"batchItemFailures": []})),
        "{}",
        dump_logs(&worker)
    );
    assert_replicated(&stack, &worker, &sha256).await?;

    // The delivery origin's function URL streams the replica and its variant back.
    for (path, served) in [
        (original_path(KEY), "original"),
        (variant_path("thumb", KEY), "hit"),
    ] {
        let answer = serve_api
            .invoke(&function_url_event("GET", &path, &[]), TIMEOUT)
            .await
            .map_err(|e| e.context(dump_logs(&serve)))?;
        let InvocationResult::Streamed { prelude, body } = answer else {
            anyhow::bail!("GET {path}: {answer:?}\n{}", dump_logs(&serve));
        };
        assert_eq!(
            prelude["statusCode"],
            200,
            "GET {path}: {}",
            dump_logs(&serve)
        );
        assert_eq!(prelude["headers"]["x-yuba-served"], served, "GET {path}");
        if served == "original" {
            assert_eq!(sha256_hex(&body), sha256);
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs `make package`; `make test` runs it after packaging"]
async fn the_image_runs_the_worker_and_the_reconciler_as_its_user_on_a_read_only_root()
-> anyhow::Result<()> {
    let package = Package::open()?;
    let stack = Stack::start("package-image", 3)?;
    let image = package.unpack_image(&stack.dir.join("image"))?;
    ensure!(
        !image.user.starts_with("0:"),
        "the image runs as root ({})",
        image.user
    );
    // TLS to AWS and Google needs the roots the image names (the local stack is plain HTTP).
    let (_, ca_file) = image
        .env
        .iter()
        .find(|(name, _)| name == "SSL_CERT_FILE")
        .ok_or_else(|| anyhow::anyhow!("the image names no SSL_CERT_FILE"))?;
    let bundle = std::fs::read_to_string(image.rootfs.join(ca_file.trim_start_matches('/')))?;
    let roots = bundle.matches("-----BEGIN CERTIFICATE-----").count();
    ensure!(roots > 100, "{ca_file} holds {roots} certificates");

    // The Fargate worker: long-polls its queue, as the service's task does.
    let queue = stack.var("YUBA_FARGATE_QUEUE_URL").to_owned();
    let mut worker = [stack.spawn_command(
        stack.configure(
            image.command("/usr/local/bin/yuba-worker")?,
            &[
                ("YUBA_QUEUE_URL", queue.as_str()),
                ("YUBA_VARIANTS", THUMBNAIL_VARIANTS),
            ],
        ),
        "worker",
    )?];
    let (sha256, _) = upload_photo(&stack).await?;
    stack
        .sqs()
        .await
        .send_message()
        .queue_url(&queue)
        .message_body(replicate(stack.source_bucket(), KEY).to_message())
        .send()
        .await?;
    assert_replicated(&stack, &worker, &sha256).await?;
    worker[0].terminate(Duration::from_secs(30))?;

    // The scheduled reconciler, with the schedule's arguments (cdk/lib/reconciler.ts,
    // RECONCILER_COMMAND): everything is in sync, and it needs nothing it cannot write.
    let reconciler = |args: &[&str]| -> anyhow::Result<std::process::Command> {
        let mut command = stack.configure(
            image.command("/usr/local/bin/yuba-reconciler")?,
            &[("YUBA_VARIANTS", THUMBNAIL_VARIANTS)],
        );
        command.args(args);
        Ok(command)
    };
    let scheduled = run_to_end(
        reconciler(&["backfill", "--json", "--no-checkpoint"])?,
        TIMEOUT,
    )
    .await?;
    assert_eq!(scheduled.code, Some(0), "{scheduled:?}");
    ensure!(
        !scheduled.stderr.contains("without a checkpoint"),
        "{}",
        scheduled.stderr
    );

    // The control: the root really is read-only to it. With its default checkpoint (a file in
    // the working directory) the same program fails, as the scheduled task did before it ran
    // with --no-checkpoint.
    let with_checkpoint = run_to_end(reconciler(&["diff", "--json"])?, TIMEOUT).await?;
    assert_eq!(with_checkpoint.code, Some(2), "{with_checkpoint:?}");
    ensure!(
        with_checkpoint.stderr.contains(
            "cannot write the checkpoint .yuba-reconciler-diff.json: Read-only file system"
        ),
        "expected the checkpoint write to fail on the read-only root:\n{}",
        with_checkpoint.stderr
    );
    Ok(())
}
