//! Init time of the Lambda functions, measured as a proxy (`make bench-lambda-init`,
//! docs/BENCHMARKS.md): each binary given on the command line is started `--runs` times under
//! the loopback Lambda Runtime API with the local stack's configuration, and the time from the
//! process's start to its first `GET /runtime/invocation/next` (where Lambda's init phase ends)
//! is reported with the peak RSS at that moment.
//!
//! A proxy: the binaries are the native (x86_64) builds of the `dist` profile on this machine's
//! disk cache, not arm64 on Lambda's Firecracker with the zip fetched and unpacked first, and no
//! token is fetched at init (the GCS client is the emulator's). What it shows is the part that
//! yuba's own code adds: configuration, clients, the runtime's start.
//!
//!     cargo run --profile dist -p yuba-e2e --example lambda_init -- --runs 20 \
//!         target/dist/yuba-ingest target/dist/yuba-worker

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use yuba_e2e::lambda_api::RuntimeApi;
use yuba_e2e::{Stack, procstat};

const TIMEOUT: Duration = Duration::from_secs(30);

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut runs = 20_usize;
    let mut binaries = Vec::new();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--runs" => {
                runs = args
                    .next()
                    .context("--runs needs a number")?
                    .parse()
                    .context("--runs needs a number")?;
            }
            path => binaries.push(PathBuf::from(path)),
        }
    }
    if binaries.is_empty() || runs == 0 {
        bail!(
            "usage: lambda_init [--runs N] BINARY...  (native builds of yuba-ingest, yuba-worker)"
        );
    }
    let stack = Stack::start("lambda-init", 3)?;
    println!("| binary | runs | init p50 | init p90 | init max | peak RSS at init |");
    println!("| --- | --- | --- | --- | --- | --- |");
    for binary in &binaries {
        let name = binary
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("?")
            .to_owned();
        let mut times = Vec::with_capacity(runs);
        let mut peak = 0_u64;
        for _ in 0..runs {
            let api = RuntimeApi::start().await?;
            let env = api.env();
            let overrides: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let mut command = stack.configure(Command::new(binary), &overrides);
            let started = Instant::now();
            let mut child = command
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .with_context(|| format!("starting {}", binary.display()))?;
            let polled = api.first_poll(TIMEOUT).await;
            let rss = procstat::peak_rss_bytes(child.id()).context("no VmHWM in /proc/PID/status");
            child.kill()?;
            child.wait()?;
            let polled = polled.with_context(|| format!("{name} never asked for an invocation"))?;
            times.push(polled.duration_since(started).as_secs_f64() * 1000.0);
            peak = peak.max(rss?);
        }
        times.sort_by(f64::total_cmp);
        println!(
            "| {name} | {runs} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} MiB |",
            percentile(&times, 50.0),
            percentile(&times, 90.0),
            times.last().copied().unwrap_or_default(),
            peak as f64 / f64::from(1 << 20)
        );
    }
    Ok(())
}
