//! A reconcile run split into key-range shards, end to end: `plan` cuts the inventory report
//! into parts in moto's S3, each shard runs alone on its part (`--shard K/N --plan`), and
//! `merge` adds their summaries up. The merged verdict is the unsharded run's, every finding is
//! made by exactly one shard (the one whose range holds its key), and a merge with a shard
//! missing fails naming it.

use chrono::Utc;
use futures::future::try_join_all;
use serde_json::Value;
use yuba_e2e::{Finished, Stack, pseudo_random_bytes};

use crate::inventory::{create_inventory_bucket, summary_without_timing, write_report};
use crate::reconciler::{count, kinds_and_keys, parse, reconcile, reconciler_step};
use yuba_inventory::ReportFormat;

/// The bucket the plans are kept in.
const PLANS: &str = "plans";

/// Keys shaped to make cutting hard: one huge prefix, unicode, keys that differ only in their
/// last byte.
fn skewed_keys() -> Vec<String> {
    let mut keys: Vec<String> = (0..24).map(|n| format!("photos/2026/{n:04}.jpg")).collect();
    keys.extend(["写真/猫.jpg", "café/crème.jpg", "Zoë +plus.jpg", "😀.png"].map(String::from));
    keys.extend(["same/a", "same/b", "same/c"].map(String::from));
    keys
}

/// Runs every shard of a plan of `of` at once; their outcomes in shard order.
async fn run_shards(
    stack: &Stack,
    command: &[&str],
    plan: &str,
    shards: impl IntoIterator<Item = u32>,
    of: u32,
) -> anyhow::Result<Vec<Finished>> {
    try_join_all(shards.into_iter().map(|index| {
        let shard = format!("{index}/{of}");
        let checkpoint = stack.dir.join(format!("shard-{index}-of-{of}.json"));
        async move {
            let mut args = command.to_vec();
            args.extend(["--shard", &shard, "--plan", plan]);
            reconcile(stack, &args, &[], &checkpoint).await
        }
    }))
    .await
}

fn without_merge_fields(summary: &Value) -> Value {
    let mut summary = summary_without_timing(summary.clone());
    summary
        .as_object_mut()
        .map(|fields| fields.remove("shards"));
    summary
}

