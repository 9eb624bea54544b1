//! Metadata follows the source (issue 19, promise 4). The usual way to change an object's
//! Content-Type, Cache-Control or user metadata in S3 is a copy onto itself with
//! `MetadataDirective=REPLACE`; for a single-part object the content, ETag and size stay the
//! same. The replica's attributes must follow in a metadata update, without the content being
//! sent again.

use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::MetadataDirective;
use yuba_e2e::{Stack, dump_logs, eventually, logs_where, replica_of};

const TIMEOUT: Duration = Duration::from_secs(60);
const KEY: &str = "attributes/note.txt";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_metadata_change_in_place_reaches_the_replica_without_a_second_copy() -> anyhow::Result<()>
{
    let stack = Stack::start("attributes", 3)?;
    let (s3, gcs) = (stack.s3().await, stack.gcs().await?);
    let (source, bucket) = (stack.source_bucket(), stack.replica_bucket());
    let put = s3
        .put_object()
        .bucket(source)
        .key(KEY)
        .body(ByteStream::from_static(b"a note, whose bytes never change"))
        .content_type("text/plain")
        .cache_control("max-age=60")
        .metadata("owner", "ann")
        .send()
        .await?;
    let pipeline = stack.spawn_pipeline(&[])?;
    let first = replica_of(&pipeline, &gcs, bucket, KEY, TIMEOUT).await?;
    assert_eq!(first.content_type.as_deref(), Some("text/plain"));
    assert_eq!(first.cache_control.as_deref(), Some("max-age=60"));
    assert_eq!(first.metadata.get("owner").map(String::as_str), Some("ann"));

    // S3's way to change an object's metadata: a copy onto itself that replaces it.
    let copied = s3
        .copy_object()
        .bucket(source)
        .key(KEY)
        .copy_source(format!("{source}/{KEY}"))
        .metadata_directive(MetadataDirective::Replace)
        .content_type("text/markdown")
        .cache_control("public, max-age=3600")
        .metadata("owner", "bob")
        .send()
        .await?;
    let etag = copied.copy_object_result().and_then(|r| r.e_tag());
    assert_eq!(etag, put.e_tag(), "the content and its ETag stay the same");

    let updated = eventually(TIMEOUT, "the replica's attributes to follow", || async {
        let replica = gcs.objects().get(bucket, KEY).await?;
        Ok(replica.filter(|r| r.cache_control.as_deref() == Some("public, max-age=3600")))
    })
    .await
    .map_err(|e| e.context(dump_logs(&pipeline)))?;
    assert_eq!(updated.content_type.as_deref(), Some("text/markdown"));
    assert_eq!(
        updated.metadata.get("owner").map(String::as_str),
        Some("bob")
    );
    assert_eq!(updated.size, first.size);
    assert_eq!(updated.crc32c, first.crc32c);
    let record = yuba_model::ReplicaRecord::from_metadata(&updated.metadata)?.expect("a record");
    assert!(record.is_complete(), "{record:?}");

    // One metadata update; the content (the test's one object) went up once.
    let requests = stack.gcs_requests()?;
    let uploads = requests
        .iter()
        .filter(|r| r.starts_with("POST /upload/"))
        .count();
    assert_eq!(uploads, 1, "{requests:#?}");
    assert!(
        requests
            .iter()
            .any(|r| r.starts_with("PATCH ") && r.contains("note.txt")),
        "{requests:#?}"
    );
    let outcomes: Vec<String> = logs_where(&pipeline, "message", "job done")
        .iter()
        .map(|(_, line)| line["outcome"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(
        outcomes.iter().any(|o| o == "attributes-updated"),
        "{outcomes:?}"
    );

    // Up to date now: the same change again costs no write at all.
    let before = stack.gcs_requests()?.len();
    stack
        .enqueue_replicate(stack.var("YUBA_LAMBDA_QUEUE_URL"), KEY)
        .await?;
    eventually(TIMEOUT, "the job done again", || async {
        let done = logs_where(&pipeline, "outcome", "already-replicated");
        Ok((!done.is_empty()).then_some(()))
    })
    .await
    .map_err(|e| e.context(dump_logs(&pipeline)))?;
    let writes = stack.gcs_requests()?[before..]
        .iter()
        .filter(|r| !r.starts_with("GET "))
        .cloned()
        .collect::<Vec<_>>();
    assert!(writes.is_empty(), "{writes:?}");
    Ok(())
}
