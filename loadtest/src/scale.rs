//! `inventory`: the reconciler's diff at the scale of an image bucket, on this machine.
//!
//! A synthetic source inventory report of `--keys` objects in each of `--formats` (gzip CSV with
//! URL-encoded keys, Snappy Parquet with keys as they are; rows in no order, as S3 writes them)
//! goes into the stack's moto S3; the replica of the same keys, with drift seeded every
//! `--stride` keys, is served by a loopback double of GCS's listing ([`crate::replica`]). The
//! release `yuba-reconciler diff --source-inventory` runs under GNU time on each report: keys per
//! second, CPU per key and peak RSS are measured, and its findings must be exactly the seeded
//! ones (exit 1 otherwise); then the sharded run (plan, shards, merge) on the report of the
//! format that cost less CPU. From the measured CPU per key and the cost model's prices, the
//! report projects a daily run over a billion keys at 1, 16 and 64 tasks, beside listing the
//! source instead and beside Storage Transfer Service. Timing never fails the run.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use aws_sdk_s3::primitives::ByteStream;
use chrono::Utc;
use yuba_e2e::{Stack, binary};
use yuba_inventory::Entry;
use yuba_inventory::ReportFormat;
use yuba_inventory::write::{data_file, manifest_json};
use yuba_loadtest::cost::Prices;

use crate::replica::{Synthetic, serve};
use crate::timed::{self, Timing};

/// The bucket the report is written to.
const INVENTORIES: &str = "inventories";
/// The bucket the sharded run's plan is kept in.
const PLANS: &str = "plans";
/// The synthetic replica's bucket name (any: the double serves one).
const REPLICA: &str = "replica-synthetic";
/// A prime that permutes the row order (coprime with any count below it).
const SHUFFLE: u128 = 1_000_000_007;
/// Keys of the projected daily run.
const PROJECTED_KEYS: f64 = 1e9;

#[derive(Debug, clap::Args)]
pub struct InventoryArgs {
    /// Objects in the source's inventory report (the replica holds about as many).
    #[arg(long, default_value_t = 10_000_000)]
    keys: u64,
    /// Drift every STRIDE keys: one missing, one stale, one orphan.
    #[arg(long, default_value_t = 100_000)]
    stride: u64,
    /// Objects per data file of the report.
    #[arg(long, default_value_t = 1_000_000)]
    file_objects: u64,
    /// The report's formats, each written and diffed (csv, parquet).
    #[arg(long, value_delimiter = ',', default_value = "csv,parquet")]
    formats: Vec<ReportFormat>,
    /// The reconciler's --inventory-memory, MiB.
    #[arg(long, default_value_t = 256)]
    memory_mib: u64,
    /// Shards of the sharded run measured after the unsharded one (`plan`, then each shard).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(2..=1000))]
    shards: u32,
    /// The reconciler's --concurrency (ranges listed at once: up to 8).
    #[arg(long, default_value_t = 16)]
    concurrency: u16,
    /// Where the report (report.md) goes.
    #[arg(long, default_value = "target/loadtest/inventory")]
    out: PathBuf,
    /// A price of the cost model, NAME=VALUE (repeatable).
    #[arg(long = "price", value_name = "NAME=VALUE")]
    prices: Vec<String>,
}

/// What the reconciler's runs measured.
#[derive(Debug)]
struct Measured {
    /// The unsharded diff of each format's report, in `--formats` order.
    diffs: Vec<Diffed>,
    /// The format of the report the sharded run read: the cheapest diff's.
    cheapest: usize,
    sharded: Sharded,
}

/// The unsharded diff of one format's report.
#[derive(Debug)]
struct Diffed {
    format: ReportFormat,
    /// The report's data files, bytes.
    report_bytes: u64,
    generate_s: f64,
    timing: Timing,
    findings_exact: bool,
    summary: serde_json::Value,
}

/// The sharded run: the plan, the shards one after another (wall: the slowest; CPU: all of
/// them; RSS: the largest), and whether their findings together are exactly the seeded drift.
#[derive(Debug, Default)]
struct Sharded {
    plan: Timing,
    slowest_shard: Timing,
    shards_cpu_s: f64,
    merged_exit_code: i64,
    findings_exact: bool,
}

