//! S3's events as EventBridge delivers them (the CDK app's `notifications: 'eventbridge'`): a
//! rule on the default bus puts each event, unchanged, on the events queue as an SQS message's
//! body. moto does not route S3's EventBridge events to SQS, so the test plays that rule, with
//! the events shaped as AWS documents them (Amazon S3 user guide, "EventBridge event message
//! structure", ev-events.html: "Object created" and "Object deleted (using DeleteObject)") for a
//! real object in a versioned bucket, and the pipeline replicates it and then mirrors the delete.
//!
//! The key needs care: a space, a `+`, a literal `%2B` and non-ASCII characters. EventBridge
//! carries the key itself, not URL-encoded as S3's notifications do (`libs/events`, parse.rs),
//! so a decoding ingest would copy `a b` for `a+b` and fail on the rest.

use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    BucketVersioningStatus, NotificationConfiguration, VersioningConfiguration,
};
use serde_json::{Value, json};
use yuba_e2e::{Stack, dump_logs, eventually, gcs_sha256, logs_where, replica_of, sha256_hex};
use yuba_model::keys;

const TIMEOUT: Duration = Duration::from_secs(60);

const KEY: &str = "eventbridge/red flower+1 %2B ü 東京.jpg";

/// The envelope of the documented events; `detail` as the example for its type has it.
fn event(detail_type: &str, id: &str, bucket: &str, detail: Value) -> String {
    json!({
        "version": "0",
        "id": id,
        "detail-type": detail_type,
        "source": "aws.s3",
        "account": "111122223333",
        "time": "2021-11-12T00:00:00Z",
        "region": "us-east-1",
        "resources": [format!("arn:aws:s3:::{bucket}")],
        "detail": detail,
    })
    .to_string()
}

fn object_created(bucket: &str, key: &str, size: u64, etag: &str, version_id: &str) -> String {
    let detail = json!({
        "version": "0",
        "bucket": {"name": bucket},
        "object": {
            "key": key, "size": size, "etag": etag,
            "version-id": version_id, "sequencer": "617f08299329d189"
        },
        "request-id": "N4N7GDK58NMKJ12R",
        "requester": "123456789012",
        "source-ip-address": "1.2.3.4",
        "reason": "PutObject"
    });
    event(
        "Object Created",
        "17793124-05d4-b198-2fde-7ededc63b103",
        bucket,
        detail,
    )
}

/// A delete marker's event: the marker's version id, the empty object's ETag, no size.
fn object_deleted(bucket: &str, key: &str, marker_version_id: &str) -> String {
    let detail = json!({
        "version": "0",
        "bucket": {"name": bucket},
        "object": {
            "key": key, "etag": "d41d8cd98f00b204e9800998ecf8427e",
            "version-id": marker_version_id, "sequencer": "617f0837b476e463"
        },
        "request-id": "0BH729840619AG5K",
        "requester": "123456789012",
        "source-ip-address": "1.2.3.4",
        "reason": "DeleteObject",
        "deletion-type": "Delete Marker Created"
    });
    event(
        "Object Deleted",
        "2ee9cc15-d022-99ea-1fb8-1b1bac4850f9",
        bucket,
        detail,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eventbridge_events_on_the_events_queue_replicate_and_delete() -> anyhow::Result<()> {
    let stack = Stack::start("eventbridge", 3)?;
    let s3 = stack.s3().await;
    let sqs = stack.sqs().await;
    let gcs = stack.gcs().await?;
    let (source, replicas) = (stack.source_bucket(), stack.replica_bucket());
    let events = stack.var("YUBA_EVENTS_QUEUE_URL");

    // As with EventBridge delivery, the bucket sends no notification of its own: only the
    // events below can replicate or delete anything.
    s3.put_bucket_notification_configuration()
        .bucket(source)
        .notification_configuration(NotificationConfiguration::builder().build())
        .send()
        .await?;
    s3.put_bucket_versioning()
        .bucket(source)
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await?;
    sqs.purge_queue().queue_url(events).send().await?;

    let body = b"red flower, in eventbridge".to_vec();
    let put = s3
        .put_object()
        .bucket(source)
        .key(KEY)
        .body(ByteStream::from(body.clone()))
        .send()
        .await?;
    let etag = put.e_tag().unwrap_or_default().trim_matches('"').to_owned();
    let version = put.version_id().unwrap_or_default().to_owned();
    anyhow::ensure!(
        !version.is_empty(),
        "the versioned bucket gave no version id"
    );

    let pipeline = stack.spawn_pipeline(&[])?;
    sqs.send_message()
        .queue_url(events)
        .message_body(object_created(
            source,
            KEY,
            body.len() as u64,
            &etag,
            &version,
        ))
        .send()
        .await?;
    let replica = replica_of(&pipeline, &gcs, replicas, KEY, TIMEOUT).await?;
    assert_eq!(replica.name, KEY, "the replica has the key's own name");
    assert_eq!(gcs_sha256(&gcs, replicas, KEY).await?, sha256_hex(&body));
    let recorded = |name: &str| replica.metadata.get(name).map(String::as_str);
    assert_eq!(recorded(keys::SOURCE_KEY), Some(KEY));
    assert_eq!(recorded(keys::SOURCE_VERSION_ID), Some(version.as_str()));
    assert_eq!(recorded(keys::SOURCE_ETAG), Some(etag.as_str()));
    assert_eq!(recorded(keys::SOURCE_SEQUENCER), Some("617f08299329d189"));

    // A plain DELETE on a versioned bucket: a delete marker, and EventBridge's Object Deleted
    // with deletion-type "Delete Marker Created" naming the marker.
    let deleted = s3.delete_object().bucket(source).key(KEY).send().await?;
    assert_eq!(deleted.delete_marker(), Some(true));
    let marker = deleted.version_id().unwrap_or_default().to_owned();
    sqs.send_message()
        .queue_url(events)
        .message_body(object_deleted(source, KEY, &marker))
        .send()
        .await?;
    eventually(TIMEOUT, "the replica to be deleted", || async {
        Ok(gcs
            .objects()
            .get(replicas, KEY)
            .await?
            .is_none()
            .then_some(()))
    })
    .await
    .map_err(|e| e.context(dump_logs(&pipeline)))?;

    let outcomes: Vec<String> = logs_where(&pipeline, "key", KEY)
        .into_iter()
        .filter(|(_, line)| line["message"] == "job done")
        .map(|(_, line)| line["outcome"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        outcomes,
        ["replicated", "deleted"],
        "{}",
        dump_logs(&pipeline)
    );
    assert!(
        logs_where(&pipeline, "level", "ERROR").is_empty(),
        "{}",
        dump_logs(&pipeline)
    );
    Ok(())
}
