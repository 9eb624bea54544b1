//! Upload through the S3 API, and the replica appears in GCS through the real notification →
//! ingest → work queue → worker path.

use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use yuba_e2e::{
    Stack, dump_logs, eventually, gcs_sha256, logs_where, pseudo_random_bytes, queue_depth,
    replica_of, sha256_hex,
};

const REPLICA_TIMEOUT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_are_replicated_byte_for_byte_with_their_metadata() -> anyhow::Result<()> {
    let stack = Stack::start("bytes", 3)?;
    let pipeline = stack.spawn_pipeline(&[
        ("YUBA_UPLOAD_CHUNK_BYTES", "1048576"),
        ("YUBA_GCS_COMPOSE_THRESHOLD_BYTES", "16777216"),
    ])?;
    let s3 = stack.s3().await;
    let gcs = stack.gcs().await?;

    let long_key = format!("long/{}", "ü".repeat(497)); // 5 + 994 = 999 bytes
    let mut objects: Vec<(String, Vec<u8>)> = vec![
        (
            "photos/with space.jpg".into(),
            pseudo_random_bytes(40_000, 1),
        ),
        ("photos/plus+sign.jpg".into(), pseudo_random_bytes(1, 2)),
        ("photos/100%.jpg".into(), pseudo_random_bytes(3_000, 3)),
        (
            "photos/ünïcödé/日本語.png".into(),
            pseudo_random_bytes(70_000, 4),
        ),
        (long_key.clone(), pseudo_random_bytes(10, 5)),
        ("empty".into(), Vec::new()),
        // Larger than the 1 MiB chunk, smaller than the 16 MiB compose threshold: streamed
        // through a resumable upload.
        (
            "large/five.bin".into(),
            pseudo_random_bytes(5 * 1024 * 1024, 9),
        ),
        // Over the threshold: uploaded in 50 parts composed into the replica, on the Fargate
        // queue.
        (
            "large/fifty.bin".into(),
            pseudo_random_bytes(50 * 1024 * 1024, 6),
        ),
    ];
    assert_eq!(long_key.len(), 999);
    for (key, body) in &objects {
        s3.put_object()
            .bucket(stack.source_bucket())
            .key(key)
            .content_type("image/jpeg")
            .cache_control("public, max-age=31536000")
            .content_disposition("inline")
            .metadata("owner", "team-photos")
            .body(ByteStream::from(body.clone()))
            .send()
            .await?;
    }
    // A key that differs from another only by its encoding must not be confused with it.
    objects.push(("photos/with+space.jpg".into(), pseudo_random_bytes(5, 7)));
    let (key, body) = objects.last().cloned().unwrap_or_default();
    s3.put_object()
        .bucket(stack.source_bucket())
        .key(&key)
        .body(ByteStream::from(body))
        .send()
        .await?;

    for (key, body) in &objects {
        let replica = replica_of(
            &pipeline,
            &gcs,
            stack.replica_bucket(),
            key,
            REPLICA_TIMEOUT,
        )
        .await?;
        let expected_sha256 = sha256_hex(body);
        assert_eq!(
            gcs_sha256(&gcs, stack.replica_bucket(), key).await?,
            expected_sha256,
            "content of {key:?}"
        );
        assert_eq!(replica.size, body.len() as u64, "{key:?}");
        let meta = &replica.metadata;
        assert_eq!(meta["yuba-sha256"], expected_sha256);
        assert_eq!(meta["yuba-source-key"], *key);
        assert_eq!(meta["yuba-source-bucket"], stack.source_bucket());
        assert_eq!(meta["yuba-source-size"], body.len().to_string());
        assert_eq!(
            meta["yuba-source-etag"],
            hex::encode(md5_of(body)),
            "a single-part ETag is the MD5"
        );
        assert_eq!(
            Some(meta["yuba-crc32c"].as_str()),
            replica.crc32c.map(yuba_model::crc32c_to_base64).as_deref(),
            "the recorded crc32c is the one GCS computed"
        );
        assert!(meta.contains_key("yuba-replicated-at"));
        assert!(meta.contains_key("yuba-source-last-modified"));
        if key != "photos/with+space.jpg" {
            assert_eq!(meta["owner"], "team-photos", "user metadata of {key:?}");
            assert_eq!(
                replica.content_type.as_deref(),
                Some("image/jpeg"),
                "{key:?}"
            );
        }
    }

    // One request per object held in memory, the content type in it; the resumable upload gets
    // a single update after it, for its digests; the composed object is made with its complete
    // record and never updated.
    let requests = stack.gcs_requests()?;
    let patches: Vec<&String> = requests
        .iter()
        .filter(|request| request.starts_with("PATCH "))
        .collect();
    assert!(
        patches.len() == 1 && patches[0].contains("/o/large%2Ffive.bin?"),
        "only the resumable upload is updated, once: {patches:?}"
    );
    let composes: Vec<&String> = requests
        .iter()
        .filter(|request| request.contains("/compose"))
        .collect();
    assert!(
        composes.len() == 2
            && composes.iter().all(|r| r.starts_with("POST "))
            && composes[1].contains("/o/large%2Ffifty.bin/compose"),
        "19 of the 50 parts into one, then that and the other 31 into the replica: {composes:?}"
    );
    let query = yuba_gcs::ListQuery {
        prefix: yuba_gcs::PARTS_PREFIX,
        page_size: 10,
        ..yuba_gcs::ListQuery::default()
    };
    let left = gcs
        .objects()
        .list(stack.replica_bucket(), &query)
        .await?
        .objects;
    assert!(left.is_empty(), "temporaries left: {left:?}");

    let fargate_jobs = logs_where(&pipeline, "outcome", "replicated")
        .into_iter()
        .filter(|(label, _)| *label == "worker-fargate")
        .count();
    assert_eq!(
        fargate_jobs, 1,
        "only the 50 MiB object is routed to Fargate"
    );
    for key in ["large/five.bin", "large/fifty.bin"] {
        let streamed = logs_where(&pipeline, "key", key);
        assert!(
            streamed
                .iter()
                .any(|(_, line)| line.get("streamed") == Some(&serde_json::Value::Bool(true))),
            "{key} was streamed: {streamed:?}"
        );
    }
    Ok(())
}

