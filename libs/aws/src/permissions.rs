//! What yuba's calls to AWS need from IAM, declared beside the code that makes them.
//!
//! Every crate that calls AWS has a `permissions` module: one [`Permission`] for each thing a
//! call (or the program's home) needs, and groups of them by public API, which the program list
//! in `tests/tests/e2e/iam.rs` composes into each program's permissions. From that list a test
//! renders `cdk/lib/generated/aws-iam.json`, the contract every role of the CDK app is checked
//! against (`cdk/test/iam.test.ts`); another test fails when a crate calls an SDK operation it
//! does not declare, or declares one it no longer calls. The local emulators enforce no IAM, so
//! these tables, not the end-to-end tests, are what keeps a new call from meeting a role that
//! cannot make it.
//!
//! The types live here because every crate that calls AWS depends on this one.

/// An AWS SDK crate yuba calls through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Sdk {
    S3,
    Sqs,
}

impl Sdk {
    /// The package name; its `src/operation/` has a module per operation.
    pub fn package(self) -> &'static str {
        match self {
            Sdk::S3 => "aws-sdk-s3",
            Sdk::Sqs => "aws-sdk-sqs",
        }
    }
}

/// What a [`Permission`] is needed for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// A call of an SDK operation, by its name in the API reference (`HeadObject`), made by the
    /// crate that declares the permission.
    Call(Sdk, &'static str),
    /// A request to the ECS container agent's endpoint (`$ECS_AGENT_URI` + `path`), made by the
    /// crate that declares the permission; the agent answers it by calling the ECS API with the
    /// task role's credentials, so the role needs what that call needs. The path is what the
    /// declaring crate's code names (a string literal), so that it can be checked like a call.
    EcsAgent {
        method: &'static str,
        path: &'static str,
    },
    /// Anything else: a rule of the service about our calls, a request the program's home makes
    /// with the program's role, or a request signed for someone else to send.
    Other(&'static str),
}

/// What a permission is granted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Resource {
    /// The source bucket's objects: `arn:aws:s3:::BUCKET/*`.
    SourceObjects,
    /// The source bucket itself: `arn:aws:s3:::BUCKET`.
    SourceBucket,
    /// The KMS key of a source bucket whose objects are encrypted with one (SSE-KMS).
    SourceKey,
    /// The queue the call is given. Which queues those are is the program's to say.
    Queue,
    /// The tasks of the ECS cluster the program runs in: `arn:aws:ecs:REGION:ACCOUNT:task/CLUSTER/*`
    /// (a task's ARN names its cluster but not its service, so the cluster is as narrow as IAM
    /// can scope it).
    ClusterTasks,
    /// The folder S3 Inventory writes the source bucket's reports to (the reconciler's
    /// `--source-inventory`): `arn:aws:s3:::BUCKET/FOLDER*`.
    InventoryReports,
    /// The bucket of that folder: `arn:aws:s3:::BUCKET`, listed only under the folder.
    InventoryBucket,
    /// The folder a sharded reconcile keeps its plans in (each run's plan, its shards' parts of
    /// the report and their summaries): `arn:aws:s3:::BUCKET/FOLDER*`.
    ReconcilePlans,
    /// The bucket of that folder: `arn:aws:s3:::BUCKET`.
    ReconcilePlansBucket,
    /// Nothing: the request needs no permission.
    Nothing,
}

impl Resource {
    /// The name the contract file uses.
    pub fn name(self) -> &'static str {
        match self {
            Resource::SourceObjects => "source-objects",
            Resource::SourceBucket => "source-bucket",
            Resource::SourceKey => "source-key",
            Resource::Queue => "queue",
            Resource::ClusterTasks => "cluster-tasks",
            Resource::InventoryReports => "inventory-reports",
            Resource::InventoryBucket => "inventory-bucket",
            Resource::ReconcilePlans => "reconcile-plans",
            Resource::ReconcilePlansBucket => "reconcile-plans-bucket",
            Resource::Nothing => "nothing",
        }
    }

    /// What it is, for people.
    pub fn meaning(self) -> &'static str {
        match self {
            Resource::SourceObjects => "the source bucket's objects: arn:aws:s3:::BUCKET/*",
            Resource::SourceBucket => "the source bucket: arn:aws:s3:::BUCKET",
            Resource::SourceKey => "the KMS key the source bucket's objects are encrypted with",
            Resource::Queue => "a queue, named by the program (queue:NAME)",
            Resource::ClusterTasks => {
                "the tasks of the program's ECS cluster: arn:aws:ecs:REGION:ACCOUNT:task/CLUSTER/*"
            }
            Resource::InventoryReports => {
                "the folder of the source bucket's inventory reports: arn:aws:s3:::BUCKET/FOLDER*"
            }
            Resource::InventoryBucket => {
                "the bucket of the inventory reports: arn:aws:s3:::BUCKET, listed under FOLDER only"
            }
            Resource::ReconcilePlans => {
                "the folder of a sharded reconcile's plans, parts and summaries: arn:aws:s3:::BUCKET/FOLDER*"
            }
            Resource::ReconcilePlansBucket => "the bucket of the plans: arn:aws:s3:::BUCKET",
            Resource::Nothing => "no resource: the request needs no permission",
        }
    }
}

