//! The AWS permissions contract, and the checks that keep it true.
//!
//! The local emulators enforce no IAM, so no end-to-end test can see a role that lacks a
//! permission. Instead each crate that calls AWS declares, beside the calls, what they need
//! (`libs/*/src/permissions.rs`); [`PROGRAMS`] composes those declarations into each deployed
//! program's list, following what the program's binary uses; and
//!
//! - `the_contract_file_is_up_to_date` renders `cdk/lib/generated/aws-iam.json` from that
//!   list (the CDK app takes its role names from it, and `cdk/test/iam.test.ts` checks every
//!   role of the templates against it), rewriting a stale file and failing;
//! - `every_sdk_call_is_declared_and_every_declaration_called` scans the sources of `bins/` and
//!   `libs/` for calls of AWS SDK operations and fails, naming file and line, on a call its
//!   crate does not declare, and on a declaration whose call is gone;
//! - `every_ecs_agent_request_is_declared_and_every_declaration_made` does the same for requests
//!   to the ECS agent's endpoint (task scale-in protection), which are HTTP, not SDK calls, but
//!   which the agent turns into ECS API calls made with the task role: a string literal naming
//!   a path of the agent's task-protection API is a request of the crate that holds it;
//! - `programs_take_permissions_from_what_their_binary_depends_on` holds the composition to
//!   the dependency graph.
//!
//! `tests/` and `loadtest/` are not scanned: they run with a developer's (or the emulators')
//! credentials, never with a deployed role. Neither are `libs/*/tests`, for the same reason.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde::Serialize;
use yuba_aws::permissions::{self as aws, Condition, Need, Permission, Resource, Sdk};
use yuba_consumer::permissions as consumer;
use yuba_e2e::{program_sources, repo_root};

/// Where the contract is written, from the repository's root.
const CONTRACT: &str = "cdk/lib/generated/aws-iam.json";

/// What each crate that calls AWS declares. A crate that calls AWS and is missing here has
/// every call reported as undeclared.
const DECLARATIONS: &[&[&Permission]] = &[aws::DECLARED, consumer::DECLARED];

/// A deployed program: a binary in one home, with one role.
#[derive(Debug)]
struct Program {
    name: &'static str,
    binary: &'static str,
    home: Home,
    /// The role's name after the stage prefix (`yuba-prod-` + this); `None` when the CDK app
    /// lets CloudFormation name it (nothing outside the stack needs to know it).
    role: Option<&'static str>,
    uses: &'static [Use],
}

#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "lowercase")]
enum Home {
    Lambda,
    Fargate,
}

/// One API of a library as a program uses it: its declared permissions, on these queues (for
/// the permissions on [`Resource::Queue`]), when this holds.
#[derive(Debug)]
struct Use {
    permissions: &'static [&'static Permission],
    queues: &'static [Queue],
    when: Option<When>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Queue {
    Events,
    EventsDeadLetter,
    LambdaWork,
    FargateWork,
}

impl Queue {
    const ALL: [Queue; 4] = [
        Queue::Events,
        Queue::EventsDeadLetter,
        Queue::LambdaWork,
        Queue::FargateWork,
    ];

    fn name(self) -> &'static str {
        match self {
            Queue::Events => "queue:events",
            Queue::EventsDeadLetter => "queue:events-dlq",
            Queue::LambdaWork => "queue:lambda-work",
            Queue::FargateWork => "queue:fargate-work",
        }
    }

    fn meaning(self) -> &'static str {
        match self {
            Queue::Events => "the events queue: S3 notifications for ingest",
            Queue::EventsDeadLetter => {
                "the events queue's dead-letter queue: records ingest rejects, set aside alone"
            }
            Queue::LambdaWork => "the Lambda work queue: jobs for the Lambda worker",
            Queue::FargateWork => "the Fargate work queue: jobs for the Fargate worker",
        }
    }
}

/// A deployment in which a program uses an API (the libraries' own are [`Condition`]s).
#[derive(Debug, Clone, Copy)]
enum When {
    EventsQueue,
}

impl When {
    fn name(self) -> &'static str {
        match self {
            When::EventsQueue => "events-queue",
        }
    }

    fn meaning(self) -> &'static str {
        match self {
            When::EventsQueue => {
                "S3 notifications reach ingest through the events queue (notifications \
                 'queue' or 'eventbridge'; not when S3 invokes ingest directly)"
            }
        }
    }
}

const fn uses(permissions: &'static [&'static Permission]) -> Use {
    Use {
        permissions,
        queues: &[],
        when: None,
    }
}

const fn on(permissions: &'static [&'static Permission], queues: &'static [Queue]) -> Use {
    Use {
        permissions,
        queues,
        when: None,
    }
}

