//! The end-to-end test harness: a local stack per test (moto for S3 and SQS, fake-gcs-server
//! for GCS, on loopback), the real `yuba-ingest` and `yuba-worker` binaries running against it,
//! and clients to act and observe as a user would.
//!
//! The stack comes from `scripts/stack.py`, the same script `make demo` uses; the binaries are
//! the ones `cargo build --bins` leaves next to the test executables (`make test` builds them).

pub mod ecs_agent;
pub mod fault_proxy;
pub mod http;
mod images;
pub mod lambda_api;
pub mod package;
pub mod procstat;
pub mod raw_http;

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use sha2::{Digest, Sha256};
use yuba_aws::S3Source;
use yuba_gcs::{Gcs, GcsSettings, ListQuery, ObjectInfo};
use yuba_replicate::{Footprint, Replicator, ReplicatorSettings};
use yuba_startup::Env;

use crate::fault_proxy::{FaultProxy, socket_addr_of};
pub use crate::images::amplification_png;

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// Holds a file generated from Rust (a contract the CDK reads) to what the code renders now:
/// rewritten and failed when it differs, so a change shows in the diff and is committed.
pub fn check_generated(relative: &str, rendered: &str) {
    let path = repo_root().join(relative);
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if committed != rendered {
        std::fs::write(&path, rendered).expect("writing the generated file");
        panic!("{relative} was out of date and has been regenerated; commit it");
    }
}

/// Holds the part of a hand-written document between the line `begin` and the line `end` to
/// what the code renders now (README's configuration table, say), as [`check_generated`] does a
/// whole file.
pub fn check_generated_section(relative: &str, begin: &str, end: &str, rendered: &str) {
    let path = repo_root().join(relative);
    let document = std::fs::read_to_string(&path).expect("the document");
    let start = document
        .find(begin)
        .map(|at| at + begin.len())
        .and_then(|at| document[at..].find('\n').map(|newline| at + newline + 1))
        .unwrap_or_else(|| panic!("{relative} has no line starting {begin:?}"));
    let stop = start
        + document[start..]
            .find(end)
            .unwrap_or_else(|| panic!("{relative} has no {end:?} after {begin:?}"));
    if document[start..stop] != *rendered {
        let updated = format!("{}{rendered}{}", &document[..start], &document[stop..]);
        std::fs::write(&path, updated).expect("writing the document");
        panic!("{relative} was out of date and has been regenerated; commit it");
    }
}

/// Every `.rs` file under `bins/*/src` and `libs/*/src`, as (path from the repository's root,
/// contents), sorted: what the tidy tests (tests/iam.rs, tests/metrics.rs) scan.
pub fn program_sources() -> Vec<(String, String)> {
    fn walk(directory: &Path, found: &mut Vec<PathBuf>) {
        let entries =
            std::fs::read_dir(directory).unwrap_or_else(|e| panic!("{}: {e}", directory.display()));
        for entry in entries {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                walk(&path, found);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                found.push(path);
            }
        }
    }
    let root = repo_root();
    let mut files = Vec::new();
    for group in ["bins", "libs"] {
        let crates = std::fs::read_dir(root.join(group)).expect("bins/ and libs/");
        for krate in crates {
            let src = krate.expect("a directory entry").path().join("src");
            if src.is_dir() {
                walk(&src, &mut files);
            }
        }
    }
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let source = std::fs::read_to_string(&path).expect("a source file");
            let relative = path.strip_prefix(&root).unwrap_or(&path);
            (relative.display().to_string(), source)
        })
        .collect()
}

/// Where cargo put the binaries: the test executable lives in `<profile>/deps/`.
pub fn binary(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe.parent().context("the executable has no directory")?;
    // Test executables live in <profile>/deps, binaries (the load test's too) in <profile>.
    let profile_dir = if dir.ends_with("deps") {
        dir.parent()
            .context("test executable has no profile directory")?
    } else {
        dir
    };
    let path = profile_dir.join(name);
    ensure!(
        path.exists(),
        "{} is missing; build the binaries first (`cargo build --bins`, which `make test` does)",
        path.display()
    );
    Ok(path)
}

