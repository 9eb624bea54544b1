//! The delivery origin end to end: `yuba-serve` against the local stack, asked over raw HTTP
//! (paths exactly as sent) for originals and variants of replicas the worker's `Replicator`
//! made. Every status it answers (200, 206, 304, 400, 404, 405, 416, 422), a variant rendered on
//! a miss and found on the next request, concurrent misses rendered once, and hostile keys
//! served exactly.

use std::net::SocketAddr;
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use yuba_delivery::path::{original_path, variant_path};
use yuba_e2e::lambda_api::{InvocationResult, RuntimeApi, function_url_event};
use yuba_e2e::raw_http::{Answer, request};
use yuba_e2e::{Stack, gcs_sha256, gradient_jpeg, replicate, sha256_hex};

/// The worker makes `large` only; the origin also knows `small`, a profile added later, which
/// no replica has yet.
const WORKER_VARIANTS: &str = r#"{
    "key_template": "_variants/{variant}/{key}",
    "profiles": [
        {"name": "large", "width": 800, "height": 800, "format": "jpeg", "quality": 80}
    ]
}"#;
const ORIGIN_VARIANTS: &str = r#"{
    "key_template": "_variants/{variant}/{key}",
    "profiles": [
        {"name": "large", "width": 800, "height": 800, "format": "jpeg", "quality": 80},
        {"name": "small", "width": 300, "height": 300, "format": "jpeg", "quality": 80}
    ]
}"#;

/// How long the origin answers from metadata it read: the most it may see an overwrite late.
const METADATA_SECONDS: &str = "2";

/// A JPEG header declaring 65000×65000 pixels in 19 bytes: no variant can be made of it.
fn bomb() -> Vec<u8> {
    let mut bytes = vec![0xFF, 0xD8, 0xFF, 0xC0, 0x00, 0x11, 0x08];
    bytes.extend_from_slice(&65_000_u16.to_be_bytes());
    bytes.extend_from_slice(&65_000_u16.to_be_bytes());
    bytes.extend_from_slice(&[3, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1]);
    bytes
}

/// Width and height from a baseline or progressive JPEG's frame header.
fn jpeg_size(bytes: &[u8]) -> Option<(u16, u16)> {
    let mut at = 2;
    while at + 9 < bytes.len() {
        let (marker, length) = (
            bytes[at + 1],
            usize::from(u16::from_be_bytes([bytes[at + 2], bytes[at + 3]])),
        );
        if matches!(marker, 0xC0 | 0xC2) {
            let height = u16::from_be_bytes([bytes[at + 5], bytes[at + 6]]);
            let width = u16::from_be_bytes([bytes[at + 7], bytes[at + 8]]);
            return Some((width, height));
        }
        at += 2 + length;
    }
    None
}

