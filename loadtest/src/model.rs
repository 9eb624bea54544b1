//! What a run records: the raw numbers, written as JSON beside the report, and read back by
//! `yuba-loadtest report` to render a report again without running anything.

use serde::{Deserialize, Serialize};

/// Everything one run measured. Times are seconds from the run's start (one monotonic clock
/// for what the load generator sees; GCS's own creation times are mapped onto it through the
/// wall clock, see [`ObjectResult::replica_s`]).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Run {
    pub scenario: Scenario,
    /// RFC 3339, when the first upload was due.
    pub started_at: String,
    /// Where it ran: "local stack" or the endpoints it was given, the machine's cores.
    pub environment: Environment,
    pub objects: Vec<ObjectResult>,
    /// Queue depths (visible + in flight), sampled about once a second.
    pub queue_depth: Vec<QueueSample>,
    /// yuba's processes (ingest, workers) and the local servers, at the end of the run.
    pub processes: Vec<ProcessUsage>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Scenario {
    pub name: String,
    /// Uploads started per second (open loop), if the run was paced by rate.
    pub rate_per_s: Option<f64>,
    /// Uploads in flight at most.
    pub concurrency: usize,
    /// How long uploads went on, seconds.
    pub duration_s: f64,
    /// How long the run waited after the last upload for replicas, at most, seconds.
    pub drain_s: f64,
    /// The variant profiles expected for each image (empty: pass-through).
    pub variant_profiles: Vec<String>,
    /// The mix's parts: what share of uploads is of which kind.
    pub mix: Vec<MixPart>,
    /// The latency objective the report checks, if any: p99 at most this many seconds.
    pub p99_target_s: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MixPart {
    pub kind: ObjectKind,
    /// Relative weight of this kind among uploads.
    pub weight: u32,
    /// Sizes of the bodies of this kind (photos: the corpus files; others: generated).
    pub sizes: Vec<u64>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum ObjectKind {
    /// A real JPEG photo (Debian's lomiri-wallpapers-20.04 by default).
    Photo,
    /// A small generated PNG.
    SmallPng,
    /// A large object that is not an image.
    LargeBinary,
    /// A small object that is not an image (pass-through copies).
    SmallBinary,
}

impl ObjectKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectKind::Photo => "photo",
            ObjectKind::SmallPng => "small-png",
            ObjectKind::LargeBinary => "large-binary",
            ObjectKind::SmallBinary => "small-binary",
        }
    }

    /// Whether yuba makes variants of it.
    pub fn is_image(self) -> bool {
        matches!(self, ObjectKind::Photo | ObjectKind::SmallPng)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Environment {
    pub target: String,
    pub cores: usize,
}

/// One uploaded object.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ObjectResult {
    pub key: String,
    pub kind: ObjectKind,
    pub bytes: u64,
    /// When its upload was due (the schedule), and when it started and finished.
    pub due_s: f64,
    pub upload_started_s: f64,
    /// `None`: the upload failed (see `error`).
    pub uploaded_s: Option<f64>,
    /// When GCS created the replica (its `timeCreated`), `None` if it never appeared.
    pub replica_s: Option<f64>,
    /// When the last of its variants was created, for images with variant profiles.
    pub variants_s: Option<f64>,
    pub error: Option<String>,
}

impl ObjectResult {
    /// Upload → replica, seconds.
    pub fn replica_latency_s(&self) -> Option<f64> {
        Some(self.replica_s? - self.uploaded_s?)
    }

    /// Upload → all variants, seconds.
    pub fn variants_latency_s(&self) -> Option<f64> {
        Some(self.variants_s? - self.uploaded_s?)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct QueueSample {
    pub t_s: f64,
    /// Queue name → visible + in flight.
    pub depths: Vec<(String, u64)>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ProcessUsage {
    /// e.g. "worker-lambda", "ingest", "moto", "fake-gcs-server".
    pub name: String,
    pub role: ProcessRole,
    /// User + system CPU over the run.
    pub cpu_s: f64,
    /// Peak resident set size (VmHWM).
    pub peak_rss_bytes: u64,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum ProcessRole {
    /// yuba's ingest.
    Ingest,
    /// yuba's worker: what the cost model prices.
    Worker,
    /// A local server standing in for S3/SQS or GCS.
    Server,
    /// The load test itself: its uploads and listings take a share of the same cores.
    LoadGenerator,
}