/// Every deployed program and what its binary uses there (see each `bins/*/src/main.rs`).
const PROGRAMS: &[Program] = &[
    Program {
        name: "ingest",
        binary: "yuba-ingest",
        home: Home::Lambda,
        role: None,
        uses: &[
            // handler.rs: each job goes to one of the work queues, by size.
            on(aws::JOB_SENDING, &[Queue::LambdaWork, Queue::FargateWork]),
            // main.rs serve_lambda: SQS batches answered through SqsBatches, from the events
            // queue; with notifications 'direct' S3 invokes the function and there is no queue.
            Use {
                permissions: consumer::SQS_TRIGGER,
                queues: &[Queue::Events],
                when: Some(When::EventsQueue),
            },
            // handler.rs SetAside: each rejected record, alone, to the events queue's DLQ.
            Use {
                permissions: aws::JOB_SENDING,
                queues: &[Queue::EventsDeadLetter],
                when: Some(When::EventsQueue),
            },
        ],
    },
    Program {
        name: "worker-lambda",
        binary: "yuba-worker",
        home: Home::Lambda,
        role: Some("worker-lambda"),
        uses: &[
            // The Replicator: get (copies), exists (deletes).
            uses(aws::S3_READS),
            on(consumer::SQS_TRIGGER, &[Queue::LambdaWork]),
            uses(aws::GCS_FEDERATION),
        ],
    },
    Program {
        name: "worker-task",
        binary: "yuba-worker",
        home: Home::Fargate,
        role: Some("worker-task"),
        uses: &[
            uses(aws::S3_READS),
            on(consumer::CONSUMING, &[Queue::FargateWork]),
            // main.rs: the consumer holds the task's scale-in protection while busy.
            uses(consumer::TASK_PROTECTION),
            uses(aws::GCS_FEDERATION),
        ],
    },
    Program {
        name: "serve-lambda",
        binary: "yuba-serve",
        home: Home::Lambda,
        role: Some("serve-lambda"),
        uses: &[
            // The delivery origin reads the replica, and writes variants made on demand, with
            // GCS credentials federated from its role; it calls no AWS API of its own.
            uses(aws::GCS_FEDERATION),
        ],
    },
    Program {
        name: "reconciler-task",
        binary: "yuba-reconciler",
        home: Home::Fargate,
        role: Some("reconciler-task"),
        uses: &[
            // Lists the source; heads keys (checksums, a delete's check); reads whole objects
            // for verify --deep and backfill --inline (the worker's Replicator). The scheduled
            // run is `backfill --json --no-checkpoint`: no checkpoint, so nothing stored.
            uses(aws::S3_LISTING),
            uses(aws::S3_READS),
            // --source-inventory: the newest report of the configuration's folder, read whole.
            uses(aws::INVENTORY_READS),
            // A sharded run: `plan` writes the plan and the parts, each `--shard` reads its
            // part and writes its summary, `merge` reads the summaries.
            uses(aws::RECONCILE_PLANS),
            // backfill enqueues repairs, routed by size as ingest does.
            on(aws::JOB_SENDING, &[Queue::LambdaWork, Queue::FargateWork]),
            // backfill --verify-enqueued waits for the work queues to hold none of its jobs.
            on(
                aws::QUEUE_WATCHING,
                &[Queue::LambdaWork, Queue::FargateWork],
            ),
            uses(aws::GCS_FEDERATION),
        ],
    },
];

// ---------------------------------------------------------------------------------------------
// The contract file

#[derive(Debug, Serialize)]
struct Contract {
    about: &'static str,
    resources: BTreeMap<&'static str, &'static str>,
    conditions: BTreeMap<&'static str, &'static str>,
    programs: BTreeMap<&'static str, ProgramEntry>,
}

#[derive(Debug, Serialize)]
struct ProgramEntry {
    binary: &'static str,
    home: Home,
    role: Option<&'static str>,
    permissions: Vec<Grant>,
    needs_no_permission: Vec<Reason>,
}

/// One action on one resource, needed when every condition in `when` holds.
#[derive(Debug, Serialize)]
struct Grant {
    action: &'static str,
    resource: &'static str,
    when: Vec<&'static str>,
    #[serde(rename = "for")]
    reasons: Vec<Reason>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
struct Reason {
    need: String,
    declared_in: &'static str,
    why: &'static str,
    doc: &'static str,
}

const ABOUT: &str = "Generated by tests/tests/e2e/iam.rs (cargo test -p yuba-e2e --test e2e iam::) from \
    the permissions declared beside the AWS calls (libs/*/src/permissions.rs); do not edit. Each \
    program's role must allow every permission whose `when` conditions all hold, on the \
    resource named, and nothing else but the platform needs cdk/test/iam.test.ts lists. `role` \
    is the role's name after the stage prefix (null: a generated name).";

fn need_text(need: Need) -> String {
    match need {
        Need::Call(sdk, operation) => format!("{operation} ({})", sdk.package()),
        Need::EcsAgent { method, path } => {
            format!("{method} $ECS_AGENT_URI{path} (the ECS agent, as the task role)")
        }
        Need::Other(what) => what.to_owned(),
    }
}

fn reason(permission: &Permission) -> Reason {
    Reason {
        need: need_text(permission.need),
        declared_in: permission.declared_in,
        why: permission.why,
        doc: permission.doc,
    }
}

fn resource_names(permission: &Permission, queues: &[Queue]) -> Vec<&'static str> {
    match permission.resource {
        Resource::Queue => queues.iter().map(|queue| queue.name()).collect(),
        other => vec![other.name()],
    }
}