/// Each shard finished (exit 0: its verdict is the merge's), its findings lie in its own range,
/// and together they are the unsharded run's, each once.
fn assert_shards_partition(shards: &[Finished], unsharded: &[Value]) {
    let mut all = Vec::new();
    for run in shards {
        assert_eq!(run.code, Some(0), "a shard that finished: {}", run.stderr);
        let (findings, summary) = parse(run);
        let shard = &summary["shard"];
        let (start, end) = (shard["start"].as_str(), shard["end"].as_str());
        for finding in &findings {
            let key = finding["key"].as_str().unwrap_or_default();
            assert!(
                start.is_none_or(|start| key >= start) && end.is_none_or(|end| key < end),
                "{key} found by shard {shard}"
            );
        }
        all.extend(findings);
    }
    assert_eq!(
        kinds_and_keys(&all),
        kinds_and_keys(unsharded),
        "the shards find what the unsharded run finds"
    );
    assert_eq!(all.len(), unsharded.len(), "each finding made once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sharded_run_merges_into_the_unsharded_runs_verdict() -> anyhow::Result<()> {
    let stack = Stack::start("shards", 3)?;
    create_inventory_bucket(&stack).await?;
    let s3 = stack.s3().await;
    s3.create_bucket().bucket(PLANS).send().await?;
    let gcs = stack.gcs().await?;
    let bucket = stack.replica_bucket();
    let checkpoint = stack.dir.join("unsharded.checkpoint.json");
    let keys = skewed_keys();
    // Orphans to be: before the first key, between keys and after the last. No report lists
    // them, so only a shard's key range (not its part of the report) can hold each.
    let orphans = [
        "!first.bin",
        "photos/2026/0011.5.jpg",
        "same/b~",
        "\u{FFFD}last",
    ];
    for (n, key) in keys.iter().map(String::as_str).chain(orphans).enumerate() {
        stack
            .put(key, &pseudo_random_bytes(200 + n, n as u64))
            .await?;
    }
    let seeded = reconcile(&stack, &["backfill", "--inline"], &[], &checkpoint).await?;
    assert_eq!(seeded.code, Some(0), "{}", seeded.stderr);

    // Drift across the key space: the orphans' sources deleted, a replica lost, a source
    // rewritten.
    for orphan in orphans {
        s3.delete_object()
            .bucket(stack.source_bucket())
            .key(orphan)
            .send()
            .await?;
    }
    assert!(
        gcs.objects()
            .delete(bucket, "photos/2026/0003.jpg", None)
            .await?
    );
    stack.put("same/c", b"c, version two").await?;
    // A Parquet report: the plan reads it, the shards read their parts.
    let report = write_report(&stack, Utc::now(), ReportFormat::Parquet).await?;

    let unsharded = reconcile(
        &stack,
        &["diff", "--source-inventory", &report],
        &[],
        &checkpoint,
    )
    .await?;
    assert_eq!(unsharded.code, Some(1), "{}", unsharded.stderr);
    let (unsharded_findings, unsharded_summary) = parse(&unsharded);
    assert_eq!(unsharded_findings.len(), 6, "{}", unsharded.stdout);

    let plan = format!("s3://{PLANS}/runs/1/");
    let planned = reconciler_step(
        &stack,
        &[
            "plan",
            "--shards",
            "4",
            "--plan",
            &plan,
            "--source-inventory",
            &report,
        ],
    )
    .await?;
    assert_eq!(planned.code, Some(0), "{}", planned.stderr);
    let made = planned.json_lines().pop().unwrap_or_default();
    let shards = made["shards"].as_array().cloned().unwrap_or_default();
    let objects: Vec<u64> = shards.iter().map(|shard| count(shard, "objects")).collect();
    assert_eq!(objects.iter().sum::<u64>(), keys.len() as u64, "{made}");
    assert!(
        objects.iter().all(|&n| n == 7 || n == 8),
        "balanced: {objects:?}"
    );

    // Three shards only: the merge names the one missing.
    let first = run_shards(&stack, &["diff"], &plan, 1..=3, 4).await?;
    let merge = |plan: String| {
        let stack = &stack;
        async move { reconciler_step(stack, &["merge", "--plan", &plan]).await }
    };
    let early = merge(plan.clone()).await?;
    assert_eq!(early.code, Some(2), "{}", early.stdout);
    assert!(early.stderr.contains("shards 4 of"), "{}", early.stderr);

    let mut all = first;
    all.extend(run_shards(&stack, &["diff"], &plan, [4], 4).await?);
    assert_shards_partition(&all, &unsharded_findings);
    let merged = merge(plan.clone()).await?;
    assert_eq!(merged.code, Some(1), "{}", merged.stderr);
    let merged_summary = merged.json_lines().pop().unwrap_or_default();
    assert_eq!(count(&merged_summary, "shards"), 4);
    assert_eq!(
        without_merge_fields(&merged_summary),
        without_merge_fields(&unsharded_summary),
        "the merged verdict is the unsharded run's"
    );
    assert_eq!(
        count(&merged_summary, "looked_up"),
        count(&unsharded_summary, "looked_up")
    );

    // More shards than keys: the empty ones find nothing, and the merge is the same.
    let wide = format!("s3://{PLANS}/runs/wide/");
    let of = keys.len() as u32 + 3;
    let planned = reconciler_step(
        &stack,
        &[
            "plan",
            "--shards",
            &of.to_string(),
            "--plan",
            &wide,
            "--source-inventory",
            &report,
        ],
    )
    .await?;
    assert_eq!(planned.code, Some(0), "{}", planned.stderr);
    let runs = run_shards(&stack, &["diff"], &wide, 1..=of, of).await?;
    assert_shards_partition(&runs, &unsharded_findings);
    let merged = merge(wide.clone()).await?;
    assert_eq!(
        without_merge_fields(&merged.json_lines().pop().unwrap_or_default()),
        without_merge_fields(&unsharded_summary),
    );

    // A shard of another plan size is refused, saying what to give.
    let wrong = run_shards(&stack, &["diff"], &plan, [1], 5).await?;
    assert_eq!(wrong[0].code, Some(2));
    assert!(
        wrong[0].stderr.contains("--shard K/4"),
        "{}",
        wrong[0].stderr
    );

    // The shards repair what they found, and the bucket is then in sync.
    let repaired = run_shards(
        &stack,
        &["backfill", "--inline", "--delete-orphans"],
        &plan,
        1..=4,
        4,
    )
    .await?;
    for run in &repaired {
        assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    }
    let merged = merge(plan.clone()).await?;
    assert_eq!(merged.code, Some(0), "{}", merged.stdout);
    let after = reconcile(&stack, &["diff"], &[], &checkpoint).await?;
    assert_eq!(after.code, Some(0), "in sync: {}", after.stdout);
    Ok(())
}