pub async fn inventory(args: InventoryArgs) -> anyhow::Result<()> {
    if args.stride < 3 || args.keys < args.stride {
        bail!(
            "--stride must be at least 3 and at most --keys (one missing, stale and orphan key each)"
        );
    }
    let prices = crate::prices_from(&args.prices)?;
    let stack = Stack::start("bench-inventory", 3)?;
    let s3 = stack.s3().await;
    s3.create_bucket().bucket(INVENTORIES).send().await?;
    let mut synthetic = Synthetic {
        count: args.keys,
        stride: args.stride,
        source_bucket: stack.source_bucket().to_owned(),
        etags: HashMap::new(),
        last_modified: Utc::now(),
    };
    for i in synthetic.drifting_sources().collect::<Vec<_>>() {
        let put = s3
            .put_object()
            .bucket(stack.source_bucket())
            .key(Synthetic::key(i))
            .body(ByteStream::from(Synthetic::drifting_body(i)))
            .send()
            .await?;
        let etag = put.e_tag().unwrap_or_default().trim_matches('"').to_owned();
        synthetic.etags.insert(i, etag);
    }
    let endpoint = serve(synthetic.clone()).await?;
    let spill = stack.dir.join("spill");
    std::fs::create_dir_all(&spill)?;
    let reconciler = Reconciler {
        stack: &stack,
        endpoint: &endpoint,
        spill: &spill,
        args: &args,
    };
    let expected = synthetic.expected_findings();
    let mut diffs = Vec::new();
    let mut manifests = Vec::new();
    for format in args.formats.iter().copied() {
        let written = Instant::now();
        let (manifest, report_bytes) =
            write_report(&s3, &synthetic, format, args.file_objects).await?;
        let generate_s = written.elapsed().as_secs_f64();
        eprintln!(
            "{} report of {} objects written in {generate_s:.0} s: {manifest}",
            format.name(),
            args.keys
        );
        let (timing, run) = reconciler
            .timed(&["diff", "--source-inventory", &manifest])
            .await?;
        let lines = run.json_lines();
        let summary = lines
            .iter()
            .rev()
            .find(|line| line["type"] == "summary")
            .cloned()
            .with_context(|| format!("no summary from the reconciler:\n{}", run.stderr))?;
        diffs.push(Diffed {
            format,
            report_bytes,
            generate_s,
            timing,
            findings_exact: exact(&findings_of(&lines), &expected),
            summary,
        });
        manifests.push(manifest);
    }
    let cheapest = (0..diffs.len())
        .min_by(|a, b| diffs[*a].timing.cpu_s.total_cmp(&diffs[*b].timing.cpu_s))
        .context("--formats names no format")?;
    s3.create_bucket().bucket(PLANS).send().await?;
    let sharded = reconciler.sharded(&manifests[cheapest], &expected).await?;
    let measured = Measured {
        diffs,
        cheapest,
        sharded,
    };
    let report = render(&args, &measured, &prices);
    std::fs::create_dir_all(&args.out)?;
    std::fs::write(args.out.join("report.md"), &report)?;
    println!("{report}");
    let exact_everywhere = measured.diffs.iter().all(|diff| diff.findings_exact);
    if !(exact_everywhere && measured.sharded.findings_exact) {
        bail!("the reconciler's findings are not the seeded drift (see above)");
    }
    Ok(())
}

/// The release reconciler against the benchmark's stack and replica double.
struct Reconciler<'a> {
    stack: &'a Stack,
    endpoint: &'a str,
    spill: &'a std::path::Path,
    args: &'a InventoryArgs,
}

