//! What a run found and did: one [`Finding`] per drifting key, [`Counts`] for the summary.

use serde::{Deserialize, Serialize};
use yuba_events::Route;

use crate::classify::Kind;

/// How `verify` proved a replica's content equal to its source's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Basis {
    /// GCS's crc32c equals S3's full-object CRC32C.
    S3Crc32c,
    /// GCS's MD5 equals the source's single-part ETag.
    EtagMd5,
    /// GCS's crc32c equals the crc32c the worker recorded while copying a source whose ETag
    /// is unchanged: neither side changed since a verified copy.
    RecordedCrc32c,
    /// Both contents streamed and their sha256 compared (`--deep`).
    Sha256,
}

/// What was done about a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// A job is on this pool's work queue.
    Enqueued(Route),
    /// Copied in-process (`--inline`).
    Replicated,
    /// The replica's headers and user metadata brought up to date in-process (`--inline`),
    /// its content not sent again.
    AttributesUpdated,
    /// The variants a replica lacked written in-process (`--inline`), and its record updated to
    /// name them; the original's content not sent again.
    VariantsAdded,
    /// The orphan was deleted (`--delete-orphans`).
    Deleted,
    /// The worker's code found nothing to do after all (someone repaired it meanwhile).
    AlreadyDone,
    /// The repair failed (the finding's `error` says why).
    Failed,
    WouldCopy,
    /// A replicate job would bring the attributes up to date (a metadata update, no copy).
    WouldUpdate,
    /// A replicate job would write the missing variants (the original is not copied again).
    WouldAddVariants,
    WouldDelete,
    /// An orphan left in place: deleting needs `--delete-orphans`.
    Kept,
    /// Nothing can repair this by copying (content that could not be verified).
    None,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Enqueued(Route::Lambda) => "enqueued:lambda",
            Action::Enqueued(Route::Fargate) => "enqueued:fargate",
            Action::Replicated => "replicated",
            Action::AttributesUpdated => "attributes-updated",
            Action::VariantsAdded => "variants-added",
            Action::Deleted => "deleted",
            Action::AlreadyDone => "already-done",
            Action::Failed => "failed",
            Action::WouldCopy => "would-copy",
            Action::WouldUpdate => "would-update",
            Action::WouldAddVariants => "would-add-variants",
            Action::WouldDelete => "would-delete",
            Action::Kept => "kept",
            Action::None => "none",
        }
    }

    /// Whether the finding is repaired: done in this process. A job on a work queue is not
    /// (yet): it is counted as [`Counts::enqueued`], and only a verification after the workers
    /// took it can call it repaired.
    pub fn is_repair(self) -> bool {
        matches!(
            self,
            Action::Replicated
                | Action::AttributesUpdated
                | Action::VariantsAdded
                | Action::Deleted
                | Action::AlreadyDone
        )
    }
}

/// One key that is not in sync.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub kind: Kind,
    pub key: String,
    /// The source's size, or the replica's for an orphan.
    pub size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Set by `backfill`.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "serialize_action"
    )]
    pub action: Option<Action>,
    /// Why the repair failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

fn serialize_action<S: serde::Serializer>(
    action: &Option<Action>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match action {
        Some(action) => serializer.serialize_str(action.as_str()),
        None => serializer.serialize_none(),
    }
}

/// Running totals, saved in checkpoints so that a resumed run reports the whole job.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Counts {
    /// Source objects listed (or named by the manifest and found).
    pub listed_source: u64,
    pub listed_source_bytes: u64,
    /// Replicas listed (variants not included).
    pub listed_replica: u64,
    /// Variant objects seen in the replica listing.
    pub listed_variants: u64,
    /// Temporary parts of composite uploads seen in the replica listing.
    pub listed_upload_parts: u64,
    /// Objects under the deployment canary's prefix (`_yuba-canary/`), in either listing:
    /// left alone, never reported or deleted as orphans.
    pub listed_canary: u64,
    /// Keys outside `--since`/`--until`.
    pub skipped: u64,
    /// Manifest keys in neither bucket.
    pub not_found: u64,
    /// Keys an inventory report made look drifting, looked up in the source bucket before they
    /// were judged (`--source-inventory`).
    pub looked_up: u64,
    pub in_sync: u64,
    /// In sync and their content proved by `verify`.
    pub verified: u64,
    pub missing: u64,
    pub stale: u64,
    pub mismatch: u64,
    pub variants_missing: u64,
    pub orphan: u64,
    /// Variants whose original is gone, was made from other content, or whose profile is no
    /// longer configured.
    pub orphan_variants: u64,
    /// Replicas whose headers or user metadata are not their source's (`verify --metadata`).
    pub attributes: u64,
    pub unverified: u64,
    /// Source keys that cannot be replicated under their own name.
    pub refused: u64,
    /// Findings repaired in this process (replicated, deleted, or found done).
    pub repaired: u64,
    /// Findings handed to the workers as jobs on a work queue: not repaired until a later look
    /// finds them in sync.
    pub enqueued: u64,
    /// Enqueued keys looked at again once the workers took their jobs (`--verify-enqueued`):
    /// each then counted as repaired or failed.
    pub rechecked: u64,
    pub failed: u64,
    /// Orphans left in place (`--delete-orphans` not given, or not written by yuba).
    pub kept: u64,
    /// Findings no repair applies to (content that could not be verified).
    pub left: u64,
    /// Bytes copied by `--inline` repairs.
    pub bytes_copied: u64,
}

