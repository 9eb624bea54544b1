//! The reconciler reading the source from an S3 Inventory report (`--source-inventory`), end to
//! end: reports written into moto's S3 as S3 writes them (gzip CSV with URL-encoded keys, or
//! Snappy Parquet with keys as they are; a manifest with each file's MD5), read back through the
//! same path as a real one.
//!
//! A report is a snapshot: what it makes look drifting is looked up in the source bucket, so a
//! key written or changed after the report is neither reported nor repaired, and above all a
//! replica whose source appeared after the report is never deleted as an orphan. A report that
//! cannot be trusted (too old, of another bucket, a data file that is not the manifest's) is
//! refused with exit 2 and a message that says what to do.

use std::path::Path;

use aws_sdk_s3::primitives::ByteStream;
use chrono::{DateTime, Utc};
use rand::seq::SliceRandom;
use serde_json::Value;
use yuba_e2e::{Stack, pseudo_random_bytes};
use yuba_inventory::ReportFormat;
use yuba_inventory::write::{data_file, manifest_json};
use yuba_inventory::{DataFile, Entry};

use crate::reconciler::{count, expected, kinds_and_keys, parse, reconcile};

/// The bucket the reports are written to (S3 writes them to a bucket of the user's choice).
pub(crate) const INVENTORIES: &str = "inventories";

/// The folder S3 writes a configuration's reports to: `prefix/source-bucket/config-ID/` (a
/// configuration per format).
fn configuration_folder(stack: &Stack, format: ReportFormat) -> String {
    let config = match format {
        ReportFormat::Csv => "daily",
        ReportFormat::Parquet => "daily-parquet",
    };
    format!("reports/{}/{config}/", stack.source_bucket())
}

/// Writes a report of the source bucket as it is now, made at `created`, into two data files
/// whose rows are shuffled (a report has no documented order); returns the manifest's URL.
pub(crate) async fn write_report(
    stack: &Stack,
    created: DateTime<Utc>,
    format: ReportFormat,
) -> anyhow::Result<String> {
    let s3 = stack.s3().await;
    let listed = s3
        .list_objects_v2()
        .bucket(stack.source_bucket())
        .send()
        .await?;
    let mut entries: Vec<Entry> = listed
        .contents()
        .iter()
        .map(|object| Entry {
            key: object.key().unwrap_or_default().to_owned(),
            size: object.size().unwrap_or_default() as u64,
            etag: object
                .e_tag()
                .unwrap_or_default()
                .trim_matches('"')
                .to_owned(),
            last_modified: object
                .last_modified()
                .and_then(|time| DateTime::from_timestamp_millis(time.to_millis().ok()?)),
        })
        .collect();
    entries.shuffle(&mut rand::rng());
    let configuration = configuration_folder(stack, format);
    let folder = format!("{configuration}{}/", created.format("%Y-%m-%dT%H-%MZ"));
    let mut files: Vec<DataFile> = Vec::new();
    for (n, half) in entries.chunks(entries.len().div_ceil(2)).enumerate() {
        let mut writer = format.writer(stack.source_bucket());
        for entry in half {
            writer.write(entry)?;
        }
        let bytes = writer.finish()?;
        let key = format!("{configuration}data/{n}.{}", format.extension());
        put(stack, &key, bytes.clone()).await?;
        files.push(data_file(&key, &bytes));
    }
    let manifest = format!("{folder}manifest.json");
    let json = manifest_json(format, stack.source_bucket(), INVENTORIES, created, &files);
    put(stack, &manifest, json.into_bytes()).await?;
    Ok(format!("s3://{INVENTORIES}/{manifest}"))
}

async fn put(stack: &Stack, key: &str, body: Vec<u8>) -> anyhow::Result<()> {
    stack
        .s3()
        .await
        .put_object()
        .bucket(INVENTORIES)
        .key(key)
        .body(ByteStream::from(body))
        .send()
        .await?;
    Ok(())
}

pub(crate) async fn create_inventory_bucket(stack: &Stack) -> anyhow::Result<()> {
    stack
        .s3()
        .await
        .create_bucket()
        .bucket(INVENTORIES)
        .send()
        .await?;
    Ok(())
}

pub(crate) fn summary_without_timing(mut summary: Value) -> Value {
    for volatile in [
        "elapsed_ms",
        "looked_up",
        "listed_source",
        "listed_source_bytes",
    ] {
        summary
            .as_object_mut()
            .map(|fields| fields.remove(volatile));
    }
    summary
}