impl Reconciler<'_> {
    /// Runs `yuba-reconciler ARGS --json --no-checkpoint` (with the benchmark's inventory
    /// settings) under GNU time.
    async fn timed(&self, args: &[&str]) -> anyhow::Result<(Timing, yuba_e2e::Finished)> {
        let mut command = self.stack.configure(
            timed::command(),
            &[
                ("YUBA_GCS_ENDPOINT", self.endpoint),
                ("YUBA_GCS_BUCKET", REPLICA),
                ("RUST_LOG", "warn"),
            ],
        );
        command.arg(binary("yuba-reconciler")?);
        command.args(args);
        command.arg("--json");
        if !matches!(args.first(), Some(&"plan" | &"merge")) {
            command.arg("--no-checkpoint");
            command.args(["--concurrency", &self.args.concurrency.to_string()]);
        }
        if args.first() != Some(&"merge") {
            command.args(["--inventory-memory", &self.args.memory_mib.to_string()]);
            command.arg("--inventory-spill-dir").arg(self.spill);
        }
        timed::run(command, Duration::from_secs(4 * 3600)).await
    }

    /// `plan`, every shard one after another, and `merge`: each measured, the shards' findings
    /// held to the seeded drift.
    async fn sharded(
        &self,
        manifest: &str,
        expected: &BTreeSet<(String, String)>,
    ) -> anyhow::Result<Sharded> {
        let of = self.args.shards.to_string();
        let plan = format!("s3://{PLANS}/bench/");
        let (planned, run) = self
            .timed(&[
                "plan",
                "--shards",
                &of,
                "--plan",
                &plan,
                "--source-inventory",
                manifest,
            ])
            .await?;
        if run.code != Some(0) {
            bail!("the plan failed:\n{}", run.stderr);
        }
        let mut sharded = Sharded {
            plan: planned,
            ..Sharded::default()
        };
        let mut found = BTreeSet::new();
        for index in 1..=self.args.shards {
            let shard = format!("{index}/{of}");
            let (timing, run) = self
                .timed(&["diff", "--shard", &shard, "--plan", &plan])
                .await?;
            if run.code != Some(0) {
                bail!("shard {shard} failed:\n{}", run.stderr);
            }
            found.extend(findings_of(&run.json_lines()));
            sharded.shards_cpu_s += timing.cpu_s;
            if timing.wall_s > sharded.slowest_shard.wall_s {
                sharded.slowest_shard.wall_s = timing.wall_s;
            }
            sharded.slowest_shard.peak_rss_mib =
                sharded.slowest_shard.peak_rss_mib.max(timing.peak_rss_mib);
        }
        let (_, merged) = self.timed(&["merge", "--plan", &plan]).await?;
        let summary = merged.json_lines().pop().unwrap_or_default();
        sharded.merged_exit_code = summary["exit_code"].as_i64().unwrap_or(-1);
        sharded.findings_exact = exact(&found, expected) && merged.code == Some(1);
        Ok(sharded)
    }
}

