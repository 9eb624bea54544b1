//! Only the configured source bucket is ever read (issue 19, promise 1). A record of another
//! bucket on the events queue, and a job naming one put straight on a work queue (a misrouted
//! notification, or a message from anyone who may send to the queues), are refused with the
//! bucket named, counted, and nothing of the foreign bucket reaches the replica; a foreign
//! delete does not remove our replica of the same key. The refused record is set aside alone
//! on the events DLQ, where a redrive brings back exactly it.

use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use serde_json::{Value, json};
use yuba_e2e::{
    Stack, dump_logs, eventually, logs_where, message_attribute, queue_depth, replica_of,
    replicate, take_messages,
};
use yuba_events::{REJECTED_FROM_ATTRIBUTE, REJECTED_REASON_ATTRIBUTE};
use yuba_model::{DeleteJob, Job};

const TIMEOUT: Duration = Duration::from_secs(60);
const FOREIGN: &str = "yuba-foreign";

fn s3_record(bucket: &str, key: &str, etag: &str) -> Value {
    json!({
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
        "eventTime": "2026-12-04T12:00:00.000Z", "eventName": "ObjectCreated:Put",
        "s3": {"s3SchemaVersion": "1.0", "bucket": {"name": bucket},
               "object": {"key": key, "size": 6, "eTag": etag}}
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_buckets_records_and_jobs_are_refused_and_nothing_is_read() -> anyhow::Result<()>
{
    // A refused job reaches its DLQ at its second receive.
    let stack = Stack::start("foreign-bucket", 1)?;
    let (s3, sqs, gcs) = (stack.s3().await, stack.sqs().await, stack.gcs().await?);
    let (events, replica) = (stack.var("YUBA_EVENTS_QUEUE_URL"), stack.replica_bucket());
    // Objects the worker could read if it were asked to: the same key in both buckets.
    s3.create_bucket().bucket(FOREIGN).send().await?;
    let mut etags = Vec::new();
    for bucket in [FOREIGN, stack.source_bucket()] {
        let put = s3
            .put_object()
            .bucket(bucket)
            .key("photo.jpg")
            .body(ByteStream::from_static(b"pixels"))
            .send()
            .await?;
        etags.push(put.e_tag().unwrap_or_default().trim_matches('"').to_owned());
    }
    sqs.purge_queue().queue_url(events).send().await?;
    // One notification, a foreign record first: the source's record is still enqueued.
    let foreign_record = s3_record(FOREIGN, "photo.jpg", &etags[0]);
    let notification = json!({"Records": [foreign_record, s3_record(stack.source_bucket(), "photo.jpg", &etags[1])]});
    let sent = sqs
        .send_message()
        .queue_url(events)
        .message_body(notification.to_string())
        .send()
        .await?;
    // A job naming the foreign bucket, straight on a work queue.
    let lambda_queue = stack.var("YUBA_LAMBDA_QUEUE_URL");
    let forged = replicate(FOREIGN, "photo.jpg").to_message();
    sqs.send_message()
        .queue_url(lambda_queue)
        .message_body(&forged)
        .send()
        .await?;

    let pipeline = stack.spawn_pipeline(&[])?;
    let ours = replica_of(&pipeline, &gcs, replica, "photo.jpg", TIMEOUT).await?;
    assert_eq!(
        ours.metadata.get("yuba-source-bucket").map(String::as_str),
        Some(stack.source_bucket())
    );

    // The foreign record, alone, with its reason and the message it came in.
    let set_aside = take_messages(&sqs, stack.var("YUBA_EVENTS_DLQ_URL"), 1, TIMEOUT)
        .await
        .map_err(|e| e.context(dump_logs(&pipeline)))?;
    let body: Value = serde_json::from_str(set_aside[0].body().unwrap_or_default())?;
    assert_eq!(body, json!({"Records": [foreign_record]}));
    let reason = message_attribute(&set_aside[0], REJECTED_REASON_ATTRIBUTE).unwrap_or_default();
    assert!(
        reason.contains("s3://yuba-foreign/photo.jpg is not in the source bucket yuba-source (YUBA_SOURCE_BUCKET)"),
        "{reason}"
    );
    assert_eq!(
        message_attribute(&set_aside[0], REJECTED_FROM_ATTRIBUTE),
        sent.message_id()
    );

    // The forged job: refused, permanent, to the work queue's DLQ as it was.
    let dead = take_messages(&sqs, stack.var("YUBA_LAMBDA_DLQ_URL"), 1, TIMEOUT)
        .await
        .map_err(|e| e.context(dump_logs(&pipeline)))?;
    assert_eq!(dead[0].body(), Some(forged.as_str()));

    // A foreign delete of the same key leaves our replica alone.
    let delete = Job::Delete(DeleteJob {
        bucket: FOREIGN.to_owned(),
        key: "photo.jpg".to_owned(),
        version_id: None,
        sequencer: None,
        event_time: None,
    });
    sqs.send_message()
        .queue_url(lambda_queue)
        .message_body(delete.to_message())
        .send()
        .await?;
    take_messages(&sqs, stack.var("YUBA_LAMBDA_DLQ_URL"), 1, TIMEOUT)
        .await
        .map_err(|e| e.context(dump_logs(&pipeline)))?;
    let kept = gcs
        .objects()
        .get(replica, "photo.jpg")
        .await?
        .expect("our replica is kept");
    assert_eq!(
        kept.generation, ours.generation,
        "a foreign delete touched our replica"
    );

    // Counted apart, in the worker's and ingest's lines (their metrics go with them).
    let refused = logs_where(&pipeline, "outcome", "foreign-bucket");
    assert!(
        refused.len() == 2 && refused.iter().all(|(label, _)| *label == "worker-lambda"),
        "two refused jobs, each once (the second receive moves it to the DLQ): {refused:?}"
    );
    let summaries = logs_where(&pipeline, "message", "notification ingested");
    assert!(
        summaries.iter().any(|(_, line)| line["foreign_bucket"] == 1
            && line["enqueued"] == 1
            && line["set_aside"] == 1),
        "{summaries:?}"
    );
    eventually(TIMEOUT, "the events queue to drain", || async {
        Ok((queue_depth(&sqs, events).await? == 0).then_some(()))
    })
    .await?;

    // Redriven to the events queue, the set-aside record is read again as the one record it is.
    sqs.send_message()
        .queue_url(events)
        .message_body(set_aside[0].body().unwrap_or_default())
        .send()
        .await?;
    let again = take_messages(&sqs, stack.var("YUBA_EVENTS_DLQ_URL"), 1, TIMEOUT)
        .await
        .map_err(|e| e.context(dump_logs(&pipeline)))?;
    assert_eq!(again[0].body(), set_aside[0].body());
    assert_eq!(
        gcs.objects()
            .get(replica, "photo.jpg")
            .await?
            .map(|o| o.generation),
        Some(ours.generation)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn programs_do_not_start_without_a_valid_source_bucket() -> anyhow::Result<()> {
    let stack = Stack::start("source-setting", 3)?;
    for (binary, label, extra) in [
        ("yuba-ingest", "ingest", None),
        (
            "yuba-worker",
            "worker",
            Some(("YUBA_QUEUE_URL", stack.var("YUBA_LAMBDA_QUEUE_URL"))),
        ),
    ] {
        for value in ["", "s3://yuba-source"] {
            let mut command = stack.command(binary, &[("YUBA_SOURCE_BUCKET", value)])?;
            if let Some((name, value)) = extra {
                command.env(name, value);
            }
            let finished = yuba_e2e::run_to_end(command, TIMEOUT).await?;
            assert_ne!(
                finished.code,
                Some(0),
                "{label} started with YUBA_SOURCE_BUCKET={value:?}"
            );
            assert!(
                finished.stderr.contains("YUBA_SOURCE_BUCKET"),
                "{label}: {}",
                finished.stderr
            );
        }
    }
    Ok(())
}