/// A diff from a report finds what a diff from the listing finds, on keys that need URL
/// decoding too; what changed after the report is looked up and found in sync, not drift; a
/// backfill from the report repairs the drift and deletes the true orphan only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_diff_from_an_inventory_report_finds_what_a_listing_finds_and_trusts_only_the_source()
-> anyhow::Result<()> {
    let stack = Stack::start("inventory-diff", 3)?;
    create_inventory_bucket(&stack).await?;
    let gcs = stack.gcs().await?;
    let s3 = stack.s3().await;
    let bucket = stack.replica_bucket();
    let checkpoint = stack.dir.join("inventory.checkpoint.json");
    let keys = [
        "a.bin",
        "b.bin",
        "sp ace+plus%.bin",
        "é/ü 日本.bin",
        "photos/c.bin",
        "photos/d.bin",
        "gone.bin",
    ];
    for (n, key) in keys.iter().enumerate() {
        stack
            .put(key, &pseudo_random_bytes(1000 + n, n as u64))
            .await?;
    }
    // Enough more for several key ranges at --page-size 1 (ranges of ten pages).
    for n in 0..20 {
        stack
            .put(&format!("many/{n:02}.bin"), &pseudo_random_bytes(100, n))
            .await?;
    }
    let seeded = reconcile(&stack, &["backfill", "--inline"], &[], &checkpoint).await?;
    assert_eq!(seeded.code, Some(0), "{}", seeded.stderr);

    // Drift the report sees: a replica lost, a source rewritten, a new source, a source deleted.
    assert!(gcs.objects().delete(bucket, "a.bin", None).await?);
    stack.put("b.bin", b"b, version two").await?;
    stack.put("photos/new.bin", b"not replicated yet").await?;
    s3.delete_object()
        .bucket(stack.source_bucket())
        .key("gone.bin")
        .send()
        .await?;
    let report = write_report(&stack, Utc::now(), ReportFormat::Csv).await?;
    let parquet = write_report(&stack, Utc::now(), ReportFormat::Parquet).await?;

    // After the report: a source written and replicated, another rewritten and replicated.
    stack.put("late.bin", b"written after the report").await?;
    stack
        .put("photos/c.bin", b"c, rewritten after the report")
        .await?;
    let manifest = stack.dir.join("late.txt");
    std::fs::write(&manifest, "late.bin\nphotos/c.bin\n")?;
    let late = reconcile(
        &stack,
        &["backfill", "--inline", "--manifest", path(&manifest)],
        &[],
        &checkpoint,
    )
    .await?;
    assert_eq!(late.code, Some(0), "{}", late.stderr);

    let drift = expected(&[
        ("missing", "a.bin"),
        ("stale", "b.bin"),
        ("missing", "photos/new.bin"),
        ("orphan", "gone.bin"),
    ]);
    let listing = reconcile(&stack, &["diff"], &[], &checkpoint).await?;
    let (listing_findings, listing_summary) = parse(&listing);
    assert_eq!(
        kinds_and_keys(&listing_findings),
        drift,
        "{}",
        listing.stdout
    );

    // The configuration's folder: the newest report in it is read.
    let folder = format!(
        "s3://{INVENTORIES}/{}",
        configuration_folder(&stack, ReportFormat::Csv)
    );
    let from_report = reconcile(
        &stack,
        &["diff", "--source-inventory", &folder],
        &[],
        &checkpoint,
    )
    .await?;
    let (report_findings, report_summary) = parse(&from_report);
    assert_eq!(
        kinds_and_keys(&report_findings),
        drift,
        "the report's diff is the listing's\n{}\n{}",
        from_report.stdout,
        from_report.stderr
    );
    assert_eq!(from_report.code, Some(1), "{}", from_report.stderr);
    assert_eq!(
        summary_without_timing(report_summary.clone()),
        summary_without_timing(listing_summary),
        "the same counts, but for what was looked up"
    );
    // The four drifting keys and the two changed after the report: each looked up once.
    assert_eq!(count(&report_summary, "looked_up"), 6, "{report_summary}");
    // The report lists the 27 sources of its time: not late.bin, and not gone.bin.
    assert_eq!(
        count(&report_summary, "listed_source"),
        27,
        "{report_summary}"
    );

    // The same report in Parquet, whose keys are not URL-encoded ("sp ace+plus%.bin" as it is):
    // the same findings, the same counts.
    let from_parquet = reconcile(
        &stack,
        &["diff", "--source-inventory", &parquet],
        &[],
        &checkpoint,
    )
    .await?;
    let (parquet_findings, parquet_summary) = parse(&from_parquet);
    assert_eq!(
        kinds_and_keys(&parquet_findings),
        drift,
        "{}\n{}",
        from_parquet.stdout,
        from_parquet.stderr
    );
    let elapsed = |mut summary: Value| {
        summary.as_object_mut().map(|s| s.remove("elapsed_ms"));
        summary
    };
    assert_eq!(
        elapsed(parquet_summary),
        elapsed(report_summary.clone()),
        "the same counts, what was looked up included"
    );

    // In key ranges of ten sources, two listed at once: the same findings, the same counts.
    let ranged = reconcile(
        &stack,
        &[
            "diff",
            "--source-inventory",
            &report,
            "--page-size",
            "1",
            "--concurrency",
            "2",
        ],
        &[],
        &checkpoint,
    )
    .await?;
    let (ranged_findings, ranged_summary) = parse(&ranged);
    assert_eq!(kinds_and_keys(&ranged_findings), drift, "{}", ranged.stdout);
    assert_eq!(
        summary_without_timing(ranged_summary),
        summary_without_timing(report_summary.clone()),
        "ranges change nothing but the pace"
    );

    let backfill = reconcile(
        &stack,
        &[
            "backfill",
            "--inline",
            "--delete-orphans",
            "--source-inventory",
            &report,
        ],
        &[],
        &checkpoint,
    )
    .await?;
    let (repaired, summary) = parse(&backfill);
    assert_eq!(kinds_and_keys(&repaired), drift, "{}", backfill.stdout);
    assert_eq!(backfill.code, Some(0), "{}", backfill.stderr);
    assert_eq!(count(&summary, "repaired"), 4, "{summary}");
    assert!(
        gcs.objects().get(bucket, "late.bin").await?.is_some(),
        "a replica whose source came after the report is no orphan"
    );
    assert!(gcs.objects().get(bucket, "gone.bin").await?.is_none());

    let after = reconcile(&stack, &["diff"], &[], &checkpoint).await?;
    assert_eq!(
        after.code,
        Some(0),
        "in sync after the backfill: {}",
        after.stdout
    );
    Ok(())
}

