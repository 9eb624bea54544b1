//! The command line: three runs sharing one set of options (`diff`, `verify`, `backfill`), and
//! the two steps around a sharded run (`plan`, `merge`).

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use clap::{Args, Parser, Subcommand};
use yuba_inventory::SortSettings;
use yuba_reconcile::ranges::KeyRange;
use yuba_reconcile::shard::MAX_SHARDS;
use yuba_reconcile::{PlanLocation, Shard, ShardError, SourceInventory};

/// Finds and repairs every way the GCS replica differs from the S3 bucket.
///
/// Buckets, endpoints and credentials come from the environment, as for the worker:
/// YUBA_SOURCE_BUCKET, YUBA_GCS_BUCKET, AWS_* and YUBA_GCS_ENDPOINT (see README.md).
///
/// Exit codes: 0 in sync (or everything repaired), 1 drift found (diff, verify, a dry run) or
/// left unrepaired (backfill), 2 error, 130 interrupted (resume with --resume). A shard
/// (--shard) exits 0 once it finished: its verdict is merge's.
#[derive(Debug, Parser)]
#[command(name = "yuba-reconciler", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    #[command(flatten)]
    Run(Run),
    /// Split a run into N key-range shards that run apart: read and sort the inventory report
    /// once, cut it into N parts of as many objects each, and write each part and the plan to
    /// a folder in S3. Then run each shard (`diff|verify|backfill --shard K/N --plan ...`), and
    /// `merge` their summaries.
    Plan {
        /// How many shards.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_SHARDS)))]
        shards: u32,
        /// The folder to write the plan to: s3://bucket/folder/.
        #[arg(long, value_name = "S3_FOLDER", value_parser = parse_plan,
              env = "YUBA_RECONCILE_PLAN")]
        plan: PlanLocation,
        #[command(flatten)]
        inventory: InventoryArgs,
        /// The plan as JSON on stdout.
        #[arg(long, env = "YUBA_RECONCILE_JSON")]
        json: bool,
    },
    /// Add up the summaries of a plan's shards into the run's verdict: the summary, the
    /// metrics, and the exit code (the worst shard's). Fails naming the shards without one.
    Merge {
        /// The folder the plan is in: s3://bucket/folder/.
        #[arg(long, value_name = "S3_FOLDER", value_parser = parse_plan,
              env = "YUBA_RECONCILE_PLAN")]
        plan: PlanLocation,
        /// The summary as JSON on stdout.
        #[arg(long, env = "YUBA_RECONCILE_JSON")]
        json: bool,
    },
}

