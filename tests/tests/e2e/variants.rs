//! Variants at replication time, end to end: an uploaded JPEG yields its original and every
//! configured variant with the documented names and metadata; a truncated JPEG and a
//! decompression bomb yield their original plus a recorded failure, and the worker goes on
//! serving; a delete removes the variants with their original.

use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use yuba_e2e::{
    Stack, dump_logs, encode_jpeg, eventually, gcs_sha256, logs_where, replica_of, sha256_hex,
};

const TIMEOUT: Duration = Duration::from_secs(60);
const VARIANTS: &str = r#"{
    "key_template": "_variants/{variant}/{key}",
    "profiles": [
        {"name": "large", "width": 800, "height": 800, "format": "jpeg", "quality": 80},
        {"name": "thumb", "width": 100, "height": 100, "fit": "cover", "format": "webp", "quality": 70,
         "prefixes": ["photos/"]}
    ]
}"#;

/// A 1200×900 JPEG of smooth gradients.
fn photo() -> Vec<u8> {
    let (width, height) = (1200_u16, 900_u16);
    let mut rgb = Vec::with_capacity(usize::from(width) * usize::from(height) * 3);
    for y in 0..height {
        for x in 0..width {
            rgb.extend_from_slice(&[(x / 5) as u8, (y / 4) as u8, ((x + y) / 9) as u8]);
        }
    }
    encode_jpeg(&rgb, width, height, 95)
}

/// A 1400×1000 JPEG of noise: about 3 MB, however well it is compressed.
fn noisy_photo() -> Vec<u8> {
    let (width, height) = (1400_u16, 1000_u16);
    let rgb = yuba_e2e::pseudo_random_bytes(usize::from(width) * usize::from(height) * 3, 10);
    encode_jpeg(&rgb, width, height, 95)
}

