//! `profile-change`: what adding a variant profile to a replicated bucket costs, measured on the
//! local stack.
//!
//! `--images` photos of the corpus are replicated by `yuba-reconciler backfill --inline` with
//! every profile but the last of the load test's set (the first copy: originals and their
//! variants); then the last profile is added and the same backfill repairs what it finds:
//! each image lacks one variant. GCS is reached through a loopback TCP proxy that counts the
//! bytes sent to it, requests and bodies alike, which is what AWS bills as egress when the
//! reconciler or the worker runs there. The repair must write the new variant and update the
//! replica's record, and never send an original again: its generations must not change (the
//! run fails otherwise). The report projects adding one profile to a billion images from the
//! bytes and CPU measured per image, beside sending every original again.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use yuba_e2e::{Finished, Proxies, Stack, StackOptions, binary};
use yuba_loadtest::cost::Prices;

use crate::bodies::Mix;
use crate::timed::{self, Timing};

/// Images of the projection.
const PROJECTED_IMAGES: f64 = 1e9;
const GB: f64 = 1024.0 * 1024.0 * 1024.0;

#[derive(Debug, clap::Args)]
pub struct ProfileArgs {
    /// Photos replicated, then given a profile more.
    #[arg(long, default_value_t = 200)]
    images: usize,
    /// Folder of JPEG photos (`make loadtest-corpus` fetches it).
    #[arg(
        long,
        default_value = ".cache/corpus/lomiri-wallpapers-20.04/usr/share/backgrounds"
    )]
    corpus: PathBuf,
    /// Where the report (report.md) goes.
    #[arg(long, default_value = "target/loadtest/profile")]
    out: PathBuf,
    /// A price of the cost model, NAME=VALUE (repeatable).
    #[arg(long = "price", value_name = "NAME=VALUE")]
    prices: Vec<String>,
}

/// One backfill: its process, the bytes it sent to GCS and the requests GCS saw.
#[derive(Debug)]
struct Backfill {
    timing: Timing,
    bytes_to_gcs: u64,
    uploads: usize,
    metadata_updates: usize,
    summary: serde_json::Value,
}

pub async fn profile_change(args: ProfileArgs, variants: &str) -> anyhow::Result<()> {
    ensure!(args.images > 0, "--images must be at least 1");
    let prices = crate::prices_from(&args.prices)?;
    let photos = Mix::photos_only(&args.corpus)?;
    let (before, after) = profiles_before_and_after(variants)?;
    let (stack, proxies) =
        Stack::start_behind_proxies("bench-profile", StackOptions::default()).await?;
    let mut original_bytes = 0u64;
    for (i, photo) in photos.bodies().cycle().take(args.images).enumerate() {
        stack.put(&image_key(i), &photo.bytes).await?;
        original_bytes += photo.bytes.len() as u64;
    }
    let first = backfill(&stack, &proxies, &before).await?;
    ensure!(
        count(&first.summary, "repaired") == args.images as u64,
        "the first copy did not replicate every image: {}",
        first.summary
    );
    let generations = originals(&stack, args.images).await?;
    let added = backfill(&stack, &proxies, &after).await?;
    ensure!(
        count(&added.summary, "variants_missing") == args.images as u64
            && count(&added.summary, "repaired") == args.images as u64,
        "the backfill after the profile was added did not repair one variant per image: {}",
        added.summary
    );
    let now = originals(&stack, args.images).await?;
    if now != generations {
        bail!("an original was written again when only a variant was missing");
    }
    let report = render(&args, original_bytes, &first, &added, &prices);
    std::fs::create_dir_all(&args.out)?;
    std::fs::write(args.out.join("report.md"), &report)?;
    println!("{report}");
    Ok(())
}

fn image_key(i: usize) -> String {
    format!("photos/{i:05}.jpg")
}

/// `variants` without its last profile, and whole.
fn profiles_before_and_after(variants: &str) -> anyhow::Result<(String, String)> {
    let mut config: serde_json::Value = serde_json::from_str(variants)?;
    let profiles = config["profiles"]
        .as_array_mut()
        .filter(|profiles| profiles.len() >= 2)
        .context("the variants need two profiles at least: one to add")?;
    profiles.pop();
    Ok((config.to_string(), variants.to_owned()))
}

/// `yuba-reconciler backfill --inline` with `variants`, through the GCS proxy, measured.
async fn backfill(stack: &Stack, proxies: &Proxies, variants: &str) -> anyhow::Result<Backfill> {
    let requests_before = stack.gcs_requests()?.len();
    let sent_before = proxies.gcs.stats().bytes_to_upstream;
    let mut overrides = proxies.overrides();
    overrides.extend([("YUBA_VARIANTS", variants), ("RUST_LOG", "warn")]);
    let mut command = stack.configure(timed::command(), &overrides);
    command.arg(binary("yuba-reconciler")?);
    command.args(["backfill", "--inline", "--json", "--no-checkpoint"]);
    let (timing, run) = timed::run(command, Duration::from_secs(3600)).await?;
    ensure!(
        run.code == Some(0),
        "the backfill failed ({:?}):\n{}",
        run.code,
        run.stderr
    );
    let requests = stack.gcs_requests()?.split_off(requests_before);
    Ok(Backfill {
        timing,
        bytes_to_gcs: proxies.gcs.stats().bytes_to_upstream - sent_before,
        uploads: requests
            .iter()
            .filter(|r| r.starts_with("POST /upload/"))
            .count(),
        metadata_updates: requests.iter().filter(|r| r.starts_with("PATCH ")).count(),
        summary: summary(&run)?,
    })
}

