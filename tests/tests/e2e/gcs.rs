//! The GCS adapter's own guarantees, against fake-gcs-server: it stores whatever checksums it
//! is told, so what these tests see is the adapter's checking, not the server's.

use bytes::Bytes;
use std::time::Duration;
use yuba_startup::Env;

use yuba_e2e::{Stack, eventually, gcs_sha256, pseudo_random_bytes, sha256_hex, temporaries_under};
use yuba_gcs::{Gcs, GcsSettings, ListQuery, PARTS_PREFIX, SourceIdentity, UploadSpec};
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
        gcs.objects()
            .get(bucket, "notes/hello.txt")
            .await?
            .is_none(),
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

/// GCS answers a missing object and a missing bucket alike (404, reason `notFound`); the
/// adapter tells them apart by a listing of the bucket, once per bucket, never by the words.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_bucket_is_told_from_a_missing_object_by_structure() -> anyhow::Result<()> {
    let stack = Stack::start("gcs-missing", 3)?;
    let env = Env::from_pairs([("YUBA_GCS_ENDPOINT", stack.var("YUBA_GCS_ENDPOINT"))]);
    let gcs = Gcs::connect(&GcsSettings::from_env(&env)?).await?;
    let bucket = stack.replica_bucket();
    let listings = || -> anyhow::Result<usize> {
        Ok(stack
            .gcs_requests()?
            .iter()
            .filter(|r| r.starts_with(&format!("GET /storage/v1/b/{bucket}/o?")))
            .count())
    };
    let before = listings()?;
    assert!(gcs.objects().get(bucket, "no/such.jpg").await?.is_none());
    assert!(gcs.objects().get(bucket, "no/other.jpg").await?.is_none());
    assert!(!gcs.objects().delete(bucket, "no/such.jpg", None).await?);
    assert_eq!(
        listings()? - before,
        1,
        "one listing for the bucket, then none"
    );

    let missing = gcs
        .objects()
        .get("no-such-bucket", "a.jpg")
        .await
        .expect_err("a missing bucket is not a missing object");
    assert_eq!(missing.kind, FailureKind::Permanent, "{missing}");
    assert!(
        missing
            .message
            .starts_with("reading the metadata of gs://no-such-bucket/a.jpg: ")
            && missing.message.contains("check YUBA_GCS_BUCKET"),
        "{missing}"
    );
    let missing = gcs
        .objects()
        .delete("no-such-bucket", "a.jpg", None)
        .await
        .expect_err("a missing bucket is not a missing object");
    assert_eq!(missing.kind, FailureKind::Permanent, "{missing}");
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
    Ok(temporaries_under(gcs, bucket, PARTS_PREFIX)
        .await?
        .into_iter()
        .map(|(name, _)| name)
        .collect())
}

/// A source's identity for tests: `etag` tells contents apart.
fn identity(etag: &str, size: usize) -> SourceIdentity<'_> {
    SourceIdentity {
        location: "s3://source/videos",
        version_id: None,
        etag,
        size: size as u64,
    }
}

