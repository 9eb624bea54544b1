//! The pages of a listing run: the key space split at its directories into ranges (see
//! [`ranges`](crate::ranges)), each listed on both sides and merge-joined, passed on in key
//! order.

use std::collections::VecDeque;
use std::pin::pin;

use futures::{Stream, StreamExt, TryStreamExt, stream};
use tokio::sync::mpsc;
use yuba_aws::ListedObject;
use yuba_gcs::{ListQuery, ObjectInfo};
use yuba_model::CANARY_PREFIX;

use super::listing::{ListingFailure, listed, with_retries};
use super::{ReconcileError, Reconciler};
use crate::checkpoint::Position;
use crate::classify::{Companion, Pair};
use crate::join::{Join, Step};
use crate::ranges::{self, KeyRange, Level, Range};
use crate::report::Counts;

/// A level with fewer directories than this is split further, to have ranges enough to list
/// at once...
const RANGES_WANTED: usize = 16;
/// ...down to this many levels under the prefix, so that planning stays a handful of requests.
const EXPLORE_DEPTH: u32 = 3;

/// One page of pairs, with what the listing counted while making it.
#[derive(Debug, Default)]
pub(super) struct PairPage {
    pub(super) pairs: Vec<Pair>,
    pub(super) listed: Counts,
    /// Where the run is once this page is done; `None` for a page that adds only counts.
    pub(super) position: Option<Position>,
}

impl PairPage {
    /// Adds a pair, counting what the listings held.
    pub(super) fn push(&mut self, pair: Pair) {
        if let Some(source) = &pair.source {
            self.listed.listed_source += 1;
            self.listed.listed_source_bytes += source.size;
        }
        // A variant was counted as one when listed (`leaves_out`).
        if pair
            .replica
            .as_ref()
            .is_some_and(|replica| Companion::of(replica).is_none())
        {
            self.listed.listed_replica += 1;
        }
        self.pairs.push(pair);
    }

    /// Counts a listed object that is a companion of the replicas rather than one, and says
    /// whether it stays out of the join. Variants stay in: one with no source of its name is
    /// judged as a variant (an orphan if nothing will serve or replace it).
    pub(super) fn leaves_out(&mut self, object: &ObjectInfo) -> bool {
        let counter = match Companion::of(object) {
            Some(Companion::Variant) => {
                self.listed.listed_variants += 1;
                return false;
            }
            Some(Companion::UploadPart) => &mut self.listed.listed_upload_parts,
            Some(Companion::Canary) => &mut self.listed.listed_canary,
            None => return false,
        };
        *counter += 1;
        true
    }

    /// Appends the next page (in key order): its pairs, its counts and its position.
    fn absorb(&mut self, page: PairPage) {
        self.pairs.extend(page.pairs);
        self.listed.add(&page.listed);
        if page.position.is_some() {
            self.position = page.position;
        }
    }
}

impl Reconciler {
    /// Lists both buckets and merge-joins them into pages, in key order. The key space is split
    /// at its directories (see [`ranges`](crate::ranges)) and up to `ranges_in_flight` ranges
    /// are listed at once; their pages are passed on one range after another, small ones merged
    /// up to `page_size` pairs.
    pub(super) fn listing_pages(
        &self,
        prefix: String,
        position: Option<Position>,
        page_size: u32,
        ranges_in_flight: usize,
    ) -> PageReceiver {
        let after = Position::after_key(position);
        let this = self.clone();
        let ranges = stream::once(async move {
            let mut ranges = this.explore(prefix, 0, page_size, ranges_in_flight).await?;
            if let Some(after) = &after {
                ranges = ranges::after(ranges, after);
            }
            tracing::info!(
                ranges = ranges.len(),
                at_once = ranges_in_flight,
                "listing the key space in ranges"
            );
            let started = ranges
                .into_iter()
                .map(move |range| Ok(this.range_pages(range, after.clone(), page_size)));
            Ok::<_, ReconcileError>(stream::iter(started))
        })
        .try_flatten();
        in_key_order(ranges, ranges_in_flight, page_size)
    }