fn md5_of(bytes: &[u8]) -> [u8; 16] {
    use md5::{Digest, Md5};
    Md5::digest(bytes).into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_keep_the_http_headers_of_their_source() -> anyhow::Result<()> {
    let stack = Stack::start("headers", 3)?;
    let pipeline = stack.spawn_pipeline(&[])?;
    let s3 = stack.s3().await;
    let gcs = stack.gcs().await?;
    s3.put_object()
        .bucket(stack.source_bucket())
        .key("styles/site.css.gz")
        .content_type("text/css")
        .content_encoding("gzip")
        .content_disposition("attachment; filename=\"site.css\"")
        .cache_control("no-cache")
        .content_language("en")
        .metadata("origin", "build-42")
        .metadata("yuba-sha256", "forged by the uploader")
        .body(ByteStream::from_static(b"not really gzip"))
        .send()
        .await?;
    let replica = replica_of(
        &pipeline,
        &gcs,
        stack.replica_bucket(),
        "styles/site.css.gz",
        REPLICA_TIMEOUT,
    )
    .await?;
    assert_eq!(replica.content_type.as_deref(), Some("text/css"));
    assert_eq!(replica.metadata["origin"], "build-42");
    assert_eq!(
        replica.metadata["yuba-sha256"],
        sha256_hex(b"not really gzip"),
        "user metadata cannot forge the record"
    );
    let resource = gcs_resource(&stack, "styles/site.css.gz").await?;
    assert_eq!(resource["contentEncoding"], "gzip");
    assert_eq!(
        resource["contentDisposition"],
        "attachment; filename=\"site.css\""
    );
    assert_eq!(resource["cacheControl"], "no-cache");
    assert_eq!(resource["contentLanguage"], "en");
    Ok(())
}

/// The raw JSON API resource, for attributes the adapter does not expose.
async fn gcs_resource(stack: &Stack, name: &str) -> anyhow::Result<serde_json::Value> {
    let url = format!(
        "{}/storage/v1/b/{}/o/{}",
        stack.var("YUBA_GCS_ENDPOINT"),
        stack.replica_bucket(),
        name.replace('/', "%2F")
    );
    let body = tokio::task::spawn_blocking(move || -> anyhow::Result<String> {
        let output = std::process::Command::new("curl")
            .args(["-sf", &url])
            .output()?;
        anyhow::ensure!(output.status.success(), "GET {url} failed");
        Ok(String::from_utf8(output.stdout)?)
    })
    .await??;
    Ok(serde_json::from_str(&body)?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_event_twice_uploads_once() -> anyhow::Result<()> {
    let stack = Stack::start("twice", 3)?;
    let pipeline = stack.spawn_pipeline(&[])?;
    let s3 = stack.s3().await;
    let sqs = stack.sqs().await;
    let gcs = stack.gcs().await?;
    let body = pseudo_random_bytes(123_456, 8);
    let put = s3
        .put_object()
        .bucket(stack.source_bucket())
        .key("dup/photo.jpg")
        .body(ByteStream::from(body.clone()))
        .send()
        .await?;
    let first = replica_of(
        &pipeline,
        &gcs,
        stack.replica_bucket(),
        "dup/photo.jpg",
        REPLICA_TIMEOUT,
    )
    .await?;

    // The notification S3 sent, delivered a second time (SQS is at-least-once).
    let etag = put.e_tag().unwrap_or_default().trim_matches('"').to_owned();
    let again = serde_json::json!({"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
        "eventTime": "2026-11-22T12:00:00.000Z", "eventName": "ObjectCreated:Put",
        "s3": {"s3SchemaVersion": "1.0", "bucket": {"name": stack.source_bucket()},
               "object": {"key": "dup/photo.jpg", "size": body.len(), "eTag": etag}}}]});
    sqs.send_message()
        .queue_url(stack.var("YUBA_EVENTS_QUEUE_URL"))
        .message_body(again.to_string())
        .send()
        .await?;
    eventually(
        REPLICA_TIMEOUT,
        "the second delivery to be skipped",
        || async {
            Ok((!logs_where(&pipeline, "outcome", "already-replicated").is_empty()).then_some(()))
        },
    )
    .await
    .map_err(|e| e.context(dump_logs(&pipeline)))?;
    let after = gcs
        .objects()
        .get(stack.replica_bucket(), "dup/photo.jpg")
        .await?
        .expect("the replica is still there");
    assert_eq!(after.generation, first.generation, "no second upload");
    assert_eq!(logs_where(&pipeline, "outcome", "replicated").len(), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletes_are_mirrored_unless_switched_off() -> anyhow::Result<()> {
    let stack = Stack::start("delete", 3)?;
    let mut pipeline = stack.spawn_pipeline(&[])?;
    let s3 = stack.s3().await;
    let gcs = stack.gcs().await?;
    let bucket = stack.replica_bucket();
    for key in ["gone.jpg", "kept.jpg"] {
        s3.put_object()
            .bucket(stack.source_bucket())
            .key(key)
            .body(ByteStream::from_static(b"bytes"))
            .send()
            .await?;
        replica_of(&pipeline, &gcs, bucket, key, REPLICA_TIMEOUT).await?;
    }

    s3.delete_object()
        .bucket(stack.source_bucket())
        .key("gone.jpg")
        .send()
        .await?;
    eventually(REPLICA_TIMEOUT, "the replica to be deleted", || async {
        Ok(gcs
            .objects()
            .get(bucket, "gone.jpg")
            .await?
            .is_none()
            .then_some(()))
    })
    .await
    .map_err(|e| e.context(dump_logs(&pipeline)))?;

    // With mirroring off, a delete leaves the replica alone.
    for process in pipeline
        .iter_mut()
        .filter(|p| p.label.starts_with("worker"))
    {
        process.terminate(Duration::from_secs(15))?;
    }
    let worker = stack.spawn(
        "yuba-worker",
        "worker-keep",
        &[
            ("YUBA_QUEUE_URL", stack.var("YUBA_LAMBDA_QUEUE_URL")),
            ("YUBA_MIRROR_DELETES", "false"),
        ],
    )?;
    s3.delete_object()
        .bucket(stack.source_bucket())
        .key("kept.jpg")
        .send()
        .await?;
    let workers = [worker];
    eventually(REPLICA_TIMEOUT, "the delete job to be handled", || async {
        Ok((!logs_where(&workers, "outcome", "delete-not-mirrored").is_empty()).then_some(()))
    })
    .await
    .map_err(|e| e.context(dump_logs(&workers)))?;
    assert!(gcs.objects().get(bucket, "kept.jpg").await?.is_some());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_for_a_vanished_object_is_acknowledged() -> anyhow::Result<()> {
    let stack = Stack::start("vanished", 3)?;
    let sqs = stack.sqs().await;
    let job = yuba_model::Job::Replicate(yuba_model::ReplicateJob {
        bucket: stack.source_bucket().to_owned(),
        key: "never/existed.jpg".to_owned(),
        version_id: None,
        etag: Some("0123456789abcdef0123456789abcdef".to_owned()),
        size: Some(10),
        sequencer: None,
        event_time: None,
        force: false,
    });
    sqs.send_message()
        .queue_url(stack.var("YUBA_LAMBDA_QUEUE_URL"))
        .message_body(job.to_message())
        .send()
        .await?;
    let worker = [stack.spawn(
        "yuba-worker",
        "worker",
        &[("YUBA_QUEUE_URL", stack.var("YUBA_LAMBDA_QUEUE_URL"))],
    )?];
    eventually(REPLICA_TIMEOUT, "the job to be acknowledged", || async {
        Ok((!logs_where(&worker, "outcome", "source-gone").is_empty()).then_some(()))
    })
    .await
    .map_err(|e| e.context(dump_logs(&worker)))?;
    eventually(REPLICA_TIMEOUT, "the message to be deleted", || async {
        Ok((queue_depth(&sqs, stack.var("YUBA_LAMBDA_QUEUE_URL")).await? == 0).then_some(()))
    })
    .await?;
    Ok(())
}