/// A running local stack. Dropping it stops the servers.
#[derive(Debug)]
pub struct Stack {
    pub env: HashMap<String, String>,
    pub dir: PathBuf,
    server: Child,
    // Held open for the life of the stack: `stack.py` stops when it closes.
    lifeline: Option<ChildStdin>,
}

impl Stack {
    /// Starts a fresh stack; messages go to a DLQ after `max_receives` receives.
    pub fn start(name: &str, max_receives: u32) -> anyhow::Result<Stack> {
        Stack::start_with(
            name,
            StackOptions {
                max_receives,
                ..StackOptions::default()
            },
        )
    }

    /// Starts a fresh stack with `options` (`scripts/stack.py up` and its flags).
    pub fn start_with(name: &str, options: StackOptions) -> anyhow::Result<Stack> {
        let root = repo_root();
        let status = Command::new(root.join("scripts/bootstrap.sh"))
            .stdout(Stdio::null())
            .status()
            .context("running scripts/bootstrap.sh")?;
        ensure!(status.success(), "scripts/bootstrap.sh failed");
        let dir = std::env::temp_dir().join(format!("yuba-e2e-{name}-{}", std::process::id()));
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        std::fs::create_dir_all(&dir)?;
        let mut command = Command::new(root.join(".venv/bin/python"));
        command
            .arg(root.join("scripts/stack.py"))
            .args(["up", "--exit-on-stdin-eof", "--max-receives"])
            .arg(options.max_receives.to_string())
            .arg("--state-dir")
            .arg(&dir);
        if let Some(backend) = options.gcs_backend {
            command.args(["--gcs-backend", backend]);
        }
        if let Some(url) = &options.gcs_external_url {
            command.args(["--gcs-external-url", url]);
        }
        let mut server = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(File::create(dir.join("stack.stderr"))?)
            .spawn()
            .context("starting scripts/stack.py")?;
        let lifeline = server.stdin.take();
        let mut line = String::new();
        if let Some(stdout) = server.stdout.take() {
            BufReader::new(stdout).read_line(&mut line)?;
        }
        if line.trim().is_empty() {
            let log = std::fs::read_to_string(dir.join("stack.stderr")).unwrap_or_default();
            bail!("the local stack did not start:\n{log}");
        }
        let env: HashMap<String, String> =
            serde_json::from_str(&line).context("reading the stack's endpoints")?;
        Ok(Stack {
            env,
            dir,
            server,
            lifeline,
        })
    }

    /// Starts a fresh stack with a [`FaultProxy`] in front of each server, for tests of what
    /// the binaries do when the network fails. The stack's own variables still point at the
    /// servers (for the test's own set-up and checks); [`Proxies::overrides`] points the
    /// binaries at the proxies.
    ///
    /// The GCS proxy listens on port 80 of its own loopback address, and fake-gcs-server is
    /// told its URL, so that resumable uploads come back through it (see
    /// [`FaultProxy::listen_port_80`]).
    pub async fn start_behind_proxies(
        name: &str,
        options: StackOptions,
    ) -> anyhow::Result<(Stack, Proxies)> {
        let gcs = FaultProxy::listen_port_80()
            .await
            .context("listening for the GCS proxy on port 80 of a loopback address")?;
        let aws = FaultProxy::listen().await?;
        let options = StackOptions {
            gcs_external_url: Some(gcs.url().to_owned()),
            ..options
        };
        let name = name.to_owned();
        let stack =
            tokio::task::spawn_blocking(move || Stack::start_with(&name, options)).await??;
        aws.forward_to(socket_addr_of(stack.var("AWS_ENDPOINT_URL"))?);
        gcs.forward_to(socket_addr_of(stack.var("YUBA_GCS_ENDPOINT"))?);
        Ok((stack, Proxies { aws, gcs }))
    }