fn summary(run: &Finished) -> anyhow::Result<serde_json::Value> {
    run.json_lines()
        .into_iter()
        .rev()
        .find(|line| line["type"] == "summary")
        .with_context(|| format!("no summary from the reconciler:\n{}", run.stderr))
}

fn count(summary: &serde_json::Value, field: &str) -> u64 {
    summary[field].as_u64().unwrap_or_default()
}

/// Each original replica's generation.
async fn originals(stack: &Stack, images: usize) -> anyhow::Result<Vec<i64>> {
    let gcs = stack.gcs().await?;
    let mut generations = Vec::with_capacity(images);
    for i in 0..images {
        let replica = gcs
            .objects()
            .get(stack.replica_bucket(), &image_key(i))
            .await?
            .with_context(|| format!("{} has no replica", image_key(i)))?;
        generations.push(replica.generation);
    }
    Ok(generations)
}

fn render(
    args: &ProfileArgs,
    original_bytes: u64,
    first: &Backfill,
    added: &Backfill,
    p: &Prices,
) -> String {
    let images = args.images as f64;
    let per_image = |value: f64| value / images;
    let kib = |bytes: f64| bytes / 1024.0;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "## A variant profile added to {} replicated photos\n\n\
         Originals: {:.0} KiB each on average. Bytes sent to GCS (requests and bodies, through \
         the loopback proxy) by `yuba-reconciler backfill --inline`:\n",
        args.images,
        kib(per_image(original_bytes as f64))
    );
    let _ = writeln!(
        out,
        "| backfill | sent per image | uploads per image | metadata updates per image | CPU per image | wall |\n\
         | --- | --- | --- | --- | --- | --- |"
    );
    for (name, run) in [
        ("first copy: originals and their variants", first),
        ("a profile added: the missing variant only", added),
    ] {
        let _ = writeln!(
            out,
            "| {name} | {:.1} KiB | {:.2} | {:.2} | {:.0} ms | {:.1} s |",
            kib(per_image(run.bytes_to_gcs as f64)),
            per_image(run.uploads as f64),
            per_image(run.metadata_updates as f64),
            per_image(run.timing.cpu_s) * 1000.0,
            run.timing.wall_s
        );
    }
    let _ = writeln!(
        out,
        "\nThe originals' generations are the same after the repair: no original was sent again."
    );
    out.push_str(&render_projection(first, added, images, p));
    out
}

/// Adding one profile to a billion images: the measured bytes, requests and CPU per image at the
/// cost model's prices, beside sending every original again with its variants.
fn render_projection(first: &Backfill, added: &Backfill, images: f64, p: &Prices) -> String {
    let task_hour = p.reconciler_task_vcpu * p.fargate_per_vcpu_hour
        + p.reconciler_task_memory_gb * p.fargate_per_gb_hour;
    let cost = |bytes: f64, class_a: f64, cpu_s: f64| {
        let egress = bytes / images * PROJECTED_IMAGES / GB * p.egress_per_gb;
        let reads = PROJECTED_IMAGES * p.s3_get_per_1000 / 1000.0;
        let writes = class_a / images * PROJECTED_IMAGES * p.gcs_class_a_per_1000 / 1000.0;
        let compute =
            cpu_s / images * PROJECTED_IMAGES / 3600.0 / p.reconciler_task_vcpu * task_hour;
        (egress, reads + writes, compute)
    };
    let class_a = |run: &Backfill| (run.uploads + run.metadata_updates) as f64;
    let variant = cost(
        added.bytes_to_gcs as f64,
        class_a(added),
        added.timing.cpu_s,
    );
    // Sending the original again writes it and every variant: the first copy's bytes, writes
    // and CPU, and the added variant's.
    let again = cost(
        (first.bytes_to_gcs + added.bytes_to_gcs) as f64,
        class_a(first) + class_a(added),
        first.timing.cpu_s + added.timing.cpu_s,
    );
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n### Adding one profile to 1,000,000,000 images, projected\n\n\
         From the bytes, GCS writes (uploads and metadata updates, Class A) and CPU measured per \
         image above, with an S3 GET of each original, on Fargate Linux/ARM tasks of {} vCPU \
         (${:.5} a task-hour) and AWS egress at ${}/GB.\n",
        p.reconciler_task_vcpu, task_hour, p.egress_per_gb
    );
    let _ = writeln!(
        out,
        "| repair | egress | requests | compute | total |\n| --- | --- | --- | --- | --- |"
    );
    for (name, (egress, requests, compute)) in [
        ("the missing variant only (yuba)", variant),
        ("the original again, with every variant", again),
    ] {
        let _ = writeln!(
            out,
            "| {name} | ${egress:.0} | ${requests:.0} | ${compute:.0} | ${:.0} |",
            egress + requests + compute
        );
    }
    out
}
