//! Judging a pair: its state from the listings (see [`classify`](crate::classify)), and with
//! `verify` the proof of what looks in sync (see [`content`](crate::content)), variants
//! included.

use std::sync::atomic::Ordering;

use chrono::{DateTime, Utc};
use yuba_gcs::ObjectInfo;
use yuba_model::{ErrorChain, ReplicaRecord, keys};

use super::run::RunContext;
use super::{Depth, Proof, Reconciler};
use crate::classify::{
    Companion, Kind, Pair, VariantCheck, Verdict, classify, classify_variant, judge_variant,
};
use crate::content::{ContentCheck, compare_deep, judge, judge_attributes};
use crate::report::{Action, Finding};

/// A classified pair; `forced` when a content check, not the listing, found the drift (the
/// worker's own check would not see it, so its job must be forced).
pub(super) struct Judged {
    pub(super) pair: Pair,
    pub(super) verdict: Verdict,
    pub(super) forced: bool,
    pub(super) verified: bool,
    /// The inventory report made it look drifting, and its source was looked up.
    pub(super) looked_up: bool,
}

impl Judged {
    pub(super) fn new(verdict: Verdict, pair: Pair) -> Judged {
        Judged {
            pair,
            verdict,
            forced: false,
            verified: false,
            looked_up: false,
        }
    }

    /// Whether its repair sends the original's content: not for variants the record lacks
    /// (the worker writes them and updates the record), nor for attributes alone; yes for
    /// variants a content check found absent or outdated (the job is forced, a copy).
    pub(super) fn copies_content(&self) -> bool {
        self.verdict.kind.needs_copy()
            && (self.forced || self.verdict.kind != Kind::VariantsMissing)
    }

    /// Whether a variant was judged, not a replica.
    pub(super) fn is_variant(&self) -> bool {
        listed_variant(&self.pair).is_some()
    }

    /// The finding a drifted pair is, with what was done about it.
    pub(super) fn into_finding(self, action: Option<Action>, error: Option<String>) -> Finding {
        let size = match (&self.pair.source, &self.pair.replica) {
            (Some(source), _) => source.size,
            (None, Some(replica)) => replica.size,
            (None, None) => 0,
        };
        Finding {
            kind: self.verdict.kind,
            key: self.pair.key,
            size,
            detail: self.verdict.detail,
            action,
            error,
        }
    }
}

impl Reconciler {
    /// Classifies a pair; with `verify`, proves the content of what the listing found in sync.
    /// `None`: outside `--since`/`--until`.
    pub(super) async fn judge(&self, context: &RunContext<'_>, pair: Pair) -> Option<Judged> {
        if !context.selection.admits(last_modified(&pair)) {
            return None;
        }
        if let Some(pacer) = &context.pacer {
            pacer.wait().await;
        }
        context.live.examined.fetch_add(1, Ordering::Relaxed);
        let mut judged = match listed_variant(&pair) {
            Some(variant) => Judged::new(self.judge_variant(context, variant).await, pair),
            None => {
                let verdict = classify(&pair, &self.buckets.source, &self.variants);
                if verdict.kind != Kind::InSync && context.selection.source_inventory.is_some() {
                    self.look_up_source(context, pair).await
                } else {
                    Judged::new(verdict, pair)
                }
            }
        };
        let (Some(proof), Kind::InSync) = (context.task.proof(), judged.verdict.kind) else {
            return Some(judged);
        };
        match self.prove(context, proof, &judged.pair).await {
            Some(ContentCheck::Verified(_)) => judged.verified = true,
            Some(ContentCheck::Drift(verdict)) => {
                judged.forced = verdict.kind.needs_copy();
                judged.verdict = verdict;
            }
            None => {}
        }
        Some(judged)
    }

    /// A pair an inventory report makes look drifting, judged again with its source as it is
    /// now: the report is a snapshot, and the source may have appeared, changed or gone since.
    async fn look_up_source(&self, context: &RunContext<'_>, mut pair: Pair) -> Judged {
        let head = {
            let _permit = context.io.acquire().await.ok();
            self.s3.head(&self.buckets.source, &pair.key).await
        };
        let verdict = match head {
            Ok(head) => {
                pair.source = head.map(|head| head.into_listed(pair.key.clone()));
                classify(&pair, &self.buckets.source, &self.variants)
            }
            Err(error) => Verdict::drift(
                Kind::Unverified,
                format!(
                    "the inventory report makes it look drifting, and the source's HEAD failed: {}",
                    ErrorChain(&error)
                ),
            ),
        };
        Judged {
            looked_up: true,
            ..Judged::new(verdict, pair)
        }
    }

