//! yuba-loadtest: uploads objects to S3 at a rate, watches their replicas (and variants) appear
//! in GCS, samples the queues and yuba's processes, and writes a report.
//!
//! By default it starts the local stack and yuba's pipeline itself (ingest and both workers,
//! the binaries built beside this one); `--target env` runs against the endpoints and buckets
//! yuba's own variables name, and measures only what can be seen from outside.
//!
//! `burst` is the memory benchmark: images at once through one worker, builds side by side.

mod bodies;
mod burst;
mod observe;
mod profile;
mod replica;
mod scale;
mod timed;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use aws_sdk_s3::primitives::ByteStream;
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand, ValueEnum};
use rand::SeedableRng;
use tokio_util::sync::CancellationToken;
use yuba_e2e::{Process, Stack, StackOptions, procstat};
use yuba_gcs::{Gcs, GcsSettings};
use yuba_loadtest::cost::Prices;
use yuba_loadtest::model::{
    Environment, ObjectResult, ProcessRole, ProcessUsage, QueueSample, Run, Scenario,
};
use yuba_loadtest::report;
use yuba_variants::VariantConfig;

use crate::bodies::Mix;
use crate::observe::{Layout, Watcher, key_of, lock};

#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs a load and writes its report.
    Run(RunArgs),
    /// Sends images at once through one worker (or several builds of it, side by side) and
    /// reports each one's peak RSS and throughput.
    Burst(burst::BurstArgs),
    /// The reconciler's diff of a synthetic S3 Inventory report (10 million keys by default)
    /// against a synthetic replica with seeded drift: keys/s, CPU, peak RSS, exact findings,
    /// and the projected daily run over a billion keys.
    Inventory(scale::InventoryArgs),
    /// Photos replicated by the reconciler's backfill, then a variant profile added and the
    /// same backfill run again: bytes sent to GCS, requests and CPU per repaired image, and the
    /// projected cost of adding a profile to a billion images.
    ProfileChange(profile::ProfileArgs),
    /// Writes the report of an earlier run again (with other prices, say) from its run.json.
    Report {
        /// The run.json a run wrote.
        #[arg(long)]
        from: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// A price of the cost model, NAME=VALUE (repeatable); see the report's cost section.
        #[arg(long = "price", value_name = "NAME=VALUE")]
        prices: Vec<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ScenarioName {
    /// Small objects that are not images: copies only.
    PassThrough,
    /// Photos, small PNGs and a few large files, with three variants per image.
    Photos,
    /// Only photos, with three variants each: the transform benchmark's load, end to end.
    PhotosOnly,
}

impl ScenarioName {
    fn slug(self) -> &'static str {
        match self {
            ScenarioName::PassThrough => "pass-through",
            ScenarioName::Photos => "photos",
            ScenarioName::PhotosOnly => "photos-only",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Target {
    /// Start the local stack and yuba's pipeline.
    Local,
    /// The endpoints and buckets in the environment (AWS_*, YUBA_SOURCE_BUCKET, YUBA_GCS_*).
    Env,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    #[arg(long, value_enum, default_value = "pass-through")]
    scenario: ScenarioName,
    /// Uploads started per second.
    #[arg(long, default_value_t = 50.0)]
    rate: f64,
    /// Uploads in flight at most; when reached, uploads start late and the report says so.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Seconds of uploads.
    #[arg(long, default_value_t = 60.0)]
    duration: f64,
    /// Seconds to wait after the last upload for the replicas still missing.
    #[arg(long, default_value_t = 60.0)]
    drain: f64,
    #[arg(long, value_enum, default_value = "local")]
    target: Target,
    /// The photos of the `photos` scenario.
    #[arg(
        long,
        default_value = ".cache/corpus/lomiri-wallpapers-20.04/usr/share/backgrounds"
    )]
    corpus: PathBuf,
    /// The variant profiles (YUBA_VARIANTS JSON) for `photos`; default: 1600, 800 and 200 px JPEGs.
    #[arg(long)]
    variants: Option<PathBuf>,
    /// The p99 upload→replica objective to check, seconds (default: 1 for pass-through, 2 for photos).
    #[arg(long)]
    p99_target: Option<f64>,
    /// Where the report goes (default: target/loadtest/<scenario>-<time>).
    #[arg(long)]
    out: Option<PathBuf>,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// A price of the cost model, NAME=VALUE (repeatable); see the report's cost section.
    #[arg(long = "price", value_name = "NAME=VALUE")]
    prices: Vec<String>,
}

/// Three sizes of JPEG, as `make bench-variants` measures the transform with.
const DEFAULT_VARIANTS: &str = r#"{
    "key_template": "_variants/{variant}/{key}",
    "profiles": [
        {"name": "large", "width": 1600, "height": 1600, "format": "jpeg", "quality": 80},
        {"name": "medium", "width": 800, "height": 800, "format": "jpeg", "quality": 80},
        {"name": "thumb", "width": 200, "height": 200, "format": "jpeg", "quality": 80}
    ]
}"#;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        // Dropping the run stops what it started: the pipeline's processes and the local stack.
        Command::Run(args) => tokio::select! {
            result = run(args) => result,
            signal = interrupted() => {
                signal?;
                bail!("interrupted: the pipeline and the local stack were stopped; no report was written")
            }
        },
        Command::Burst(args) => tokio::select! {
            result = burst::burst(args) => result,
            signal = interrupted() => {
                signal?;
                bail!("interrupted: the worker and the local stack were stopped")
            }
        },
        Command::Inventory(args) => tokio::select! {
            result = scale::inventory(args) => result,
            signal = interrupted() => {
                signal?;
                bail!("interrupted: the reconciler and the local stack were stopped")
            }
        },
        Command::ProfileChange(args) => tokio::select! {
            result = profile::profile_change(args, DEFAULT_VARIANTS) => result,
            signal = interrupted() => {
                signal?;
                bail!("interrupted: the reconciler and the local stack were stopped")
            }
        },
        Command::Report { from, out, prices } => {
            let run: Run = serde_json::from_slice(
                &std::fs::read(&from).with_context(|| format!("reading {}", from.display()))?,
            )
            .with_context(|| format!("{} is not a run.json", from.display()))?;
            write_report(&run, &prices_from(&prices)?, &out)
        }
    }
}