    /// The ranges under `prefix`: its directories and the keys between them, descending into
    /// the directories while a level has fewer than [`RANGES_WANTED`]. A level too large for
    /// one page of a delimiter listing is listed flat, as one range.
    fn explore(
        &self,
        prefix: String,
        depth: u32,
        page_size: u32,
        in_flight: usize,
    ) -> futures::future::BoxFuture<'_, Result<Vec<Range>, ReconcileError>> {
        Box::pin(async move {
            let Some(level) = self.level(&prefix, page_size).await? else {
                return Ok(vec![Range::Prefix(prefix)]);
            };
            let ranges = level.into_ranges();
            let directories = ranges
                .iter()
                .filter(|range| matches!(range, Range::Prefix(_)))
                .count();
            if depth + 1 >= EXPLORE_DEPTH || directories == 0 || directories >= RANGES_WANTED {
                return Ok(ranges);
            }
            let expanded: Vec<Vec<Range>> = stream::iter(ranges)
                .map(|range| async move {
                    match range {
                        Range::Prefix(prefix) => {
                            self.explore(prefix, depth + 1, page_size, in_flight).await
                        }
                        listed @ Range::Listed { .. } => Ok(vec![listed]),
                    }
                })
                .buffered(in_flight)
                .try_collect()
                .await?;
            Ok(expanded.into_iter().flatten().collect())
        })
    }

    /// One level under `prefix` from both buckets, if it fits in one page on each side.
    async fn level(&self, prefix: &str, page_size: u32) -> Result<Option<Level>, ReconcileError> {
        let s3_query = yuba_aws::ListQuery {
            prefix,
            delimiter: Some(ranges::DELIMITER),
            page_size,
            ..yuba_aws::ListQuery::default()
        };
        let gcs_query = ListQuery {
            prefix,
            delimiter: Some(ranges::DELIMITER),
            page_size,
            ..ListQuery::default()
        };
        let (source_what, replica_what) = (
            format!("listing s3://{}/{prefix}", self.buckets.source),
            format!("listing gs://{}/{prefix}", self.buckets.replica),
        );
        let (sources, replicas) = tokio::join!(
            with_retries(&source_what, || async {
                self.s3
                    .list(&self.buckets.source, &s3_query)
                    .await
                    .map_err(|error| ListingFailure::s3(&source_what, error))
            }),
            with_retries(&replica_what, || async {
                self.gcs
                    .objects()
                    .list(&self.buckets.replica, &gcs_query)
                    .await
                    .map_err(|error| ListingFailure::gcs(&replica_what, error))
            }),
        );
        let (sources, replicas) = (sources?, replicas?);
        if sources.continuation.is_some() || replicas.next_page_token.is_some() {
            return Ok(None);
        }
        Ok(Some(Level {
            sources: sources.objects,
            source_prefixes: sources.prefixes,
            replicas: replicas.objects,
            replica_prefixes: replicas.prefixes,
        }))
    }

    /// The pages of one range: listed (past `after`, the position a run resumes from) and
    /// merge-joined.
    fn range_pages(&self, range: Range, after: Option<String>, page_size: u32) -> PageReceiver {
        let (sources, replicas) = match range {
            Range::Prefix(prefix) => (
                self.list_sources(prefix.clone(), after.clone(), page_size),
                self.list_replicas(prefix, KeyRange::ALL, after, page_size),
            ),
            Range::Listed { sources, replicas } => (listed(sources), listed(replicas)),
        };
        join_pages(sources, replicas, page_size)
    }
}

/// Pages of pairs as they are made, in key order.
pub(super) type PageReceiver = mpsc::Receiver<Result<PairPage, ReconcileError>>;