/// A run over the keys: three commands sharing one set of options.
#[derive(Debug, Subcommand)]
pub enum Run {
    /// List both buckets and report each key that is missing, stale, mismatched, lacks
    /// variants, or is an orphan. Reads listings only, no object.
    Diff {
        #[command(flatten)]
        common: Common,
    },
    /// Like diff, and also prove the content of what looks in sync: by checksums (S3's CRC32C
    /// or MD5 ETag against GCS's, else the digests the worker recorded), or with --deep by
    /// streaming both sides and comparing sha256.
    Verify {
        /// Stream both objects and compare sha256, instead of checksums.
        #[arg(long)]
        deep: bool,
        /// Also compare the source's headers and user metadata (a HEAD per object: $0.40 per
        /// million) with the ones the replica was written with; report drift as `attributes`.
        #[arg(long)]
        metadata: bool,
        #[command(flatten)]
        common: Common,
    },
    /// Repair what diff (or verify) finds: enqueue jobs for the workers (default) or copy
    /// in-process with --inline.
    Backfill {
        /// Copy in this process with the worker's code, instead of enqueuing jobs.
        #[arg(long, env = "YUBA_RECONCILE_INLINE")]
        inline: bool,
        /// Prove content as verify does, and repair what fails.
        #[arg(long)]
        verify: bool,
        /// With --verify: compare sha256 of both streams.
        #[arg(long, requires = "verify")]
        deep: bool,
        /// With --verify: also compare headers and user metadata, and bring the replica's up
        /// to date where they differ (a metadata update; the content is not sent again).
        #[arg(long, requires = "verify")]
        metadata: bool,
        /// Delete replicas whose source is gone (and their variants), and orphan variants.
        #[arg(long, env = "YUBA_RECONCILE_DELETE_ORPHANS")]
        delete_orphans: bool,
        /// With --delete-orphans: keep orphan variants made less than SECONDS ago. The worker
        /// writes an image's variants before its original, so until a job writes the original
        /// its new variants look like orphans; a job takes seconds, and one that dies is redone
        /// within its queue's visibility timeout, well inside the default hour.
        #[arg(
            long,
            value_name = "SECONDS",
            default_value_t = 3600,
            env = "YUBA_RECONCILE_ORPHAN_VARIANT_MIN_AGE",
            requires = "delete_orphans"
        )]
        orphan_variant_min_age: u64,
        /// Once the jobs are enqueued, wait up to SECONDS for the work queues to hold no
        /// message, then look at the enqueued keys again: in sync is repaired, still drifting
        /// is failed (exit 1). Without it, enqueued jobs are counted apart and not proven.
        #[arg(long, value_name = "SECONDS", env = "YUBA_RECONCILE_VERIFY_ENQUEUED",
              value_parser = clap::value_parser!(u64).range(1..=43_200),
              conflicts_with = "inline")]
        verify_enqueued: Option<u64>,
        #[command(flatten)]
        common: Common,
    },
}

/// The inventory report a run (or a plan) reads the source's objects from.
#[derive(Debug, Args)]
pub struct InventoryArgs {
    /// Read the source's objects from an S3 Inventory report (CSV or Parquet) instead of listing the
    /// source bucket: s3://bucket/.../manifest.json, or the folder a configuration's reports are
    /// written to (s3://bucket/prefix/source-bucket/config-ID/), whose newest report is read.
    /// What the report makes look drifting is looked up in the source bucket before it is
    /// reported or repaired.
    #[arg(long, value_name = "S3_URL", value_parser = parse_inventory,
          env = "YUBA_RECONCILE_SOURCE_INVENTORY")]
    pub source_inventory: Option<yuba_inventory::Location>,
    /// Refuse an inventory report made longer ago than this (a daily report, one missed).
    #[arg(long, value_name = "HOURS", default_value_t = 48,
          value_parser = clap::value_parser!(u64).range(1..=2000),
          env = "YUBA_RECONCILE_INVENTORY_MAX_AGE_HOURS")]
    pub inventory_max_age: u64,
    /// Where the inventory report is sorted: it needs room for the report's objects,
    /// uncompressed (about 100 bytes each) [default: the system's temporary folder].
    #[arg(long, value_name = "DIR", env = "YUBA_RECONCILE_INVENTORY_SPILL_DIR")]
    pub inventory_spill_dir: Option<PathBuf>,
    /// Memory for sorting the inventory report; past it, sorted runs go to the spill folder.
    #[arg(long, value_name = "MIB", default_value_t = 256,
          value_parser = clap::value_parser!(u64).range(1..=65_536),
          env = "YUBA_RECONCILE_INVENTORY_MEMORY_MIB")]
    pub inventory_memory: u64,
}