/// A report too old, of another bucket, with a data file that is not the one its manifest
/// describes, or a folder with no report: each is refused with exit 2, naming the problem and
/// what to do, before anything is judged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inventory_report_that_cannot_be_trusted_is_refused() -> anyhow::Result<()> {
    let stack = Stack::start("inventory-refused", 3)?;
    create_inventory_bucket(&stack).await?;
    let checkpoint = stack.dir.join("refused.checkpoint.json");
    stack.put("a.bin", b"a").await?;

    let refused = |args: Vec<String>, why: &'static str| {
        let stack = &stack;
        let checkpoint = &checkpoint;
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let run = reconcile(stack, &args, &[], checkpoint).await?;
            assert_eq!(run.code, Some(2), "{why}: {}\n{}", run.stdout, run.stderr);
            assert!(run.stderr.contains(why), "{why}: {}", run.stderr);
            anyhow::Ok(())
        }
    };
    let diff = |location: &str| {
        vec![
            "diff".into(),
            "--source-inventory".into(),
            location.to_owned(),
        ]
    };

    let configuration = configuration_folder(&stack, ReportFormat::Csv);
    let folder = format!("s3://{INVENTORIES}/{configuration}");
    refused(diff(&folder), "holds no inventory report").await?;

    let old = write_report(
        &stack,
        Utc::now() - chrono::Duration::hours(72),
        ReportFormat::Csv,
    )
    .await?;
    refused(diff(&old), "older than the 48 h allowed").await?;
    let mut allowed = diff(&old);
    allowed.extend(["--inventory-max-age".into(), "96".into()]);
    let run = reconcile(
        &stack,
        &allowed.iter().map(String::as_str).collect::<Vec<_>>(),
        &[],
        &checkpoint,
    )
    .await?;
    assert_eq!(
        run.code,
        Some(1),
        "--inventory-max-age admits it: {}",
        run.stderr
    );

    // The data files replaced after the manifest was written.
    let report = write_report(&stack, Utc::now(), ReportFormat::Csv).await?;
    let data = format!("{configuration}data/0.csv.gz");
    put(&stack, &data, b"not the report's file".to_vec()).await?;
    refused(diff(&report), "is not the one its manifest describes").await?;

    // A "manifest" far larger than any S3 writes: refused once the read passes the limit.
    let huge = format!("{configuration}huge/manifest.json");
    put(&stack, &huge, vec![b' '; (16 << 20) + 1]).await?;
    refused(
        diff(&format!("s3://{INVENTORIES}/{huge}")),
        "is over 16777216 bytes: it is not an S3 Inventory manifest",
    )
    .await?;

    // A report of another bucket, even one in the same folder layout.
    let created = Utc::now();
    let other = format!("{configuration}other/manifest.json");
    let json = manifest_json(
        ReportFormat::Csv,
        "someone-elses-bucket",
        INVENTORIES,
        created,
        &[],
    );
    put(&stack, &other, json.into_bytes()).await?;
    refused(
        diff(&format!("s3://{INVENTORIES}/{other}")),
        "not the source bucket",
    )
    .await?;
    Ok(())
}

fn path(path: &Path) -> &str {
    path.to_str().unwrap_or_default()
}