impl Counts {
    pub fn count(&mut self, kind: Kind) {
        *match kind {
            Kind::InSync => &mut self.in_sync,
            Kind::Missing => &mut self.missing,
            Kind::Stale => &mut self.stale,
            Kind::Mismatch => &mut self.mismatch,
            Kind::VariantsMissing => &mut self.variants_missing,
            Kind::Orphan => &mut self.orphan,
            Kind::OrphanVariant => &mut self.orphan_variants,
            Kind::Attributes => &mut self.attributes,
            Kind::Unverified => &mut self.unverified,
            Kind::Refused => &mut self.refused,
        } += 1;
    }

    pub fn count_action(&mut self, action: Action) {
        match action {
            action if action.is_repair() => self.repaired += 1,
            Action::Enqueued(_) => self.enqueued += 1,
            Action::Failed => self.failed += 1,
            Action::Kept => self.kept += 1,
            Action::None => self.left += 1,
            _ => {}
        }
    }

    /// Keys found not in sync (unverified ones included: they are not known to be).
    pub fn drift(&self) -> u64 {
        self.missing
            + self.stale
            + self.mismatch
            + self.variants_missing
            + self.orphan
            + self.orphan_variants
            + self.attributes
            + self.unverified
            + self.refused
    }

    pub fn add(&mut self, other: &Counts) {
        let Counts {
            listed_source,
            listed_source_bytes,
            listed_replica,
            listed_variants,
            listed_upload_parts,
            listed_canary,
            skipped,
            not_found,
            looked_up,
            in_sync,
            verified,
            missing,
            stale,
            mismatch,
            variants_missing,
            orphan,
            orphan_variants,
            attributes,
            unverified,
            refused,
            repaired,
            enqueued,
            rechecked,
            failed,
            kept,
            left,
            bytes_copied,
        } = other;
        self.listed_source += listed_source;
        self.listed_source_bytes += listed_source_bytes;
        self.listed_replica += listed_replica;
        self.listed_variants += listed_variants;
        self.listed_upload_parts += listed_upload_parts;
        self.listed_canary += listed_canary;
        self.skipped += skipped;
        self.not_found += not_found;
        self.looked_up += looked_up;
        self.in_sync += in_sync;
        self.verified += verified;
        self.missing += missing;
        self.stale += stale;
        self.mismatch += mismatch;
        self.variants_missing += variants_missing;
        self.orphan += orphan;
        self.orphan_variants += orphan_variants;
        self.attributes += attributes;
        self.unverified += unverified;
        self.refused += refused;
        self.repaired += repaired;
        self.enqueued += enqueued;
        self.rechecked += rechecked;
        self.failed += failed;
        self.kept += kept;
        self.left += left;
        self.bytes_copied += bytes_copied;
    }
}

/// The outcome of a run, and the exit code scripts see.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub command: String,
    #[serde(flatten)]
    pub counts: Counts,
    /// Continued from a checkpoint; the counts include the earlier run's.
    pub resumed: bool,
    pub dry_run: bool,
    pub elapsed_ms: u64,
    pub exit_code: i32,
    /// The shard of a plan this run was (`--shard`), with its key range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<ShardRange>,
    /// How many shards' summaries this one adds up (`merge`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shards: Option<u32>,
}

impl Summary {
    /// The command as a person reads it: `backfill (dry run)`.
    pub fn describe(&self) -> String {
        let dry = if self.dry_run { " (dry run)" } else { "" };
        format!("{}{dry}", self.command)
    }
}

/// A shard and the key range it covered: `[start, end)`, `None` unbounded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardRange {
    pub index: u32,
    pub of: u32,
    pub start: Option<String>,
    pub end: Option<String>,
}

/// 0: in sync (or everything repaired or enqueued: a backfill's jobs are the workers' to do, and
/// counted apart), 1: drift found (`diff`, `verify`, a dry run) or left unrepaired (`backfill`:
/// failed, orphans kept, content unverified), 2 is for errors and never comes from a finished
/// run.
pub fn exit_code(counts: &Counts, repairs: bool) -> i32 {
    let unresolved = if repairs {
        counts.failed + counts.kept + counts.left
    } else {
        counts.drift()
    };
    i32::from(unresolved > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_tell_drift_from_sync() {
        let mut counts = Counts::default();
        counts.count(Kind::InSync);
        assert_eq!(exit_code(&counts, false), 0);
        counts.count(Kind::Missing);
        assert_eq!(exit_code(&counts, false), 1, "diff found drift");
        counts.count_action(Action::Replicated);
        assert_eq!(exit_code(&counts, true), 0, "backfill repaired it");
        counts.count_action(Action::Enqueued(Route::Fargate));
        assert_eq!(
            exit_code(&counts, true),
            0,
            "the rest is the workers' to do"
        );
        assert_eq!((counts.repaired, counts.enqueued), (1, 1), "counted apart");
        counts.count_action(Action::Failed);
        assert_eq!(exit_code(&counts, true), 1, "backfill left drift");
        let mut kept = Counts::default();
        kept.count_action(Action::Kept);
        assert_eq!(
            exit_code(&kept, true),
            1,
            "an orphan left in place is drift left"
        );
    }

    #[test]
    fn findings_are_one_flat_json_object() {
        let finding = Finding {
            kind: Kind::VariantsMissing,
            key: "a.jpg".into(),
            size: 3,
            detail: Some("no thumb variant".into()),
            action: Some(Action::Enqueued(Route::Lambda)),
            error: None,
        };
        assert_eq!(
            serde_json::to_value(&finding).unwrap(),
            serde_json::json!({
                "kind": "variants-missing", "key": "a.jpg", "size": 3,
                "detail": "no thumb variant", "action": "enqueued:lambda"
            })
        );
    }

    #[test]
    fn counts_add_up_across_a_resume() {
        let mut first = Counts::default();
        first.count(Kind::Missing);
        first.listed_source = 10;
        let mut total = Counts::default();
        total.add(&first);
        total.add(&first);
        assert_eq!((total.missing, total.listed_source), (2, 20));
    }
}