/// A deployment in which a permission is needed; without a condition it always is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Condition {
    /// The source bucket is versioned.
    VersionedSource,
    /// The source bucket's objects are encrypted with a KMS key (SSE-KMS).
    KmsEncryptedSource,
    /// The reconciler reads the source from an S3 Inventory report.
    SourceInventory,
    /// The scheduled reconcile runs in key-range shards.
    ShardedReconcile,
}

impl Condition {
    /// The name the contract file uses.
    pub fn name(self) -> &'static str {
        match self {
            Condition::VersionedSource => "versioned-source",
            Condition::KmsEncryptedSource => "kms-encrypted-source",
            Condition::SourceInventory => "source-inventory",
            Condition::ShardedReconcile => "sharded-reconcile",
        }
    }

    /// When it holds, for people.
    pub fn meaning(self) -> &'static str {
        match self {
            Condition::VersionedSource => "the source bucket is versioned",
            Condition::KmsEncryptedSource => {
                "the source bucket's objects are encrypted with a KMS key (SSE-KMS)"
            }
            Condition::SourceInventory => {
                "the reconciler reads the source from an S3 Inventory report"
            }
            Condition::ShardedReconcile => "the scheduled reconcile runs in key-range shards",
        }
    }
}

/// One thing a program needs IAM to allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Permission {
    pub need: Need,
    /// The IAM actions that authorise it; none when it needs no permission.
    pub actions: &'static [&'static str],
    pub resource: Resource,
    pub condition: Option<Condition>,
    /// Why, in a few words (error messages quote it).
    pub why: &'static str,
    /// Where AWS documents it.
    pub doc: &'static str,
    /// The package that declares it, which is the one that makes the call.
    pub declared_in: &'static str,
}

impl Permission {
    /// What to grant, in words: `s3:GetObject on arn:aws:s3:::BUCKET/*` for the source bucket
    /// `bucket` in the AWS partition `partition`.
    pub fn grant(&self, partition: &str, bucket: &str) -> String {
        let on = match self.resource {
            Resource::SourceObjects => format!("arn:{partition}:s3:::{bucket}/*"),
            Resource::SourceBucket => format!("arn:{partition}:s3:::{bucket}"),
            Resource::SourceKey => "the source bucket's KMS key".to_owned(),
            Resource::Queue => "the queue".to_owned(),
            Resource::ClusterTasks => {
                format!("arn:{partition}:ecs:REGION:ACCOUNT:task/CLUSTER/* (the task's cluster)")
            }
            Resource::InventoryReports => {
                format!("arn:{partition}:s3:::{bucket}/FOLDER* (the reports' folder)")
            }
            Resource::InventoryBucket => format!("arn:{partition}:s3:::{bucket}"),
            Resource::ReconcilePlans => {
                format!("arn:{partition}:s3:::{bucket}/FOLDER* (the plans' folder)")
            }
            Resource::ReconcilePlansBucket => format!("arn:{partition}:s3:::{bucket}"),
            Resource::Nothing => "nothing".to_owned(),
        };
        format!("{} on {on}", self.actions.join(" and "))
    }
}

const CRATE: &str = env!("CARGO_PKG_NAME");
const GET_OBJECT_DOC: &str = "https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html";
const HEAD_OBJECT_DOC: &str = "https://docs.aws.amazon.com/AmazonS3/latest/API/API_HeadObject.html";

/// `S3Source::get`, and the resumed read of a cut body.
pub const GET_OBJECT: Permission = Permission {
    need: Need::Call(Sdk::S3, "GetObject"),
    actions: &["s3:GetObject"],
    resource: Resource::SourceObjects,
    condition: None,
    why: "reads a source object",
    doc: GET_OBJECT_DOC,
    declared_in: CRATE,
};

/// A cut read resumes with a GET pinned to the version it started on (`SourceObject::resume`).
pub const GET_OBJECT_VERSION: Permission = Permission {
    need: Need::Call(Sdk::S3, "GetObject"),
    actions: &["s3:GetObjectVersion"],
    resource: Resource::SourceObjects,
    condition: Some(Condition::VersionedSource),
    why: "a cut read resumes with a GET pinned to the version it started on",
    doc: GET_OBJECT_DOC,
    declared_in: CRATE,
};

