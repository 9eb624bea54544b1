//! The GCS adapter's own guarantees, against fake-gcs-server: it stores whatever checksums it
//! is told, so what these tests see is the adapter's checking, not the server's.

use bytes::Bytes;
use yuba_config::Env;
use yuba_e2e::{Stack, gcs_sha256, pseudo_random_bytes, sha256_hex};
use yuba_gcs::{Gcs, GcsSettings, ListQuery, PARTS_PREFIX, UploadSpec};
use yuba_model::{FailureKind, keys};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_stored_with_other_checksums_is_removed_and_retried() -> anyhow::Result<()> {
    let stack = Stack::start("gcs-upload", 3)?;
    let env = Env::from_pairs([
        ("YUBA_GCS_ENDPOINT", stack.var("YUBA_GCS_ENDPOINT")),
        ("YUBA_GCS_RETRY_ATTEMPTS", "3"),
        ("YUBA_GCS_RETRY_SECONDS", "10"),
    ]);
    let gcs = Gcs::connect(&GcsSettings::from_env(&env)?).await?;
    let bucket = stack.replica_bucket();
    let spec = |known_crc32c| UploadSpec {
        bucket: bucket.to_owned(),
        name: "notes/hello.txt".to_owned(),
        content_type: Some("text/plain".to_owned()),
        metadata: vec![("owner".to_owned(), "ann".to_owned())],
        known_crc32c,
        ..UploadSpec::default()
    };
    let content = Bytes::from_static(b"hello world");

    let error = gcs
        .upload_bytes(spec(Some(0)), content.clone())
        .await
        .expect_err("a crc32c that is not the content's never stands");
    assert_eq!(error.kind, FailureKind::Transient, "{error}");
    assert!(
        gcs.object(bucket, "notes/hello.txt").await?.is_none(),
        "each stored generation was removed"
    );
    let requests = stack.gcs_requests()?;
    let count = |prefix: &str| requests.iter().filter(|r| r.starts_with(prefix)).count();
    assert_eq!(
        (count("POST /upload/"), count("DELETE ")),
        (3, 3),
        "three attempts, each removed: {requests:?}"
    );

    // With the crc32c left to the adapter, the object and its attributes take one request.
    let stored = gcs.upload_bytes(spec(None), content).await?;
    assert_eq!(stored.crc32c, Some(0xc994_65aa));
    assert_eq!(stored.content_type.as_deref(), Some("text/plain"));
    assert_eq!(stored.metadata["owner"], "ann");
    assert_eq!(stack.gcs_requests()?.len(), requests.len() + 1);
    Ok(())
}

/// The adapter with 256 KiB parts, two of them uploading at once.
async fn small_parts(stack: &Stack) -> anyhow::Result<Gcs> {
    let env = Env::from_pairs([
        ("YUBA_GCS_ENDPOINT", stack.var("YUBA_GCS_ENDPOINT")),
        ("YUBA_GCS_RETRY_ATTEMPTS", "3"),
        ("YUBA_GCS_RETRY_SECONDS", "10"),
        ("YUBA_UPLOAD_CHUNK_BYTES", "262144"),
        ("YUBA_GCS_PARALLEL_UPLOADS", "2"),
    ]);
    Ok(Gcs::connect(&GcsSettings::from_env(&env)?).await?)
}