    /// Proves the content of a pair the listing found in sync, variants included, and with
    /// `--metadata` its attributes; `None` for a replica without a record to prove it against.
    async fn prove(
        &self,
        context: &RunContext<'_>,
        proof: Proof,
        pair: &Pair,
    ) -> Option<ContentCheck> {
        let (Some(source), Some(replica)) = (&pair.source, &pair.replica) else {
            return None;
        };
        let Ok(Some(record)) = ReplicaRecord::from_metadata(&replica.metadata) else {
            return None;
        };
        let _permit = context.io.acquire().await.ok();
        // The checksums come with a HEAD, which `--metadata` then reads its attributes from.
        let mut head = None;
        let check = match proof.depth {
            Depth::Checksums => match self.s3.head(&self.buckets.source, &source.key).await {
                Ok(found) => {
                    let check = judge(source, found.as_ref(), replica, &record);
                    head = Some(found);
                    check
                }
                Err(error) => return Some(unreadable_source(&error)),
            },
            Depth::Deep => {
                compare_deep(
                    &self.s3,
                    &self.gcs,
                    &self.buckets.source,
                    &self.buckets.replica,
                    source,
                    replica,
                    &record,
                )
                .await
            }
        };
        let ContentCheck::Verified(basis) = check else {
            return Some(check);
        };
        if let Some(verdict) = self.check_variants(&pair.key, &record).await {
            return Some(ContentCheck::Drift(verdict));
        }
        if !proof.metadata {
            return Some(ContentCheck::Verified(basis));
        }
        let head = match head {
            Some(head) => head,
            None => match self.s3.head(&self.buckets.source, &source.key).await {
                Ok(head) => head,
                Err(error) => return Some(unreadable_source(&error)),
            },
        };
        Some(match judge_attributes(source, head.as_ref(), &record) {
            Some(verdict) => ContentCheck::Drift(verdict),
            None => ContentCheck::Verified(basis),
        })
    }

    /// A listed variant judged by its record and, unless that settles it, by its original's
    /// replica (one metadata read).
    async fn judge_variant(&self, context: &RunContext<'_>, variant: &ObjectInfo) -> Verdict {
        let (original, record) =
            match classify_variant(variant, &self.buckets.source, &self.variants) {
                VariantCheck::Settled(verdict) => return verdict,
                VariantCheck::Original { original, record } => (original, record),
            };
        let _permit = context.io.acquire().await.ok();
        match self
            .gcs
            .objects()
            .get(&self.buckets.replica, &original)
            .await
        {
            Ok(found) => judge_variant(variant, &record, found.as_ref(), &self.variants),
            Err(error) => Verdict::drift(
                Kind::Unverified,
                format!(
                    "could not read its original {original}: {}",
                    ErrorChain(&error)
                ),
            ),
        }
    }

    /// Whether every variant the record lists is there, made from this content.
    async fn check_variants(&self, key: &str, record: &ReplicaRecord) -> Option<Verdict> {
        for variant in &record.variants {
            let name = self.variants.name_of(key, variant);
            match self.gcs.objects().get(&self.buckets.replica, &name).await {
                Ok(None) => {
                    return Some(Verdict::drift(
                        Kind::VariantsMissing,
                        format!("variant {name} is absent"),
                    ));
                }
                Ok(Some(object))
                    if object.metadata.get(keys::SOURCE_SHA256) != record.sha256.as_ref() =>
                {
                    return Some(Verdict::drift(
                        Kind::VariantsMissing,
                        format!("variant {name} was made from other content"),
                    ));
                }
                Ok(Some(_)) => {}
                Err(error) => {
                    return Some(Verdict::drift(
                        Kind::Unverified,
                        format!("could not read variant {name}: {}", ErrorChain(&error)),
                    ));
                }
            }
        }
        None
    }
}

/// A source whose HEAD failed: neither its checksums nor its attributes can be proved.
fn unreadable_source(error: &yuba_aws::S3Error) -> ContentCheck {
    ContentCheck::Drift(Verdict::drift(
        Kind::Unverified,
        format!("could not read the source's HEAD: {}", ErrorChain(error)),
    ))
}

/// A variant listed with no source of its name: judged as a variant, not as a replica.
fn listed_variant(pair: &Pair) -> Option<&ObjectInfo> {
    match (&pair.source, &pair.replica) {
        (None, Some(replica)) if Companion::of(replica) == Some(Companion::Variant) => {
            Some(replica)
        }
        _ => None,
    }
}

/// The time `--since` and `--until` select a pair by: its source's, for a variant the time it
/// was made, or for an orphan the one its record kept.
fn last_modified(pair: &Pair) -> Option<DateTime<Utc>> {
    if let Some(variant) = listed_variant(pair) {
        return variant.created;
    }
    match (&pair.source, &pair.replica) {
        (Some(source), _) => source.last_modified,
        (None, Some(replica)) => ReplicaRecord::from_metadata(&replica.metadata)
            .ok()
            .flatten()
            .and_then(|record| record.source.last_modified),
        (None, None) => None,
    }
}
