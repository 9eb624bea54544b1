//! `yuba-loadtest burst`: images sent at once through one worker process, and what that costs
//! it in memory and time; several worker builds side by side (before and after a change).
//!
//! Each run starts a fresh local stack, puts `--per-run` copies of one image into S3, queues a
//! replicate job for each, and only then starts the worker with `YUBA_CONCURRENCY` set to the
//! run's "at once", so that it takes the jobs as fast as it can. The run ends when the worker has
//! logged the last job's end; throughput is images over the time from the worker's start to that
//! line's timestamp, and the peak is the worker's VmHWM read from /proc at that moment (nothing
//! it did afterwards counts). A fresh stack per run keeps the servers' state (and their speed)
//! the same for every run.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use clap::ValueEnum;
use serde::Serialize;
use yuba_e2e::{Process, Stack, procstat};

use crate::DEFAULT_VARIANTS;

#[derive(Debug, clap::Args)]
pub struct BurstArgs {
    /// What every job of a run replicates.
    #[arg(long, value_enum, default_value = "amplification")]
    images: BurstImages,
    /// Jobs at once (the worker's YUBA_CONCURRENCY); one run per value and worker.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8")]
    at_once: Vec<usize>,
    /// Images per run: as many jobs are queued before the worker starts.
    #[arg(long, default_value_t = 16)]
    per_run: usize,
    /// Runs per worker and "at once": the median throughput and the highest peak are reported.
    #[arg(long, default_value_t = 1)]
    repeat: usize,
    /// A worker build to measure, LABEL=PATH[,NAME=VALUE...] with variables of its own
    /// (repeatable; the first is the one the others are compared with). Default: the yuba-worker
    /// built beside this binary, as "worker".
    #[arg(long = "worker", value_name = "LABEL=PATH[,NAME=VALUE...]")]
    workers: Vec<String>,
    /// The photos' directory (`make loadtest-corpus`).
    #[arg(
        long,
        default_value = ".cache/corpus/lomiri-wallpapers-20.04/usr/share/backgrounds"
    )]
    corpus: PathBuf,
    /// The photo of `--images photo`, a file of --corpus. Default: a 6000 × 4000 (24 MP) JPEG.
    #[arg(long, default_value = "Painting-Colors_by__herobrine7gamer.jpg")]
    photo: String,
    /// Seconds a run may take before it is called failed.
    #[arg(long, default_value_t = 600.0)]
    timeout: f64,
    /// Where every run's figures go, as JSON (default: target/bench-memory/burst-<images>.json).
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
enum BurstImages {
    /// A 423 KB PNG of 7000 × 7000 16-bit RGBA pixels: 392 MB decoded as it is.
    Amplification,
    /// An ordinary photo (--photo).
    Photo,
}

/// A build of the worker and the variables it runs with besides the run's own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct WorkerSpec {
    label: String,
    path: PathBuf,
    env: Vec<(String, String)>,
}