async fn temporaries(gcs: &Gcs, bucket: &str) -> anyhow::Result<Vec<String>> {
    let query = ListQuery {
        prefix: PARTS_PREFIX,
        page_size: 1000,
        ..ListQuery::default()
    };
    let page = gcs.list(bucket, &query).await?;
    Ok(page.objects.into_iter().map(|object| object.name).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_composite_upload_is_one_object_with_its_attributes() -> anyhow::Result<()> {
    let stack = Stack::start("gcs-compose", 3)?;
    let gcs = small_parts(&stack).await?;
    let bucket = stack.replica_bucket();
    let name = "videos/long.mp4";
    // 40 parts, the last one short.
    let content = pseudo_random_bytes(40 * 262_144 - 1000, 11);
    let mut upload = gcs.composite_upload(bucket, name);
    assert_eq!(upload.part_bytes(), 262_144);
    for part in content.chunks(upload.part_bytes()) {
        upload.push(Bytes::copy_from_slice(part)).await?;
    }
    let spec = UploadSpec {
        bucket: bucket.to_owned(),
        name: name.to_owned(),
        content_type: Some("video/mp4".to_owned()),
        cache_control: Some("public, max-age=60".to_owned()),
        metadata: vec![
            ("owner".to_owned(), "ann".to_owned()),
            ("yuba-sha256".to_owned(), sha256_hex(&content)),
        ],
        ..UploadSpec::default()
    };
    let stored = upload.finish(spec, crc32c::crc32c(&content)).await?;

    assert_eq!(stored.size, content.len() as u64);
    assert_eq!(stored.crc32c, Some(crc32c::crc32c(&content)));
    assert_eq!(gcs_sha256(&gcs, bucket, name).await?, sha256_hex(&content));
    let object = gcs.object(bucket, name).await?.expect("the object");
    assert_eq!(object.content_type.as_deref(), Some("video/mp4"));
    // Its creation time, as the object and as a listing say it (the load test's clock).
    let created = object.created.expect("timeCreated");
    let age = chrono::Utc::now() - created;
    assert!(
        age >= chrono::TimeDelta::zero() && age < chrono::TimeDelta::minutes(5),
        "{created}"
    );
    let listed = gcs
        .list(
            bucket,
            &ListQuery {
                prefix: name,
                page_size: 10,
                ..ListQuery::default()
            },
        )
        .await?;
    assert_eq!(listed.objects[0].created, Some(created));
    assert_eq!(object.metadata["owner"], "ann");
    assert_eq!(object.metadata["yuba-sha256"], sha256_hex(&content));
    assert!(!object.metadata.contains_key(keys::PART_OF));
    assert_eq!(temporaries(&gcs, bucket).await?, Vec::<String>::new());

    let requests = stack.gcs_requests()?;
    let count = |pattern: &str| requests.iter().filter(|r| r.contains(pattern)).count();
    assert_eq!(count("POST /upload/"), 40, "one request per part");
    // 40 parts: the first 9 composed into one, then that and the other 31 into the object.
    assert_eq!(count("/compose"), 2, "{requests:?}");
    assert_eq!(count("/o/videos%2Flong.mp4/compose"), 1, "{requests:?}");
    assert_eq!(
        count("DELETE "),
        41,
        "the parts and the intermediate object"
    );
    assert_eq!(count("PATCH "), 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_composite_upload_leaves_nothing_behind() -> anyhow::Result<()> {
    let stack = Stack::start("gcs-compose-fail", 3)?;
    let gcs = small_parts(&stack).await?;
    let bucket = stack.replica_bucket();
    let name = "videos/cut.mp4";
    let content = pseudo_random_bytes(10 * 262_144, 12);

    // A source that breaks after six parts: the caller stops there and aborts.
    let mut source = content
        .chunks(262_144)
        .enumerate()
        .map(|(index, part)| match index {
            6 => Err(std::io::Error::other("connection reset")),
            _ => Ok(Bytes::copy_from_slice(part)),
        });
    let mut upload = gcs.composite_upload(bucket, name);
    let failed = loop {
        match source.next() {
            Some(Ok(part)) => upload.push(part).await?,
            Some(Err(error)) => break error,
            None => anyhow::bail!("the source was meant to fail"),
        }
    };
    assert_eq!(failed.to_string(), "connection reset");
    upload.abort().await;
    assert!(gcs.object(bucket, name).await?.is_none());
    assert_eq!(temporaries(&gcs, bucket).await?, Vec::<String>::new());

    // Parts whose composition does not hold the content read: the object made is removed.
    let mut upload = gcs.composite_upload(bucket, name);
    for part in content.chunks(upload.part_bytes()) {
        upload.push(Bytes::copy_from_slice(part)).await?;
    }
    let spec = UploadSpec {
        bucket: bucket.to_owned(),
        name: name.to_owned(),
        ..UploadSpec::default()
    };
    let error = upload
        .finish(spec, crc32c::crc32c(b"other content"))
        .await
        .expect_err("a composition with another crc32c never stands");
    assert_eq!(error.kind, FailureKind::Transient, "{error}");
    assert!(gcs.object(bucket, name).await?.is_none());
    assert_eq!(temporaries(&gcs, bucket).await?, Vec::<String>::new());
    Ok(())
}