/// The keys of issue 5 that GCS can hold: each must be served exactly, under its escaped path.
fn hostile_keys() -> Vec<String> {
    let printable: String = (b' '..=b'~').map(char::from).collect();
    [
        printable.as_str(),
        "a/../b",
        "a/./b",
        "../up",
        "a//b",
        "/leading",
        "trailing/",
        "sp ace/caf\u{e9} 日本.txt",
        "enc/a+b%20c%2F",
        "q?uery#frag",
        "back\\slash",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect()
}

async fn get(address: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Answer {
    request(address, "GET", path, headers)
        .await
        .unwrap_or_else(|error| panic!("GET {path}: {error:#}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_origin_serves_originals_and_variants_as_a_cdn_expects() -> anyhow::Result<()> {
    let stack = Stack::start("serve", 1)?;
    let s3 = stack.s3().await;
    let photo = gradient_jpeg(1200, 900, 1);
    let other = gradient_jpeg(1200, 900, 2);
    let mut objects: Vec<(String, Vec<u8>)> = vec![
        ("photos/sea.jpg".into(), photo.clone()),
        ("photos/other.jpg".into(), other.clone()),
        ("photos/bomb.jpg".into(), bomb()),
        ("docs/readme.txt".into(), b"not an image".to_vec()),
    ];
    for (at, key) in hostile_keys().into_iter().enumerate() {
        objects.push((key, format!("hostile {at}").into_bytes()));
    }
    let replicator = stack
        .replicator(
            stack.var("AWS_ENDPOINT_URL"),
            &[("YUBA_VARIANTS", WORKER_VARIANTS)],
        )
        .await?;
    let mut etags = std::collections::HashMap::new();
    for (key, body) in &objects {
        let put = s3
            .put_object()
            .bucket(stack.source_bucket())
            .key(key)
            .content_type(if key.ends_with(".jpg") {
                "image/jpeg"
            } else {
                "text/plain"
            })
            .cache_control("public, max-age=3600")
            .body(ByteStream::from(body.clone()))
            .send()
            .await?;
        etags.insert(key.clone(), put.e_tag().unwrap_or_default().to_owned());
        replicator
            .run(&replicate(stack.source_bucket(), key))
            .await?;
    }
    let (serve, address) = stack
        .spawn_serve(&[
            ("YUBA_VARIANTS", ORIGIN_VARIANTS),
            ("YUBA_SERVE_METADATA_SECONDS", METADATA_SECONDS),
        ])
        .await?;

    originals_are_served_with_http_semantics(address, &photo, &etags["photos/sea.jpg"]).await;
    for (key, body) in &objects[4..] {
        let answer = get(address, &original_path(key), &[]).await;
        assert_eq!((answer.status, &answer.body), (200, body), "{key:?}");
    }
    // Within the metadata's lifetime a hit is one request to GCS: its bytes.
    let before = stack.gcs_requests()?.len();
    get(address, &original_path("photos/sea.jpg"), &[]).await;
    assert_eq!(stack.gcs_requests()?.len() - before, 1);
    variants_are_stored_or_made_on_demand(&stack, address).await?;
    refusals_say_why(address).await;
    a_variant_of_older_content_is_never_served(&stack, &replicator, address).await?;
    a_variant_whose_original_is_gone_is_not_served(&stack, address).await?;
    // The metrics count renders, not the requests that waited for one: `small` of sea.jpg,
    // one for the eight concurrent misses of other.jpg, two of the overwritten sea.jpg.
    let lines = serve.log_lines();
    let total = |metric: &str, served: Option<&str>| -> f64 {
        lines
            .iter()
            .filter(|line| served.is_none_or(|served| line["Served"] == served))
            .filter_map(|line| line[metric].as_f64())
            .sum()
    };
    assert_eq!(total("OriginRenders", None), 4.0);
    assert_eq!(total("OriginRequests", Some("rendered")), 11.0);
    assert_eq!(total("OriginRequests", Some("not_found")), 5.0);
    Ok(())
}

async fn originals_are_served_with_http_semantics(address: SocketAddr, photo: &[u8], etag: &str) {
    let path = original_path("photos/sea.jpg");
    let whole = get(address, &path, &[]).await;
    assert_eq!(whole.status, 200);
    assert_eq!(sha256_hex(&whole.body), sha256_hex(photo));
    // S3's ETag, so that CloudFront revalidates across S3 and this failover alike.
    assert_eq!(whole.header("etag"), Some(etag));
    assert_eq!(whole.header("content-type"), Some("image/jpeg"));
    assert_eq!(whole.header("cache-control"), Some("public, max-age=3600"));
    assert_eq!(whole.header("accept-ranges"), Some("bytes"));
    assert_eq!(whole.header("x-yuba-served"), Some("original"));
    let modified = whole
        .header("last-modified")
        .expect("Last-Modified")
        .to_owned();

    let head = request(address, "HEAD", &path, &[]).await.expect("HEAD");
    assert_eq!((head.status, head.body.len()), (200, 0));
    assert_eq!(
        head.header("content-length"),
        Some(photo.len().to_string().as_str())
    );

    for condition in [
        ("If-None-Match", etag),
        ("If-Modified-Since", modified.as_str()),
    ] {
        let again = get(address, &path, &[condition]).await;
        assert_eq!((again.status, again.body.len()), (304, 0), "{condition:?}");
        assert_eq!(again.header("etag"), Some(etag));
    }
    let part = get(address, &path, &[("Range", "bytes=100-299")]).await;
    assert_eq!(part.status, 206);
    assert_eq!(part.body, photo[100..300]);
    let range = format!("bytes 100-299/{}", photo.len());
    assert_eq!(part.header("content-range"), Some(range.as_str()));
    let tail = get(address, &path, &[("Range", "bytes=-10")]).await;
    assert_eq!(
        (tail.status, tail.body.as_slice()),
        (206, &photo[photo.len() - 10..])
    );
    let past = get(address, &path, &[("Range", "bytes=99999999-")]).await;
    assert_eq!(past.status, 416);
    let total = format!("bytes */{}", photo.len());
    assert_eq!(past.header("content-range"), Some(total.as_str()));
}

async fn variants_are_stored_or_made_on_demand(
    stack: &Stack,
    address: SocketAddr,
) -> anyhow::Result<()> {
    let gcs = stack.gcs().await?;
    let bucket = stack.replica_bucket();
    // The worker made `large`: a hit, the stored object's bytes.
    let large = get(address, &variant_path("large", "photos/sea.jpg"), &[]).await;
    assert_eq!(large.status, 200);
    assert_eq!(large.header("x-yuba-served"), Some("hit"));
    assert_eq!(jpeg_size(&large.body), Some((800, 600)));
    assert_eq!(
        sha256_hex(&large.body),
        gcs_sha256(&gcs, bucket, "_variants/large/photos/sea.jpg").await?
    );
    let etag = large.header("etag").expect("a variant's ETag").to_owned();
    let revalidated = get(
        address,
        &variant_path("large", "photos/sea.jpg"),
        &[("If-None-Match", &etag)],
    )
    .await;
    assert_eq!(revalidated.status, 304);

    // Nobody made `small`: rendered on the first request, written back, a hit on the next.
    let path = variant_path("small", "photos/sea.jpg");
    let first = get(address, &path, &[]).await;
    assert_eq!(
        (first.status, first.header("x-yuba-served")),
        (200, Some("rendered"))
    );
    assert_eq!(jpeg_size(&first.body), Some((300, 225)));
    let stored = gcs_sha256(&gcs, bucket, "_variants/small/photos/sea.jpg").await?;
    assert_eq!(sha256_hex(&first.body), stored);
    let second = get(address, &path, &[]).await;
    assert_eq!(
        (second.status, second.header("x-yuba-served")),
        (200, Some("hit"))
    );
    assert_eq!(second.body, first.body);
    // The same bytes have the same validator, however they were found.
    assert_eq!(second.header("etag"), first.header("etag"));

    // Eight clients miss the same variant at once: one render, one write, eight answers.
    let uploads = || -> anyhow::Result<usize> {
        let requests = stack.gcs_requests()?;
        Ok(requests
            .iter()
            .filter(|r| r.starts_with("POST /upload/"))
            .count())
    };
    let before = uploads()?;
    let path = variant_path("small", "photos/other.jpg");
    let answers = futures::future::join_all((0..8).map(|_| get(address, &path, &[]))).await;
    for answer in &answers {
        assert_eq!(answer.status, 200);
        assert_eq!(answer.body, answers[0].body);
    }
    assert_eq!(jpeg_size(&answers[0].body), Some((300, 225)));
    assert_eq!(
        uploads()? - before,
        1,
        "one write-back for eight concurrent misses"
    );
    Ok(())
}

/// sea.jpg is overwritten by a portrait, which the worker replicates with its `large` variant.
/// The `small` object on-demand rendering wrote is now of the older content: it is rendered again
/// from the portrait for each request, and not overwritten (the origin may only create; the
/// worker or the reconciler replaces it).
async fn a_variant_of_older_content_is_never_served(
    stack: &Stack,
    replicator: &yuba_replicate::Replicator,
    address: SocketAddr,
) -> anyhow::Result<()> {
    let gcs = stack.gcs().await?;
    let small = "_variants/small/photos/sea.jpg";
    let before = gcs.objects().get(stack.replica_bucket(), small).await?;
    // Read now, so the origin holds the replica's metadata while it is replaced.
    let path = original_path("photos/sea.jpg");
    assert_eq!(get(address, &path, &[]).await.status, 200);
    let portrait = gradient_jpeg(900, 1200, 4);
    stack.put("photos/sea.jpg", &portrait).await?;
    // A job without the event's ETag is satisfied by any complete replica: forced, as the
    // reconciler sends one for content that changed.
    let mut job = replicate(stack.source_bucket(), "photos/sea.jpg");
    if let yuba_model::Job::Replicate(job) = &mut job {
        job.force = true;
    }
    replicator.run(&job).await?;
    // The generation it holds is gone: it is not served, the origin looks again.
    let original = get(address, &path, &[]).await;
    assert_eq!(
        (original.status, sha256_hex(&original.body)),
        (200, sha256_hex(&portrait))
    );
    // The origin may answer from metadata it read for this long: past it, the new content.
    tokio::time::sleep(Duration::from_secs_f64(
        METADATA_SECONDS.parse::<f64>()? + 0.1,
    ))
    .await;
    for _ in 0..2 {
        let answer = get(address, &variant_path("small", "photos/sea.jpg"), &[]).await;
        assert_eq!(answer.header("x-yuba-served"), Some("rendered"));
        assert_eq!(jpeg_size(&answer.body), Some((225, 300)));
    }
    let after = gcs.objects().get(stack.replica_bucket(), small).await?;
    assert_eq!(
        after.map(|o| o.generation),
        before.map(|o| o.generation),
        "the stale variant was overwritten"
    );
    let large = get(address, &variant_path("large", "photos/sea.jpg"), &[]).await;
    assert_eq!(
        (large.header("x-yuba-served"), jpeg_size(&large.body)),
        (Some("hit"), Some((600, 800)))
    );
    Ok(())
}

/// other.jpg's original replica is deleted and its `large` variant left behind (a delete that
/// raced the variant's write, or failed part-way): the variant object is never served alone.
async fn a_variant_whose_original_is_gone_is_not_served(
    stack: &Stack,
    address: SocketAddr,
) -> anyhow::Result<()> {
    let gcs = stack.gcs().await?;
    let bucket = stack.replica_bucket();
    let path = variant_path("large", "photos/other.jpg");
    assert_eq!(
        get(address, &path, &[]).await.header("x-yuba-served"),
        Some("hit")
    );
    gcs.objects()
        .delete(bucket, "photos/other.jpg", None)
        .await?;
    // The origin may answer from metadata it read for this long.
    tokio::time::sleep(Duration::from_secs_f64(
        METADATA_SECONDS.parse::<f64>()? + 0.1,
    ))
    .await;
    let answer = get(address, &path, &[]).await;
    let body = String::from_utf8_lossy(&answer.body);
    assert_eq!(answer.status, 404, "{body}");
    assert!(body.contains("not in the replica bucket"), "{body}");
    assert!(
        gcs.objects()
            .get(bucket, "_variants/large/photos/other.jpg")
            .await?
            .is_some(),
        "the variant object is still there"
    );
    Ok(())
}

async fn refusals_say_why(address: SocketAddr) {
    let cases: &[(&str, &str, u16, &str)] = &[
        ("GET", "/photos/none.jpg", 404, "not in the replica bucket"),
        (
            "GET",
            "/_yuba-variants/huge/photos/sea.jpg",
            404,
            "this origin makes large, small",
        ),
        (
            "GET",
            "/_yuba-variants/large/docs/readme.txt",
            404,
            "not an image",
        ),
        // A variant object is not an original: only replicas are served by key.
        ("GET", "/_variants/large/photos/sea.jpg", 404, "no replica"),
        (
            "GET",
            "/_yuba-variants/large/photos/bomb.jpg",
            422,
            "no large variant",
        ),
        (
            "GET",
            "/photos/bad%zzescape.jpg",
            400,
            "is not a percent escape",
        ),
        ("GET", "/_yuba-variants//photos/sea.jpg", 400, "profile"),
        ("POST", "/photos/sea.jpg", 405, "GET and HEAD"),
    ];
    for (method, path, status, says) in cases {
        let answer = request(address, method, path, &[])
            .await
            .expect("an answer");
        let body = String::from_utf8_lossy(&answer.body);
        assert_eq!(answer.status, *status, "{method} {path}: {body}");
        assert!(body.contains(says), "{method} {path}: {body}");
        assert_eq!(
            answer.header("content-type"),
            Some("text/plain; charset=utf-8")
        );
    }
    // Escaped or not, a path names the key S3 would read.
    let escaped = get(address, "/photos/sea%2Ejpg", &[]).await;
    assert_eq!(escaped.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_setting_stops_the_origin_with_its_name() -> anyhow::Result<()> {
    let stack = Stack::start("serve-config", 1)?;
    let finished = stack
        .run(
            "yuba-serve",
            &[],
            &[("YUBA_SERVE_ADDRESS", "localhost-ish")],
            Duration::from_secs(30),
        )
        .await?;
    assert_ne!(finished.code, Some(0));
    assert!(
        finished.stderr.contains("YUBA_SERVE_ADDRESS"),
        "{}",
        finished.stderr
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_lambda_the_origin_streams_its_answers() -> anyhow::Result<()> {
    let stack = Stack::start("serve-lambda", 1)?;
    let photo = gradient_jpeg(1200, 900, 3);
    let key = "lambda/sea side.jpg";
    stack
        .s3()
        .await
        .put_object()
        .bucket(stack.source_bucket())
        .key(key)
        .content_type("image/jpeg")
        .body(ByteStream::from(photo.clone()))
        .send()
        .await?;
    let replicator = stack
        .replicator(
            stack.var("AWS_ENDPOINT_URL"),
            &[("YUBA_VARIANTS", WORKER_VARIANTS)],
        )
        .await?;
    replicator
        .run(&replicate(stack.source_bucket(), key))
        .await?;
    let api = RuntimeApi::start().await?;
    let mut env: Vec<(&str, String)> = api.env();
    env.push(("YUBA_VARIANTS", ORIGIN_VARIANTS.to_owned()));
    let overrides: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let _serve = stack.spawn("yuba-serve", "serve-lambda", &overrides)?;

    let invoke = |method: &'static str, path: String, headers: &'static [(&str, &str)]| {
        let api = &api;
        async move {
            let event = function_url_event(method, &path, headers);
            match api.invoke(&event, Duration::from_secs(60)).await? {
                InvocationResult::Streamed { prelude, body } => Ok((prelude, body)),
                other => anyhow::bail!("{method} {path}: not a streamed response: {other:?}"),
            }
        }
    };
    let (prelude, body) = invoke("GET", original_path(key), &[]).await?;
    assert_eq!(prelude["statusCode"], 200);
    assert_eq!(prelude["headers"]["content-type"], "image/jpeg");
    assert_eq!(prelude["headers"]["x-yuba-served"], "original");
    assert_eq!(sha256_hex(&body), sha256_hex(&photo));

    let (prelude, body) = invoke("GET", original_path(key), &[("Range", "bytes=0-99")]).await?;
    assert_eq!(
        (prelude["statusCode"].as_u64(), body.as_slice()),
        (Some(206), &photo[..100])
    );
    let (prelude, body) = invoke("HEAD", original_path(key), &[]).await?;
    assert_eq!((prelude["statusCode"].as_u64(), body.len()), (Some(200), 0));

    let (prelude, body) = invoke("GET", variant_path("small", key), &[]).await?;
    assert_eq!(prelude["statusCode"], 200);
    assert_eq!(prelude["headers"]["x-yuba-served"], "rendered");
    assert_eq!(jpeg_size(&body), Some((300, 225)));

    let (prelude, body) = invoke("GET", "/lambda/none.jpg".to_owned(), &[]).await?;
    assert_eq!(prelude["statusCode"], 404);
    assert!(String::from_utf8_lossy(&body).contains("not in the replica bucket"));
    Ok(())
}