async fn interrupted() -> anyhow::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result?,
        _ = terminate.recv() => {}
    }
    Ok(())
}

fn prices_from(assignments: &[String]) -> anyhow::Result<Prices> {
    let mut prices = Prices::default();
    for assignment in assignments {
        prices.set(assignment).map_err(anyhow::Error::msg)?;
    }
    Ok(prices)
}

/// Where a run goes: the buckets, the clients, and what to sample.
struct Setup {
    s3: aws_sdk_s3::Client,
    sqs: aws_sdk_sqs::Client,
    gcs: Gcs,
    source_bucket: String,
    replica_bucket: String,
    queues: Vec<(String, String)>,
    target: String,
    /// The local stack and pipeline, kept alive for the run.
    local: Option<(Stack, Vec<Process>)>,
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    if !(args.rate > 0.0 && args.rate.is_finite()) {
        bail!("--rate must be a positive number of uploads per second");
    }
    let within_an_hour = |s: f64| (0.0..=3600.0).contains(&s);
    if args.duration <= 0.0 || !within_an_hour(args.duration) || !within_an_hour(args.drain) {
        bail!("--duration must be in (0, 3600] seconds and --drain in [0, 3600]");
    }
    let prices = prices_from(&args.prices)?;
    let plan = Plan::of(&args)?;
    let started_at = Utc::now();
    let run_prefix = format!("loadtest/{}", started_at.format("%Y%m%dT%H%M%S"));
    let layout = layout_of(&plan.variants, &run_prefix)?;
    let setup = match args.target {
        Target::Local => local_setup(plan.variants_json.as_deref()).await?,
        Target::Env => env_setup().await?,
    };
    let run = drive(&args, plan, &setup, layout, &run_prefix).await?;
    let out = args.out.clone().unwrap_or_else(|| {
        PathBuf::from("target/loadtest").join(format!(
            "{}-{}",
            args.scenario.slug(),
            started_at.format("%Y%m%dT%H%M%S")
        ))
    });
    write_report(&run, &prices, &out)
}