#[derive(Debug, Args)]
pub struct Common {
    /// Only keys under this prefix.
    #[arg(long, default_value = "", env = "YUBA_RECONCILE_PREFIX")]
    pub prefix: String,
    /// Only the keys in this file, one per line, instead of listing the buckets.
    #[arg(long, conflicts_with_all = ["prefix", "source_inventory"])]
    pub manifest: Option<PathBuf>,
    #[command(flatten)]
    pub inventory: InventoryArgs,
    /// Run shard K of N of a plan (see `plan`): its part of the inventory report, and the
    /// replicas in its key range. The summary is kept beside the plan, for `merge`, whose exit
    /// code is the run's verdict: a shard that finished exits 0, drift or not.
    #[arg(long, value_name = "K/N", value_parser = parse_shard, requires = "plan",
          env = "YUBA_RECONCILE_SHARD",
          conflicts_with_all = ["manifest", "source_inventory", "prefix"])]
    pub shard: Option<Shard>,
    /// The plan a shard belongs to: the folder `plan` wrote it to.
    #[arg(long, value_name = "S3_FOLDER", value_parser = parse_plan, requires = "shard",
          env = "YUBA_RECONCILE_PLAN")]
    pub plan: Option<PlanLocation>,
    /// Only sources last modified at or after this time (RFC 3339, or a date: 2026-11-01).
    #[arg(long, value_parser = parse_time)]
    pub since: Option<DateTime<Utc>>,
    /// Only sources last modified before this time.
    #[arg(long, value_parser = parse_time)]
    pub until: Option<DateTime<Utc>>,
    /// One JSON object per line on stdout: each finding, then a summary.
    #[arg(long, env = "YUBA_RECONCILE_JSON")]
    pub json: bool,
    /// Report what would be repaired; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Objects worked on at once (content checks, copies).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=1024), env = "YUBA_RECONCILE_CONCURRENCY")]
    pub concurrency: u16,
    /// At most this many objects per second.
    #[arg(long, value_parser = parse_rate, env = "YUBA_RECONCILE_MAX_RATE")]
    pub max_rate: Option<f64>,
    /// Keys per listing request and per checkpoint.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub page_size: u32,
    /// Where to save progress after each page [default: .yuba-reconciler-<command>.json].
    #[arg(long, env = "YUBA_RECONCILE_CHECKPOINT")]
    pub checkpoint: Option<PathBuf>,
    /// Save no progress (the run cannot be resumed).
    #[arg(long, conflicts_with_all = ["checkpoint", "resume"])]
    pub no_checkpoint: bool,
    /// Continue an interrupted run from its checkpoint.
    #[arg(long)]
    pub resume: bool,
}

impl Run {
    pub fn common(&self) -> &Common {
        match self {
            Run::Diff { common } | Run::Verify { common, .. } | Run::Backfill { common, .. } => {
                common
            }
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Run::Diff { .. } => "diff",
            Run::Verify { .. } => "verify",
            Run::Backfill { .. } => "backfill",
        }
    }
}

impl InventoryArgs {
    /// The inventory report to read instead of listing the source bucket, if one is named.
    pub fn source_inventory(&self) -> Option<SourceInventory> {
        Some(self.read(self.source_inventory.clone()?))
    }

    /// The report at `location`, read with these settings.
    pub fn read(&self, location: yuba_inventory::Location) -> SourceInventory {
        let spill_dir = self
            .inventory_spill_dir
            .clone()
            .unwrap_or_else(std::env::temp_dir);
        SourceInventory {
            location,
            max_age: Duration::from_secs(self.inventory_max_age * 3600),
            sort: SortSettings {
                spill_dir,
                memory_budget: usize::try_from(self.inventory_memory << 20).unwrap_or(usize::MAX),
            },
            bounds: KeyRange::ALL,
        }
    }
}

impl Common {
    pub fn checkpoint_path(&self, command: &str) -> Option<PathBuf> {
        if self.no_checkpoint {
            return None;
        }
        Some(self.checkpoint.clone().unwrap_or_else(|| match self.shard {
            // Shards may run side by side on one machine: one checkpoint each.
            Some(shard) => PathBuf::from(format!(
                ".yuba-reconciler-{command}-shard-{}-of-{}.json",
                shard.index, shard.of
            )),
            None => PathBuf::from(format!(".yuba-reconciler-{command}.json")),
        }))
    }
}

fn parse_time(text: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Ok(time.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|date| date.and_hms_opt(0, 0, 0))
        .map(|time| time.and_utc())
        .ok_or_else(|| {
            format!("{text:?} is not a time: use RFC 3339 (2026-11-01T12:00:00Z) or a date (2026-11-01, midnight UTC)")
        })
}