pub const GET_OBJECT_DECRYPT: Permission = Permission {
    need: Need::Call(Sdk::S3, "GetObject"),
    actions: &["kms:Decrypt"],
    resource: Resource::SourceKey,
    condition: Some(Condition::KmsEncryptedSource),
    why: "S3 decrypts an SSE-KMS object for a reader that may use the key",
    doc: "https://docs.aws.amazon.com/AmazonS3/latest/userguide/UsingKMSEncryption.html",
    declared_in: CRATE,
};

/// `S3Source::head` and `exists` (a delete job asks whether the key is still absent).
pub const HEAD_OBJECT: Permission = Permission {
    need: Need::Call(Sdk::S3, "HeadObject"),
    actions: &["s3:GetObject"],
    resource: Resource::SourceObjects,
    condition: None,
    why: "HeadObject is authorised by s3:GetObject",
    doc: HEAD_OBJECT_DOC,
    declared_in: CRATE,
};

pub const HEAD_OBJECT_DECRYPT: Permission = Permission {
    need: Need::Call(Sdk::S3, "HeadObject"),
    actions: &["kms:Decrypt"],
    resource: Resource::SourceKey,
    condition: Some(Condition::KmsEncryptedSource),
    why: "with ChecksumMode, S3 returns an SSE-KMS object's checksums only to a role that may \
          decrypt it",
    doc: HEAD_OBJECT_DOC,
    declared_in: CRATE,
};

/// The rule that makes a missing key a 404 (`Ok(None)` from `get`, `head` and `exists`): a
/// role without it gets 403 for every key that does not exist, so each delete job and each
/// "source is gone" job would fail as access denied.
pub const MISSING_KEY_IS_404: Permission = Permission {
    need: Need::Other("a 404, not a 403, for a missing key (GetObject, HeadObject)"),
    actions: &["s3:ListBucket"],
    resource: Resource::SourceBucket,
    condition: None,
    why: "without s3:ListBucket S3 answers 403 instead of 404 for a missing key",
    doc: HEAD_OBJECT_DOC,
    declared_in: CRATE,
};

/// `S3Source::list`.
pub const LIST_OBJECTS_V2: Permission = Permission {
    need: Need::Call(Sdk::S3, "ListObjectsV2"),
    actions: &["s3:ListBucket"],
    resource: Resource::SourceBucket,
    condition: None,
    why: "ListObjectsV2 is authorised by s3:ListBucket on the bucket",
    doc: "https://docs.aws.amazon.com/AmazonS3/latest/API/API_ListObjectsV2.html",
    declared_in: CRATE,
};

/// `JobSender::send`.
pub const SEND_MESSAGE_BATCH: Permission = Permission {
    need: Need::Call(Sdk::Sqs, "SendMessageBatch"),
    actions: &["sqs:SendMessage"],
    resource: Resource::Queue,
    condition: None,
    why: "SendMessageBatch is authorised by sqs:SendMessage",
    doc: "https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-batch-api.html",
    declared_in: CRATE,
};

/// `queue_backlog`: a backfill waits for the work queues to be done with its jobs.
pub const GET_QUEUE_ATTRIBUTES: Permission = Permission {
    need: Need::Call(Sdk::Sqs, "GetQueueAttributes"),
    actions: &["sqs:GetQueueAttributes"],
    resource: Resource::Queue,
    condition: None,
    why: "the messages a queue still holds (ApproximateNumberOfMessages and the rest)",
    doc: "https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_GetQueueAttributes.html",
    declared_in: CRATE,
};

/// Declared here for `yuba-gcs`, which signs the request (`credentials`: Google's workload
/// identity federation takes a signed STS GetCallerIdentity as the subject token, and Google's
/// STS sends it) but does not depend on this crate; it is no SDK call.
pub const STS_GET_CALLER_IDENTITY: Permission = Permission {
    need: Need::Other(
        "sts:GetCallerIdentity, signed as the subject token of Google's workload identity \
         federation (yuba-gcs)",
    ),
    actions: &[],
    resource: Resource::Nothing,
    condition: None,
    why: "GetCallerIdentity needs no permission: it answers even a role that is denied it",
    doc: "https://docs.aws.amazon.com/STS/latest/APIReference/API_GetCallerIdentity.html",
    declared_in: CRATE,
};

/// `S3Source::get` of an inventory report's manifest and data files.
pub const GET_INVENTORY_REPORT: Permission = Permission {
    need: Need::Call(Sdk::S3, "GetObject"),
    actions: &["s3:GetObject"],
    resource: Resource::InventoryReports,
    condition: Some(Condition::SourceInventory),
    why: "reads the inventory report's manifest and data files",
    doc: GET_OBJECT_DOC,
    declared_in: CRATE,
};

