//! Bad input on the events queue: a clear error, the dead-letter queue after the configured
//! receives, and the rest of the batch still replicated.

use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use yuba_e2e::{Stack, dump_logs, eventually, first_message, logs_where, queue_depth, replica_of};

const TIMEOUT: Duration = Duration::from_secs(60);

fn notification(bucket: &str, key: &str, size: usize, etag: &str) -> String {
    serde_json::json!({"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
        "eventTime": "2026-11-22T12:00:00.000Z", "eventName": "ObjectCreated:Put",
        "s3": {"s3SchemaVersion": "1.0", "bucket": {"name": bucket},
               "object": {"key": key, "size": size, "eTag": etag}}}]})
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_event_goes_to_the_dlq_and_spares_its_batch() -> anyhow::Result<()> {
    let stack = Stack::start("poison", 2)?;
    let s3 = stack.s3().await;
    let sqs = stack.sqs().await;
    let gcs = stack.gcs().await?;
    let events = stack.var("YUBA_EVENTS_QUEUE_URL");

    // The objects exist, and their notifications travel in one batch with a poisoned message.
    let mut entries = vec![
        SendMessageBatchRequestEntry::builder()
            .id("poison")
            .message_body("{\"Records\": [this is not JSON")
            .build()?,
    ];
    for (id, key) in ["left", "right"]
        .iter()
        .zip(["batch/left.jpg", "batch/right.jpg"])
    {
        let put = s3
            .put_object()
            .bucket(stack.source_bucket())
            .key(key)
            .body(ByteStream::from_static(b"pixels"))
            .send()
            .await?;
        let etag = put.e_tag().unwrap_or_default().trim_matches('"');
        entries.push(
            SendMessageBatchRequestEntry::builder()
                .id(*id)
                .message_body(notification(stack.source_bucket(), key, 6, etag))
                .build()?,
        );
    }
    // Drop S3's own notifications so that only the batch above can replicate the objects.
    sqs.purge_queue().queue_url(events).send().await?;
    sqs.send_message_batch()
        .queue_url(events)
        .set_entries(Some(entries))
        .send()
        .await?;

    let pipeline = stack.spawn_pipeline(&[])?;
    for key in ["batch/left.jpg", "batch/right.jpg"] {
        replica_of(&pipeline, &gcs, stack.replica_bucket(), key, TIMEOUT).await?;
    }

    let dead = first_message(&sqs, stack.var("YUBA_EVENTS_DLQ_URL"), TIMEOUT)
        .await
        .map_err(|e| e.context(dump_logs(&pipeline)))?;
    assert_eq!(dead.body(), Some("{\"Records\": [this is not JSON"));
    // Nothing else is stuck: the queue drains. (S3's own notifications of the two objects can
    // arrive after the purge; ingest takes them too, and may be working on them right now.)
    eventually(TIMEOUT, "the events queue to drain", || async {
        Ok((queue_depth(&sqs, events).await? == 0).then_some(()))
    })
    .await
    .map_err(|e| e.context(dump_logs(&pipeline)))?;

    let errors = logs_where(&pipeline, "level", "ERROR");
    let explained = errors.iter().any(|(label, line)| {
        let error = line["error"].as_str().unwrap_or_default();
        *label == "ingest"
            && error.contains("not JSON")
            && error.contains("expected an S3 event notification")
    });
    assert!(explained, "a clear error names the problem: {errors:?}");
    Ok(())
}