/// What a run uploads and what it expects of the pipeline, from the scenario asked for.
struct Plan {
    mix: Mix,
    /// The YUBA_VARIANTS the local pipeline is started with, for the scenarios with variants.
    variants_json: Option<String>,
    variants: VariantConfig,
    scenario: Scenario,
}

impl Plan {
    fn of(args: &RunArgs) -> anyhow::Result<Plan> {
        let (mix, variants_json, p99_default) = match args.scenario {
            ScenarioName::PassThrough => (Mix::pass_through(), None, 1.0),
            ScenarioName::Photos | ScenarioName::PhotosOnly => {
                let json = match &args.variants {
                    Some(path) => std::fs::read_to_string(path)
                        .with_context(|| format!("reading {}", path.display()))?,
                    None => DEFAULT_VARIANTS.to_owned(),
                };
                let mix = if args.scenario == ScenarioName::Photos {
                    Mix::photos(&args.corpus)?
                } else {
                    Mix::photos_only(&args.corpus)?
                };
                (mix, Some(json), 2.0)
            }
        };
        let variants = match &variants_json {
            Some(json) => VariantConfig::from_json(json)?,
            None => VariantConfig::none(),
        };
        let scenario = Scenario {
            name: match args.scenario {
                ScenarioName::PassThrough => "pass-through".into(),
                ScenarioName::Photos => {
                    "photos, PNGs and large files, three variants per image".into()
                }
                ScenarioName::PhotosOnly => "photos only, three variants each".into(),
            },
            rate_per_s: Some(args.rate),
            concurrency: args.concurrency,
            duration_s: args.duration,
            drain_s: args.drain,
            variant_profiles: variants.profiles.iter().map(|p| p.name.clone()).collect(),
            mix: mix.describe(),
            p99_target_s: Some(args.p99_target.unwrap_or(p99_default)),
        };
        Ok(Plan {
            mix,
            variants_json,
            variants,
            scenario,
        })
    }
}

