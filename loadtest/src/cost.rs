//! The cost model: dollars per million images replicated by yuba on Lambda arm64 and on Fargate
//! Spot, beside Storage Transfer Service (STS) for the same bytes, from a run's measured CPU time
//! and memory.
//!
//! A load test runs yuba as long-lived local processes, not as Lambda invocations or Fargate
//! tasks, so what it measures is the work (CPU seconds, bytes, peak memory per replicated object)
//! and the model turns that work into a bill. Every price, and every modelling input the run
//! cannot measure (batch sizes, I/O wait, task shape, utilisation), is a field of [`Prices`] that
//! the user can change with `--price name=value`: a reader who disagrees with a default (another
//! region, a negotiated discount, a different batch size) re-renders the report instead of
//! redoing the arithmetic.
//!
//! Units: a GB is 2^30 bytes throughout, as AWS and Google bill it. Free tiers, volume tiers,
//! storage at rest, logs and metrics are left out: they do not depend on the replication method,
//! or they vanish at a million images a month.

use std::fmt::{self, Write as _};

use serde::{Deserialize, Serialize};

use crate::model::{ProcessRole, Run};

const GB: f64 = 1024.0 * 1024.0 * 1024.0;
const MB: f64 = 1024.0 * 1024.0;
const PER_MILLION: f64 = 1_000_000.0;

/// Lambda gives a function CPU in proportion to its memory, one full vCPU at 1,769 MB
/// (<https://docs.aws.amazon.com/lambda/latest/dg/configuration-memory.html>). A single job
/// uses at most one vCPU, so a function with less memory runs the same CPU work for longer.
const LAMBDA_MB_PER_VCPU: f64 = 1769.0;
const LAMBDA_MIN_MB: f64 = 128.0;
const LAMBDA_MAX_MB: f64 = 10_240.0;
/// The automatic Lambda worker size: headroom over the measured peak (a run's mix is not every
/// production mix), at least 512 MB because image decoding needs room the run's small images may
/// not show, in the 128 MB steps people pick sizes in.
const LAMBDA_AUTO_HEADROOM: f64 = 1.5;
const LAMBDA_AUTO_FLOOR_MB: f64 = 512.0;
const LAMBDA_AUTO_STEP_MB: f64 = 128.0;

/// STS lists both buckets to find what to copy; a LIST (S3) or objects.list (GCS, a Class A
/// operation) returns up to 1,000 keys.
const KEYS_PER_LIST: f64 = 1000.0;

