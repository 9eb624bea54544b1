//! Hostile input through the real pipeline (S3 put in moto → notification → ingest → work
//! queue → worker → fake-gcs-server): keys of every shape S3 takes, user metadata at S3's
//! limits, content types that lie, and one notification of a thousand records with malformed
//! ones mixed in. Each key is replicated under exactly its own name or refused with its reason
//! and dead-lettered; nothing is ever renamed, and a bad record costs only itself.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::NotificationConfiguration;
use serde_json::{Value, json};
use yuba_e2e::{
    Process, Stack, dump_logs, eventually, gcs_sha256, gradient_jpeg, logs_where,
    message_attribute, pseudo_random_bytes, queue_depth, replica_of, sha256_hex, take_messages,
};
use yuba_events::REJECTED_REASON_ATTRIBUTE;
use yuba_gcs::{Gcs, ListQuery, ObjectInfo};
use yuba_model::Job;

const TIMEOUT: Duration = Duration::from_secs(60);

/// Every object in the replica bucket under `prefix`, all pages.
async fn list_all(gcs: &Gcs, bucket: &str, prefix: &str) -> anyhow::Result<Vec<ObjectInfo>> {
    let mut objects = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let query = ListQuery {
            prefix,
            page_token: token.as_deref(),
            page_size: 1000,
            ..ListQuery::default()
        };
        let page = gcs.objects().list(bucket, &query).await?;
        objects.extend(page.objects);
        match page.next_page_token {
            Some(next) => token = Some(next),
            None => return Ok(objects),
        }
    }
}

/// Takes messages off a dead-letter queue until it has the jobs for all of `keys` (deleting
/// what it reads), and returns the keys of the jobs found there.
async fn dead_letter_keys(
    stack: &Stack,
    dlq: &str,
    keys: &BTreeSet<String>,
    processes: &[Process],
) -> anyhow::Result<BTreeSet<String>> {
    let sqs = stack.sqs().await;
    let mut found = BTreeSet::new();
    let deadline = Instant::now() + TIMEOUT;
    while !keys.is_subset(&found) {
        anyhow::ensure!(
            Instant::now() < deadline,
            "timed out waiting for the refused jobs in the DLQ; found {found:?}\n{}",
            dump_logs(processes)
        );
        let received = sqs
            .receive_message()
            .queue_url(dlq)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await?;
        for message in received.messages() {
            let job = Job::from_message(message.body().unwrap_or_default())?;
            found.insert(job.key().to_owned());
            sqs.delete_message()
                .queue_url(dlq)
                .set_receipt_handle(message.receipt_handle().map(str::to_owned))
                .send()
                .await?;
        }
    }
    Ok(found)
}

fn md5_of(bytes: &[u8]) -> [u8; 16] {
    use md5::{Digest, Md5};
    Md5::digest(bytes).into()
}