/// Uploads on schedule while watching the replica bucket and sampling the queues, waits up to
/// the drain for the replicas still missing, and records it all.
async fn drive(
    args: &RunArgs,
    plan: Plan,
    setup: &Setup,
    layout: Layout,
    run_prefix: &str,
) -> anyhow::Result<Run> {
    let processes_before = usage(setup);
    eprintln!(
        "{}: {} uploads/s for {} s into s3://{}/{run_prefix}/ ({})",
        plan.scenario.name, args.rate, args.duration, setup.source_bucket, setup.target
    );

    let watcher = Watcher::new(layout);
    let stop_watching = CancellationToken::new();
    let poller = {
        let (watcher, gcs, bucket, stop) = (
            watcher.clone(),
            setup.gcs.clone(),
            setup.replica_bucket.clone(),
            stop_watching.clone(),
        );
        tokio::spawn(async move { watcher.poll(&gcs, &bucket, stop).await })
    };
    // One moment on both clocks: uploads are timed on the monotonic one, GCS's creation
    // times come on the wall clock.
    let (start, wall_start) = (Instant::now(), Utc::now());
    let samples = Arc::new(Mutex::new(Vec::new()));
    let sampler = tokio::spawn(sample_queues(
        setup.sqs.clone(),
        setup.queues.clone(),
        start,
        Arc::clone(&samples),
        stop_watching.clone(),
    ));

    let uploads = upload_all(args, &plan.mix, setup, run_prefix, &watcher, start).await;
    let deadline = Instant::now() + Duration::from_secs_f64(args.drain);
    while watcher.outstanding() > 0 && Instant::now() < deadline && !poller.is_finished() {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop_watching.cancel();
    poller.await?.context("watching the replica bucket")?;
    sampler.await?;
    let processes = usage_since(&processes_before);
    Ok(Run {
        scenario: plan.scenario,
        started_at: wall_start.to_rfc3339(),
        environment: Environment {
            target: setup.target.clone(),
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        },
        objects: with_replicas(uploads, &watcher, wall_start),
        queue_depth: std::mem::take(&mut *lock(&samples)),
        processes,
    })
}

/// The uploads' records with when the watcher saw each one's replica and variants, on the
/// run's clock.
fn with_replicas(
    uploads: Vec<(u64, bool, ObjectResult)>,
    watcher: &Watcher,
    wall_start: DateTime<Utc>,
) -> Vec<ObjectResult> {
    let on_run_clock =
        |t: DateTime<Utc>| (t - wall_start).num_microseconds().unwrap_or(0) as f64 / 1e6;
    uploads
        .into_iter()
        .map(|(seq, image, mut result)| {
            if result.uploaded_s.is_some() {
                let (replica, variants) = watcher.seen(seq, image);
                result.replica_s = replica.map(on_run_clock);
                result.variants_s = variants.map(on_run_clock);
            }
            result
        })
        .collect()
}

/// Writes the report and says where, with its summary on stdout for scripts.
fn write_report(run: &Run, prices: &Prices, out: &std::path::Path) -> anyhow::Result<()> {
    let summary = report::write(run, prices, out)?;
    println!("{}", serde_json::to_string_pretty(&summary)?);
    println!("report: {}", out.join("report.md").display());
    Ok(())
}

/// Where each profile's variants of this run's objects are named.
fn layout_of(variants: &VariantConfig, run_prefix: &str) -> anyhow::Result<Layout> {
    let probe = variants.key_template.render("p", "k", "x");
    if !probe.ends_with("k.x") && !variants.profiles.is_empty() {
        bail!(
            "the load test lists variants by name prefix: use a key_template that ends in {{key}}"
        );
    }
    Ok(Layout {
        replicas: format!("{run_prefix}/"),
        variants: variants
            .profiles
            .iter()
            .map(|p| {
                let prefix = format!(
                    "{}{run_prefix}/",
                    variants.key_template.names_prefix(&p.name)
                );
                (p.name.clone(), prefix)
            })
            .collect(),
    })
}

/// Uploads on schedule (open loop: object `i` is due at `i / rate`), at most `concurrency` at
/// once. Returns each object's sequence number, whether it is an image, and its record.
async fn upload_all(
    args: &RunArgs,
    mix: &Mix,
    setup: &Setup,
    run_prefix: &str,
    watcher: &Watcher,
    start: Instant,
) -> Vec<(u64, bool, ObjectResult)> {
    let permits = Arc::new(tokio::sync::Semaphore::new(args.concurrency.max(1)));
    let mut rng = rand::rngs::StdRng::seed_from_u64(args.seed);
    let mut tasks = tokio::task::JoinSet::new();
    let since = move |t: Instant| t.duration_since(start).as_secs_f64();
    for seq in 0_u64.. {
        let due = seq as f64 / args.rate;
        if due >= args.duration {
            break;
        }
        tokio::time::sleep_until((start + Duration::from_secs_f64(due)).into()).await;
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
            break;
        };
        let body = mix.pick(&mut rng);
        let key = key_of(run_prefix, seq, body.kind.as_str(), body.extension);
        let (s3, bucket, watcher) = (
            setup.s3.clone(),
            setup.source_bucket.clone(),
            watcher.clone(),
        );
        let (kind, bytes, content_type) = (body.kind, body.bytes.clone(), body.content_type);
        tasks.spawn(async move {
            let started = Instant::now();
            let size = bytes.len() as u64;
            let outcome = s3
                .put_object()
                .bucket(&bucket)
                .key(&key)
                .content_type(content_type)
                .body(ByteStream::from(bytes))
                .send()
                .await;
            let finished = Instant::now();
            drop(permit);
            let error = outcome.err().map(|e| yuba_aws::describe_sdk_error(&e));
            if error.is_none() {
                watcher.expect(seq, kind.is_image());
            }
            let uploaded_s = error.is_none().then(|| since(finished));
            (
                seq,
                kind.is_image(),
                ObjectResult {
                    key,
                    kind,
                    bytes: size,
                    due_s: due,
                    upload_started_s: since(started),
                    uploaded_s,
                    replica_s: None,
                    variants_s: None,
                    error,
                },
            )
        });
    }
    let mut results = Vec::new();
    while let Some(done) = tasks.join_next().await {
        if let Ok(result) = done {
            results.push(result);
        }
    }
    results.sort_by_key(|(seq, _, _)| *seq);
    results
}