/// The pages of contiguous key ranges, given in key order, passed on in key order: up to
/// `in_flight` ranges make their pages at once (a range starts when `ranges` yields it), and
/// their pages are passed on one range after another, small ones merged up to `page_size`
/// pairs.
pub(super) fn in_key_order(
    ranges: impl Stream<Item = Result<PageReceiver, ReconcileError>> + Send + 'static,
    in_flight: usize,
    page_size: u32,
) -> PageReceiver {
    let pairs_per_page = usize::try_from(page_size).unwrap_or(1000);
    let (pages, receiver) = mpsc::channel(1);
    tokio::spawn(async move {
        let result: Result<(), ReconcileError> = async {
            let mut ranges = pin!(ranges);
            let mut ranges_left = true;
            let mut started = VecDeque::with_capacity(in_flight);
            let mut pending = PairPage::default();
            loop {
                while ranges_left && started.len() < in_flight {
                    match ranges.next().await {
                        Some(range) => started.push_back(range?),
                        None => ranges_left = false,
                    }
                }
                let Some(head) = started.front_mut() else {
                    break;
                };
                let Some(page) = head.recv().await else {
                    started.pop_front();
                    continue;
                };
                let page = page?;
                if !pending.pairs.is_empty()
                    && pending.pairs.len() + page.pairs.len() > pairs_per_page
                    && pages.send(Ok(std::mem::take(&mut pending))).await.is_err()
                {
                    return Ok(());
                }
                pending.absorb(page);
                if pending.pairs.len() >= pairs_per_page
                    && pages.send(Ok(std::mem::take(&mut pending))).await.is_err()
                {
                    return Ok(());
                }
            }
            let _ = pages.send(Ok(pending)).await;
            Ok(())
        }
        .await;
        if let Err(error) = result {
            let _ = pages.send(Err(error)).await;
        }
    });
    receiver
}

/// The pages of two listings merge-joined: pairs in key order, `page_size` to a page.
pub(super) fn join_pages(
    mut sources: mpsc::Receiver<Result<(Vec<ListedObject>, bool), ReconcileError>>,
    mut replicas: mpsc::Receiver<Result<(Vec<ObjectInfo>, bool), ReconcileError>>,
    page_size: u32,
) -> PageReceiver {
    let page_size = usize::try_from(page_size).unwrap_or(1000);
    let (pages, receiver) = mpsc::channel(1);
    tokio::spawn(async move {
        let mut join = Join::new();
        let mut page = PairPage::default();
        let result: Result<(), ReconcileError> = async {
            loop {
                match join.next_step() {
                    Step::Pair(pair) => {
                        page.position = Some(Position::AfterKey(pair.key.clone()));
                        page.push(*pair);
                        if page.pairs.len() >= page_size
                            && pages.send(Ok(std::mem::take(&mut page))).await.is_err()
                        {
                            return Ok(());
                        }
                    }
                    Step::NeedSources => match sources.recv().await {
                        Some(listed) => {
                            let (mut objects, last) = listed?;
                            // The canary's prefix is its own in the source bucket too
                            // (its replicas are left out of the other side): such a key
                            // would otherwise be reported missing on every run.
                            objects.retain(|object| {
                                let canary = object.key.starts_with(CANARY_PREFIX);
                                page.listed.listed_canary += u64::from(canary);
                                !canary
                            });
                            join.feed_sources(objects, last)?;
                        }
                        None => return Ok(()),
                    },
                    Step::NeedReplicas => match replicas.recv().await {
                        Some(listed) => {
                            let (objects, last) = listed?;
                            let replicas: Vec<ObjectInfo> = objects
                                .into_iter()
                                .filter(|object| !page.leaves_out(object))
                                .collect();
                            join.feed_replicas(replicas, last)?;
                        }
                        None => return Ok(()),
                    },
                    Step::Done => {
                        let _ = pages.send(Ok(page)).await;
                        return Ok(());
                    }
                }
            }
        }
        .await;
        if let Err(error) = result {
            let _ = pages.send(Err(error)).await;
        }
    });
    receiver
}