/// Declares [`Prices`] from one list, so the struct, its defaults, the names `--price` accepts
/// and the report's table of inputs cannot drift apart.
macro_rules! prices {
    ($($(#[$meta:meta])* $name:ident: $unit:literal = $default:expr;)*) => {
        /// Every price the model uses, and every modelling input a run cannot measure; each can
        /// be changed by the user (`--price name=value`). The defaults are published list prices
        /// for us-east-1 (AWS) and a regional Standard bucket (Google), without free tiers.
        #[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
        #[serde(default)]
        pub struct Prices {
            $($(#[$meta])* pub $name: f64,)*
            /// Lambda worker memory, MB; `None` ("auto") sizes it from the run: 1.5 x the
            /// worker's measured peak RSS, rounded up to a multiple of 128 MB, at least 512 MB.
            /// Memory is also CPU on Lambda, so this moves the Lambda row a lot.
            pub lambda_worker_memory_mb: Option<f64>,
        }

        impl Default for Prices {
            fn default() -> Self {
                Self { $($name: $default,)* lambda_worker_memory_mb: None }
            }
        }

        impl Prices {
            /// Every name [`Prices::set`] accepts, in the order the report lists them.
            pub const NAMES: &'static [&'static str] =
                &[$(stringify!($name),)* "lambda_worker_memory_mb"];

            /// The numeric inputs: name, value, what the number is.
            fn numbers(&self) -> Vec<(&'static str, f64, &'static str)> {
                vec![$((stringify!($name), self.$name, $unit),)*]
            }

            fn number_mut(&mut self, name: &str) -> Option<&mut f64> {
                match name {
                    $(stringify!($name) => Some(&mut self.$name),)*
                    _ => None,
                }
            }
        }
    };
}

prices! {
    // --- Lambda arm64 (worker, and ingest in both yuba options) ---
    /// Lambda arm64 duration, first 7.5 billion GB-seconds a month.
    /// Source: <https://aws.amazon.com/lambda/pricing/> (Arm price, US East (N. Virginia)), as
    /// quoted by <https://cloudchipr.com/blog/aws-lambda-pricing>; read 2026-11-23.
    lambda_per_gb_second: "$ per GB-second, Lambda arm64" = 0.000_013_333_4;
    /// Lambda requests, the same for x86 and Arm.
    /// Source: <https://aws.amazon.com/lambda/pricing/>; read 2026-11-23.
    lambda_per_million_requests: "$ per million Lambda invocations" = 0.20;
    /// Jobs per worker invocation: the SQS event source's batch size (`lambdaWorker.batchSize`
    /// in cdk/lib/config.ts). Under light load batches are partial; lower it to see that cost.
    lambda_batch_size: "jobs per worker invocation" = 10.0;
    /// Billed seconds per worker invocation spent waiting on S3 and GCS rather than computing
    /// (Lambda bills wall time). The run cannot measure it; 0 gives the CPU-bound lower bound.
    /// 0.2 s is roughly a GCS upload's round trips from us-east-1, overlapped across a batch.
    lambda_wait_s: "s of I/O wait per worker invocation" = 0.2;
    /// Ingest Lambda memory (cdk/lib/lambdas.ts).
    ingest_memory_mb: "MB, ingest Lambda memory" = 256.0;
    /// Notifications per ingest invocation: the events queue's batch size (cdk/lib/lambdas.ts).
    ingest_batch_size: "notifications per ingest invocation" = 10.0;
    /// Billed seconds per ingest invocation waiting on SendMessageBatch.
    ingest_wait_s: "s of I/O wait per ingest invocation" = 0.02;

    // --- Fargate Spot, Linux/ARM (worker) ---
    /// Fargate Spot Linux/ARM vCPU (FARGATE_SPOT takes ARM64 tasks on platform 1.4.0 or later, per
    /// the ECS API reference for CapacityProviderStrategyItem). AWS publishes Spot rates only in
    /// a live table; this is the ARM on-demand rate ($0.03238, <https://aws.amazon.com/fargate/pricing/>, quoted by
    /// <https://www.vantage.sh/blog/fargate-pricing> and <https://fortem.dev/fargate-spot/>) at
    /// the 70% discount AWS advertises as the ceiling. Best-known value, not read from the live
    /// table (2026-11-23); at a 50% discount it would be 0.01619.
    fargate_spot_per_vcpu_hour: "$ per vCPU-hour, Fargate Spot Linux/ARM" = 0.009_714;
    /// Fargate Spot Linux/ARM memory: the ARM on-demand $0.00356 per GB-hour at 70% off, as above.
    fargate_spot_per_gb_hour: "$ per GB-hour, Fargate Spot Linux/ARM" = 0.001_068;
    /// Worker task vCPUs (`fargateWorker.cpu` = 1024 in the prod stage).
    fargate_task_vcpu: "vCPU per Fargate task" = 1.0;
    /// Worker task memory (`fargateWorker.memoryMiB` = 2048 in the prod stage).
    fargate_task_memory_gb: "GB per Fargate task" = 2.0;
    /// The share of a task's vCPU the autoscaler keeps busy on average: tasks are paid for while
    /// idle between scale steps, so the measured CPU seconds are divided by this.
    fargate_utilization: "average CPU utilisation of a task, 0..1" = 0.7;
    /// NAT gateway data processing, us-east-1: the prod stage runs tasks in private subnets
    /// behind NAT (cdk/lib/network.ts), so the bytes sent to Google pass through it; S3 reads take
    /// the free gateway endpoint. Set 0 for public-subnet tasks (the dev stage).
    /// Source: <https://aws.amazon.com/vpc/pricing/>, as quoted by
    /// <https://cloudburn.io/blog/aws-nat-gateway-pricing>; read 2026-11-23.
    nat_per_gb: "$ per GB through a NAT gateway (Fargate only)" = 0.045;

    // --- Requests (both yuba options; STS where it makes the same request) ---
    /// SQS Standard requests, first 100 billion a month.
    /// Source: <https://aws.amazon.com/sqs/pricing/>, as quoted by
    /// <https://cloudburn.io/blog/amazon-sqs-pricing>; read 2026-11-23.
    sqs_per_million: "$ per million SQS requests" = 0.40;
    /// SQS requests per object, with the default S3 -> events queue -> ingest path: S3's
    /// SendMessage (1), ingest's receive and delete (batched by 10: 0.2), ingest's
    /// SendMessageBatch (0.1), the worker's receive and delete (0.2). Polls of empty queues are
    /// left out: they cost the same whatever the traffic.
    sqs_requests_per_object: "SQS requests per object" = 1.5;
    /// S3 Standard GET: one per object, for yuba and for STS alike.
    /// Source: <https://aws.amazon.com/s3/pricing/>, as quoted by
    /// <https://c3x.dev/blog/s3-request-fees-explained>; read 2026-11-23.
    s3_get_per_1000: "$ per 1,000 S3 GET requests" = 0.0004;
    /// S3 Standard LIST: STS lists the source, 1,000 keys a request. Source as for GET.
    s3_list_per_1000: "$ per 1,000 S3 LIST requests" = 0.005;
    /// S3 Standard PUT (the price of LIST): a sharded reconcile writes its plan's parts.
    /// Source as for GET.
    s3_put_per_1000: "$ per 1,000 S3 PUT requests" = 0.005;
    /// GCS Class A operations (an object insert, resumable or not, is one), regional Standard
    /// bucket; a multi-region bucket is $0.01.
    /// Source: <https://cloud.google.com/storage/pricing-examples> ("$0.005 per 1,000
    /// operations") and <https://cloud.google.com/storage/pricing>; read 2026-11-23.
    gcs_class_a_per_1000: "$ per 1,000 GCS Class A operations" = 0.005;
    /// GCS Class B operations (object metadata reads). Source as for Class A.
    gcs_class_b_per_1000: "$ per 1,000 GCS Class B operations" = 0.0004;
    /// Class B operations yuba makes per object: it reads the replica's metadata before
    /// writing, to skip what is already there (libs/replicate).
    gcs_class_b_per_object: "GCS Class B operations per object (yuba)" = 1.0;

    // --- Transfer out of AWS (every option) ---
    /// AWS data transfer out to the internet, first 10 TB a month (later tiers are cheaper).
    /// Every option pays it: STS also reads the source over the internet.
    /// Source: <https://aws.amazon.com/ec2/pricing/on-demand/> (Data Transfer), as quoted by
    /// <https://unanswered.io/guide/aws-sqs-pricing-and-cost-optimization>; read 2026-11-23.
    egress_per_gb: "$ per GB out of AWS to the internet" = 0.09;

    // --- The scheduled reconciler (Fargate on demand, Linux/ARM) ---
    /// Fargate Linux/ARM vCPU, on demand: the reconciler's schedule runs on FARGATE, not Spot.
    /// Source: <https://aws.amazon.com/fargate/pricing/>, as quoted by
    /// <https://www.vantage.sh/blog/fargate-pricing>; read 2026-11-23.
    fargate_per_vcpu_hour: "$ per vCPU-hour, Fargate Linux/ARM on demand" = 0.032_38;
    /// Fargate Linux/ARM memory, on demand. Source as above.
    fargate_per_gb_hour: "$ per GB-hour, Fargate Linux/ARM on demand" = 0.003_56;
    /// Reconciler task vCPUs (`reconciler.cpu` = 1024 in the prod stage).
    reconciler_task_vcpu: "vCPU per reconciler task" = 1.0;
    /// Reconciler task memory (`reconciler.memoryMiB` = 2048 in the prod stage).
    reconciler_task_memory_gb: "GB per reconciler task" = 2.0;
    /// S3 Inventory, per million objects listed in a report.
    /// Source: <https://aws.amazon.com/s3/pricing/> (Management & insights); read 2026-12-05.
    s3_inventory_per_million: "$ per million objects listed by S3 Inventory" = 0.0025;

    // --- Storage Transfer Service ---
    /// STS's own fee for agentless transfers (from Amazon S3 to Cloud Storage): "No charges";
    /// only the operations and network it causes are billed. Agent-based transfers are $0.0125
    /// per GiB, and S3 over Google's managed private network in North America $0.03 per GiB.
    /// Source: <https://cloud.google.com/storage-transfer/pricing>; read 2026-11-23.
    sts_per_gb: "$ per GB, Storage Transfer Service fee" = 0.0;
}

impl Prices {
    /// Applies `name=value` (a `--price` flag). Unknown names and values that are not numbers,
    /// or are out of range, are rejected with the valid names, so the user can fix the flag
    /// without reading the source.
    pub fn set(&mut self, assignment: &str) -> Result<(), String> {
        let Some((name, value)) = assignment.split_once('=') else {
            return Err(format!(
                "expected --price name=value (e.g. egress_per_gb=0.05), got `{assignment}`; {}",
                valid_names()
            ));
        };
        let (name, value) = (name.trim(), value.trim());
        let mut next = self.clone();
        if name == "lambda_worker_memory_mb" && value.eq_ignore_ascii_case("auto") {
            next.lambda_worker_memory_mb = None;
        } else {
            let number = value
                .parse::<f64>()
                .ok()
                .filter(|n| n.is_finite())
                .ok_or_else(|| {
                    format!(
                        "`{value}` is not a number for price `{name}`; {}",
                        valid_names()
                    )
                })?;
            if name == "lambda_worker_memory_mb" {
                next.lambda_worker_memory_mb = Some(number);
            } else {
                let Some(slot) = next.number_mut(name) else {
                    return Err(format!("unknown price `{name}`; {}", valid_names()));
                };
                *slot = number;
            }
        }
        next.check()?;
        *self = next;
        Ok(())
    }

    /// Rejects inputs the model would divide by or that make no sense as a price; `estimate`
    /// checks too, since prices can also come from a JSON file.
    fn check(&self) -> Result<(), String> {
        for (name, value, _) in self.numbers() {
            if !value.is_finite() || value < 0.0 {
                return Err(format!("`{name}` must be a number >= 0, not {value}"));
            }
        }
        let positive = [
            ("lambda_batch_size", self.lambda_batch_size),
            ("ingest_batch_size", self.ingest_batch_size),
            ("fargate_task_vcpu", self.fargate_task_vcpu),
            ("fargate_task_memory_gb", self.fargate_task_memory_gb),
        ];
        for (name, value) in positive {
            if value <= 0.0 {
                return Err(format!("`{name}` must be more than 0"));
            }
        }
        if self.fargate_utilization <= 0.0 || self.fargate_utilization > 1.0 {
            return Err("`fargate_utilization` must be in (0, 1]".into());
        }
        let memories = [
            ("ingest_memory_mb", Some(self.ingest_memory_mb)),
            ("lambda_worker_memory_mb", self.lambda_worker_memory_mb),
        ];
        for (name, memory) in memories {
            if let Some(mb) = memory
                && !(LAMBDA_MIN_MB..=LAMBDA_MAX_MB).contains(&mb)
            {
                return Err(format!(
                    "`{name}` must be {LAMBDA_MIN_MB}..={LAMBDA_MAX_MB} MB (Lambda's range), not {mb}"
                ));
            }
        }
        Ok(())
    }
}

fn valid_names() -> String {
    format!("valid names: {}", Prices::NAMES.join(", "))
}

/// What the run measured that the model prices, and the per-object figures derived from it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Measured {
    /// Objects whose upload succeeded.
    pub uploaded_objects: usize,
    /// Objects whose replica appeared in GCS: what the costs are divided by, so work spent on
    /// objects that never arrived is charged to those that did.
    pub replicated_objects: usize,
    pub worker_processes: usize,
    pub ingest_processes: usize,
    /// Sum over worker processes, seconds.
    pub worker_cpu_s: f64,
    /// Sum over ingest processes, seconds.
    pub ingest_cpu_s: f64,
    /// The largest peak RSS of any worker process.
    pub worker_peak_rss_bytes: Option<u64>,
    /// Mean size of a replicated object.
    pub mean_bytes: Option<f64>,
    /// Share of replicated objects that are images (and so get variants).
    pub image_share: Option<f64>,
    pub variant_profiles: usize,
}

impl Measured {
    pub fn from_run(run: &Run) -> Self {
        let uploaded_objects = run
            .objects
            .iter()
            .filter(|o| o.uploaded_s.is_some())
            .count();
        let replicated: Vec<_> = run
            .objects
            .iter()
            .filter(|o| o.replica_s.is_some())
            .collect();
        let workers: Vec<_> = run
            .processes
            .iter()
            .filter(|p| p.role == ProcessRole::Worker)
            .collect();
        let ingests: Vec<_> = run
            .processes
            .iter()
            .filter(|p| p.role == ProcessRole::Ingest)
            .collect();
        let n = replicated.len();
        let per_replicated = |total: f64| (n > 0).then(|| total / n as f64);
        Measured {
            uploaded_objects,
            replicated_objects: n,
            worker_processes: workers.len(),
            ingest_processes: ingests.len(),
            worker_cpu_s: workers.iter().map(|p| p.cpu_s).sum(),
            ingest_cpu_s: ingests.iter().map(|p| p.cpu_s).sum(),
            worker_peak_rss_bytes: workers.iter().map(|p| p.peak_rss_bytes).max(),
            mean_bytes: per_replicated(replicated.iter().map(|o| o.bytes as f64).sum()),
            image_share: per_replicated(
                replicated.iter().filter(|o| o.kind.is_image()).count() as f64
            ),
            variant_profiles: run.scenario.variant_profiles.len(),
        }
    }

    /// `None` without replicated objects or without a worker process: a zero would price the
    /// worker as free.
    pub fn worker_cpu_s_per_object(&self) -> Option<f64> {
        (self.replicated_objects > 0 && self.worker_processes > 0)
            .then(|| self.worker_cpu_s / self.replicated_objects as f64)
    }

    /// Zero when no ingest process was recorded (the report says so in its notes).
    pub fn ingest_cpu_s_per_object(&self) -> Option<f64> {
        (self.replicated_objects > 0).then(|| self.ingest_cpu_s / self.replicated_objects as f64)
    }

    pub fn gb_per_object(&self) -> Option<f64> {
        self.mean_bytes.map(|b| b / GB)
    }

    /// yuba's GCS writes per object: the replica, plus one per variant profile for images.
    pub fn gcs_class_a_per_object(&self) -> Option<f64> {
        self.image_share
            .map(|share| 1.0 + share * self.variant_profiles as f64)
    }
}

/// A way of replicating, one row of the table.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum CostOption {
    LambdaArm64,
    FargateSpot,
    StorageTransferService,
}

impl CostOption {
    pub fn label(self) -> &'static str {
        match self {
            CostOption::LambdaArm64 => "yuba on Lambda arm64",
            CostOption::FargateSpot => "yuba on Fargate Spot (ARM)",
            CostOption::StorageTransferService => "Storage Transfer Service (no variants)",
        }
    }
}