    /// Restarts fake-gcs-server in place (same address, port and flags) and returns once it
    /// answers again: open connections to it break, as in a real restart. Its data survives
    /// with `gcs_backend: Some("filesystem")`; with the memory backend only the bucket is
    /// there again. Blocks for about a second.
    pub fn restart_gcs(&self) -> anyhow::Result<()> {
        let counter = self.dir.join("gcs-restarts");
        let restarts = || {
            std::fs::read_to_string(&counter)
                .ok()
                .and_then(|text| text.trim().parse::<u64>().ok())
                .unwrap_or(0)
        };
        let before = restarts();
        let status = Command::new("kill")
            .args(["-USR1", &self.server.id().to_string()])
            .status()?;
        ensure!(status.success(), "could not signal scripts/stack.py");
        let deadline = Instant::now() + Duration::from_secs(45);
        while restarts() <= before {
            if Instant::now() > deadline {
                let log =
                    std::fs::read_to_string(self.dir.join("stack.stderr")).unwrap_or_default();
                bail!("fake-gcs-server did not come back within 45 s of a restart:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let addr = socket_addr_of(self.var("YUBA_GCS_ENDPOINT"))?;
        std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .with_context(|| format!("fake-gcs-server restarted but {addr} does not answer"))?;
        Ok(())
    }

    /// The process of `stack.py`, whose children are the servers.
    pub fn pid(&self) -> u32 {
        self.server.id()
    }

    pub fn var(&self, name: &str) -> &str {
        self.env.get(name).map(String::as_str).unwrap_or_default()
    }

    /// Starts one of the yuba binaries against this stack, with `overrides` on top of the
    /// stack's environment and quick test timings. Its JSON logs go to a file in the stack dir.
    pub fn spawn(
        &self,
        name: &str,
        label: &str,
        overrides: &[(&str, &str)],
    ) -> anyhow::Result<Process> {
        self.spawn_command(self.command(name, overrides)?, label)
    }

    /// Starts `command` (made by [`Stack::command`] or [`Stack::configure`]) with its JSON logs
    /// in a file of the stack dir.
    pub fn spawn_command(&self, mut command: Command, label: &str) -> anyhow::Result<Process> {
        let log_path = self.dir.join(format!("{label}.log"));
        let child = command
            .stdout(Stdio::null())
            .stderr(File::create(&log_path)?)
            .spawn()
            .with_context(|| format!("starting {command:?}"))?;
        Ok(Process {
            child,
            log_path,
            label: label.to_owned(),
        })
    }

    /// The command that starts one of the yuba binaries against this stack, as [`Stack::spawn`]
    /// does (the stack's environment, quick test timings, JSON logs, then `overrides`), for a
    /// test to add arguments or remove variables before running it.
    pub fn command(&self, name: &str, overrides: &[(&str, &str)]) -> anyhow::Result<Command> {
        Ok(self.configure(Command::new(binary(name)?), overrides))
    }

    /// `command` (any program: a packaged binary under qemu, say) given what [`Stack::command`]
    /// gives the workspace's binaries.
    pub fn configure(&self, mut command: Command, overrides: &[(&str, &str)]) -> Command {
        command
            .envs(&self.env)
            .env("YUBA_LOG_FORMAT", "json")
            .env("RUST_LOG", "info")
            .env("YUBA_RECEIVE_WAIT_SECONDS", "1")
            .env("YUBA_GCS_RETRY_SECONDS", "10")
            .env("YUBA_RETRY_BASE_SECONDS", "0.2")
            .env("YUBA_RETRY_MAX_SECONDS", "2")
            .env("YUBA_SHUTDOWN_GRACE_SECONDS", "5");
        for (key, value) in overrides {
            command.env(key, value);
        }
        command
    }

    /// Runs one of the yuba binaries against this stack with `args` to its end (killed after
    /// `timeout`), and returns its exit code and output.
    pub async fn run(
        &self,
        name: &str,
        args: &[&str],
        overrides: &[(&str, &str)],
        timeout: Duration,
    ) -> anyhow::Result<Finished> {
        let mut command = self.command(name, overrides)?;
        command.args(args);
        run_to_end(command, timeout).await
    }

    /// `yuba-serve` on a free loopback port with `overrides`, and the address it listens on
    /// (from its log, once it is ready).
    pub async fn spawn_serve(
        &self,
        overrides: &[(&str, &str)],
    ) -> anyhow::Result<(Process, std::net::SocketAddr)> {
        let mut env = vec![("YUBA_SERVE_ADDRESS", "127.0.0.1:0")];
        env.extend_from_slice(overrides);
        let serve = self.spawn("yuba-serve", "serve", &env)?;
        let address = eventually(Duration::from_secs(30), "yuba-serve to listen", || async {
            let listening = serve
                .log_lines()
                .into_iter()
                .find_map(|line| line["address"].as_str().map(str::to_owned));
            Ok(listening.map(|address| address.parse()).transpose()?)
        })
        .await
        .with_context(|| serve.raw_log())?;
        Ok((serve, address))
    }

    /// ingest in local mode plus one worker per work queue: the whole pipeline.
    pub fn spawn_pipeline(
        &self,
        worker_overrides: &[(&str, &str)],
    ) -> anyhow::Result<Vec<Process>> {
        let lambda_queue = self.var("YUBA_LAMBDA_QUEUE_URL").to_owned();
        let fargate_queue = self.var("YUBA_FARGATE_QUEUE_URL").to_owned();
        let mut lambda_env = vec![("YUBA_QUEUE_URL", lambda_queue.as_str())];
        lambda_env.extend_from_slice(worker_overrides);
        let mut fargate_env = vec![("YUBA_QUEUE_URL", fargate_queue.as_str())];
        fargate_env.extend_from_slice(worker_overrides);
        Ok(vec![
            self.spawn(
                "yuba-ingest",
                "ingest",
                &[("YUBA_ROUTE_THRESHOLD_BYTES", "8388608")],
            )?,
            self.spawn("yuba-worker", "worker-lambda", &lambda_env)?,
            self.spawn("yuba-worker", "worker-fargate", &fargate_env)?,
        ])
    }

    pub async fn s3(&self) -> aws_sdk_s3::Client {
        let config = aws_sdk_s3::config::Builder::from(&self.sdk_config().await)
            .force_path_style(true)
            .build();
        aws_sdk_s3::Client::from_conf(config)
    }

    /// Puts `body` into the source bucket under `key` (straight to the server).
    pub async fn put(&self, key: &str, body: &[u8]) -> anyhow::Result<()> {
        self.s3()
            .await
            .put_object()
            .bucket(self.source_bucket())
            .key(key)
            .body(aws_sdk_s3::primitives::ByteStream::from(body.to_vec()))
            .send()
            .await?;
        Ok(())
    }

    /// Puts a replicate job for `key` of the source bucket on the queue at `queue_url`, as ingest
    /// would.
    pub async fn enqueue_replicate(&self, queue_url: &str, key: &str) -> anyhow::Result<()> {
        self.sqs()
            .await
            .send_message()
            .queue_url(queue_url)
            .message_body(replicate(self.source_bucket(), key).to_message())
            .send()
            .await?;
        Ok(())
    }

    pub async fn sqs(&self) -> aws_sdk_sqs::Client {
        aws_sdk_sqs::Client::new(&self.sdk_config().await)
    }

    /// An S3 client for `endpoint` (a proxy's URL, say) instead of the stack's own.
    pub async fn s3_at(&self, endpoint: &str) -> aws_sdk_s3::Client {
        let config = aws_sdk_s3::config::Builder::from(&self.sdk_config().await)
            .endpoint_url(endpoint)
            .force_path_style(true)
            .build();
        aws_sdk_s3::Client::from_conf(config)
    }

    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        let credentials = aws_sdk_s3::config::Credentials::new(
            self.var("AWS_ACCESS_KEY_ID"),
            self.var("AWS_SECRET_ACCESS_KEY"),
            None,
            None,
            "local-stack",
        );
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(self.var("AWS_ENDPOINT_URL"))
            .region(aws_config::Region::new(self.var("AWS_REGION").to_owned()))
            .credentials_provider(credentials)
            .load()
            .await
    }

    /// The worker's `Replicator`, run in the test process: S3 at `s3_endpoint` (the stack's
    /// own, or a proxy's), the stack's GCS, the replica bucket, and `env` on top (variant
    /// profiles, say).
    pub async fn replicator(
        &self,
        s3_endpoint: &str,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Replicator> {
        let mut pairs = vec![
            ("YUBA_SOURCE_BUCKET", self.source_bucket()),
            ("YUBA_GCS_BUCKET", self.replica_bucket()),
        ];
        pairs.extend_from_slice(env);
        // The worker's defaults: 8 MiB chunks, 4 parts at once, 8 jobs.
        let footprint = Footprint {
            upload_chunk_bytes: 8 * 1024 * 1024,
            parallel_uploads: 4,
            concurrency: 8,
        };
        let settings = ReplicatorSettings::from_env(&Env::from_pairs(pairs), &footprint)?;
        let sdk = self
            .sdk_config()
            .await
            .into_builder()
            .endpoint_url(s3_endpoint)
            .build();
        let s3 = S3Source::new(&sdk, true);
        Ok(Replicator::new(s3, self.gcs().await?, settings))
    }

    pub async fn gcs(&self) -> anyhow::Result<Gcs> {
        self.gcs_at(self.var("YUBA_GCS_ENDPOINT")).await
    }

    /// A GCS client for `endpoint` (a proxy's URL, say) instead of the stack's own, with the
    /// same settings as [`Stack::gcs`].
    pub async fn gcs_at(&self, endpoint: &str) -> anyhow::Result<Gcs> {
        let env = Env::from_pairs([
            ("YUBA_GCS_ENDPOINT", endpoint),
            ("YUBA_GCS_RETRY_SECONDS", "10"),
        ]);
        Ok(Gcs::connect(&GcsSettings::from_env(&env)?).await?)
    }

    /// The requests fake-gcs-server has answered so far, `METHOD /path?query` from its access
    /// log: how many a copy cost, which the objects cannot tell (fake-gcs-server keeps an
    /// object's metageneration at 1 through a PATCH).
    pub fn gcs_requests(&self) -> anyhow::Result<Vec<String>> {
        let log = std::fs::read_to_string(self.dir.join("fake-gcs-server.log"))?;
        Ok(log
            .lines()
            .filter_map(|line| {
                let (_, request) = line.split_once("\\\"")?;
                let (request, _) = request.split_once(" HTTP/")?;
                Some(request.to_owned())
            })
            .collect())
    }

    pub fn replica_bucket(&self) -> &str {
        self.var("YUBA_GCS_BUCKET")
    }

    pub fn source_bucket(&self) -> &str {
        self.var("YUBA_SOURCE_BUCKET")
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        drop(self.lifeline.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.server.try_wait() {
                let _ = std::fs::remove_dir_all(&self.dir);
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

/// How to start a stack ([`Stack::start_with`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackOptions {
    /// Receives before a message goes to its DLQ.
    pub max_receives: u32,
    /// fake-gcs-server's store, `memory` or `filesystem` (whose data survives
    /// [`Stack::restart_gcs`]); `None`: the script's default (memory).
    pub gcs_backend: Option<&'static str>,
    /// The URL fake-gcs-server announces as its own (`-external-url`); `None`: its address.
    pub gcs_external_url: Option<String>,
}

impl Default for StackOptions {
    fn default() -> StackOptions {
        StackOptions {
            max_receives: 3,
            gcs_backend: None,
            gcs_external_url: None,
        }
    }
}

/// The proxies in front of a stack's servers ([`Stack::start_behind_proxies`]).
#[derive(Debug, Clone)]
pub struct Proxies {
    /// In front of moto: S3 and SQS.
    pub aws: FaultProxy,
    /// In front of fake-gcs-server.
    pub gcs: FaultProxy,
}

impl Proxies {
    /// The variables that send a yuba binary through the proxies, as [`Stack::spawn`],
    /// [`Stack::command`] and [`Stack::run`] take them (`&proxies.overrides()`); push a test's
    /// own on top.
    pub fn overrides(&self) -> Vec<(&'static str, &str)> {
        vec![
            ("AWS_ENDPOINT_URL", self.aws.url()),
            ("YUBA_GCS_ENDPOINT", self.gcs.url()),
        ]
    }

    /// What both proxies have done, for a test's closing report.
    pub fn report(&self) -> String {
        format!(
            "aws proxy: {}\ngcs proxy: {}",
            self.aws.stats(),
            self.gcs.stats()
        )
    }
}

/// A running yuba binary. Dropping it stops it with SIGTERM (then SIGKILL).
#[derive(Debug)]
pub struct Process {
    child: Child,
    log_path: PathBuf,
    pub label: String,
}

impl Process {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its log lines, parsed (lines that are not JSON are skipped).
    pub fn log_lines(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.log_path)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    pub fn raw_log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Kills it at once (SIGKILL): no drain, no release, as a crash or an OOM kill.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// Asks it to stop (SIGTERM) and waits up to `within` for it to exit.
    pub fn terminate(&mut self, within: Duration) -> anyhow::Result<std::process::ExitStatus> {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?;
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                self.child.kill()?;
                bail!("{} did not exit within {within:?} of SIGTERM", self.label);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.terminate(Duration::from_secs(10));
        }
    }
}

/// A program run to its end: how it exited and what it printed.
#[derive(Debug, Clone)]
pub struct Finished {
    /// `None`: killed by a signal.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    /// The lines of stdout that are JSON, parsed (others are skipped).
    pub fn json_lines(&self) -> Vec<serde_json::Value> {
        self.stdout
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }
}

/// Runs `command` to its end with its stdout and stderr captured (stdin closed); kills it and
/// fails if it is still running after `timeout`.
pub async fn run_to_end(mut command: Command, timeout: Duration) -> anyhow::Result<Finished> {
    tokio::task::spawn_blocking(move || {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {command:?}"))?;
        let read = |pipe: Option<Box<dyn std::io::Read + Send>>| {
            std::thread::spawn(move || {
                let mut text = Vec::new();
                if let Some(mut pipe) = pipe {
                    let _ = pipe.read_to_end(&mut text);
                }
                String::from_utf8_lossy(&text).into_owned()
            })
        };
        let stdout = read(child.stdout.take().map(|p| Box::new(p) as _));
        let stderr = read(child.stderr.take().map(|p| Box::new(p) as _));
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break Some(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let finished = Finished {
            code: status.and_then(|status| status.code()),
            stdout: stdout.join().unwrap_or_default(),
            stderr: stderr.join().unwrap_or_default(),
        };
        ensure!(
            status.is_some(),
            "{command:?} did not finish within {timeout:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            finished.stdout,
            finished.stderr
        );
        Ok(finished)
    })
    .await?
}

/// Log lines with field `field` (of the event, or of the span it was logged in) equal to
/// `value`, in any of the processes.
pub fn logs_where<'a>(
    processes: &'a [Process],
    field: &str,
    value: &str,
) -> Vec<(&'a str, serde_json::Value)> {
    processes
        .iter()
        .flat_map(|p| {
            p.log_lines()
                .into_iter()
                .map(move |line| (p.label.as_str(), line))
        })
        .filter(|(_, line)| {
            let in_span = line.get("span").and_then(|span| span.get(field));
            line.get(field).or(in_span).and_then(|v| v.as_str()) == Some(value)
        })
        .collect()
}

/// Everything the processes logged, for a failing assertion's message.
pub fn dump_logs(processes: &[Process]) -> String {
    processes
        .iter()
        .map(|p| format!("--- {} ---\n{}", p.label, p.raw_log()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A job to copy whatever `key` holds now, with nothing from an event (no ETag, size or
/// sequencer): what a backfill or a hand-written message asks for.
pub fn replicate(bucket: &str, key: &str) -> yuba_model::Job {
    yuba_model::Job::Replicate(yuba_model::ReplicateJob {
        bucket: bucket.to_owned(),
        key: key.to_owned(),
        version_id: None,
        etag: None,
        size: None,
        sequencer: None,
        event_time: None,
        force: false,
    })
}

/// Polls `probe` every 100 ms until it yields a value or `timeout` passes.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut probe: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe().await? {
            return Ok(value);
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until one of `processes` (workers) has logged a finished replication of `key`, then
/// returns its replica, which must carry a complete record. Waiting for the worker rather than
/// for the object matters on fake-gcs-server, which can need a second request to get the
/// content type right after the object already exists.
pub async fn replica_of(
    processes: &[Process],
    gcs: &Gcs,
    bucket: &str,
    key: &str,
    timeout: Duration,
) -> anyhow::Result<ObjectInfo> {
    eventually(timeout, &format!("the replication of {key:?}"), || async {
        let done = logs_where(processes, "key", key)
            .into_iter()
            .any(|(_, line)| {
                line["message"] == "job done"
                    && ["replicated", "already-replicated"]
                        .contains(&line["outcome"].as_str().unwrap_or_default())
            });
        Ok(done.then_some(()))
    })
    .await
    .map_err(|e| e.context(dump_logs(processes)))?;
    let object = gcs
        .objects()
        .get(bucket, key)
        .await?
        .with_context(|| format!("the worker replicated {key:?} but there is no replica"))?;
    ensure!(
        object.metadata.contains_key(yuba_model::keys::SHA256),
        "the replica of {key:?} has no complete record: {:?}",
        object.metadata
    );
    Ok(object)
}

/// The objects under `prefix` of a bucket (one page: tests keep them few), in name order, with
/// their generations: the temporaries of composite uploads, in the tests of their resumption.
pub async fn temporaries_under(
    gcs: &Gcs,
    bucket: &str,
    prefix: &str,
) -> anyhow::Result<Vec<(String, i64)>> {
    let query = ListQuery {
        prefix,
        page_size: 1000,
        ..ListQuery::default()
    };
    let page = gcs.objects().list(bucket, &query).await?;
    anyhow::ensure!(page.next_page_token.is_none(), "more than one page");
    Ok(page
        .objects
        .into_iter()
        .map(|object| (object.name, object.generation))
        .collect())
}

/// The sha256 of an object's content in GCS, read by the test itself.
pub async fn gcs_sha256(gcs: &Gcs, bucket: &str, name: &str) -> anyhow::Result<String> {
    let mut reader = gcs
        .storage()
        .read_object(format!("projects/_/buckets/{bucket}"), name)
        .send()
        .await?;
    let mut hasher = Sha256::new();
    while let Some(chunk) = reader.next().await {
        hasher.update(&chunk?);
    }
    Ok(hex::encode(hasher.finalize()))
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A variants document with one small JPEG profile, `thumb`, under the default key template.
pub const THUMBNAIL_VARIANTS: &str = r#"{
    "key_template": "_variants/{variant}/{key}",
    "profiles": [{"name": "thumb", "width": 32, "height": 32, "format": "jpeg", "quality": 80}]
}"#;

/// A `width`×`height` JPEG of gradients; each `seed` gives other pixels (and bytes).
pub fn gradient_jpeg(width: u16, height: u16, seed: u8) -> Vec<u8> {
    let mut rgb = Vec::with_capacity(usize::from(width) * usize::from(height) * 3);
    for y in 0..height {
        for x in 0..width {
            rgb.extend_from_slice(&[x as u8, y as u8, (x as u8 / 2).wrapping_add(seed)]);
        }
    }
    encode_jpeg(&rgb, width, height, 90)
}

/// `rgb` (8-bit, 3 channels) as a baseline JPEG.
pub fn encode_jpeg(rgb: &[u8], width: u16, height: u16, quality: u8) -> Vec<u8> {
    let mut out = Vec::new();
    jpeg_encoder::Encoder::new(&mut out, quality)
        .encode(rgb, width, height, jpeg_encoder::ColorType::Rgb)
        .expect("a buffer of the right size encodes");
    out
}

/// The first message on `queue_url`, waiting for one up to `timeout` (it stays on the queue).
pub async fn first_message(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    timeout: Duration,
) -> anyhow::Result<aws_sdk_sqs::types::Message> {
    eventually(timeout, &format!("a message on {queue_url}"), || async {
        let received = sqs
            .receive_message()
            .queue_url(queue_url)
            .wait_time_seconds(1)
            .send()
            .await?;
        Ok(received.messages().first().cloned())
    })
    .await
}

/// Takes `count` messages off `queue_url` (with their message attributes), deleting each, waiting
/// up to `timeout` for them; fails if fewer arrive.
pub async fn take_messages(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    count: usize,
    timeout: Duration,
) -> anyhow::Result<Vec<aws_sdk_sqs::types::Message>> {
    let mut taken = Vec::new();
    let deadline = Instant::now() + timeout;
    while taken.len() < count {
        anyhow::ensure!(
            Instant::now() < deadline,
            "{} of {count} messages on {queue_url} after {timeout:?}",
            taken.len()
        );
        let received = sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .message_attribute_names("All")
            .wait_time_seconds(1)
            .send()
            .await?;
        for message in received.messages() {
            sqs.delete_message()
                .queue_url(queue_url)
                .set_receipt_handle(message.receipt_handle().map(str::to_owned))
                .send()
                .await?;
            taken.push(message.clone());
        }
    }
    Ok(taken)
}

/// A string message attribute of `message`.
pub fn message_attribute<'m>(
    message: &'m aws_sdk_sqs::types::Message,
    name: &str,
) -> Option<&'m str> {
    message.message_attributes()?.get(name)?.string_value()
}

/// Deterministic bytes that do not compress: a sha256 counter stream.
pub fn pseudo_random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 32);
    let mut counter = 0_u64;
    while out.len() < len {
        let mut hasher = Sha256::new();
        hasher.update(seed.to_le_bytes());
        hasher.update(counter.to_le_bytes());
        out.extend_from_slice(&hasher.finalize());
        counter += 1;
    }
    out.truncate(len);
    out
}

/// Visible plus in-flight messages on a queue.
pub async fn queue_depth(sqs: &aws_sdk_sqs::Client, queue_url: &str) -> anyhow::Result<u64> {
    use aws_sdk_sqs::types::QueueAttributeName as Name;
    let output = sqs
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(Name::ApproximateNumberOfMessages)
        .attribute_names(Name::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await?;
    let attributes = output.attributes().cloned().unwrap_or_default();
    let mut depth = 0;
    for name in [
        Name::ApproximateNumberOfMessages,
        Name::ApproximateNumberOfMessagesNotVisible,
    ] {
        depth += attributes.get(&name).map_or(Ok(0), |v| v.parse::<u64>())?;
    }
    Ok(depth)
}