/// A key as S3 writes it into a notification: form-URL-encoded.
fn form_encode(key: &str) -> String {
    let mut out = String::with_capacity(key.len() * 3);
    for byte in key.bytes() {
        match byte {
            b' ' => out.push('+'),
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => {
                out.push(char::from(byte));
            }
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

fn s3_record(bucket: &str, raw_key: &str, size: usize, etag: &str) -> Value {
    json!({
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
        "eventTime": "2026-11-22T12:00:00.000Z", "eventName": "ObjectCreated:Put",
        "s3": {"s3SchemaVersion": "1.0", "bucket": {"name": bucket},
               "object": {"key": raw_key, "size": size, "eTag": etag}}
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_keys_are_replicated_under_their_own_name_or_refused() -> anyhow::Result<()> {
    // A refused job is dead-lettered after its first failure.
    let stack = Stack::start("hostile-keys", 1)?;
    // With variants, whose names (`_variants/large/...`) no source key may take.
    let pipeline = stack.spawn_pipeline(&[("YUBA_VARIANTS", VARIANTS)])?;
    let s3 = stack.s3().await;
    let sqs = stack.sqs().await;
    let gcs = stack.gcs().await?;
    let (source, bucket) = (stack.source_bucket(), stack.replica_bucket());

    let printable: String = (b' '..=b'~').map(char::from).collect();
    // 170 × 6 bytes of CJK and a 4-byte emoji: 341 characters, exactly 1,024 bytes.
    let longest = format!("{}\u{1F600}", "日本".repeat(170));
    assert_eq!((longest.len(), longest.chars().count()), (1024, 341));
    let good: Vec<String> = [
        printable.as_str(),
        "a/../b",
        "a/./b",
        "../up",
        "a//b",
        "/leading",
        "trailing/",
        "ctl/tab\there",
        "ctl/\u{1}\u{2}\u{1b}\u{7f}",
        "ctl/nul\u{0}byte",
        "ctl/nel\u{85}and-ls\u{2028}",
        longest.as_str(),
        // NFC and NFD of the same word: two keys, two replicas.
        "word/caf\u{e9}.txt",
        "word/cafe\u{301}.txt",
        // A key that looks form-encoded is not decoded twice.
        "enc/a+b%20c%2F",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    // Keys S3 holds and GCS cannot: refused, never renamed.
    let refused: BTreeMap<&str, &str> = BTreeMap::from([
        (".", "is `.` or `..`"),
        ("..", "is `.` or `..`"),
        ("cr\rhere", "carriage return or line feed"),
        (".well-known/acme-challenge/token", "reserved by GCS"),
        // Names yuba writes other objects under: a variant, a composite upload's part.
        ("_variants/large/photo.jpg", "hold image variants"),
        (
            "_yuba-parts/0123/00001",
            "temporary parts of composite uploads",
        ),
    ]);

    let mut bodies = BTreeMap::new();
    let all: Vec<&str> = good
        .iter()
        .map(String::as_str)
        .chain(refused.keys().copied())
        .collect();
    for (i, key) in all.into_iter().enumerate() {
        let body = pseudo_random_bytes(100 + i, 1000 + i as u64);
        s3.put_object()
            .bucket(source)
            .key(key)
            .body(ByteStream::from(body.clone()))
            .send()
            .await
            .map_err(|e| {
                anyhow::anyhow!("PUT {key:?}: {}", aws_sdk_s3::error::DisplayErrorContext(e))
            })?;
        bodies.insert(key.to_owned(), body);
    }
    // moto cannot hold a key with a line feed (its URL routing answers 404); AWS S3 can, and
    // its event then reaches the worker like this hand-made one, to be refused the same way.
    let lf = "lf\nhere";
    let lf_put = s3
        .put_object()
        .bucket(source)
        .key(lf)
        .body(ByteStream::from_static(b"x"))
        .send()
        .await;
    assert!(lf_put.is_err(), "moto took a key with a line feed");
    sqs.send_message()
        .queue_url(stack.var("YUBA_EVENTS_QUEUE_URL"))
        .message_body(json!({"Records": [s3_record(source, &form_encode(lf), 1, "")]}).to_string())
        .send()
        .await?;

    for key in &good {
        let replica = replica_of(&pipeline, &gcs, bucket, key, TIMEOUT).await?;
        assert_eq!(replica.name, *key);
        assert_eq!(replica.metadata["yuba-source-key"], *key);
        let body = &bodies[key];
        assert_eq!(replica.metadata["yuba-sha256"], sha256_hex(body));
        // What the server computed over the bytes it stored.
        assert_eq!(replica.md5, Some(md5_of(body)), "content of {key:?}");
        assert_eq!(
            replica.crc32c,
            Some(crc32c::crc32c(body)),
            "content of {key:?}"
        );
        // And the bytes themselves, read back. fake-gcs-server echoes custom metadata as
        // `X-Goog-Meta-*` response headers byte for byte, so the media response for a replica
        // whose `yuba-source-key` holds a control character carries a header value no HTTP
        // client accepts; those are checked by the digests above alone.
        if !key.chars().any(char::is_control) {
            assert_eq!(
                gcs_sha256(&gcs, bucket, key).await?,
                sha256_hex(body),
                "content of {key:?}"
            );
        }
    }

    let mut expected_dead: BTreeSet<String> = refused.keys().map(|k| (*k).to_owned()).collect();
    expected_dead.insert(lf.to_owned());
    let dead = dead_letter_keys(
        &stack,
        stack.var("YUBA_LAMBDA_DLQ_URL"),
        &expected_dead,
        &pipeline,
    )
    .await?;
    assert_eq!(
        dead, expected_dead,
        "only the keys GCS cannot hold are dead-lettered"
    );

    // Each refusal is logged once per delivery, permanent, with the key and the reason.
    let errors = logs_where(&pipeline, "failure", "permanent");
    for (key, reason) in refused
        .iter()
        .chain([(&lf, &"carriage return or line feed")])
    {
        let prefix = format!("s3://{source}/{key} cannot be replicated under its own name: ");
        let logged = errors.iter().find(|(label, line)| {
            label.starts_with("worker")
                && line["error"].as_str().is_some_and(|e| e.contains(&prefix))
        });
        let Some((_, line)) = logged else {
            panic!("no permanent failure logged for {key:?}: {errors:?}");
        };
        let error = line["error"].as_str().unwrap_or_default();
        assert!(
            error.contains(reason) && error.contains("copy the S3 object to"),
            "{error}"
        );
    }

    // Nothing else was written: no renamed, trimmed or normalised copies.
    let names: BTreeSet<String> = list_all(&gcs, bucket, "")
        .await?
        .into_iter()
        .map(|object| object.name)
        .collect();
    let expected: BTreeSet<String> = good.iter().cloned().collect();
    assert_eq!(names, expected);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_metadata_at_the_limits_is_copied_as_s3_returns_it() -> anyhow::Result<()> {
    let stack = Stack::start("hostile-meta", 1)?;
    let pipeline = stack.spawn_pipeline(&[])?;
    let s3 = stack.s3().await;
    let gcs = stack.gcs().await?;
    let (source, bucket) = (stack.source_bucket(), stack.replica_bucket());
    let put = |key: &'static str, metadata: &[(String, String)]| {
        let mut request = s3
            .put_object()
            .bucket(source)
            .key(key)
            .body(ByteStream::from_static(b"metadata test"));
        for (name, value) in metadata {
            request = request.metadata(name, value);
        }
        request.send()
    };
    let entries = |n: usize| -> Vec<(String, String)> {
        (0..n)
            .map(|i| (format!("big-{i}"), "v".repeat(506)))
            .collect()
    };
    let size_of = |entries: &[(String, String)]| -> usize {
        entries.iter().map(|(k, v)| k.len() + v.len()).sum()
    };

    // Non-ASCII values: the SDK sends the UTF-8 bytes as they are. AWS answers a GET with such
    // a value RFC 2047-encoded (`=?UTF-8?B?...?=`), moto with the bytes it was sent; yuba
    // copies whichever it gets, unchanged (decoding would turn a literal `=?UTF-8?B?...?=`
    // value into another one).
    let non_ascii = vec![
        ("city".to_owned(), "Zürich 日本 \u{1F600}".to_owned()),
        ("encoded".to_owned(), "=?UTF-8?B?w7w=?=".to_owned()),
    ];
    put("meta/non-ascii", &non_ascii).await?;
    // A line break cannot be in an HTTP header value: the SDK refuses the upload before it
    // leaves, so no such value ever reaches S3 or yuba.
    let newline = put("meta/newline", &[("note".into(), "a\nb".into())]).await;
    let error = aws_sdk_s3::error::DisplayErrorContext(newline.expect_err("a newline was sent"));
    assert!(error.to_string().contains("header value"), "{error}");
    // Just under S3's 2 KiB of user metadata (names and values together).
    let near = entries(4);
    assert_eq!(size_of(&near), 2044);
    put("meta/near-limit", &near).await?;
    // Over it: AWS refuses the upload (MetadataTooLarge); moto takes it. Either way a replica,
    // if there is a source, carries every entry (GCS allows 8 KiB of custom metadata).
    let over = entries(5);
    assert_eq!(size_of(&over), 2555);
    let over_put = put("meta/over-limit", &over).await;

    for (key, expected) in [("meta/non-ascii", &non_ascii), ("meta/near-limit", &near)] {
        let replica = replica_of(&pipeline, &gcs, bucket, key, TIMEOUT).await?;
        let head = s3.head_object().bucket(source).key(key).send().await?;
        let from_s3 = head.metadata().cloned().unwrap_or_default();
        for (name, value) in expected {
            // The contract: the replica holds what S3 returns.
            assert_eq!(
                replica.metadata.get(name),
                from_s3.get(name),
                "{key}: {name}"
            );
            // And moto returns what it was sent.
            assert_eq!(from_s3.get(name), Some(value), "{key}: {name}");
        }
    }
    match over_put {
        Ok(_) => {
            let replica = replica_of(&pipeline, &gcs, bucket, "meta/over-limit", TIMEOUT).await?;
            for (name, value) in &over {
                assert_eq!(replica.metadata.get(name), Some(value), "{name}");
            }
        }
        Err(error) => {
            let error = aws_sdk_s3::error::DisplayErrorContext(error).to_string();
            assert!(error.contains("MetadataTooLarge"), "{error}");
        }
    }
    assert!(
        gcs.objects().get(bucket, "meta/newline").await?.is_none(),
        "nothing was uploaded, nothing replicated"
    );
    Ok(())
}

const VARIANTS: &str = r#"{
    "profiles": [
        {"name": "large", "width": 120, "height": 120, "format": "jpeg", "quality": 80},
        {"name": "pngonly", "width": 32, "height": 32, "format": "png",
         "content_types": ["image/png"]}
    ]
}"#;

/// A `width`×`height` RGB PNG, made by hand (stored deflate blocks) to depend on no encoder.
fn png(width: u32, height: u32) -> Vec<u8> {
    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = !0_u32;
        for &byte in bytes {
            crc ^= u32::from(byte);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(&u32::try_from(data.len()).unwrap_or(0).to_be_bytes());
        let start = out.len();
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        let crc = crc32(&out[start..]);
        out.extend_from_slice(&crc.to_be_bytes());
    }
    let mut raw = Vec::new();
    for y in 0..height {
        raw.push(0); // filter: none
        for x in 0..width {
            raw.extend_from_slice(&[(x * 255 / width) as u8, (y * 255 / height) as u8, 128]);
        }
    }
    let mut zlib = vec![0x78, 0x01];
    let blocks: Vec<&[u8]> = raw.chunks(65_535).collect();
    for (i, block) in blocks.iter().enumerate() {
        zlib.push(u8::from(i + 1 == blocks.len()));
        let len = u16::try_from(block.len()).unwrap_or(0);
        zlib.extend_from_slice(&len.to_le_bytes());
        zlib.extend_from_slice(&(!len).to_le_bytes());
        zlib.extend_from_slice(block);
    }
    let (mut a, mut b) = (1_u32, 0_u32);
    for &byte in &raw {
        a = (a + u32::from(byte)) % 65_521;
        b = (b + a) % 65_521;
    }
    zlib.extend_from_slice(&((b << 16) | a).to_be_bytes());

    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut header = Vec::new();
    header.extend_from_slice(&width.to_be_bytes());
    header.extend_from_slice(&height.to_be_bytes());
    header.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit RGB
    chunk(&mut out, b"IHDR", &header);
    chunk(&mut out, b"IDAT", &zlib);
    chunk(&mut out, b"IEND", &[]);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_types_that_lie_are_sniffed_not_trusted() -> anyhow::Result<()> {
    let stack = Stack::start("hostile-types", 1)?;
    let pipeline = stack.spawn_pipeline(&[("YUBA_VARIANTS", VARIANTS)])?;
    let s3 = stack.s3().await;
    let gcs = stack.gcs().await?;
    let (source, bucket) = (stack.source_bucket(), stack.replica_bucket());

    let png = png(300, 200);
    let text = b"just some text, not an image at all\n".to_vec();
    let mut fake_png = b"\x89PNG\r\n\x1a\n".to_vec();
    fake_png.extend_from_slice(b"the signature and nothing a decoder can use");
    let uploads: Vec<(&str, Vec<u8>, &str)> = vec![
        ("lies/png-as-jpeg.jpg", png.clone(), "image/jpeg"),
        ("lies/text-as-png.png", text.clone(), "image/png"),
        (
            "lies/jpeg-as-bytes",
            gradient_jpeg(200, 150, 64),
            "application/octet-stream",
        ),
        ("lies/broken.png", fake_png, "image/png"),
    ];
    for (key, body, content_type) in &uploads {
        s3.put_object()
            .bucket(source)
            .key(*key)
            .content_type(*content_type)
            .body(ByteStream::from(body.clone()))
            .send()
            .await?;
    }
    let mut records = BTreeMap::new();
    for (key, body, content_type) in &uploads {
        let replica = replica_of(&pipeline, &gcs, bucket, key, TIMEOUT).await?;
        assert_eq!(
            gcs_sha256(&gcs, bucket, key).await?,
            sha256_hex(body),
            "{key}"
        );
        // The replica keeps the source's headers (it stands in for the source); what the
        // bytes are is recorded beside them.
        assert_eq!(
            replica.content_type.as_deref(),
            Some(*content_type),
            "{key}"
        );
        records.insert(*key, replica.metadata);
    }
    let field = |key: &str, name: &str| records[key].get(name).cloned();
    let variants = |key: &str| -> BTreeSet<String> {
        field(key, "yuba-variants")
            .unwrap_or_default()
            .split(',')
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
            .collect()
    };

    // A PNG labelled JPEG: decoded as the PNG it is, so the PNG-only profile applies too.
    let key = "lies/png-as-jpeg.jpg";
    assert_eq!(
        field(key, "yuba-image-format").as_deref(),
        Some("image/png")
    );
    assert_eq!(
        variants(key),
        BTreeSet::from(["large.jpg".to_owned(), "pngonly.png".to_owned()])
    );
    assert_eq!(field(key, "yuba-variants-error"), None);
    let large = gcs
        .objects()
        .get(bucket, "_variants/large/lies/png-as-jpeg.jpg")
        .await?
        .expect("the large variant exists");
    assert_eq!(large.content_type.as_deref(), Some("image/jpeg"));
    assert_eq!(large.metadata["yuba-variant-width"], "120");
    let small = gcs
        .objects()
        .get(bucket, "_variants/pngonly/lies/png-as-jpeg.jpg.png")
        .await?
        .expect("the png variant exists");
    assert_eq!(small.content_type.as_deref(), Some("image/png"));

    // A text file labelled PNG: copied byte for byte, and nothing claims it is a broken image.
    let key = "lies/text-as-png.png";
    for name in ["yuba-variants", "yuba-variants-error", "yuba-image-format"] {
        assert_eq!(field(key, name), None, "{key}: {name}");
    }

    // A JPEG labelled as bytes: a JPEG all the same; the PNG-only profile does not apply.
    let key = "lies/jpeg-as-bytes";
    assert_eq!(
        field(key, "yuba-image-format").as_deref(),
        Some("image/jpeg")
    );
    assert_eq!(variants(key), BTreeSet::from(["large.jpg".to_owned()]));

    // Bytes that do start like a PNG and are not one: that is a broken image, and says so.
    let key = "lies/broken.png";
    assert_eq!(
        field(key, "yuba-image-format").as_deref(),
        Some("image/png")
    );
    assert!(variants(key).is_empty());
    let error = field(key, "yuba-variants-error").unwrap_or_default();
    assert!(
        error.starts_with("corrupt") || error.starts_with("truncated"),
        "{error}"
    );

    // No variant of anything but the three images.
    let names: BTreeSet<String> = list_all(&gcs, bucket, "_variants/")
        .await?
        .into_iter()
        .map(|object| object.name)
        .collect();
    assert_eq!(
        names,
        BTreeSet::from(
            [
                "_variants/large/lies/png-as-jpeg.jpg",
                "_variants/pngonly/lies/png-as-jpeg.jpg.png",
                "_variants/large/lies/jpeg-as-bytes.jpg",
            ]
            .map(str::to_owned)
        )
    );
    Ok(())
}

/// How many objects the batch test puts and replicates through one notification. Its
/// notification has over a thousand records: each key twice (S3 may repeat itself), a tag
/// change per key (ignored), and the malformed ones. A thousand distinct keys would take
/// moto alone (PUTs, a hundred SendMessageBatch calls, then a GET and the queue traffic of
/// each job) past a minute on two cores.
const BATCH: usize = 340;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_notification_of_a_thousand_records_spares_its_good_records() -> anyhow::Result<()> {
    // A notification that failed would be dead-lettered after its first delivery.
    let stack = Stack::start("hostile-batch", 1)?;
    let s3 = stack.s3().await;
    let sqs = stack.sqs().await;
    let gcs = stack.gcs().await?;
    let (source, bucket) = (stack.source_bucket(), stack.replica_bucket());
    // S3's own notifications are switched off: only the hand-made one below can replicate.
    s3.put_bucket_notification_configuration()
        .bucket(source)
        .notification_configuration(NotificationConfiguration::builder().build())
        .send()
        .await?;
    sqs.purge_queue()
        .queue_url(stack.var("YUBA_EVENTS_QUEUE_URL"))
        .send()
        .await?;

    // Keys with a space, a plus and a non-ASCII character, so each record's key is encoded.
    let keys: Vec<String> = (0..BATCH).map(|i| format!("many/{i:04} é+.bin")).collect();
    let mut puts = tokio::task::JoinSet::new();
    let per_task = BATCH.div_ceil(8);
    for chunk in keys.chunks(per_task) {
        let (s3, chunk, source) = (s3.clone(), chunk.to_vec(), source.to_owned());
        puts.spawn(async move {
            let mut etags = Vec::new();
            for key in chunk {
                let body = key.as_bytes().to_vec();
                let put = s3
                    .put_object()
                    .bucket(&source)
                    .key(&key)
                    .body(ByteStream::from(body))
                    .send()
                    .await?;
                let etag = put.e_tag().unwrap_or_default().trim_matches('"').to_owned();
                etags.push((key, etag));
            }
            anyhow::Ok(etags)
        });
    }
    let mut etags = BTreeMap::new();
    while let Some(done) = puts.join_next().await {
        etags.extend(done??);
    }

    // The malformed records, mixed in among the good ones, each with the field it must name.
    // Only the fields ingest reads, so that a thousand records fit in one SQS message.
    let good = |key: &str| {
        json!({
            "eventVersion": "2.1", "eventName": "ObjectCreated:Put",
            "s3": {"bucket": {"name": source},
                   "object": {"key": form_encode(key), "size": key.len(), "eTag": etags[key]}}
        })
    };
    let mut bad: Vec<(&str, Value)> = Vec::new();
    let mut broken = |field: &'static str, change: &dyn Fn(&mut Value)| {
        let mut record = good(&keys[0]);
        change(&mut record);
        bad.push((field, record));
    };
    broken("s3.object.key", &|r| {
        r["s3"]["object"].as_object_mut().map(|o| o.remove("key"));
    });
    broken("s3.bucket.name", &|r| {
        r["s3"].as_object_mut().map(|o| o.remove("bucket"));
    });
    broken("eventName", &|r| {
        r.as_object_mut().map(|o| o.remove("eventName"));
    });
    broken("s3.object.size", &|r| {
        r["s3"]["object"]["size"] = json!("12")
    });
    broken("s3.object.size", &|r| r["s3"]["object"]["size"] = json!(-5));
    broken("s3.object.size", &|r| {
        r["s3"]["object"]["size"] = json!(u64::MAX)
    });
    broken("s3.object.key", &|r| {
        r["s3"]["object"]["key"] = json!("bad%C3%28")
    });
    broken("s3.object.key", &|r| {
        r["s3"]["object"]["key"] = json!("bad%ZZ")
    });
    broken("eventVersion", &|r| r["eventVersion"] = json!("3.0"));
    broken("s3.bucket.name", &|r| {
        r["s3"]["bucket"]["name"] = json!("not/a bucket")
    });
    broken("eventName", &|r| r["eventName"] = json!("ObjectCreated"));
    let mut records: Vec<Value> = Vec::new();
    for key in &keys {
        records.push(good(key));
        let mut tagged = good(key);
        tagged["eventName"] = json!("ObjectTagging:Put");
        records.push(tagged);
    }
    records.extend(keys.iter().rev().map(|key| good(key)));
    let spacing = records.len() / bad.len();
    for (i, (_, record)) in bad.iter().enumerate() {
        records.insert(i * spacing + i, record.clone());
    }
    records.push(json!("not a record"));
    // A number beyond any f64, which JSON allows and serde cannot hold: only its record is lost.
    let mut huge = good(&keys[1]);
    huge["s3"]["object"]["size"] = json!("HUGE");
    records.push(huge);
    assert!(records.len() > 1000, "{}", records.len());
    let body = json!({ "Records": records })
        .to_string()
        .replace("\"size\":\"HUGE\"", "\"size\":1e400");
    assert!(body.contains("1e400"));
    assert!(
        body.len() < 256 * 1024,
        "one SQS message: {} bytes",
        body.len()
    );
    sqs.send_message()
        .queue_url(stack.var("YUBA_EVENTS_QUEUE_URL"))
        .message_body(&body)
        .send()
        .await?;

    let pipeline = stack.spawn_pipeline(&[("YUBA_CONCURRENCY", "16")])?;
    let replicas = eventually(TIMEOUT, "every good key replicated", || async {
        let listed = list_all(&gcs, bucket, "many/").await?;
        Ok((listed.len() >= BATCH).then_some(listed))
    })
    .await
    .map_err(|e| e.context(dump_logs(&pipeline[..1])))?;
    let names: BTreeSet<&str> = replicas.iter().map(|r| r.name.as_str()).collect();
    let expected: BTreeSet<&str> = keys.iter().map(String::as_str).collect();
    assert_eq!(names, expected, "each key under its own name, nothing else");
    for replica in &replicas {
        assert_eq!(
            replica.metadata.get("yuba-sha256"),
            Some(&sha256_hex(replica.name.as_bytes())),
            "{}",
            replica.name
        );
    }

    // Ingest read all the records of the one notification, enqueued the good ones and named
    // each bad one with its field.
    let ingest = &pipeline[..1];
    let summary = logs_where(ingest, "message", "notification ingested");
    let summary = summary
        .iter()
        .map(|(_, line)| line)
        .find(|line| line["rejected"].as_u64().unwrap_or(0) > 0)
        .unwrap_or_else(|| panic!("no summary of the big notification: {summary:?}"));
    assert_eq!(summary["enqueued"], BATCH);
    assert_eq!(summary["duplicates"], BATCH);
    assert_eq!(summary["ignored"], BATCH);
    assert_eq!(summary["rejected"], bad.len() + 2);
    assert_eq!(summary["set_aside"], bad.len() + 2);
    let rejections: Vec<String> = logs_where(ingest, "message", "record rejected")
        .into_iter()
        .map(|(_, line)| line["error"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(rejections.len(), bad.len() + 2, "{rejections:#?}");
    for (field, _) in &bad {
        let quoted = format!("`{field}`");
        assert!(
            rejections.iter().any(|error| error.contains(&quoted)
                || (*field == "s3.object.key" && error.contains("the key"))),
            "no rejection names {field}: {rejections:#?}"
        );
    }
    assert!(
        rejections
            .iter()
            .any(|e| e.contains("expected a JSON object"))
    );

    assert!(rejections.iter().any(|e| e.contains("cannot be read")));

    // Each bad record is set aside on the DLQ alone, with its reason; the notification is done
    // (its good jobs enqueued once, not again on every redelivery).
    let dlq = stack.var("YUBA_EVENTS_DLQ_URL");
    let set_aside = take_messages(&sqs, dlq, bad.len() + 2, TIMEOUT)
        .await
        .map_err(|e| e.context(dump_logs(ingest)))?;
    for message in &set_aside {
        let text = message.body().unwrap_or_default();
        let reason = message_attribute(message, REJECTED_REASON_ATTRIBUTE).unwrap_or_default();
        assert!(
            rejections.iter().any(|e| e == reason),
            "{reason} was not logged"
        );
        if text.contains("1e400") {
            assert!(reason.contains("cannot be read"), "{reason}");
            continue;
        }
        let alone: Value = serde_json::from_str(text)?;
        assert_eq!(alone["Records"].as_array().map(Vec::len), Some(1), "{text}");
    }
    assert!(
        set_aside
            .iter()
            .any(|m| m.body().unwrap_or_default().contains("1e400"))
    );
    assert_eq!(
        queue_depth(&sqs, stack.var("YUBA_EVENTS_QUEUE_URL")).await?,
        0,
        "the notification was deleted, not dead-lettered whole"
    );
    Ok(())
}