impl WorkerSpec {
    fn parse(spec: &str) -> anyhow::Result<WorkerSpec> {
        let mut parts = spec.split(',');
        let head = parts.next().unwrap_or_default();
        let Some((label, path)) = head
            .split_once('=')
            .filter(|(l, p)| !l.is_empty() && !p.is_empty())
        else {
            bail!("--worker {spec:?}: expected LABEL=PATH[,NAME=VALUE...]");
        };
        let env = parts
            .map(|assignment| match assignment.split_once('=') {
                Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
                _ => bail!("--worker {spec:?}: {assignment:?} is not NAME=VALUE"),
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(WorkerSpec {
            label: label.to_owned(),
            path: PathBuf::from(path),
            env,
        })
    }
}

/// One run's figures.
#[derive(Debug, Clone, Serialize)]
struct BurstRun {
    worker: String,
    at_once: usize,
    images: usize,
    seconds: f64,
    peak_rss_bytes: u64,
    replicated: usize,
    variants_made: u64,
    /// Jobs whose variants were not made, by the reason the worker recorded.
    variants_withheld: BTreeMap<String, usize>,
    /// Jobs that failed, by failure kind.
    failed: BTreeMap<String, usize>,
}

impl BurstRun {
    fn images_per_second(&self) -> f64 {
        if self.seconds > 0.0 {
            self.images as f64 / self.seconds
        } else {
            0.0
        }
    }
}

pub async fn burst(args: BurstArgs) -> anyhow::Result<()> {
    ensure!(
        !args.at_once.is_empty() && args.at_once.iter().all(|&n| (1..=64).contains(&n)),
        "--at-once takes values from 1 to 64"
    );
    let largest = args.at_once.iter().copied().max().unwrap_or(1);
    ensure!(
        (largest..=1000).contains(&args.per_run),
        "--per-run must be at least the largest --at-once ({largest}) and at most 1000"
    );
    ensure!((1..=20).contains(&args.repeat), "--repeat takes 1 to 20");
    let workers = workers_of(&args)?;
    let (image, name) = image_of(&args)?;
    let timeout = Duration::from_secs_f64(args.timeout.clamp(1.0, 3600.0));

    let mut runs = Vec::new();
    for &at_once in &args.at_once {
        for worker in &workers {
            for round in 0..args.repeat {
                eprintln!(
                    "burst: {} × {name}, {at_once} at once, {} (round {})",
                    args.per_run,
                    worker.label,
                    round + 1
                );
                let run = one_run(worker, &image, name, at_once, args.per_run, timeout).await?;
                eprintln!(
                    "burst:   {:.2} images/s, peak RSS {:.0} MiB",
                    run.images_per_second(),
                    mib(run.peak_rss_bytes)
                );
                runs.push(run);
            }
        }
    }
    let out = write_record(&args, image.len(), &workers, &runs)?;
    println!("{}", table(&workers, &args.at_once, &runs));
    println!("every run: {}", out.display());
    Ok(())
}

/// The worker builds `--worker` names, each checked to be there; by default the one built
/// beside this binary.
fn workers_of(args: &BurstArgs) -> anyhow::Result<Vec<WorkerSpec>> {
    let workers = if args.workers.is_empty() {
        vec![WorkerSpec {
            label: "worker".into(),
            path: yuba_e2e::binary("yuba-worker")?,
            env: Vec::new(),
        }]
    } else {
        args.workers
            .iter()
            .map(|s| WorkerSpec::parse(s))
            .collect::<anyhow::Result<Vec<_>>>()?
    };
    for worker in &workers {
        ensure!(
            worker.path.is_file(),
            "--worker {}: {} is not a file (build it first)",
            worker.label,
            worker.path.display()
        );
    }
    Ok(workers)
}

/// The image every job replicates, and the name its keys end in.
fn image_of(args: &BurstArgs) -> anyhow::Result<(Bytes, &'static str)> {
    match args.images {
        BurstImages::Amplification => Ok((
            Bytes::from(yuba_e2e::amplification_png()),
            "amplification.png",
        )),
        BurstImages::Photo => {
            let path = args.corpus.join(&args.photo);
            let bytes = std::fs::read(&path).with_context(|| {
                format!(
                    "reading {}: fetch the photos with `make loadtest-corpus`",
                    path.display()
                )
            })?;
            Ok((Bytes::from(bytes), "photo.jpg"))
        }
    }
}

/// Every run's figures as JSON, at `--out` or its default; returns where.
fn write_record(
    args: &BurstArgs,
    image_bytes: usize,
    workers: &[WorkerSpec],
    runs: &[BurstRun],
) -> anyhow::Result<PathBuf> {
    let out = args.out.clone().unwrap_or_else(|| {
        PathBuf::from("target/bench-memory").join(format!(
            "burst-{}.json",
            args.images
                .to_possible_value()
                .map_or("images".into(), |v| v.get_name().to_owned())
        ))
    });
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let record = serde_json::json!({
        "images": args.images,
        "image_bytes": image_bytes,
        "per_run": args.per_run,
        "workers": workers,
        "runs": runs,
    });
    std::fs::write(&out, serde_json::to_vec_pretty(&record)?)
        .with_context(|| format!("writing {}", out.display()))?;
    Ok(out)
}

async fn one_run(
    worker: &WorkerSpec,
    image: &Bytes,
    name: &str,
    at_once: usize,
    per_run: usize,
    timeout: Duration,
) -> anyhow::Result<BurstRun> {
    let stack = Stack::start("burst", 3)?;
    let queue = stack.var("YUBA_FARGATE_QUEUE_URL").to_owned();
    let keys: Vec<String> = (0..per_run).map(|i| format!("burst/{i}/{name}")).collect();
    for key in &keys {
        stack.put(key, image).await?;
    }
    for key in &keys {
        stack.enqueue_replicate(&queue, key).await?;
    }
    let concurrency = at_once.to_string();
    let mut overrides = vec![
        ("YUBA_QUEUE_URL", queue.as_str()),
        ("YUBA_VARIANTS", DEFAULT_VARIANTS),
        ("YUBA_CONCURRENCY", concurrency.as_str()),
    ];
    overrides.extend(worker.env.iter().map(|(n, v)| (n.as_str(), v.as_str())));
    let command = stack.configure(Command::new(&worker.path), &overrides);
    let started = Utc::now();
    let mut process = stack.spawn_command(command, &format!("worker-{}", worker.label))?;
    let ended = wait_for_jobs(&process, per_run, timeout)
        .await
        .with_context(|| format!("{}: {}", worker.label, tail(&process.raw_log())))?;
    let peak_rss_bytes = procstat::peak_rss_bytes(process.pid()).unwrap_or(0);
    // Stopped with a grace period: the measurement is taken; a worker that does not stop in time
    // is killed, which costs this run nothing.
    let _ = process.terminate(Duration::from_secs(10));

    let mut run = BurstRun {
        worker: worker.label.clone(),
        at_once,
        images: per_run,
        seconds: (ended.last_at - started).num_microseconds().unwrap_or(0) as f64 / 1e6,
        peak_rss_bytes,
        replicated: 0,
        variants_made: 0,
        variants_withheld: BTreeMap::new(),
        failed: BTreeMap::new(),
    };
    for line in &ended.lines {
        let field = |name: &str| line.get(name).and_then(|v| v.as_str());
        if field("outcome") == Some("replicated") {
            run.replicated += 1;
        }
        run.variants_made += line.get("variants").and_then(|v| v.as_u64()).unwrap_or(0);
        // The kind where the worker logs it apart; a build from before that, its whole reason.
        if let Some(reason) = field("variants_error_kind").or(field("variants_error")) {
            *run.variants_withheld.entry(reason.to_owned()).or_default() += 1;
        }
        if let Some(failure) = field("failure") {
            *run.failed.entry(failure.to_owned()).or_default() += 1;
        }
    }
    Ok(run)
}

/// The worker's log lines that end a job ("job done" or "job failed"), once there are `count`.
struct JobsEnded {
    lines: Vec<serde_json::Value>,
    last_at: DateTime<Utc>,
}

async fn wait_for_jobs(
    process: &Process,
    count: usize,
    timeout: Duration,
) -> anyhow::Result<JobsEnded> {
    let deadline = Instant::now() + timeout;
    loop {
        let lines: Vec<_> = process
            .log_lines()
            .into_iter()
            .filter(|l| {
                matches!(
                    l.get("message").and_then(|m| m.as_str()),
                    Some("job done" | "job failed")
                )
            })
            .collect();
        if lines.len() >= count {
            let last_at = lines
                .iter()
                .filter_map(|l| l.get("timestamp")?.as_str()?.parse::<DateTime<Utc>>().ok())
                .max()
                .context("the worker's job lines carry no timestamp")?;
            return Ok(JobsEnded { lines, last_at });
        }
        if Instant::now() > deadline {
            bail!("{} of {count} jobs ended within {timeout:?}", lines.len());
        }
        if procstat::peak_rss_bytes(process.pid()).is_none() {
            bail!(
                "the worker exited with {} of {count} jobs ended",
                lines.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn tail(log: &str) -> String {
    let lines: Vec<_> = log.lines().collect();
    lines[lines.len().saturating_sub(5)..].join("\n")
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1 << 20)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// Markdown: one row per "at once", for each worker its images/s (median of its runs) and peak
/// RSS (highest), then each later worker's ratios to the first.
fn table(workers: &[WorkerSpec], at_once: &[usize], runs: &[BurstRun]) -> String {
    let mut header = vec!["at once".to_owned()];
    for w in workers {
        header.push(format!("{} images/s", w.label));
        header.push(format!("{} peak RSS MiB", w.label));
        header.push(format!("{} variants (withheld)", w.label));
    }
    for w in workers.iter().skip(1) {
        header.push(format!(
            "{} / {}: images/s, peak",
            w.label, workers[0].label
        ));
    }
    let mut out = format!(
        "| {} |\n|{}\n",
        header.join(" | "),
        " --- |".repeat(header.len())
    );
    for &n in at_once {
        let mut row = vec![n.to_string()];
        let mut figures = Vec::new();
        for w in workers {
            let mine: Vec<&BurstRun> = runs
                .iter()
                .filter(|r| r.worker == w.label && r.at_once == n)
                .collect();
            let rate = median(mine.iter().map(|r| r.images_per_second()).collect());
            let peak = mine.iter().map(|r| r.peak_rss_bytes).max().unwrap_or(0);
            let made: u64 = mine.iter().map(|r| r.variants_made).max().unwrap_or(0);
            let mut withheld: BTreeMap<&str, usize> = BTreeMap::new();
            for run in &mine {
                for (kind, count) in &run.variants_withheld {
                    let entry = withheld.entry(kind).or_default();
                    *entry = (*entry).max(*count);
                }
                for (kind, count) in &run.failed {
                    let entry = withheld.entry(kind).or_default();
                    *entry = (*entry).max(*count);
                }
            }
            let withheld = withheld
                .iter()
                .map(|(kind, count)| format!("{count} {kind}"))
                .collect::<Vec<_>>()
                .join(", ");
            row.push(format!("{rate:.2}"));
            row.push(format!("{:.0}", mib(peak)));
            row.push(if withheld.is_empty() {
                made.to_string()
            } else {
                format!("{made} ({withheld})")
            });
            figures.push((rate, peak));
        }
        let (base_rate, base_peak) = figures[0];
        for &(rate, peak) in figures.iter().skip(1) {
            row.push(format!(
                "×{:.2}, ×{:.2}",
                rate / base_rate.max(f64::MIN_POSITIVE),
                peak as f64 / (base_peak.max(1)) as f64
            ));
        }
        out.push_str(&format!("| {} |\n", row.join(" | ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_spec_names_its_build_and_its_own_variables() {
        let spec = WorkerSpec::parse("after-1GiB=target/release/yuba-worker,YUBA_MEMORY_MIB=1024")
            .unwrap();
        assert_eq!(spec.label, "after-1GiB");
        assert_eq!(spec.path, PathBuf::from("target/release/yuba-worker"));
        assert_eq!(spec.env, vec![("YUBA_MEMORY_MIB".into(), "1024".into())]);
        for bad in [
            "target/release/yuba-worker",
            "=x",
            "a=",
            "a=b,NOVALUE",
            "a=b,=1",
        ] {
            let error = WorkerSpec::parse(bad).unwrap_err().to_string();
            assert!(error.contains("--worker"), "{bad}: {error}");
        }
    }

    #[test]
    fn the_table_compares_each_worker_with_the_first() {
        let workers: Vec<_> = ["before=/a", "after=/b"]
            .into_iter()
            .map(|s| WorkerSpec::parse(s).unwrap())
            .collect();
        let run =
            |worker: &str, seconds: f64, peak_mib: u64, withheld: &[(&str, usize)]| BurstRun {
                worker: worker.into(),
                at_once: 8,
                images: 16,
                seconds,
                peak_rss_bytes: peak_mib << 20,
                replicated: 16,
                variants_made: 48 - 3 * withheld.iter().map(|(_, n)| *n as u64).sum::<u64>(),
                variants_withheld: withheld
                    .iter()
                    .map(|(k, n)| ((*k).to_owned(), *n))
                    .collect(),
                failed: BTreeMap::new(),
            };
        let runs = [
            run("before", 8.0, 4000, &[]),
            run("after", 4.0, 1000, &[("too_large_for_memory", 2)]),
            run("after", 16.0, 900, &[]),
            run("after", 2.0, 800, &[]),
        ];
        let table = table(&workers, &[8], &runs);
        let row = table.lines().nth(2).unwrap();
        // before: 2 images/s; after: the median of 4, 1 and 8 images/s, and its highest peak.
        assert_eq!(
            row,
            "| 8 | 2.00 | 4000 | 48 | 4.00 | 1000 | 48 (2 too_large_for_memory) | ×2.00, ×0.25 |"
        );
    }
}