/// `S3Source::list` of an inventory configuration's folder, for its newest report.
pub const LIST_INVENTORY_REPORTS: Permission = Permission {
    need: Need::Call(Sdk::S3, "ListObjectsV2"),
    actions: &["s3:ListBucket"],
    resource: Resource::InventoryBucket,
    condition: Some(Condition::SourceInventory),
    why: "finds the newest report in the configuration's folder (listed under it only)",
    doc: "https://docs.aws.amazon.com/AmazonS3/latest/API/API_ListObjectsV2.html",
    declared_in: CRATE,
};

/// `S3Source::put` of a sharded reconcile's plan, its shards' parts and their summaries.
pub const PUT_RECONCILE_PLAN: Permission = Permission {
    need: Need::Call(Sdk::S3, "PutObject"),
    actions: &["s3:PutObject"],
    resource: Resource::ReconcilePlans,
    condition: Some(Condition::ShardedReconcile),
    why: "writes a sharded reconcile's plan, its shards' parts of the report and their summaries",
    doc: "https://docs.aws.amazon.com/AmazonS3/latest/API/API_PutObject.html",
    declared_in: CRATE,
};

/// `S3Source::get` of a plan, a shard's part of the report and the shards' summaries.
pub const GET_RECONCILE_PLAN: Permission = Permission {
    need: Need::Call(Sdk::S3, "GetObject"),
    actions: &["s3:GetObject"],
    resource: Resource::ReconcilePlans,
    condition: Some(Condition::ShardedReconcile),
    why: "reads a sharded reconcile's plan, a shard's part of the report and the summaries",
    doc: GET_OBJECT_DOC,
    declared_in: CRATE,
};

/// A shard's summary not written yet is a fact `merge` reports, not a refusal.
pub const MISSING_PLAN_OBJECT_IS_404: Permission = Permission {
    need: Need::Other("a 404, not a 403, for a plan's object not written yet (GetObject)"),
    actions: &["s3:ListBucket"],
    resource: Resource::ReconcilePlansBucket,
    condition: Some(Condition::ShardedReconcile),
    why: "without s3:ListBucket S3 answers 403 instead of 404 for a missing key",
    doc: GET_OBJECT_DOC,
    declared_in: CRATE,
};

/// Reading source objects: [`S3Source::get`](crate::S3Source::get), `head` and `exists`.
pub const S3_READS: &[&Permission] = &[
    &GET_OBJECT,
    &GET_OBJECT_VERSION,
    &GET_OBJECT_DECRYPT,
    &HEAD_OBJECT,
    &HEAD_OBJECT_DECRYPT,
    &MISSING_KEY_IS_404,
];

/// Listing the source bucket: [`S3Source::list`](crate::S3Source::list).
pub const S3_LISTING: &[&Permission] = &[&LIST_OBJECTS_V2];

/// Reading an S3 Inventory report of the source bucket (the reconciler's `--source-inventory`):
/// [`S3Source::list`](crate::S3Source::list) and `get` on the reports' folder.
pub const INVENTORY_READS: &[&Permission] = &[&LIST_INVENTORY_REPORTS, &GET_INVENTORY_REPORT];

/// Keeping a sharded reconcile's plans (the reconciler's `plan`, `--shard` and `merge`):
/// [`S3Source::put`](crate::S3Source::put) and `get` in the plans' folder.
pub const RECONCILE_PLANS: &[&Permission] = &[
    &PUT_RECONCILE_PLAN,
    &GET_RECONCILE_PLAN,
    &MISSING_PLAN_OBJECT_IS_404,
];

/// Sending jobs: [`JobSender`](crate::JobSender).
pub const JOB_SENDING: &[&Permission] = &[&SEND_MESSAGE_BATCH];

/// Watching a queue's backlog: [`queue_backlog`](crate::queue_backlog).
pub const QUEUE_WATCHING: &[&Permission] = &[&GET_QUEUE_ATTRIBUTES];

/// Acting as a Google service account with the program's AWS role (`yuba-gcs`).
pub const GCS_FEDERATION: &[&Permission] = &[&STS_GET_CALLER_IDENTITY];

/// Everything this crate declares.
pub const DECLARED: &[&Permission] = &[
    &GET_OBJECT,
    &GET_OBJECT_VERSION,
    &GET_OBJECT_DECRYPT,
    &HEAD_OBJECT,
    &HEAD_OBJECT_DECRYPT,
    &MISSING_KEY_IS_404,
    &LIST_OBJECTS_V2,
    &GET_INVENTORY_REPORT,
    &LIST_INVENTORY_REPORTS,
    &PUT_RECONCILE_PLAN,
    &GET_RECONCILE_PLAN,
    &MISSING_PLAN_OBJECT_IS_404,
    &SEND_MESSAGE_BATCH,
    &GET_QUEUE_ATTRIBUTES,
    &STS_GET_CALLER_IDENTITY,
];