/// Dollars per million replicated images, by where the money goes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Breakdown {
    /// Lambda GB-seconds, Fargate task-hours (both with the ingest Lambda), or STS's own fee.
    pub compute: f64,
    /// SQS, S3, GCS and Lambda invocation requests.
    pub requests: f64,
    /// Network charges only this option pays (the NAT gateway in front of Fargate tasks).
    pub network: f64,
    /// Data transfer out of AWS, the same for every option.
    pub common_transfer: f64,
    pub total: f64,
}

impl Breakdown {
    fn per_million(compute: f64, requests: f64, network: f64, common_transfer: f64) -> Self {
        let [compute, requests, network, common_transfer] =
            [compute, requests, network, common_transfer]
                .map(|per_object| per_object * PER_MILLION);
        Breakdown {
            compute,
            requests,
            network,
            common_transfer,
            total: compute + requests + network + common_transfer,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CostRow {
    pub option: CostOption,
    /// `None` when the run gives nothing to price (no replicated objects, no worker measured).
    pub per_million: Option<Breakdown>,
}

/// The estimate, ready to print: rows, and everything that went into them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CostTable {
    pub measured: Measured,
    pub prices: Prices,
    /// The Lambda worker memory the estimate used (the input, or the automatic size).
    pub lambda_worker_memory_mb: Option<f64>,
    pub rows: Vec<CostRow>,
    /// Caveats specific to this run (missing measurements, sizes that do not fit).
    pub notes: Vec<String>,
}

pub fn estimate(run: &Run, prices: &Prices) -> CostTable {
    let measured = Measured::from_run(run);
    let mut notes = Vec::new();
    let memory = lambda_worker_memory(&measured, prices, &mut notes);
    let rows = match prices.check() {
        Ok(()) => price_rows(&measured, prices, memory, &mut notes),
        Err(error) => {
            notes.push(format!("the prices are not usable: {error}"));
            unpriced_rows()
        }
    };
    if measured.replicated_objects == 0 {
        notes.push(
            "no object was replicated in this run: there is nothing to divide the cost by".into(),
        );
    } else if measured.worker_processes == 0 {
        notes.push("no worker process was recorded: yuba's rows cannot be priced".into());
    }
    if measured.replicated_objects > 0 && measured.ingest_processes == 0 {
        notes.push(
            "no ingest process was recorded: ingest compute is left out of yuba's rows".into(),
        );
    }
    if let Some(peak) = measured.worker_peak_rss_bytes
        && peak as f64 > prices.fargate_task_memory_gb * GB
    {
        notes.push(format!(
            "the worker's peak RSS ({:.0} MB) exceeds the Fargate task's memory ({} GB): raise fargate_task_memory_gb",
            peak as f64 / MB,
            prices.fargate_task_memory_gb
        ));
    }
    CostTable {
        measured,
        prices: prices.clone(),
        lambda_worker_memory_mb: memory,
        rows,
        notes,
    }
}

fn all_options() -> [CostOption; 3] {
    [
        CostOption::LambdaArm64,
        CostOption::FargateSpot,
        CostOption::StorageTransferService,
    ]
}

fn lambda_worker_memory(
    measured: &Measured,
    prices: &Prices,
    notes: &mut Vec<String>,
) -> Option<f64> {
    if let Some(mb) = prices.lambda_worker_memory_mb {
        return Some(mb);
    }
    let peak_mb = measured.worker_peak_rss_bytes? as f64 / MB;
    let wanted =
        (peak_mb * LAMBDA_AUTO_HEADROOM / LAMBDA_AUTO_STEP_MB).ceil() * LAMBDA_AUTO_STEP_MB;
    if wanted > LAMBDA_MAX_MB {
        notes.push(format!(
            "1.5 x the worker's peak RSS ({wanted:.0} MB) is over Lambda's {LAMBDA_MAX_MB:.0} MB: priced at the maximum"
        ));
    }
    Some(wanted.clamp(LAMBDA_AUTO_FLOOR_MB, LAMBDA_MAX_MB))
}

/// Billed GB-seconds per object of a Lambda function doing `cpu_s` of work per object at
/// `memory_mb`, `batch` objects an invocation, each invocation also waiting `wait_s`.
fn lambda_gb_seconds(cpu_s: f64, memory_mb: f64, batch: f64, wait_s: f64) -> f64 {
    let vcpus = (memory_mb / LAMBDA_MB_PER_VCPU).min(1.0);
    (cpu_s / vcpus + wait_s / batch) * memory_mb / 1024.0
}

fn price_rows(
    measured: &Measured,
    p: &Prices,
    memory: Option<f64>,
    notes: &mut Vec<String>,
) -> Vec<CostRow> {
    let Some(per_object) = PerObject::of(measured, p) else {
        return unpriced_rows();
    };
    if measured.variant_profiles > 0 {
        notes.push(format!(
            "yuba's rows include {} variant profile(s) per image; Storage Transfer Service makes none",
            measured.variant_profiles
        ));
    }
    vec![
        CostRow {
            option: CostOption::LambdaArm64,
            per_million: per_object.on_lambda(p, memory),
        },
        CostRow {
            option: CostOption::FargateSpot,
            per_million: per_object.on_fargate(p),
        },
        CostRow {
            option: CostOption::StorageTransferService,
            per_million: Some(per_object.by_sts(p)),
        },
    ]
}

/// Every option's row, unpriced: what the table shows when the run or the prices give nothing
/// to price.
fn unpriced_rows() -> Vec<CostRow> {
    all_options()
        .map(|option| CostRow {
            option,
            per_million: None,
        })
        .to_vec()
}

/// What the options' rows are built from, per replicated object.
struct PerObject {
    gb: f64,
    /// `None` without a worker process: see [`Measured::worker_cpu_s_per_object`].
    worker_cpu: Option<f64>,
    /// The ingest Lambda, in front of both yuba deployments.
    ingest_compute: f64,
    /// SQS, S3, GCS and ingest invocation requests, the same for both yuba deployments.
    yuba_requests: f64,
    common_transfer: f64,
}

impl PerObject {
    fn of(measured: &Measured, p: &Prices) -> Option<PerObject> {
        let (Some(gb), Some(class_a), Some(ingest_cpu)) = (
            measured.gb_per_object(),
            measured.gcs_class_a_per_object(),
            measured.ingest_cpu_s_per_object(),
        ) else {
            return None;
        };
        let ingest_compute = lambda_gb_seconds(
            ingest_cpu,
            p.ingest_memory_mb,
            p.ingest_batch_size,
            p.ingest_wait_s,
        ) * p.lambda_per_gb_second;
        let yuba_requests = p.sqs_requests_per_object * p.sqs_per_million / PER_MILLION
            + p.s3_get_per_1000 / 1000.0
            + class_a * p.gcs_class_a_per_1000 / 1000.0
            + p.gcs_class_b_per_object * p.gcs_class_b_per_1000 / 1000.0
            + p.lambda_per_million_requests / PER_MILLION / p.ingest_batch_size;
        Some(PerObject {
            gb,
            worker_cpu: measured.worker_cpu_s_per_object(),
            ingest_compute,
            yuba_requests,
            common_transfer: gb * p.egress_per_gb,
        })
    }

    fn on_lambda(&self, p: &Prices, memory: Option<f64>) -> Option<Breakdown> {
        self.worker_cpu.zip(memory).map(|(cpu, mb)| {
            let worker = lambda_gb_seconds(cpu, mb, p.lambda_batch_size, p.lambda_wait_s)
                * p.lambda_per_gb_second;
            let invocations = p.lambda_per_million_requests / PER_MILLION / p.lambda_batch_size;
            Breakdown::per_million(
                worker + self.ingest_compute,
                self.yuba_requests + invocations,
                0.0,
                self.common_transfer,
            )
        })
    }

    fn on_fargate(&self, p: &Prices) -> Option<Breakdown> {
        self.worker_cpu.map(|cpu| {
            let task_hours = cpu / p.fargate_utilization / 3600.0 / p.fargate_task_vcpu;
            let task_hour_price = p.fargate_task_vcpu * p.fargate_spot_per_vcpu_hour
                + p.fargate_task_memory_gb * p.fargate_spot_per_gb_hour;
            Breakdown::per_million(
                task_hours * task_hour_price + self.ingest_compute,
                self.yuba_requests,
                self.gb * p.nat_per_gb,
                self.common_transfer,
            )
        })
    }

    fn by_sts(&self, p: &Prices) -> Breakdown {
        let sts_requests = p.s3_get_per_1000 / 1000.0
            + p.s3_list_per_1000 / 1000.0 / KEYS_PER_LIST
            + (1.0 + 1.0 / KEYS_PER_LIST) * p.gcs_class_a_per_1000 / 1000.0;
        Breakdown::per_million(
            self.gb * p.sts_per_gb,
            sts_requests,
            0.0,
            self.common_transfer,
        )
    }
}

/// Dollars to cents, or to two significant figures below a dollar: per-million costs span from
/// fractions of a cent (LIST requests) to hundreds (transfer), and a fixed number of decimals
/// hides one end or the other.
fn usd(x: f64) -> String {
    if !x.is_finite() {
        return "n/a".into();
    }
    if x == 0.0 {
        return "$0".into();
    }
    if x >= 1000.0 {
        return format!("${x:.0}");
    }
    if x >= 1.0 {
        return format!("${x:.2}");
    }
    let decimals = (1 - x.log10().floor() as i32).clamp(2, 9) as usize;
    format!("${x:.decimals$}")
}

/// A modelling input or price as typed on the command line: no trailing zeros, no exponent.
fn plain(x: f64) -> String {
    let text = format!("{x:.10}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text.is_empty() {
        "0".into()
    } else {
        text.into()
    }
}

fn or_na(value: Option<String>) -> String {
    value.unwrap_or_else(|| "n/a".into())
}

impl CostTable {
    pub fn to_markdown(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail; the Result only comes from the fmt::Write trait.
        let _ = self.render_markdown(&mut out);
        out
    }

    fn render_markdown(&self, out: &mut String) -> fmt::Result {
        writeln!(out, "## Cost per million images\n")?;
        writeln!(
            out,
            "Dollars per million images replicated, from this run's measured CPU time and memory and the \
             prices below (us-east-1 list prices by default, no free tiers). Change any of them with \
             `--price name=value`.\n"
        )?;
        self.rows_table(out)?;
        if !self.notes.is_empty() {
            writeln!(out, "\nNotes for this run:\n")?;
            for note in &self.notes {
                writeln!(out, "- {note}")?;
            }
        }
        self.measured_list(out)?;
        writeln!(out, "\n### Assumptions\n")?;
        for line in ASSUMPTIONS {
            writeln!(out, "- {line}")?;
        }
        self.prices_table(out)
    }

    /// One row per option, by where the money goes, and what the columns hold.
    fn rows_table(&self, out: &mut String) -> fmt::Result {
        writeln!(
            out,
            "| Option | Compute | Requests | Network (own) | Transfer out of AWS (all options) | Total |"
        )?;
        writeln!(out, "|---|---:|---:|---:|---:|---:|")?;
        for row in &self.rows {
            match &row.per_million {
                Some(b) => writeln!(
                    out,
                    "| {} | {} | {} | {} | {} | **{}** |",
                    row.option.label(),
                    usd(b.compute),
                    usd(b.requests),
                    usd(b.network),
                    usd(b.common_transfer),
                    usd(b.total)
                )?,
                None => writeln!(
                    out,
                    "| {} | n/a | n/a | n/a | n/a | **n/a** |",
                    row.option.label()
                )?,
            }
        }
        writeln!(
            out,
            "\nCompute: Lambda GB-seconds or Fargate task-hours for the worker, plus the ingest Lambda \
             (yuba's ingest runs on Lambda in both deployments); for Storage Transfer Service, its own \
             fee. Requests: SQS, S3 GET (and LIST for STS), GCS Class A/B operations, Lambda \
             invocations. Network (own): the NAT gateway Fargate tasks send through. Transfer out of \
             AWS: every option reads the source over the internet, so this column is the same for all \
             three and is shown apart to keep the comparison fair."
        )
    }

    /// What the run measured that went into the rows.
    fn measured_list(&self, out: &mut String) -> fmt::Result {
        let m = &self.measured;
        writeln!(out, "\n### Measured\n")?;
        writeln!(
            out,
            "- Replicated objects: {} (of {} uploaded); costs are divided by these",
            m.replicated_objects, m.uploaded_objects
        )?;
        writeln!(
            out,
            "- Worker CPU per replicated object: {} ({:.3} s over {} worker process(es))",
            or_na(
                m.worker_cpu_s_per_object()
                    .map(|s| format!("{:.1} ms", s * 1000.0))
            ),
            m.worker_cpu_s,
            m.worker_processes
        )?;
        writeln!(
            out,
            "- Ingest CPU per replicated object: {} ({:.3} s over {} ingest process(es))",
            or_na(
                m.ingest_cpu_s_per_object()
                    .map(|s| format!("{:.2} ms", s * 1000.0))
            ),
            m.ingest_cpu_s,
            m.ingest_processes
        )?;
        writeln!(
            out,
            "- Mean bytes per replicated object: {}",
            or_na(m.mean_bytes.map(|b| format!("{:.0} ({:.3} MB)", b, b / MB)))
        )?;
        writeln!(
            out,
            "- Worker peak RSS (largest worker process): {}",
            or_na(
                m.worker_peak_rss_bytes
                    .map(|b| format!("{:.0} MB", b as f64 / MB))
            )
        )?;
        writeln!(
            out,
            "- GCS writes (Class A) per object for yuba: {} (1 replica + {} variant profile(s) x {} image share)",
            or_na(m.gcs_class_a_per_object().map(|a| format!("{a:.2}"))),
            m.variant_profiles,
            or_na(m.image_share.map(|s| format!("{s:.2}")))
        )?;
        let memory_source = if self.prices.lambda_worker_memory_mb.is_some() {
            "set"
        } else {
            "auto: 1.5 x peak RSS, 128 MB steps, at least 512"
        };
        writeln!(
            out,
            "- Lambda worker memory priced: {} ({memory_source})",
            or_na(self.lambda_worker_memory_mb.map(|mb| format!("{mb:.0} MB")))
        )
    }

    /// Every price and modelling input, by the name `--price` takes.
    fn prices_table(&self, out: &mut String) -> fmt::Result {
        let p = &self.prices;
        writeln!(out, "\n### Prices and inputs\n")?;
        writeln!(out, "| `--price` name | Value | Meaning |")?;
        writeln!(out, "|---|---:|---|")?;
        for (name, value, unit) in p.numbers() {
            writeln!(out, "| `{name}` | {} | {unit} |", plain(value))?;
        }
        writeln!(
            out,
            "| `lambda_worker_memory_mb` | {} | MB, Lambda worker memory (`auto` sizes it from the run) |",
            p.lambda_worker_memory_mb
                .map_or_else(|| "auto".to_string(), plain)
        )
    }
}

const ASSUMPTIONS: &[&str] = &[
    "A job uses at most one vCPU. Lambda gives one vCPU per 1,769 MB, so below that the worker's \
     CPU seconds are stretched by 1,769 / memory; Lambda bills that wall time, plus `lambda_wait_s` \
     of I/O wait per invocation, shared by `lambda_batch_size` jobs.",
    "Fargate: the worker's CPU seconds divided by `fargate_utilization` are paid as whole tasks of \
     `fargate_task_vcpu` vCPU and `fargate_task_memory_gb` GB at the Fargate Spot rates.",
    "The ingest Lambda runs in front of both yuba deployments; it is priced like the worker, with \
     its own memory, batch size and wait.",
    "Bytes out of AWS and through NAT count the source objects only: variants also leave AWS, but \
     the run does not record their sizes (thumbnails are usually a few percent of a photo).",
    "Storage Transfer Service is priced as a scheduled agentless transfer: one S3 GET and one GCS \
     write per object, and a LIST of each bucket per 1,000 objects. It makes no variants, and \
     its event-driven mode would add SQS requests.",
    "Left out: free tiers, volume tiers, storage at rest, logs and metrics, NAT gateway hours, \
     retries, empty queue polls.",
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Environment, ObjectKind, ObjectResult, ProcessUsage, Scenario};

    const MIB: u64 = 1024 * 1024;

    fn object(key: &str, kind: ObjectKind, replicated: bool) -> ObjectResult {
        ObjectResult {
            key: key.into(),
            kind,
            bytes: MIB,
            due_s: 0.0,
            upload_started_s: 0.0,
            uploaded_s: Some(0.1),
            replica_s: replicated.then_some(0.5),
            variants_s: None,
            error: None,
        }
    }

    fn process(name: &str, role: ProcessRole, cpu_s: f64, peak_rss_mib: u64) -> ProcessUsage {
        ProcessUsage {
            name: name.into(),
            role,
            cpu_s,
            peak_rss_bytes: peak_rss_mib * MIB,
        }
    }

    /// Four replicated 1 MiB objects (two photos, two small binaries) and one that never arrived;
    /// two variant profiles; 0.4 s of worker CPU (0.1 s per replicated object), 0.02 s of ingest
    /// CPU (0.005 s per object), worker peak RSS 300 MiB; a local server whose CPU must not count.
    fn run() -> Run {
        Run {
            scenario: Scenario {
                name: "synthetic".into(),
                rate_per_s: Some(10.0),
                concurrency: 4,
                duration_s: 1.0,
                drain_s: 1.0,
                variant_profiles: vec!["thumb".into(), "medium".into()],
                mix: vec![],
                p99_target_s: None,
            },
            started_at: "2026-11-23T00:00:00Z".into(),
            environment: Environment {
                target: "local stack".into(),
                cores: 2,
            },
            objects: vec![
                object("a.jpg", ObjectKind::Photo, true),
                object("b.jpg", ObjectKind::Photo, true),
                object("c.bin", ObjectKind::SmallBinary, true),
                object("d.bin", ObjectKind::SmallBinary, true),
                object("e.bin", ObjectKind::SmallBinary, false),
            ],
            queue_depth: vec![],
            processes: vec![
                process("worker-lambda", ProcessRole::Worker, 0.3, 100),
                process("worker-fargate", ProcessRole::Worker, 0.1, 300),
                process("ingest", ProcessRole::Ingest, 0.02, 20),
                process("moto", ProcessRole::Server, 5.0, 900),
            ],
        }
    }

    fn prices(assignments: &[&str]) -> Prices {
        let mut prices = Prices::default();
        for assignment in assignments {
            prices.set(assignment).unwrap();
        }
        prices
    }

    fn row(table: &CostTable, option: CostOption) -> Breakdown {
        table
            .rows
            .iter()
            .find(|r| r.option == option)
            .unwrap()
            .per_million
            .clone()
            .unwrap()
    }

    fn close(actual: f64, expected: f64) {
        assert!(
            (actual - expected).abs() <= 1e-9 * expected.abs().max(1.0),
            "{actual} != {expected}"
        );
    }

    /// The requests both yuba rows share, per million objects at default prices:
    /// SQS 1.5 x $0.40 = 0.60; S3 GET $0.40; GCS Class A 2 per object (1 + 0.5 image share x 2
    /// profiles) x $5 = 10.00; GCS Class B $0.40; ingest invocations $0.20 / 10 = 0.02.
    const YUBA_REQUESTS: f64 = 0.60 + 0.40 + 10.0 + 0.40 + 0.02;
    /// 1 MiB = 1/1024 GB per object x $0.09 x 1e6.
    const TRANSFER: f64 = 87.890_625;
    /// Ingest at 256 MB, lambda_per_gb_second = 0.00001: 0.005 s x 1769/256 = 0.034550781 s
    /// stretched CPU + 0.02 s / 10 wait = 0.036550781 s x 0.25 GB = 0.009137695 GB-s; x 1e-5 x 1e6.
    const INGEST: f64 = 0.091_376_953_125;

    #[test]
    fn measures_per_replicated_object() {
        let m = Measured::from_run(&run());
        assert_eq!((m.uploaded_objects, m.replicated_objects), (5, 4));
        close(m.worker_cpu_s_per_object().unwrap(), 0.1);
        close(m.ingest_cpu_s_per_object().unwrap(), 0.005);
        assert_eq!(m.worker_peak_rss_bytes, Some(300 * MIB));
        close(m.gb_per_object().unwrap(), 1.0 / 1024.0);
        close(m.gcs_class_a_per_object().unwrap(), 2.0);
    }

    #[test]
    fn lambda_row_by_hand() {
        let p = prices(&[
            "lambda_per_gb_second=0.00001",
            "lambda_worker_memory_mb=1024",
        ]);
        let b = row(&estimate(&run(), &p), CostOption::LambdaArm64);
        // Worker at 1024 MB: 0.1 s x 1769/1024 = 0.17275390625 s + 0.2 s / 10 = 0.19275390625 s
        // x 1 GB = 0.19275390625 GB-s x 1e-5 x 1e6 = 1.9275390625; plus the ingest.
        close(b.compute, 1.927_539_062_5 + INGEST);
        // Plus the worker's own invocations, $0.20 / 10.
        close(b.requests, YUBA_REQUESTS + 0.02);
        close(b.network, 0.0);
        close(b.common_transfer, TRANSFER);
        close(b.total, b.compute + b.requests + TRANSFER);
    }

    #[test]
    fn lambda_memory_is_sized_from_the_peak_rss() {
        // 300 MiB x 1.5 = 450 -> 512 (a multiple of 128, and the floor).
        let table = estimate(&run(), &Prices::default());
        assert_eq!(table.lambda_worker_memory_mb, Some(512.0));
        let mut big = run();
        big.processes[1].peak_rss_bytes = 1000 * MIB; // 1500 -> 1536
        assert_eq!(
            estimate(&big, &Prices::default()).lambda_worker_memory_mb,
            Some(1536.0)
        );
        // Above 1,769 MB a job gets no more CPU, so GB-seconds grow with memory.
        let p = prices(&[
            "lambda_wait_s=0",
            "lambda_worker_memory_mb=3538",
            "lambda_per_gb_second=0.00001",
        ]);
        let b = row(&estimate(&run(), &p), CostOption::LambdaArm64);
        // 0.1 s x 3538/1024 GB = 0.345507812 GB-s x 1e-5 x 1e6.
        close(b.compute, 3.455_078_125 + INGEST);
    }

    #[test]
    fn fargate_row_by_hand() {
        let p = prices(&[
            "lambda_per_gb_second=0.00001",
            "fargate_utilization=0.5",
            "fargate_spot_per_vcpu_hour=0.01",
            "fargate_spot_per_gb_hour=0.001",
        ]);
        let b = row(&estimate(&run(), &p), CostOption::FargateSpot);
        // 0.1 s / 0.5 = 0.2 vCPU-s = 0.2/3600 task-hours of 1 vCPU + 2 GB at 0.01 + 2 x 0.001 =
        // $0.012 an hour: 6.6667e-7 per object, 0.666667 per million; plus the ingest Lambda.
        close(b.compute, 0.2 / 3600.0 * 0.012 * 1e6 + INGEST);
        close(b.requests, YUBA_REQUESTS);
        // NAT: 1/1024 GB x $0.045 x 1e6.
        close(b.network, 43.945_312_5);
        close(b.common_transfer, TRANSFER);
    }

    #[test]
    fn storage_transfer_service_row_by_hand() {
        let p = prices(&["sts_per_gb=0.0125"]);
        let b = row(&estimate(&run(), &p), CostOption::StorageTransferService);
        // 1/1024 GB x $0.0125 x 1e6.
        close(b.compute, 12.207_031_25);
        // S3 GET $0.40 + S3 LIST $5 / 1000 keys = 0.005 + GCS Class A $5 x 1.001 (write + list).
        close(b.requests, 0.40 + 0.005 + 5.005);
        close(b.network, 0.0);
        close(b.common_transfer, TRANSFER);
        // The published agentless fee is nothing.
        close(
            row(
                &estimate(&run(), &Prices::default()),
                CostOption::StorageTransferService,
            )
            .compute,
            0.0,
        );
    }

    #[test]
    fn a_price_change_scales_its_part_proportionally() {
        let base = estimate(&run(), &Prices::default());
        let doubled = estimate(
            &run(),
            &prices(&["egress_per_gb=0.18", "lambda_per_gb_second=0.0000266668"]),
        );
        for option in all_options() {
            close(
                row(&doubled, option).common_transfer,
                2.0 * row(&base, option).common_transfer,
            );
            close(row(&doubled, option).requests, row(&base, option).requests);
        }
        close(
            row(&doubled, CostOption::LambdaArm64).compute,
            2.0 * row(&base, CostOption::LambdaArm64).compute,
        );
        // Fargate pays Lambda only for ingest, so its compute grows by exactly that part.
        let ingest_part = lambda_gb_seconds(0.005, 256.0, 10.0, 0.02) * 0.000_013_333_4 * 1e6;
        close(
            row(&doubled, CostOption::FargateSpot).compute
                - row(&base, CostOption::FargateSpot).compute,
            ingest_part,
        );
    }

    #[test]
    fn no_replicated_objects_reports_na() {
        let mut nothing = run();
        for o in &mut nothing.objects {
            o.replica_s = None;
        }
        let table = estimate(&nothing, &Prices::default());
        assert!(table.rows.iter().all(|r| r.per_million.is_none()));
        assert_eq!(table.rows.len(), 3);
        let md = table.to_markdown();
        assert!(md.contains("| yuba on Lambda arm64 | n/a |"), "{md}");
        assert!(!md.contains("NaN") && !md.contains("$inf"), "{md}");
        assert!(
            table
                .notes
                .iter()
                .any(|n| n.contains("no object was replicated"))
        );
    }

    #[test]
    fn no_worker_process_leaves_yuba_unpriced_but_not_sts() {
        let mut run = run();
        run.processes.retain(|p| p.role != ProcessRole::Worker);
        let table = estimate(&run, &Prices::default());
        assert!(table.rows[0].per_million.is_none() && table.rows[1].per_million.is_none());
        assert!(table.rows[2].per_million.is_some());
    }

    #[test]
    fn set_accepts_every_known_name() {
        let mut p = Prices::default();
        for name in Prices::NAMES {
            p.set(&format!("{name}=0.5")).unwrap_or_else(|e| {
                // Some inputs have their own ranges; any number in range must be accepted.
                assert!(e.contains("must be"), "{name}: {e}");
                p.set(&format!("{name}=512")).unwrap();
            });
        }
        let mut p = Prices::default();
        p.set(" egress_per_gb = 0.05 ").unwrap();
        assert_eq!(p.egress_per_gb, 0.05);
        p.set("lambda_worker_memory_mb=2048").unwrap();
        assert_eq!(p.lambda_worker_memory_mb, Some(2048.0));
        p.set("lambda_worker_memory_mb=auto").unwrap();
        assert_eq!(p.lambda_worker_memory_mb, None);
    }

    #[test]
    fn set_rejects_unknown_names_and_bad_numbers_helpfully() {
        let mut p = Prices::default();
        for bad in [
            "lamda_per_gb_second=1",
            "egress_per_gb=cheap",
            "egress_per_gb=NaN",
            "egress_per_gb",
        ] {
            let error = p.set(bad).unwrap_err();
            assert!(
                error.contains("egress_per_gb") && error.contains("sts_per_gb"),
                "{bad}: {error}"
            );
        }
        assert!(
            p.set("lamda_per_gb_second=1")
                .unwrap_err()
                .contains("unknown price `lamda_per_gb_second`")
        );
        assert!(p.set("egress_per_gb=-1").unwrap_err().contains(">= 0"));
        assert!(
            p.set("fargate_utilization=0")
                .unwrap_err()
                .contains("fargate_utilization")
        );
        assert!(p.set("lambda_batch_size=0").is_err());
        assert!(
            p.set("lambda_worker_memory_mb=64")
                .unwrap_err()
                .contains("128")
        );
        // A rejected flag leaves the prices as they were.
        assert_eq!(p, Prices::default());
    }

    #[test]
    fn prices_round_trip_and_fill_missing_fields_from_defaults() {
        let p = prices(&["nat_per_gb=0", "lambda_worker_memory_mb=1024"]);
        let back: Prices = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
        assert_eq!(back, p);
        let partial: Prices = serde_json::from_str(r#"{"egress_per_gb": 0.05}"#).unwrap();
        assert_eq!(partial, prices(&["egress_per_gb=0.05"]));
    }

    #[test]
    fn unusable_prices_from_a_file_give_na_not_infinity() {
        let p = Prices {
            fargate_utilization: 0.0,
            ..Prices::default()
        };
        let table = estimate(&run(), &p);
        assert!(table.rows.iter().all(|r| r.per_million.is_none()));
        assert!(
            table
                .notes
                .iter()
                .any(|n| n.contains("fargate_utilization"))
        );
    }

    #[test]
    fn markdown_lists_rows_measurements_and_every_price_name() {
        let md = estimate(&run(), &Prices::default()).to_markdown();
        for option in all_options() {
            assert!(md.contains(option.label()), "{md}");
        }
        for name in Prices::NAMES {
            assert!(
                md.contains(&format!("| `{name}` |")),
                "{name} missing:\n{md}"
            );
        }
        assert!(
            md.contains("| `lambda_per_gb_second` | 0.0000133334 |"),
            "{md}"
        );
        assert!(md.contains("| `lambda_worker_memory_mb` | auto |"), "{md}");
        assert!(md.contains("100.0 ms"), "{md}");
        assert!(md.contains("512 MB"), "{md}");
        assert!(md.contains("Storage Transfer Service makes none"), "{md}");
        assert!(md.contains("$87.89"), "{md}");
    }

    #[test]
    fn dollars_keep_cents_or_two_significant_figures() {
        assert_eq!(usd(0.0), "$0");
        assert_eq!(usd(0.091_376), "$0.091");
        assert_eq!(usd(0.6), "$0.60");
        assert_eq!(usd(0.005), "$0.0050");
        assert_eq!(usd(11.44), "$11.44");
        assert_eq!(usd(123.456), "$123.46");
        assert_eq!(usd(1234.5), "$1234");
        assert_eq!(usd(f64::NAN), "n/a");
        assert_eq!(plain(0.000_013_333_4), "0.0000133334");
        assert_eq!(plain(10.0), "10");
    }
}