/// Uploads fake-gcs-server has answered so far (one per part uploaded).
fn uploads(stack: &Stack) -> anyhow::Result<usize> {
    Ok(stack
        .gcs_requests()?
        .iter()
        .filter(|request| request.starts_with("POST /upload/"))
        .count())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_composite_upload_is_one_object_with_its_attributes() -> anyhow::Result<()> {
    let stack = Stack::start("gcs-compose", 3)?;
    let gcs = small_parts(&stack).await?;
    let bucket = stack.replica_bucket();
    let name = "videos/long.mp4";
    // 40 parts, the last one short.
    let content = pseudo_random_bytes(40 * 262_144 - 1000, 11);
    let mut upload = gcs
        .composite_upload(bucket, name, &identity("one", content.len()))
        .await?;
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
    let object = gcs.objects().get(bucket, name).await?.expect("the object");
    assert_eq!(object.content_type.as_deref(), Some("video/mp4"));
    // Its creation time, as the object and as a listing say it (the load test's clock).
    let created = object.created.expect("timeCreated");
    let age = chrono::Utc::now() - created;
    assert!(
        age >= chrono::TimeDelta::zero() && age < chrono::TimeDelta::minutes(5),
        "{created}"
    );
    let listed = gcs
        .objects()
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
    let mut upload = gcs
        .composite_upload(bucket, name, &identity("cut", content.len()))
        .await?;
    let failed = loop {
        match source.next() {
            Some(Ok(part)) => upload.push(part).await?,
            Some(Err(error)) => break error,
            None => anyhow::bail!("the source was meant to fail"),
        }
    };
    assert_eq!(failed.to_string(), "connection reset");
    // A failure no attempt will get past: nothing is kept for one.
    upload.abort(FailureKind::Permanent).await;
    assert!(gcs.objects().get(bucket, name).await?.is_none());
    assert_eq!(temporaries(&gcs, bucket).await?, Vec::<String>::new());

    // Parts whose composition does not hold the content read: the object made is removed,
    // and so are the parts, which no attempt may build on.
    let mut upload = gcs
        .composite_upload(bucket, name, &identity("cut", content.len()))
        .await?;
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
    assert!(gcs.objects().get(bucket, name).await?.is_none());
    assert_eq!(temporaries(&gcs, bucket).await?, Vec::<String>::new());
    Ok(())
}

/// A part to write by hand under an upload's prefix, as another attempt or a tamperer would.
fn part_spec(bucket: &str, name: String) -> UploadSpec {
    UploadSpec {
        bucket: bucket.to_owned(),
        name,
        ..UploadSpec::default()
    }
}

fn destination(bucket: &str, name: &str) -> UploadSpec {
    UploadSpec {
        bucket: bucket.to_owned(),
        name: name.to_owned(),
        ..UploadSpec::default()
    }
}

/// The same bytes with one of them changed.
fn altered(part: &[u8]) -> Bytes {
    let mut other = part.to_vec();
    other[100] ^= 0xff;
    Bytes::from(other)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_composite_upload_resumes_from_the_parts_an_earlier_attempt_left() -> anyhow::Result<()> {
    let stack = Stack::start("gcs-compose-resume", 3)?;
    let gcs = small_parts(&stack).await?;
    let bucket = stack.replica_bucket();
    let name = "videos/resumed.mp4";
    let content = pseudo_random_bytes(10 * 262_144 - 500, 13);
    let parts: Vec<Bytes> = content
        .chunks(262_144)
        .map(Bytes::copy_from_slice)
        .collect();
    let source = identity("resumed", content.len());

    // The first attempt puts six parts in place, then fails transiently: they are kept.
    let mut first = gcs.composite_upload(bucket, name, &source).await?;
    let prefix = first.prefix().to_owned();
    for part in &parts[..6] {
        first.push(part.clone()).await?;
    }
    first.abort(FailureKind::Transient).await;
    let kept: Vec<String> = temporaries_under(&gcs, bucket, &prefix)
        .await?
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    let expected: Vec<String> = (0..6).map(|i| format!("{prefix}{i:05}")).collect();
    assert_eq!(kept, expected);

    // Between the attempts one part is replaced by other bytes of its size (its crc32c is no
    // longer the content's), and one is removed, as the lifecycle rule would.
    gcs.upload_bytes(
        part_spec(bucket, format!("{prefix}00002")),
        altered(&parts[2]),
    )
    .await?;
    gcs.objects()
        .delete(bucket, &format!("{prefix}00004"), None)
        .await?;

    // The second attempt at the same content finds them under the same prefix, and uploads
    // only what it did not find intact: parts 2 and 4, and 6 to 9.
    let uploaded = uploads(&stack)?;
    let mut second = gcs.composite_upload(bucket, name, &source).await?;
    assert_eq!(second.prefix(), prefix);
    for part in &parts {
        second.push(part.clone()).await?;
    }
    let stored = second
        .finish(destination(bucket, name), crc32c::crc32c(&content))
        .await?;
    assert_eq!(
        uploads(&stack)? - uploaded,
        6,
        "{:?}",
        stack.gcs_requests()?
    );
    assert_eq!(stored.size, content.len() as u64);
    assert_eq!(stored.crc32c, Some(crc32c::crc32c(&content)));
    assert_eq!(gcs_sha256(&gcs, bucket, name).await?, sha256_hex(&content));
    assert_eq!(temporaries(&gcs, bucket).await?, Vec::<String>::new());

    // Another content of the name never looks at them: its parts go elsewhere.
    let other = gcs
        .composite_upload(bucket, name, &identity("other", content.len()))
        .await?;
    assert_ne!(other.prefix(), prefix);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_part_written_by_another_attempt_meanwhile_is_used_only_if_it_holds_the_bytes()
-> anyhow::Result<()> {
    let stack = Stack::start("gcs-compose-overlap", 3)?;
    let gcs = small_parts(&stack).await?;
    let bucket = stack.replica_bucket();
    let content = pseudo_random_bytes(4 * 262_144, 14);
    let parts: Vec<Bytes> = content
        .chunks(262_144)
        .map(Bytes::copy_from_slice)
        .collect();
    let source = identity("overlap", content.len());
    let push_all = async |upload: &mut yuba_gcs::CompositeUpload| {
        for part in &parts {
            upload.push(part.clone()).await?;
        }
        Ok::<_, yuba_gcs::GcsError>(())
    };

    // After this upload listed its prefix (empty), another attempt at the same content puts
    // part 0 there: this upload's write of it, conditional on there being none, fails, and it
    // uses that part, which holds its bytes. (fake-gcs-server honours the condition on these
    // uploads, as the case below shows: without it, that one would succeed.)
    let name = "videos/same.mp4";
    let mut upload = gcs.composite_upload(bucket, name, &source).await?;
    let prefix = upload.prefix().to_owned();
    gcs.upload_bytes(
        part_spec(bucket, format!("{prefix}00000")),
        parts[0].clone(),
    )
    .await?;
    push_all(&mut upload).await?;
    upload
        .finish(destination(bucket, name), crc32c::crc32c(&content))
        .await?;
    assert_eq!(gcs_sha256(&gcs, bucket, name).await?, sha256_hex(&content));

    // Other bytes under a part's name since the listing: the upload fails, transiently, rather
    // than compose them or overwrite them unseen, and makes no object.
    let name = "videos/other.mp4";
    let mut upload = gcs.composite_upload(bucket, name, &source).await?;
    let prefix = upload.prefix().to_owned();
    gcs.upload_bytes(
        part_spec(bucket, format!("{prefix}00001")),
        altered(&parts[1]),
    )
    .await?;
    let error = match push_all(&mut upload).await {
        Ok(()) => upload
            .finish(destination(bucket, name), crc32c::crc32c(&content))
            .await
            .expect_err("other bytes under a part's name are not composed"),
        Err(error) => {
            upload.abort(error.kind).await;
            error
        }
    };
    assert_eq!(error.kind, FailureKind::Transient, "{error}");
    assert!(!error.is_conflict(), "{error}");
    assert!(gcs.objects().get(bucket, name).await?.is_none());
    // The next attempt lists that part, replaces it (conditional on the generation listed)
    // and makes the object.
    let mut retry = gcs.composite_upload(bucket, name, &source).await?;
    push_all(&mut retry).await?;
    retry
        .finish(destination(bucket, name), crc32c::crc32c(&content))
        .await?;
    assert_eq!(gcs_sha256(&gcs, bucket, name).await?, sha256_hex(&content));
    assert_eq!(temporaries(&gcs, bucket).await?, Vec::<String>::new());
    Ok(())
}

/// Two attempts at one content share its parts: when one finishes and deletes them while the
/// other is about to compose, the other fails as transient (its retry finds the object made),
/// never as permanent, and never makes an object of what is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compose_whose_parts_another_attempt_removed_fails_transiently() -> anyhow::Result<()> {
    let stack = Stack::start("gcs-compose-gone", 3)?;
    let gcs = small_parts(&stack).await?;
    let bucket = stack.replica_bucket();
    let name = "videos/gone.mp4";
    let content = pseudo_random_bytes(5 * 262_144, 15);
    let mut upload = gcs
        .composite_upload(bucket, name, &identity("gone", content.len()))
        .await?;
    for part in content.chunks(upload.part_bytes()) {
        upload.push(Bytes::copy_from_slice(part)).await?;
    }
    let prefix = upload.prefix().to_owned();
    // The uploads on their way end before the other attempt's clean-up, as its did.
    eventually(Duration::from_secs(30), "the parts in place", || async {
        Ok((temporaries_under(&gcs, bucket, &prefix).await?.len() == 5).then_some(()))
    })
    .await?;
    gcs.objects()
        .delete(bucket, &format!("{prefix}00003"), None)
        .await?;
    let error = upload
        .finish(destination(bucket, name), crc32c::crc32c(&content))
        .await
        .expect_err("a part is gone");
    // GCS answers 404 (which the adapter reads as transient once a listing shows the part
    // gone: unit-tested in yuba-gcs); fake-gcs-server answers 500.
    assert_eq!(error.kind, FailureKind::Transient, "{error}");
    assert!(gcs.objects().get(bucket, name).await?.is_none());
    Ok(())
}