/// The (kind, key) of each finding among a run's JSON lines.
fn findings_of(lines: &[serde_json::Value]) -> BTreeSet<(String, String)> {
    lines
        .iter()
        .filter(|line| line["type"] == "finding")
        .map(|f| {
            (
                f["kind"].as_str().unwrap_or_default().to_owned(),
                f["key"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// Whether `found` is exactly the seeded drift; what differs is printed.
fn exact(found: &BTreeSet<(String, String)>, expected: &BTreeSet<(String, String)>) -> bool {
    if found == expected {
        return true;
    }
    let extra: Vec<_> = found.difference(expected).take(5).collect();
    let lost: Vec<_> = expected.difference(found).take(5).collect();
    eprintln!("findings differ from the seeded drift: extra {extra:?}, not found {lost:?}");
    false
}

/// Writes the report's data files (rows in a permuted order) and manifest; returns its URL and
/// its data files' size.
async fn write_report(
    s3: &aws_sdk_s3::Client,
    synthetic: &Synthetic,
    format: ReportFormat,
    file_objects: u64,
) -> anyhow::Result<(String, u64)> {
    let folder = format!(
        "reports/{}/{}/",
        synthetic.source_bucket,
        format.name().to_lowercase()
    );
    let count = synthetic.count;
    let mut files = Vec::new();
    let mut row = 0;
    while row < count {
        let mut writer = format.writer(&synthetic.source_bucket);
        for j in row..(row + file_objects).min(count) {
            let i = u64::try_from(u128::from(j) * SHUFFLE % u128::from(count))?;
            if !synthetic.in_report(i) {
                continue;
            }
            writer.write(&Entry {
                key: Synthetic::key(i),
                size: synthetic.size(i),
                etag: synthetic.etag(i),
                last_modified: Some(synthetic.last_modified),
            })?;
        }
        let bytes = writer.finish()?;
        let key = format!("{folder}data/{:05}.{}", files.len(), format.extension());
        files.push(data_file(&key, &bytes));
        s3.put_object()
            .bucket(INVENTORIES)
            .key(&key)
            .body(ByteStream::from(bytes))
            .send()
            .await?;
        row += file_objects;
    }
    let created = Utc::now();
    let manifest = format!(
        "{folder}{}/manifest.json",
        created.format("%Y-%m-%dT%H-%MZ")
    );
    let json = manifest_json(
        format,
        &synthetic.source_bucket,
        INVENTORIES,
        created,
        &files,
    );
    s3.put_object()
        .bucket(INVENTORIES)
        .key(&manifest)
        .body(ByteStream::from(json.into_bytes()))
        .send()
        .await?;
    let report_bytes = files.iter().map(|file| file.size).sum();
    Ok((format!("s3://{INVENTORIES}/{manifest}"), report_bytes))
}

/// The report: what was measured, and the projection of a daily run over a billion keys.
fn render(args: &InventoryArgs, m: &Measured, p: &Prices) -> String {
    let mut out = render_measured(args, m);
    out.push_str(&render_projection(args, m, p));
    out
}

/// The tables of what the runs measured.
fn render_measured(args: &InventoryArgs, m: &Measured) -> String {
    let keys = args.keys as f64;
    let yes = |exact: bool| if exact { "yes" } else { "NO" };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "## yuba-reconciler diff --source-inventory, {} keys\n",
        args.keys
    );
    let header: Vec<String> = m
        .diffs
        .iter()
        .map(|diff| format!("{} report", diff.format.name()))
        .collect();
    let _ = writeln!(
        out,
        "| measured | {} |\n| --- |{}",
        header.join(" | "),
        " --- |".repeat(header.len())
    );
    let row = |out: &mut String, name: &str, value: &dyn Fn(&Diffed) -> String| {
        let values: Vec<String> = m.diffs.iter().map(value).collect();
        let _ = writeln!(out, "| {name} | {} |", values.join(" | "));
    };
    let count = |diff: &Diffed, field: &str| diff.summary[field].as_u64().unwrap_or_default();
    row(&mut out, "keys in the report", &|d| {
        count(d, "listed_source").to_string()
    });
    row(&mut out, "replicas listed", &|d| {
        count(d, "listed_replica").to_string()
    });
    row(&mut out, "findings", &|d| {
        format!(
            "{} missing, {} stale, {} orphan; exactly the seeded drift: {}",
            count(d, "missing"),
            count(d, "stale"),
            count(d, "orphan"),
            yes(d.findings_exact)
        )
    });
    row(&mut out, "looked up in S3 (HEAD)", &|d| {
        count(d, "looked_up").to_string()
    });
    row(&mut out, "wall time", &|d| {
        format!("{:.1} s", d.timing.wall_s)
    });
    row(&mut out, "keys per second", &|d| {
        format!("{:.0}", keys / d.timing.wall_s)
    });
    row(&mut out, "CPU (user + system)", &|d| {
        format!(
            "{:.1} s, {:.2} µs per key",
            d.timing.cpu_s,
            d.timing.cpu_s / keys * 1e6
        )
    });
    row(&mut out, "peak RSS", &|d| {
        format!(
            "{:.0} MiB (--inventory-memory {} MiB)",
            d.timing.peak_rss_mib, args.memory_mib
        )
    });
    row(&mut out, "the report's data files", &|d| {
        format!(
            "{:.0} MiB, {:.1} bytes per key",
            d.report_bytes as f64 / (1 << 20) as f64,
            d.report_bytes as f64 / keys
        )
    });
    row(&mut out, "report generation (not timed above)", &|d| {
        format!("{:.0} s", d.generate_s)
    });
    let s = &m.sharded;
    let _ = writeln!(
        out,
        "\n## The {} report in {} shards: plan, each shard (one after another), merge\n",
        m.diffs[m.cheapest].format.name(),
        args.shards
    );
    let _ = writeln!(
        out,
        "| step | wall s | CPU s | CPU µs per key | peak RSS MiB |\n| --- | --- | --- | --- | --- |"
    );
    let _ = writeln!(
        out,
        "| plan (sort once, write {} parts) | {:.1} | {:.1} | {:.2} | {:.0} |",
        args.shards,
        s.plan.wall_s,
        s.plan.cpu_s,
        s.plan.cpu_s / keys * 1e6,
        s.plan.peak_rss_mib
    );
    let _ = writeln!(
        out,
        "| shards (all {}; wall: the slowest; RSS: the largest) | {:.1} | {:.1} | {:.2} | {:.0} |",
        args.shards,
        s.slowest_shard.wall_s,
        s.shards_cpu_s,
        s.shards_cpu_s / keys * 1e6,
        s.slowest_shard.peak_rss_mib
    );
    let _ = writeln!(
        out,
        "\nThe shards' findings together are exactly the seeded drift: {}; the merge's exit code: \
         {}.",
        yes(s.findings_exact),
        s.merged_exit_code
    );
    out
}

/// A daily run over a billion keys, from the CPU per key measured: one task, or a plan task and
/// N shard tasks. CPU-bound on each task's vCPUs; the replica's listing pages and the report's
/// files come at the rates measured here (loopback), which a cloud run may not reach.
fn render_projection(args: &InventoryArgs, m: &Measured, p: &Prices) -> String {
    let keys = args.keys as f64;
    let task_hour = p.reconciler_task_vcpu * p.fargate_per_vcpu_hour
        + p.reconciler_task_memory_gb * p.fargate_per_gb_hour;
    let hours = |cpu_s: f64| PROJECTED_KEYS * cpu_s / keys / p.reconciler_task_vcpu / 3600.0;
    let cheapest = &m.diffs[m.cheapest];
    let (unsharded, plan, shards) = (
        hours(cheapest.timing.cpu_s),
        hours(m.sharded.plan.cpu_s),
        hours(m.sharded.shards_cpu_s),
    );
    // A listing page holds 1,000 keys; the replica's is cut into ranges of ten pages, whose
    // last pages are partial: a tenth more requests.
    let pages = PROJECTED_KEYS / 1000.0;
    let replica_listing = pages * 1.1 * p.gcs_class_a_per_1000 / 1000.0;
    let inventory = PROJECTED_KEYS / 1e6 * p.s3_inventory_per_million;
    let source_listing = pages * p.s3_list_per_1000 / 1000.0;
    let sts_replica_listing = pages * p.gcs_class_a_per_1000 / 1000.0;
    // The plan writes the parts' data files once and each shard reads its own: a PUT and a GET
    // each (manifests, the plan and the summaries: a few per shard more).
    let data_files = (PROJECTED_KEYS / yuba_reconcile::ROWS_PER_DATA_FILE as f64).ceil();
    let plan_requests =
        |tasks: f64| (data_files + 3.0 * tasks) * (p.s3_put_per_1000 + p.s3_get_per_1000) / 1000.0;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n### A daily run over 1,000,000,000 keys, projected\n\n\
         From the CPU per key measured above (the {} report's), on tasks of {} vCPU and {} GB \
         (Fargate Linux/ARM on demand, ${:.5} a task-hour). One task runs the diff alone; N tasks are a plan task (its \
         CPU per key as measured), then N shard tasks at once (the shards' CPU per key, shared \
         among them), then the merge (seconds).\n",
        cheapest.format.name(),
        p.reconciler_task_vcpu,
        p.reconciler_task_memory_gb,
        task_hour
    );
    let _ = writeln!(
        out,
        "| tasks | wall time | Fargate | S3 Inventory | GCS listing | plan requests | total per run |\n\
         | --- | --- | --- | --- | --- | --- | --- |"
    );
    let listings = inventory + replica_listing;
    let _ = writeln!(
        out,
        "| 1 | {unsharded:.1} h | ${:.2} | ${inventory:.2} | ${replica_listing:.2} | - | ${:.2} |",
        unsharded * task_hour,
        unsharded * task_hour + listings
    );
    for tasks in [16.0, 64.0] {
        let compute = (plan + shards) * task_hour;
        let requests = plan_requests(tasks);
        let _ = writeln!(
            out,
            "| 1 + {tasks} | {:.1} h | ${compute:.2} | ${inventory:.2} | ${replica_listing:.2} | ${requests:.2} | ${:.2} |",
            plan + shards / tasks,
            compute + listings + requests
        );
    }
    let _ = writeln!(
        out,
        "\nListing the source instead of reading its report: ${source_listing:.2} of \
         ListObjectsV2 (a million requests) in place of ${inventory:.2}. Each key the report makes \
         look drifting costs a HEAD more (${:.4} per thousand). Storage Transfer Service's daily \
         job over the same buckets: no fee of its own for S3 → Cloud Storage, ${source_listing:.2} \
         of S3 LIST and ${sts_replica_listing:.2} of GCS listing, ${:.2} a run.",
        p.s3_get_per_1000,
        source_listing + sts_replica_listing
    );
    out
}