async fn sample_queues(
    sqs: aws_sdk_sqs::Client,
    queues: Vec<(String, String)>,
    start: Instant,
    samples: Arc<Mutex<Vec<QueueSample>>>,
    stop: CancellationToken,
) {
    loop {
        let t_s = start.elapsed().as_secs_f64();
        let mut depths = Vec::new();
        for (name, url) in &queues {
            if let Ok(depth) = yuba_e2e::queue_depth(&sqs, url).await {
                depths.push((name.clone(), depth));
            }
        }
        lock(&samples).push(QueueSample { t_s, depths });
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

async fn local_setup(variants: Option<&str>) -> anyhow::Result<Setup> {
    let stack = Stack::start_with(
        "loadtest",
        StackOptions {
            max_receives: 5,
            ..StackOptions::default()
        },
    )?;
    let mut overrides = vec![("RUST_LOG", "warn")];
    if let Some(json) = variants {
        overrides.push(("YUBA_VARIANTS", json));
    }
    let pipeline = stack.spawn_pipeline(&overrides)?;
    let queues = ["EVENTS", "LAMBDA", "FARGATE"]
        .into_iter()
        .map(|q| {
            (
                q.to_ascii_lowercase(),
                stack.var(&format!("YUBA_{q}_QUEUE_URL")).to_owned(),
            )
        })
        .collect();
    Ok(Setup {
        s3: stack.s3().await,
        sqs: stack.sqs().await,
        gcs: stack.gcs().await?,
        source_bucket: stack.source_bucket().to_owned(),
        replica_bucket: stack.replica_bucket().to_owned(),
        queues,
        target: "local stack (moto S3/SQS, fake-gcs-server) on loopback".into(),
        local: Some((stack, pipeline)),
    })
}

async fn env_setup() -> anyhow::Result<Setup> {
    let env = yuba_startup::Env::from_process();
    let source_bucket =
        env.required("YUBA_SOURCE_BUCKET", "set it to the S3 bucket to upload to")?;
    let replica_bucket = env.required("YUBA_GCS_BUCKET", "set it to the replica bucket")?;
    let gcs_settings = GcsSettings::from_env(&env)?;
    let sdk = yuba_aws::load_sdk_config().await;
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(env.flag("YUBA_S3_FORCE_PATH_STYLE", false)?)
            .build(),
    );
    let queues = ["EVENTS", "LAMBDA", "FARGATE"]
        .into_iter()
        .filter_map(|q| {
            Some((
                q.to_ascii_lowercase(),
                env.optional(&format!("YUBA_{q}_QUEUE_URL"))?,
            ))
        })
        .collect();
    Ok(Setup {
        s3,
        sqs: aws_sdk_sqs::Client::new(&sdk),
        gcs: Gcs::connect(&gcs_settings).await?,
        target: format!("s3://{source_bucket} → gs://{replica_bucket}"),
        replica_bucket,
        source_bucket,
        queues,
        local: None,
    })
}

/// CPU seconds so far of each process a local run started, and of the servers.
fn usage(setup: &Setup) -> Vec<(String, ProcessRole, u32, f64)> {
    let Some((stack, pipeline)) = &setup.local else {
        return Vec::new();
    };
    let yuba = pipeline.iter().map(|p| {
        let role = if p.label.starts_with("worker") {
            ProcessRole::Worker
        } else {
            ProcessRole::Ingest
        };
        (p.label.clone(), role, p.pid())
    });
    let servers = procstat::children_of(stack.pid())
        .into_iter()
        .map(|(pid, name)| (name, ProcessRole::Server, pid));
    let me = (
        "yuba-loadtest".to_owned(),
        ProcessRole::LoadGenerator,
        std::process::id(),
    );
    yuba.chain(servers)
        .chain(std::iter::once(me))
        .map(|(name, role, pid)| (name, role, pid, procstat::cpu_seconds(pid).unwrap_or(0.0)))
        .collect()
}

fn usage_since(before: &[(String, ProcessRole, u32, f64)]) -> Vec<ProcessUsage> {
    before
        .iter()
        .map(|(name, role, pid, cpu_before)| ProcessUsage {
            name: name.clone(),
            role: *role,
            cpu_s: procstat::cpu_seconds(*pid).map_or(0.0, |now| now - cpu_before),
            peak_rss_bytes: procstat::peak_rss_bytes(*pid).unwrap_or(0),
        })
        .collect()
}