/// A JPEG header declaring 65000×65000 pixels (4.2 gigapixels) in 19 bytes.
fn bomb() -> Vec<u8> {
    let mut bytes = vec![0xFF, 0xD8, 0xFF, 0xC0, 0x00, 0x11, 0x08];
    bytes.extend_from_slice(&65_000_u16.to_be_bytes());
    bytes.extend_from_slice(&65_000_u16.to_be_bytes());
    bytes.extend_from_slice(&[3, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1]);
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_get_their_variants_and_bad_images_keep_their_original() -> anyhow::Result<()> {
    let stack = Stack::start("variants", 3)?;
    // Images over 2 MB are not transformed; objects over 1 MiB are streamed.
    let pipeline = stack.spawn_pipeline(&[
        ("YUBA_VARIANTS", VARIANTS),
        ("YUBA_MAX_SOURCE_BYTES", "2000000"),
        ("YUBA_UPLOAD_CHUNK_BYTES", "1048576"),
    ])?;
    let s3 = stack.s3().await;
    let gcs = stack.gcs().await?;
    let bucket = stack.replica_bucket();

    let photo = photo();
    let truncated = photo[..photo.len() * 2 / 3].to_vec();
    let uploads = [
        ("photos/sea.jpg", photo.clone(), "image/jpeg"),
        ("photos/broken.jpg", truncated, "image/jpeg"),
        ("photos/bomb.jpg", bomb(), "image/jpeg"),
        // A text file that claims to be an image: sniffed, not trusted.
        (
            "photos/notes.png",
            b"not an image at all".to_vec(),
            "image/png",
        ),
        // Outside the thumb profile's prefix: only the large variant.
        ("other/sea.jpg", photo.clone(), "image/jpeg"),
        // An image format yuba does not decode: the original, and the reason.
        (
            "photos/scan.tiff",
            b"II*\0 the rest of a TIFF".to_vec(),
            "image/tiff",
        ),
        // Over the image byte limit (and streamed): the original only, and the reason.
        ("photos/huge.jpg", noisy_photo(), "image/jpeg"),
        // Not an image, whatever it claims, and streamed: no variants and nothing to record.
        (
            "photos/fake.jpg",
            yuba_e2e::pseudo_random_bytes(3_000_000, 9),
            "image/jpeg",
        ),
    ];
    // A key so long that no variant name fits in GCS's 1,024 bytes: the original still does.
    let long_key = format!("photos/{}.jpg", "a".repeat(1010));
    let uploads: Vec<(&str, Vec<u8>, &str)> = uploads
        .into_iter()
        .chain([(long_key.as_str(), photo.clone(), "image/jpeg")])
        .collect();
    for (key, body, content_type) in &uploads {
        s3.put_object()
            .bucket(stack.source_bucket())
            .key(*key)
            .content_type(*content_type)
            .body(ByteStream::from(body.clone()))
            .send()
            .await?;
    }

    let mut records = Vec::new();
    for (key, body, content_type) in &uploads {
        let replica = replica_of(&pipeline, &gcs, bucket, key, TIMEOUT).await?;
        assert_eq!(
            gcs_sha256(&gcs, bucket, key).await?,
            sha256_hex(body),
            "original of {key}"
        );
        assert_eq!(
            replica.content_type.as_deref(),
            Some(*content_type),
            "{key}"
        );
        records.push(replica.metadata);
    }
    // Originals and variants held in memory are written in one request each; only the two
    // streamed originals get an update after their upload, for their digests.
    let mut patched: Vec<String> = stack
        .gcs_requests()?
        .into_iter()
        .filter_map(|request| {
            let path = request.strip_prefix("PATCH ")?;
            let (path, _) = path.split_once('?').unwrap_or((path, ""));
            Some(path.rsplit('/').next().unwrap_or_default().to_owned())
        })
        .collect();
    patched.sort();
    assert_eq!(patched, ["photos%2Ffake.jpg", "photos%2Fhuge.jpg"]);
    let variants_of = |i: usize| records[i].get("yuba-variants").cloned();
    let error_of = |i: usize| {
        records[i]
            .get("yuba-variants-error")
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(variants_of(0).as_deref(), Some("large.jpg,thumb.webp"));
    assert_eq!(variants_of(1), None);
    assert!(
        error_of(1).starts_with("truncated") || error_of(1).starts_with("corrupt"),
        "{}",
        error_of(1)
    );
    assert_eq!(variants_of(2), None);
    assert!(
        error_of(2).starts_with("too_many_pixels"),
        "{}",
        error_of(2)
    );
    assert_eq!(
        (variants_of(3), error_of(3)),
        (None, String::new()),
        "not an image: no variants, no error"
    );
    assert_eq!(variants_of(4).as_deref(), Some("large.jpg"));
    assert_eq!(variants_of(5), None);
    assert!(
        error_of(5).starts_with("unsupported: TIFF"),
        "{}",
        error_of(5)
    );
    assert_eq!(variants_of(6), None);
    assert!(
        error_of(6).starts_with("too_large"),
        "{:?}",
        logs_where(&pipeline, "key", "photos/huge.jpg")
    );
    assert_eq!((variants_of(7), error_of(7)), (None, String::new()));
    assert_eq!(variants_of(8), None);
    assert!(error_of(8).starts_with("name: "), "{}", error_of(8));

    // Each failure is also a metric data point (CloudWatch Embedded Metric Format).
    for kind in ["too_many_pixels", "too_large"] {
        let points = logs_where(&pipeline, "VariantError", kind);
        assert!(
            points.iter().any(
                |(_, line)| line["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "yuba"
                    && line["VariantFailures"] == 1.0
            ),
            "no VariantFailures metric for {kind}"
        );
    }
    assert!(
        !logs_where(&pipeline, "Outcome", "replicated").is_empty(),
        "jobs are counted"
    );

    // The variants, where the key template puts them, linked to their source.
    let large = gcs
        .objects()
        .get(bucket, "_variants/large/photos/sea.jpg")
        .await?
        .expect("the large variant exists");
    assert_eq!(large.content_type.as_deref(), Some("image/jpeg"));
    let thumb = gcs
        .objects()
        .get(bucket, "_variants/thumb/photos/sea.jpg.webp")
        .await?
        .expect("the thumb variant exists");
    assert_eq!(thumb.content_type.as_deref(), Some("image/webp"));
    for (variant, profile, width, height) in [
        (&large, "large", "800", "600"),
        (&thumb, "thumb", "100", "100"),
    ] {
        let meta = &variant.metadata;
        assert_eq!(meta["yuba-variant"], profile);
        assert_eq!(
            (
                meta["yuba-variant-width"].as_str(),
                meta["yuba-variant-height"].as_str()
            ),
            (width, height)
        );
        assert_eq!(meta["yuba-source-key"], "photos/sea.jpg");
        assert_eq!(meta["yuba-source-etag"], records[0]["yuba-source-etag"]);
        assert_eq!(meta["yuba-source-sha256"], sha256_hex(&photo));
        assert!(
            !meta.contains_key("yuba-schema"),
            "a variant is not a replica"
        );
    }
    assert!(
        gcs.objects()
            .get(bucket, "_variants/large/photos/broken.jpg")
            .await?
            .is_none()
    );

    // The worker kept serving after the bad images.
    s3.put_object()
        .bucket(stack.source_bucket())
        .key("photos/after.jpg")
        .body(ByteStream::from(photo.clone()))
        .send()
        .await?;
    replica_of(&pipeline, &gcs, bucket, "photos/after.jpg", TIMEOUT).await?;

    // A delete takes the variants with it.
    s3.delete_object()
        .bucket(stack.source_bucket())
        .key("photos/sea.jpg")
        .send()
        .await?;
    eventually(
        TIMEOUT,
        "the replica and its variants to be deleted",
        || async {
            let left = [
                "photos/sea.jpg",
                "_variants/large/photos/sea.jpg",
                "_variants/thumb/photos/sea.jpg.webp",
            ];
            for name in left {
                if gcs.objects().get(bucket, name).await?.is_some() {
                    return Ok(None);
                }
            }
            Ok(Some(()))
        },
    )
    .await
    .map_err(|e| e.context(dump_logs(&pipeline)))?;
    Ok(())
}

/// A photo overwritten by content that gets no variants (here, not an image any more) loses the
/// previous photo's variants in the same job; overwritten by another photo, its variants are
/// replaced, not removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overwrite_removes_the_variants_the_new_content_does_not_replace() -> anyhow::Result<()>
{
    let stack = Stack::start("variants-overwrite", 3)?;
    let pipeline = stack.spawn_pipeline(&[("YUBA_VARIANTS", VARIANTS)])?;
    let gcs = stack.gcs().await?;
    let bucket = stack.replica_bucket();
    let variants = [
        "_variants/large/photos/beach.jpg",
        "_variants/thumb/photos/beach.jpg.webp",
    ];
    let replica_holds = |body: Vec<u8>| {
        let gcs = gcs.clone();
        async move {
            let wanted = sha256_hex(&body);
            eventually(TIMEOUT, "the replica to hold the new content", || async {
                let replica = gcs.objects().get(bucket, "photos/beach.jpg").await?;
                Ok(replica.filter(|r| r.metadata.get("yuba-sha256") == Some(&wanted)))
            })
            .await
        }
    };

    let first = photo();
    stack.put("photos/beach.jpg", &first).await?;
    replica_holds(first.clone())
        .await
        .map_err(|e| e.context(dump_logs(&pipeline)))?;
    for name in variants {
        let variant = gcs.objects().get(bucket, name).await?;
        assert!(variant.is_some(), "{name}: {}", dump_logs(&pipeline));
    }

    // Another photo: the same names, made again from it.
    let second = encode_jpeg(&vec![200; 300 * 200 * 3], 300, 200, 90);
    stack.put("photos/beach.jpg", &second).await?;
    replica_holds(second.clone())
        .await
        .map_err(|e| e.context(dump_logs(&pipeline)))?;
    for name in variants {
        let variant = gcs
            .objects()
            .get(bucket, name)
            .await?
            .expect("replaced, not removed");
        assert_eq!(
            variant.metadata.get("yuba-source-sha256"),
            Some(&sha256_hex(&second)),
            "{name}"
        );
    }

    // Not an image any more: no variant shows the old photo.
    stack.put("photos/beach.jpg", b"now a text file").await?;
    let replica = replica_holds(b"now a text file".to_vec())
        .await
        .map_err(|e| e.context(dump_logs(&pipeline)))?;
    assert_eq!(replica.metadata.get("yuba-variants"), None);
    for name in variants {
        assert!(
            gcs.objects().get(bucket, name).await?.is_none(),
            "{name} outlived its photo"
        );
    }
    let said = pipeline.iter().any(|p| {
        p.raw_log()
            .contains("removed the previous content's variants")
    });
    assert!(said, "{}", dump_logs(&pipeline));
    Ok(())
}

/// Adding a profile costs its variants, not the originals' egress again (issue 20): a job that
/// finds the original current but a configured profile missing from its record makes that
/// profile's variant from the source and adds it to the record with a metadata update. The
/// original keeps its generation, and so does the variant it had; the only upload is the new
/// variant's. Then the replica is up to date.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_profile_added_later_costs_its_variants_not_a_second_copy_of_the_original()
-> anyhow::Result<()> {
    const KEY: &str = "photos/beach.jpg";
    const LARGE_ONLY: &str = r#"{
        "key_template": "_variants/{variant}/{key}",
        "profiles": [{"name": "large", "width": 800, "height": 800, "format": "jpeg", "quality": 80}]
    }"#;
    let stack = Stack::start("variants-added", 3)?;
    let gcs = stack.gcs().await?;
    let bucket = stack.replica_bucket();
    let body = photo();
    stack.put(KEY, &body).await?;
    let job = yuba_e2e::replicate(stack.source_bucket(), KEY);
    let s3_endpoint = stack.var("AWS_ENDPOINT_URL");
    let before = stack
        .replicator(s3_endpoint, &[("YUBA_VARIANTS", LARGE_ONLY)])
        .await?;
    assert_eq!(before.run(&job).await?.as_str(), "replicated");
    let first = gcs.objects().get(bucket, KEY).await?.expect("replicated");
    const LARGE: &str = "_variants/large/photos/beach.jpg";
    let large = gcs
        .objects()
        .get(bucket, LARGE)
        .await?
        .expect("its variant");
    assert!(
        gcs.objects()
            .get(bucket, "_variants/thumb/photos/beach.jpg.webp")
            .await?
            .is_none()
    );

    let after = stack
        .replicator(s3_endpoint, &[("YUBA_VARIANTS", VARIANTS)])
        .await?;
    let requests_before = stack.gcs_requests()?.len();
    let outcome = after.run(&job).await?;
    assert!(
        matches!(
            outcome,
            yuba_replicate::Outcome::VariantsAdded {
                variants: 2,
                variants_error: None,
                ..
            }
        ),
        "{outcome:?}"
    );
    let uploads = stack.gcs_requests()?[requests_before..]
        .iter()
        .filter(|r| r.starts_with("POST /upload/"))
        .count();
    assert_eq!(uploads, 1, "the added profile's variant only");
    let large_now = gcs.objects().get(bucket, LARGE).await?.expect("kept");
    assert_eq!(
        large_now.generation, large.generation,
        "the variant it had is not written again"
    );
    let now = gcs.objects().get(bucket, KEY).await?.expect("replica");
    assert_eq!(
        now.generation, first.generation,
        "the original is not copied again"
    );
    assert_eq!(now.metadata["yuba-sha256"], sha256_hex(&body));
    let listed = now.metadata["yuba-variants"].split(',').count();
    assert_eq!(listed, 2, "{:?}", now.metadata);
    let thumb = gcs
        .objects()
        .get(bucket, "_variants/thumb/photos/beach.jpg.webp")
        .await?
        .expect("the added profile's variant");
    assert_eq!(
        thumb.metadata.get("yuba-source-sha256"),
        Some(&sha256_hex(&body))
    );
    assert_eq!(after.run(&job).await?.as_str(), "already-replicated");
    Ok(())
}