fn program_entry(program: &Program) -> ProgramEntry {
    type Key = (&'static str, &'static str, Vec<&'static str>);
    let mut grants: BTreeMap<Key, BTreeSet<Reason>> = BTreeMap::new();
    let mut free = BTreeSet::new();
    for used in program.uses {
        for permission in used.permissions {
            if permission.actions.is_empty() {
                free.insert(reason(permission));
                continue;
            }
            let mut when: Vec<&'static str> = permission
                .condition
                .map(Condition::name)
                .into_iter()
                .chain(used.when.map(When::name))
                .collect();
            when.sort_unstable();
            for action in permission.actions {
                for resource in resource_names(permission, used.queues) {
                    grants
                        .entry((*action, resource, when.clone()))
                        .or_default()
                        .insert(reason(permission));
                }
            }
        }
    }
    ProgramEntry {
        binary: program.binary,
        home: program.home,
        role: program.role,
        permissions: grants
            .into_iter()
            .map(|((action, resource, when), reasons)| Grant {
                action,
                resource,
                when,
                reasons: reasons.into_iter().collect(),
            })
            .collect(),
        needs_no_permission: free.into_iter().collect(),
    }
}

fn render(programs: &[Program]) -> String {
    let mut resources: BTreeMap<&str, &str> = [
        Resource::SourceObjects,
        Resource::SourceBucket,
        Resource::SourceKey,
        Resource::ClusterTasks,
        Resource::InventoryReports,
        Resource::InventoryBucket,
        Resource::ReconcilePlans,
        Resource::ReconcilePlansBucket,
    ]
    .into_iter()
    .map(|resource| (resource.name(), resource.meaning()))
    .collect();
    resources.extend(Queue::ALL.map(|queue| (queue.name(), queue.meaning())));
    let mut conditions: BTreeMap<&str, &str> = [
        Condition::VersionedSource,
        Condition::KmsEncryptedSource,
        Condition::SourceInventory,
        Condition::ShardedReconcile,
    ]
    .into_iter()
    .map(|condition| (condition.name(), condition.meaning()))
    .collect();
    conditions.insert(When::EventsQueue.name(), When::EventsQueue.meaning());
    let contract = Contract {
        about: ABOUT,
        resources,
        conditions,
        programs: programs
            .iter()
            .map(|program| (program.name, program_entry(program)))
            .collect(),
    };
    let mut json = serde_json::to_string_pretty(&contract).expect("the contract is JSON");
    json.push('\n');
    json
}

/// rust-analyzer's sourcegen pattern: the committed file is what the code renders, or the test
/// writes it and fails, so running the tests twice passes and a stale file fails CI.
#[test]
fn the_contract_file_is_up_to_date() {
    let path = repo_root().join(CONTRACT);
    let rendered = render(PROGRAMS);
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if committed != rendered {
        std::fs::write(&path, &rendered).expect("writing the contract");
        panic!("{CONTRACT}: aws-iam.json was out of date and has been regenerated; commit it");
    }
}

#[test]
fn the_contract_says_what_the_issue_was_about() {
    let contract: serde_json::Value = serde_json::from_str(&render(PROGRAMS)).unwrap();
    let needs = |program: &str, action: &str, resource: &str| {
        contract["programs"][program]["permissions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|grant| grant["action"] == action && grant["resource"] == resource)
    };
    // Without s3:ListBucket a missing key is a 403, and every delete job fails.
    for program in ["worker-lambda", "worker-task", "reconciler-task"] {
        assert!(
            needs(program, "s3:ListBucket", "source-bucket"),
            "{program}"
        );
        assert!(
            needs(program, "s3:GetObject", "source-objects"),
            "{program}"
        );
    }
    assert!(needs(
        "worker-lambda",
        "sqs:GetQueueAttributes",
        "queue:lambda-work"
    ));
    assert!(needs("ingest", "sqs:SendMessage", "queue:fargate-work"));
    assert!(!needs("ingest", "s3:GetObject", "source-objects"));
    assert!(!needs(
        "worker-task",
        "sqs:SendMessage",
        "queue:fargate-work"
    ));
    // The Fargate worker protects its own task from scale-in; no Lambda program does.
    assert!(needs(
        "worker-task",
        "ecs:UpdateTaskProtection",
        "cluster-tasks"
    ));
    for program in ["ingest", "worker-lambda", "reconciler-task"] {
        assert!(
            !needs(program, "ecs:UpdateTaskProtection", "cluster-tasks"),
            "{program}"
        );
    }
    // The roles terraform is told about.
    let roles: Vec<_> = ["ingest", "worker-lambda", "worker-task", "reconciler-task"]
        .map(|program| contract["programs"][program]["role"].clone())
        .into();
    assert_eq!(
        roles,
        vec![
            serde_json::Value::Null,
            "worker-lambda".into(),
            "worker-task".into(),
            "reconciler-task".into()
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// The workspace, as cargo sees it

struct Workspace {
    /// Workspace members: name and directory.
    members: Vec<(String, PathBuf)>,
    /// Normal dependencies by package name.
    dependencies: BTreeMap<String, BTreeSet<String>>,
    /// Binary targets by name, with their package.
    binaries: BTreeMap<String, String>,
    /// SDK operations by module name (`head_object`), from the SDK crates' `src/operation/`.
    operations: BTreeMap<String, Sdk>,
}

fn workspace() -> &'static Workspace {
    static WORKSPACE: OnceLock<Workspace> = OnceLock::new();
    WORKSPACE.get_or_init(|| {
        // For this platform only: the others' dependencies are not downloaded, and --offline
        // would fail on them.
        let version = cargo(&["-vV"]);
        let host = String::from_utf8_lossy(&version)
            .lines()
            .find_map(|line| line.strip_prefix("host: ").map(str::to_owned))
            .expect("cargo -vV names the host");
        let manifest = repo_root().join("Cargo.toml");
        let metadata = cargo(&[
            "metadata",
            "--format-version",
            "1",
            "--offline",
            "--filter-platform",
            &host,
            "--manifest-path",
            manifest.to_str().expect("a UTF-8 path"),
        ]);
        workspace_of(&serde_json::from_slice(&metadata).expect("cargo metadata's JSON"))
    })
}

/// The standard output of the cargo that builds these tests.
fn cargo(args: &[&str]) -> Vec<u8> {
    let output = Command::new(env!("CARGO"))
        .args(args)
        .output()
        .expect("running cargo");
    assert!(
        output.status.success(),
        "cargo {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

fn workspace_of(metadata: &serde_json::Value) -> Workspace {
    let text = |value: &serde_json::Value| value.as_str().unwrap_or_default().to_owned();
    let packages = metadata["packages"].as_array().expect("packages");
    let name_of: BTreeMap<String, String> = packages
        .iter()
        .map(|package| (text(&package["id"]), text(&package["name"])))
        .collect();
    let members: BTreeSet<String> = metadata["workspace_members"]
        .as_array()
        .expect("workspace_members")
        .iter()
        .map(text)
        .collect();
    let directory = |package: &serde_json::Value| {
        Path::new(&text(&package["manifest_path"]))
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default()
    };
    let mut workspace = Workspace {
        members: Vec::new(),
        dependencies: BTreeMap::new(),
        binaries: BTreeMap::new(),
        operations: BTreeMap::new(),
    };
    for package in packages {
        let name = text(&package["name"]);
        if members.contains(&text(&package["id"])) {
            workspace.members.push((name.clone(), directory(package)));
            for target in package["targets"].as_array().into_iter().flatten() {
                let is_bin = target["kind"]
                    .as_array()
                    .is_some_and(|kinds| kinds.iter().any(|kind| kind == "bin"));
                if is_bin {
                    workspace
                        .binaries
                        .insert(text(&target["name"]), name.clone());
                }
            }
        }
        for sdk in [Sdk::S3, Sdk::Sqs] {
            if name == sdk.package() {
                let operations = directory(package).join("src/operation");
                for entry in std::fs::read_dir(&operations)
                    .unwrap_or_else(|e| panic!("{}: {e}", operations.display()))
                {
                    let path = entry.expect("a directory entry").path();
                    let module = path.file_stem().and_then(|stem| stem.to_str());
                    if let Some(module) = module {
                        let earlier = workspace.operations.insert(module.to_owned(), sdk);
                        assert!(
                            earlier.is_none_or(|earlier| earlier == sdk),
                            "{module} is an operation of two SDKs; the scanner cannot tell \
                             their calls apart"
                        );
                    }
                }
            }
        }
    }
    for node in metadata["resolve"]["nodes"].as_array().expect("resolve") {
        let normal: BTreeSet<String> = node["deps"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|dep| {
                dep["dep_kinds"]
                    .as_array()
                    .is_some_and(|kinds| kinds.iter().any(|kind| kind["kind"].is_null()))
            })
            .filter_map(|dep| name_of.get(&text(&dep["pkg"])).cloned())
            .collect();
        if let Some(name) = name_of.get(&text(&node["id"])) {
            workspace
                .dependencies
                .entry(name.clone())
                .or_default()
                .extend(normal);
        }
    }
    assert!(
        [Sdk::S3, Sdk::Sqs]
            .iter()
            .all(|sdk| workspace.operations.values().any(|found| found == sdk)),
        "no operations found for the SDK crates in cargo metadata"
    );
    workspace
}

impl Workspace {
    /// The package, and every package it depends on (normal dependencies), by name.
    fn closure(&self, package: &str) -> BTreeSet<String> {
        let mut found = BTreeSet::new();
        let mut next = vec![package.to_owned()];
        while let Some(name) = next.pop() {
            if found.insert(name.clone()) {
                next.extend(self.dependencies.get(&name).into_iter().flatten().cloned());
            }
        }
        found
    }
}

#[test]
fn programs_take_permissions_from_what_their_binary_depends_on() {
    let workspace = workspace();
    let declared: Vec<&Permission> = DECLARATIONS.iter().copied().flatten().copied().collect();
    let mut problems = Vec::new();
    let mut roles = BTreeSet::new();
    for program in PROGRAMS {
        if let Some(role) = program.role {
            assert!(roles.insert(role), "two programs share the role {role}");
        }
        let Some(package) = workspace.binaries.get(program.binary) else {
            problems.push(format!(
                "{}: no workspace package has the binary {}",
                program.name, program.binary
            ));
            continue;
        };
        let closure = workspace.closure(package);
        for used in program.uses {
            let on_queues = used
                .permissions
                .iter()
                .any(|permission| permission.resource == Resource::Queue);
            if on_queues == used.queues.is_empty() {
                problems.push(format!(
                    "{}: queues must be named exactly for the permissions on a queue ({:?})",
                    program.name, used.queues
                ));
            }
            for permission in used.permissions {
                if !closure.contains(permission.declared_in) {
                    problems.push(format!(
                        "{}: {} declares {}, but {} does not depend on it",
                        program.name,
                        permission.declared_in,
                        need_text(permission.need),
                        program.binary
                    ));
                }
                if !declared.contains(permission) {
                    problems.push(format!(
                        "{}: {} is in no crate's DECLARED list, so no check sees it",
                        program.name,
                        need_text(permission.need)
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn declarations_name_the_crate_that_lists_them() {
    let lists = [
        ("yuba-aws", aws::DECLARED),
        ("yuba-consumer", consumer::DECLARED),
    ];
    assert_eq!(lists.len(), DECLARATIONS.len());
    for (package, declared) in lists {
        for permission in declared {
            assert_eq!(permission.declared_in, package, "{permission:?}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Every SDK call declared, every declaration called

/// A call of an SDK operation found in a source file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Call {
    package: String,
    /// From the repository's root.
    file: String,
    line: usize,
    sdk: Sdk,
    /// The operation's module name (`head_object`).
    operation: String,
}

/// `HeadObject` as the SDK names its module and client method: `head_object`.
fn snake_case(operation: &str) -> String {
    let mut snake = String::new();
    for (i, c) in operation.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            snake.push('_');
        }
        snake.push(c.to_ascii_lowercase());
    }
    snake
}

/// `head_object` as the API reference names it: `HeadObject`.
fn api_name(module: &str) -> String {
    module
        .split('_')
        .map(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .map(|first| first.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// The source with comments and the contents of string and character literals blanked out
/// (newlines kept, so lines still count), leaving only code to look for calls in.
fn code_only(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
        } else if c == '"' {
            // A raw string (r"…", r#"…"#) ends at the quote followed by as many #s.
            let hashes = out.chars().rev().take_while(|&h| h == '#').count();
            let raw = out.chars().rev().nth(hashes) == Some('r');
            out.push('"');
            i += 1;
            while i < chars.len() {
                if !raw && chars[i] == '\\' {
                    out.push(' ');
                    out.push(chars.get(i + 1).map_or(' ', |&e| blank(e)));
                    i += 2;
                    continue;
                }
                let closes = chars[i] == '"'
                    && (!raw || (1..=hashes).all(|k| chars.get(i + k) == Some(&'#')));
                if closes {
                    out.push('"');
                    i += 1;
                    break;
                }
                out.push(blank(chars[i]));
                i += 1;
            }
        } else if c == '\'' && (next == Some('\\') || chars.get(i + 2) == Some(&'\'')) {
            // A character literal ('"', '\''); anything else after a quote is a lifetime.
            out.push('\'');
            i += 1;
            if chars.get(i) == Some(&'\\') {
                out.push_str("  ");
                i += 2;
            }
            while i < chars.len() && chars[i] != '\'' {
                out.push(' ');
                i += 1;
            }
            if i < chars.len() {
                out.push('\'');
                i += 1;
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// The SDK operations `source` calls, with their lines: a method call without arguments
/// (`.head_object()`, how a client starts an operation's fluent builder), or the same method
/// named by its type (`Client::head_object(`). Comments and literals do not count.
fn sdk_calls(source: &str, operations: &BTreeMap<String, Sdk>) -> Vec<(usize, String)> {
    let code = code_only(source);
    let bytes = code.as_bytes();
    let is_ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let skip_space = |mut at: usize| {
        while at < bytes.len() && bytes[at].is_ascii_whitespace() {
            at += 1;
        }
        at
    };
    let mut calls = Vec::new();
    for at in 0..bytes.len() {
        let (start, by_path) = match bytes[at] {
            b'.' if at + 1 < bytes.len()
                && bytes[at + 1] != b'.'
                && bytes.get(at.wrapping_sub(1)) != Some(&b'.') =>
            {
                (skip_space(at + 1), false)
            }
            b':' if bytes.get(at + 1) == Some(&b':') => (skip_space(at + 2), true),
            _ => continue,
        };
        let mut end = start;
        while end < bytes.len() && is_ident(bytes[end]) {
            end += 1;
        }
        let name = &code[start..end];
        if !operations.contains_key(name) {
            continue;
        }
        let open = skip_space(end);
        if bytes.get(open) != Some(&b'(') {
            continue;
        }
        if !by_path && bytes.get(skip_space(open + 1)) != Some(&b')') {
            continue;
        }
        let line = 1 + code[..start].matches('\n').count();
        calls.push((line, name.to_owned()));
    }
    calls
}

/// Every SDK call in `files` (repository-relative path and contents), by the package whose
/// directory holds the file.
fn calls_in(files: &[(String, String)], workspace: &Workspace) -> Vec<Call> {
    let root = repo_root();
    let mut calls = Vec::new();
    for (file, source) in files {
        let path = root.join(file);
        let package = workspace
            .members
            .iter()
            .filter(|(_, directory)| path.starts_with(directory))
            .max_by_key(|(_, directory)| directory.as_os_str().len())
            .map(|(name, _)| name.clone())
            .unwrap_or_else(|| panic!("{file} is in no workspace package"));
        for (line, operation) in sdk_calls(source, &workspace.operations) {
            calls.push(Call {
                package: package.clone(),
                file: file.clone(),
                line,
                sdk: workspace.operations[&operation],
                operation,
            });
        }
    }
    calls
}

/// What is wrong between the calls and the declarations: a call its package does not declare
/// (with the file and line), a declared call that no longer happens, a declared operation the
/// SDK does not have.
fn problems(
    calls: &[Call],
    declared: &[&Permission],
    operations: &BTreeMap<String, Sdk>,
) -> Vec<String> {
    let mut problems = Vec::new();
    let mut declared_calls = BTreeSet::new();
    for permission in declared {
        let Need::Call(sdk, operation) = permission.need else {
            continue;
        };
        let module = snake_case(operation);
        if operations.get(&module) != Some(&sdk) {
            problems.push(format!(
                "{} declares {operation}, which is not an operation of {}",
                permission.declared_in,
                sdk.package()
            ));
        }
        declared_calls.insert((permission.declared_in.to_owned(), sdk, module));
    }
    for call in calls {
        let key = (call.package.clone(), call.sdk, call.operation.clone());
        if !declared_calls.contains(&key) {
            problems.push(format!(
                "{}:{}: {} calls {} ({}) but does not declare what it needs: add \
                 Need::Call(Sdk::{:?}, \"{}\") permissions to its permissions module, and use \
                 them in tests/tests/e2e/iam.rs",
                call.file,
                call.line,
                call.package,
                api_name(&call.operation),
                call.sdk.package(),
                call.sdk,
                api_name(&call.operation),
            ));
        }
    }
    for (package, sdk, module) in &declared_calls {
        let called = calls
            .iter()
            .any(|call| &call.package == package && call.sdk == *sdk && &call.operation == module);
        if !called {
            problems.push(format!(
                "{package} declares {} ({}) but no longer calls it: remove the declaration",
                api_name(module),
                sdk.package()
            ));
        }
    }
    problems
}

fn all_declared() -> Vec<&'static Permission> {
    DECLARATIONS.iter().copied().flatten().copied().collect()
}

// ---------------------------------------------------------------------------------------------
// Every ECS agent request declared, every declaration made

/// What the agent's container-facing API under `$ECS_AGENT_URI` starts its paths with: task
/// scale-in protection is the API it documents there.
/// (<https://docs.aws.amazon.com/AmazonECS/latest/developerguide/task-scale-in-protection-endpoint.html>)
const AGENT_API: &str = "/task-protection/";

/// A string literal naming a path of the agent's API, found in a source file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct AgentRequest {
    package: String,
    file: String,
    line: usize,
    path: String,
}

/// The string literals of `source` (not those in comments), with their lines: `code_only`
/// keeps every literal's quotes where they were and blanks what is between, so its quotes
/// pair up, and the original between a pair is the literal.
fn string_literals(source: &str) -> Vec<(usize, String)> {
    let code: Vec<char> = code_only(source).chars().collect();
    let original: Vec<char> = source.chars().collect();
    let mut literals = Vec::new();
    let mut open = None;
    let mut line = 1;
    for (at, c) in code.iter().enumerate() {
        match (c, open) {
            ('\n', _) => line += 1,
            ('"', None) => open = Some((at, line)),
            ('"', Some((start, start_line))) => {
                literals.push((start_line, original[start + 1..at].iter().collect()));
                open = None;
            }
            _ => {}
        }
    }
    literals
}

/// Every literal naming an agent path in `files`, by the package whose directory holds the file.
fn agent_requests_in(files: &[(String, String)], workspace: &Workspace) -> Vec<AgentRequest> {
    let root = repo_root();
    let mut requests = Vec::new();
    for (file, source) in files {
        let path = root.join(file);
        let Some((package, _)) = workspace
            .members
            .iter()
            .filter(|(_, directory)| path.starts_with(directory))
            .max_by_key(|(_, directory)| directory.as_os_str().len())
        else {
            continue;
        };
        for (line, literal) in string_literals(source) {
            if literal.starts_with(AGENT_API) {
                requests.push(AgentRequest {
                    package: package.clone(),
                    file: file.clone(),
                    line,
                    path: literal,
                });
            }
        }
    }
    requests
}

/// What is wrong between the agent paths the code names and the declarations: a path its
/// package does not declare, a declared path no code of its package names.
fn agent_problems(requests: &[AgentRequest], declared: &[&Permission]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut declared_paths = BTreeSet::new();
    for permission in declared {
        if let Need::EcsAgent { path, .. } = permission.need {
            if !path.starts_with(AGENT_API) {
                problems.push(format!(
                    "{} declares an ECS agent request to {path}, which is not a path of the \
                     agent's task-protection API ({AGENT_API}...)",
                    permission.declared_in
                ));
            }
            declared_paths.insert((permission.declared_in.to_owned(), path.to_owned()));
        }
    }
    for request in requests {
        if !declared_paths.contains(&(request.package.clone(), request.path.clone())) {
            problems.push(format!(
                "{}:{}: {} names the ECS agent's {} but does not declare what the request \
                 needs: add a Need::EcsAgent permission to its permissions module (the agent \
                 calls ECS with the task role), and use it in tests/tests/e2e/iam.rs",
                request.file, request.line, request.package, request.path
            ));
        }
    }
    for (package, path) in &declared_paths {
        let named = requests
            .iter()
            .any(|request| &request.package == package && &request.path == path);
        if !named {
            problems.push(format!(
                "{package} declares an ECS agent request to {path} but its code no longer names \
                 that path: remove the declaration"
            ));
        }
    }
    problems
}

#[test]
fn every_ecs_agent_request_is_declared_and_every_declaration_made() {
    let workspace = workspace();
    let requests = agent_requests_in(&program_sources(), workspace);
    assert!(
        requests
            .iter()
            .any(|request| request.file == "libs/consumer/src/protection.rs"),
        "the scan missed the consumer's task protection: {requests:#?}"
    );
    let found = agent_problems(&requests, &all_declared());
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn an_agent_request_without_a_declaration_fails_and_so_does_a_stale_one() {
    let workspace = workspace();
    // The consumer asking for another path of the API: named, not declared; and the declared
    // one no longer named.
    let files = sources_with("libs/consumer/src/protection.rs", |source| {
        source.replace(
            "\"/task-protection/v1/state\"",
            "\"/task-protection/v2/state\"",
        )
    });
    let found = agent_problems(&agent_requests_in(&files, workspace), &all_declared());
    assert_eq!(found.len(), 2, "{found:#?}");
    assert!(
        found[0].starts_with("libs/consumer/src/protection.rs:")
            && found[0].contains("yuba-consumer names the ECS agent's /task-protection/v2/state"),
        "{}",
        found[0]
    );
    assert_eq!(
        found[1],
        "yuba-consumer declares an ECS agent request to /task-protection/v1/state but its code \
         no longer names that path: remove the declaration"
    );
    // A comment naming the path is no request.
    let commented = sources_with("libs/aws/src/permissions.rs", |source| {
        format!("{source}\n// GET \"/task-protection/v1/state\"\n")
    });
    let found = agent_problems(&agent_requests_in(&commented, workspace), &all_declared());
    assert!(found.is_empty(), "{found:#?}");
}

#[test]
fn string_literals_are_read_whole_and_comments_skipped() {
    let source = r##"
        // "/task-protection/in-a-comment"
        const A: &str = "/task-protection/v1/state";
        let c = '"'; let raw = r#"with "quotes" inside"#;
        /* "/block" */ let e = "esc\"aped";
    "##;
    assert_eq!(
        string_literals(source),
        vec![
            (3, "/task-protection/v1/state".to_owned()),
            (4, r#"with "quotes" inside"#.to_owned()),
            (5, r#"esc\"aped"#.to_owned()),
        ]
    );
}

#[test]
fn every_sdk_call_is_declared_and_every_declaration_called() {
    let workspace = workspace();
    let files = program_sources();
    assert!(
        files.iter().any(|(file, _)| file == "libs/aws/src/s3.rs"),
        "the scan missed libs/aws"
    );
    let calls = calls_in(&files, workspace);
    let found = problems(&calls, &all_declared(), &workspace.operations);
    assert!(found.is_empty(), "{}", found.join("\n"));
}

/// The tree as it is, but for one file's contents.
fn sources_with(file: &str, edit: impl Fn(&str) -> String) -> Vec<(String, String)> {
    let mut files = program_sources();
    let (_, source) = files
        .iter_mut()
        .find(|(path, _)| path == file)
        .unwrap_or_else(|| panic!("{file} not found"));
    let edited = edit(source);
    assert_ne!(&edited, source, "the edit changed nothing");
    *source = edited;
    files
}

#[test]
fn a_call_its_crate_does_not_declare_fails_with_its_file_and_line() {
    let workspace = workspace();
    // A copy of the consumer that also purges its queue.
    let files = sources_with("libs/consumer/src/consumer.rs", |source| {
        source.replacen(
            "async fn receive(",
            "async fn purge(sqs: &aws_sdk_sqs::Client, url: &str) {\n    \
             let _ = sqs.purge_queue().queue_url(url).send().await;\n}\n\nasync fn receive(",
            1,
        )
    });
    let (_, consumer) = files
        .iter()
        .find(|(path, _)| path == "libs/consumer/src/consumer.rs")
        .unwrap();
    let line = 1 + consumer
        .lines()
        .position(|line| line.contains("purge_queue"))
        .unwrap();
    let found = problems(
        &calls_in(&files, workspace),
        &all_declared(),
        &workspace.operations,
    );
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(
        found[0].starts_with(&format!(
            "libs/consumer/src/consumer.rs:{line}: yuba-consumer calls PurgeQueue (aws-sdk-sqs)"
        )),
        "{}",
        found[0]
    );
}

#[test]
fn a_call_declared_by_another_crate_fails() {
    let workspace = workspace();
    // The Lambda glue sending messages itself: yuba-aws declares SendMessageBatch, not it.
    let files = sources_with("libs/consumer/src/lambda.rs", |source| {
        source.replacen(
            ".get_queue_url()",
            ".get_queue_url()\n            .send_message_batch()",
            1,
        )
    });
    let found = problems(
        &calls_in(&files, workspace),
        &all_declared(),
        &workspace.operations,
    );
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(
        found[0].contains("yuba-consumer calls SendMessageBatch"),
        "{}",
        found[0]
    );
}

#[test]
fn a_declaration_whose_call_is_gone_fails() {
    let workspace = workspace();
    let files = sources_with("libs/consumer/src/lambda.rs", |source| {
        source.replace(".get_queue_url()", ".get_queue_url_gone()")
    });
    let found = problems(
        &calls_in(&files, workspace),
        &all_declared(),
        &workspace.operations,
    );
    assert_eq!(
        found,
        vec![
            "yuba-consumer declares GetQueueUrl (aws-sdk-sqs) but no longer calls it: remove the \
             declaration"
                .to_owned()
        ]
    );
}

#[test]
fn a_declaration_of_an_operation_the_sdk_lacks_fails() {
    let workspace = workspace();
    let misspelt = Permission {
        need: Need::Call(Sdk::Sqs, "GetQueueURL"),
        ..consumer::GET_QUEUE_URL
    };
    let mut declared = all_declared();
    declared.push(&misspelt);
    let calls = calls_in(&program_sources(), workspace);
    let found = problems(&calls, &declared, &workspace.operations);
    assert!(
        found.contains(
            &"yuba-consumer declares GetQueueURL, which is not an operation of aws-sdk-sqs"
                .to_owned()
        ),
        "{found:#?}"
    );
}

#[test]
fn the_scanner_sees_calls_but_not_comments_or_literals() {
    let operations: BTreeMap<String, Sdk> = [
        ("purge_queue", Sdk::Sqs),
        ("get_queue_url", Sdk::Sqs),
        ("get_object", Sdk::S3),
    ]
    .into_iter()
    .map(|(name, sdk)| (name.to_owned(), sdk))
    .collect();
    let source = r##"
        // client.purge_queue()
        /* sqs.purge_queue() /* nested */ sqs.purge_queue() */
        let s = "x.purge_queue()"; let r = r#"a "quoted" .purge_queue()"#;
        let c = '"'; let e = '\''; let l: &'static str = "";
        let q = self
            .sqs
            .purge_queue()
            .queue_url(url);
        let u = aws_sdk_sqs::Client::get_queue_url(&client);
        gcs.get_object(bucket, name); // arguments: not an SDK call
        let s3 = client.get_object ( );
    "##;
    assert_eq!(
        sdk_calls(source, &operations),
        vec![
            (8, "purge_queue".to_owned()),
            (10, "get_queue_url".to_owned()),
            (12, "get_object".to_owned()),
        ]
    );
}

#[test]
fn operation_names_convert_both_ways() {
    for (api, module) in [
        ("ListObjectsV2", "list_objects_v2"),
        (
            "ChangeMessageVisibilityBatch",
            "change_message_visibility_batch",
        ),
        ("GetQueueUrl", "get_queue_url"),
    ] {
        assert_eq!(snake_case(api), module);
        assert_eq!(api_name(module), api);
    }
}