fn parse_inventory(text: &str) -> Result<yuba_inventory::Location, String> {
    yuba_inventory::Location::parse(text).map_err(|error| error.to_string())
}

fn parse_shard(text: &str) -> Result<Shard, String> {
    text.parse().map_err(|error: ShardError| error.to_string())
}

fn parse_plan(text: &str) -> Result<PlanLocation, String> {
    PlanLocation::parse(text).map_err(|error| error.to_string())
}

fn parse_rate(text: &str) -> Result<f64, String> {
    text.parse::<f64>()
        .ok()
        .filter(|rate| rate.is_finite() && *rate > 0.0)
        .ok_or_else(|| format!("{text:?}: give a positive number of objects per second"))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn times_are_rfc3339_or_dates() {
        assert_eq!(
            parse_time("2026-11-01").unwrap(),
            "2026-11-01T00:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert_eq!(
            parse_time("2026-11-01T01:00:00+01:00").unwrap(),
            "2026-11-01T00:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert!(parse_time("yesterday").unwrap_err().contains("RFC 3339"));
        assert!(parse_rate("0").is_err());
        assert!(parse_rate("-1").is_err());
        assert_eq!(parse_rate("2.5"), Ok(2.5));
    }

    #[test]
    fn an_inventory_is_a_manifest_or_a_folder_and_replaces_a_key_list() {
        let cli = Cli::try_parse_from([
            "yuba-reconciler",
            "diff",
            "--source-inventory",
            "s3://inventories/reports/photos/daily/",
            "--inventory-max-age",
            "200",
            "--inventory-memory",
            "64",
        ])
        .unwrap();
        let Command::Run(run) = &cli.command else {
            panic!("{cli:?}");
        };
        let inventory = run.common().inventory.source_inventory().unwrap();
        assert_eq!(inventory.location.bucket, "inventories");
        assert_eq!(inventory.max_age, Duration::from_secs(200 * 3600));
        assert_eq!(inventory.sort.memory_budget, 64 << 20);
        let refused = |args: &[&str]| {
            let mut all = vec!["yuba-reconciler", "diff"];
            all.extend(args);
            Cli::try_parse_from(all).unwrap_err().to_string()
        };
        assert!(
            refused(&["--source-inventory", "s3://inventories/reports/data.csv.gz"])
                .contains("name a report's manifest.json, or the folder")
        );
        assert!(
            refused(&[
                "--source-inventory",
                "s3://i/manifest.json",
                "--manifest",
                "keys.txt"
            ])
            .contains("cannot be used with")
        );
        assert!(
            refused(&[
                "--source-inventory",
                "s3://i/manifest.json",
                "--inventory-max-age",
                "0"
            ])
            .contains("--inventory-max-age")
        );
    }

    #[test]
    fn backfill_options_parse() {
        let cli = Cli::try_parse_from([
            "yuba-reconciler",
            "backfill",
            "--inline",
            "--verify",
            "--deep",
            "--prefix",
            "photos/",
            "--since",
            "2026-11-01",
        ])
        .unwrap();
        let Command::Run(Run::Backfill {
            inline,
            verify,
            deep,
            common,
            ..
        }) = &cli.command
        else {
            panic!("{cli:?}");
        };
        assert!(*inline && *verify && *deep);
        assert_eq!(common.prefix, "photos/");
        assert!(Cli::try_parse_from(["yuba-reconciler", "backfill", "--deep"]).is_err());
        assert!(Cli::try_parse_from(["yuba-reconciler", "backfill", "--metadata"]).is_err());
        assert!(Cli::try_parse_from(["yuba-reconciler", "verify", "--metadata"]).is_ok());
        assert!(
            Cli::try_parse_from(["yuba-reconciler", "diff", "--no-checkpoint", "--resume"])
                .is_err()
        );
    }
}
