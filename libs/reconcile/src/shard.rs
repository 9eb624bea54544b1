//! Key-range shards: one reconcile run split into N contiguous key ranges that run apart (N
//! tasks at once) and are merged into one verdict.
//!
//! A plan step reads and sorts the inventory report once and cuts it into N parts of as many
//! source objects each (they differ by one at most), whatever the shape of the key space: the
//! cuts are made by count in the sorted report, never by guessing from key prefixes. Each part
//! is written as an inventory report of its own, beside the [`Plan`] that names the parts and
//! their key ranges, so a shard reads its part only. A shard's key range holds the replicas as
//! well as the sources between its boundaries: a replica whose source is gone (an orphan) falls
//! in exactly one shard, whichever its key.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use yuba_inventory::Location;

use crate::ranges::KeyRange;
use crate::report::{Counts, Summary};

/// The plan's name in its folder.
pub const PLAN_NAME: &str = "plan.json";
/// The version of the plan's format this build writes and reads.
pub const PLAN_VERSION: u32 = 1;
/// The most shards a run is split into: Step Functions' Distributed Map runs up to 10,000
/// child executions at once, ECS far fewer tasks; a thousand already makes shards of a million
/// objects out of a billion.
pub const MAX_SHARDS: u32 = 1000;

/// The K-th of N shards (`--shard K/N`), counted from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub index: u32,
    pub of: u32,
}

impl Shard {
    /// Every shard of `of`, in key order.
    pub fn all(of: u32) -> impl Iterator<Item = Shard> {
        (1..=of).map(move |index| Shard { index, of })
    }

    /// The folder (under the plan's) that holds this shard's part and summary.
    pub fn folder(self) -> String {
        format!("shard-{:04}-of-{:04}/", self.index, self.of)
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.of)
    }
}

impl FromStr for Shard {
    type Err = ShardError;

    fn from_str(text: &str) -> Result<Shard, ShardError> {
        let invalid = || ShardError::Spec(text.to_owned());
        let (index, of) = text.split_once('/').ok_or_else(invalid)?;
        let (index, of) = (
            index.trim().parse::<u32>().map_err(|_| invalid())?,
            of.trim().parse::<u32>().map_err(|_| invalid())?,
        );
        if index == 0 || index > of || of > MAX_SHARDS {
            return Err(invalid());
        }
        Ok(Shard { index, of })
    }
}

/// Where a plan is kept: a folder in S3 (`s3://bucket/folder/`) that holds `plan.json`, each
/// shard's part of the report and each shard's summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanLocation {
    pub bucket: String,
    /// Empty, or ending in `/`.
    pub folder: String,
}

impl PlanLocation {
    pub fn parse(text: &str) -> Result<PlanLocation, ShardError> {
        let invalid = |why: &str| ShardError::Location {
            location: text.to_owned(),
            why: why.to_owned(),
        };
        let rest = text
            .strip_prefix("s3://")
            .ok_or_else(|| invalid("it does not start with s3://"))?;
        let (bucket, folder) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(invalid("it names no bucket"));
        }
        if !(folder.is_empty() || folder.ends_with('/')) {
            return Err(invalid("name a folder: end it with /"));
        }
        Ok(PlanLocation {
            bucket: bucket.to_owned(),
            folder: folder.to_owned(),
        })
    }

    /// The plan's key.
    pub fn plan_key(&self) -> String {
        format!("{}{PLAN_NAME}", self.folder)
    }

    /// The key of `name` in `shard`'s folder.
    pub fn shard_key(&self, shard: Shard, name: &str) -> String {
        format!("{}{}{name}", self.folder, shard.folder())
    }
}

impl fmt::Display for PlanLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.folder)
    }
}

/// A plan's shard: its key range, what its part of the report holds, and where that part is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedShard {
    /// The first key of the range (`None`: from the start of the key space).
    pub start: Option<String>,
    /// The first key past the range (`None`: to the end of the key space).
    pub end: Option<String>,
    /// Source objects in the shard's part of the report.
    pub objects: u64,
    pub bytes: u64,
    /// The part's manifest, a key in the plan's bucket.
    pub manifest: String,
}

impl PlannedShard {
    pub fn range(&self) -> KeyRange {
        KeyRange {
            start: self.start.clone(),
            end: self.end.clone(),
        }
    }
}

/// How a run was split: written once by the plan step, read by every shard and by the merge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub version: u32,
    pub source_bucket: String,
    /// The report the plan was made from (its manifest).
    pub inventory: String,
    /// When that report began: each part carries it, so a shard refuses a stale plan as it would
    /// a stale report.
    pub inventory_created: DateTime<Utc>,
    pub planned_at: DateTime<Utc>,
    /// In key order: shard K is `shards[K - 1]`.
    pub shards: Vec<PlannedShard>,
}

impl Plan {
    /// Reads a plan, refusing one this build does not know or whose shards do not cover every
    /// key exactly once.
    pub fn parse(bytes: &[u8]) -> Result<Plan, ShardError> {
        let plan: Plan = serde_json::from_slice(bytes)
            .map_err(|error| ShardError::Unreadable(error.to_string()))?;
        if plan.version != PLAN_VERSION {
            return Err(ShardError::Version(plan.version));
        }
        let ranges: Vec<KeyRange> = plan.shards.iter().map(PlannedShard::range).collect();
        if let Some(why) = coverage_gap(&ranges) {
            return Err(ShardError::Coverage(why));
        }
        Ok(plan)
    }

    /// Shard `shard`'s part of the report (its manifest, in the plan's folder `at`) and its key
    /// range.
    pub fn part(
        &self,
        shard: Shard,
        at: &PlanLocation,
    ) -> Result<(Location, KeyRange), ShardError> {
        let planned = self.shard(shard)?;
        let manifest = Location {
            bucket: at.bucket.clone(),
            key: planned.manifest.clone(),
        };
        Ok((manifest, planned.range()))
    }

    /// Shard `shard` of the plan, if the plan has that many shards.
    pub fn shard(&self, shard: Shard) -> Result<&PlannedShard, ShardError> {
        let planned = u32::try_from(self.shards.len()).unwrap_or(u32::MAX);
        if shard.of != planned {
            return Err(ShardError::Count { shard, planned });
        }
        let index = usize::try_from(shard.index - 1).unwrap_or(usize::MAX);
        self.shards
            .get(index)
            .ok_or(ShardError::Count { shard, planned })
    }
}

/// Why contiguous ranges, in order, would not hold every key exactly once: the first must start
/// at the start of the key space, the last end at its end, and each that holds keys start where
/// the one before that holds keys ends. An empty range (`start == end`) holds no key and may be
/// anywhere.
pub fn coverage_gap(ranges: &[KeyRange]) -> Option<String> {
    let holding: Vec<&KeyRange> = ranges.iter().filter(|range| !range.is_empty()).collect();
    let (Some(first), Some(last)) = (holding.first(), holding.last()) else {
        return Some("no shard holds any key".to_owned());
    };
    if first.start.is_some() {
        return Some("the keys before the first shard's start are in no shard".to_owned());
    }
    if last.end.is_some() {
        return Some("the keys after the last shard's end are in no shard".to_owned());
    }
    for pair in holding.windows(2) {
        let (before, after) = (pair[0], pair[1]);
        if before.end.is_none() || before.end != after.start {
            return Some(format!(
                "a shard ends at {:?} and the next that holds keys starts at {:?}",
                before.end, after.start
            ));
        }
    }
    None
}

/// Cuts a sorted report into N shards of as many keys each, as its keys come: key `i` of
/// `expected` goes to shard `floor(i * N / expected)`, so shard sizes differ by one at most.
/// Each shard's range starts at its first key and ends where the next shard's first key is; the
/// first starts at the start of the key space and the last that holds keys runs to its end.
/// `expected` may be more than the keys that come (a key listed twice is kept once): the last
/// shards then get fewer, or none (an empty range).
#[derive(Debug)]
pub struct Cutter {
    of: u32,
    expected: u64,
    placed: u64,
    /// The shard keys go to now (counted from 0), and where its range starts.
    open: (u32, Option<String>),
}

impl Cutter {
    pub fn new(of: u32, expected: u64) -> Cutter {
        Cutter {
            of: of.max(1),
            expected: expected.max(1),
            placed: 0,
            open: (0, None),
        }
    }

    /// Places the next key in key order: returns the shards it closes (counted from 0, with
    /// their ranges), in order; the key is then in shard [`open`](Cutter::open).
    pub fn place(&mut self, key: &str) -> Vec<(u32, KeyRange)> {
        let shard = u128::from(self.placed) * u128::from(self.of) / u128::from(self.expected);
        let shard = u32::try_from(shard).unwrap_or(u32::MAX).min(self.of - 1);
        self.placed += 1;
        let mut closed = Vec::new();
        while self.open.0 < shard {
            let start = self.open.1.replace(key.to_owned());
            let range = KeyRange {
                start,
                end: Some(key.to_owned()),
            };
            closed.push((self.open.0, range));
            self.open.0 += 1;
        }
        closed
    }

    /// The shard the last key placed is in (counted from 0).
    pub fn open(&self) -> u32 {
        self.open.0
    }

    /// Closes the rest: the open shard runs to the end of the key space, any after it is empty.
    pub fn finish(self) -> Vec<(u32, KeyRange)> {
        let (open, start) = self.open;
        std::iter::once((open, KeyRange { start, end: None }))
            .chain((open + 1..self.of).map(|shard| (shard, KeyRange::EMPTY)))
            .collect()
    }
}

/// The verdict of a sharded run: the summaries of a plan's shards (shard K's at K - 1, `None`
/// where it kept none) added up. Every shard must have finished the same command; the exit code
/// is the worst shard's (drift or an unrepaired finding in any shard is the run's), which is what
/// the added counts give.
pub fn merge(summaries: &[Option<Summary>]) -> Result<Summary, ShardError> {
    let planned = u32::try_from(summaries.len()).unwrap_or(u32::MAX);
    let missing: Vec<String> = (1..=planned)
        .zip(summaries)
        .filter(|(_, summary)| summary.is_none())
        .map(|(index, _)| index.to_string())
        .collect();
    if !missing.is_empty() {
        return Err(ShardError::Incomplete {
            missing: missing.join(", "),
            planned,
        });
    }
    let summaries: Vec<&Summary> = summaries.iter().flatten().collect();
    let first = *summaries.first().ok_or(ShardError::NoShards)?;
    let mut counts = Counts::default();
    let (mut elapsed_ms, mut resumed, mut worst) = (0, false, 0);
    for summary in &summaries {
        if summary.command != first.command || summary.dry_run != first.dry_run {
            return Err(ShardError::Mixed {
                first: first.describe(),
                other: summary.describe(),
            });
        }
        counts.add(&summary.counts);
        elapsed_ms = elapsed_ms.max(summary.elapsed_ms);
        resumed |= summary.resumed;
        worst = worst.max(summary.exit_code);
    }
    Ok(Summary {
        command: first.command.clone(),
        exit_code: worst,
        counts,
        resumed,
        dry_run: first.dry_run,
        elapsed_ms,
        shard: None,
        shards: Some(planned),
    })
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ShardError {
    #[error("the plan location {location:?} is not usable: {why} (s3://bucket/folder/)")]
    Location { location: String, why: String },
    #[error(
        "{0:?} is not a shard: give --shard K/N, the K-th of N shards (1 <= K <= N <= {MAX_SHARDS})"
    )]
    Spec(String),
    #[error(
        "--shard {shard} does not fit the plan, which has {planned} shards: give --shard K/{planned}, or make a plan of {} shards",
        shard.of
    )]
    Count { shard: Shard, planned: u32 },
    #[error("the plan is not a yuba plan.json: {0}")]
    Unreadable(String),
    #[error(
        "the plan is of format version {0}; this yuba reads version {PLAN_VERSION}: make the plan again with this version"
    )]
    Version(u32),
    #[error("the plan's shards do not cover every key once ({0}): make the plan again")]
    Coverage(String),
    #[error("the plan has no shard")]
    NoShards,
    #[error(
        "shards {missing} of the plan's {planned} have no summary: run them (each alone, with --shard K/{planned}) before merging"
    )]
    Incomplete { missing: String, planned: u32 },
    #[error(
        "the shards ran different commands ({first}, {other}): run every shard with the same command, then merge"
    )]
    Mixed { first: String, other: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shard_is_k_of_n_counted_from_one() {
        assert_eq!("3/16".parse::<Shard>().unwrap(), Shard { index: 3, of: 16 });
        for bad in ["0/4", "5/4", "1/0", "4", "a/4", "1/1001", "-1/4", ""] {
            let error = bad.parse::<Shard>().unwrap_err();
            assert!(error.to_string().contains("--shard K/N"), "{bad}: {error}");
        }
        assert_eq!(Shard { index: 3, of: 16 }.folder(), "shard-0003-of-0016/");
    }

    #[test]
    fn a_plan_location_is_a_folder_in_s3() {
        let at = PlanLocation::parse("s3://plans/runs/2026-12-05/").unwrap();
        assert_eq!(at.plan_key(), "runs/2026-12-05/plan.json");
        assert_eq!(
            at.shard_key(Shard { index: 2, of: 4 }, "summary.json"),
            "runs/2026-12-05/shard-0002-of-0004/summary.json"
        );
        assert_eq!(
            PlanLocation::parse("s3://plans").unwrap().plan_key(),
            "plan.json"
        );
        for bad in ["plans/runs/", "s3:///runs/", "s3://plans/runs/plan.json"] {
            assert!(PlanLocation::parse(bad).is_err(), "{bad}");
        }
    }

    /// Splits `keys` (sorted) as the plan step does: each shard's range and keys.
    fn split(keys: &[String], of: u32, expected: u64) -> Vec<(KeyRange, Vec<String>)> {
        let mut cutter = Cutter::new(of, expected);
        let mut ranges = Vec::new();
        let mut held: Vec<Vec<String>> = vec![Vec::new(); of as usize];
        for key in keys {
            ranges.extend(cutter.place(key));
            held[cutter.open() as usize].push(key.clone());
        }
        ranges.extend(cutter.finish());
        let order: Vec<u32> = ranges.iter().map(|(shard, _)| *shard).collect();
        assert_eq!(
            order,
            (0..of).collect::<Vec<_>>(),
            "each shard closed once, in order"
        );
        ranges
            .into_iter()
            .map(|(_, range)| range)
            .zip(held)
            .collect()
    }

    fn skewed_key_spaces() -> Vec<Vec<String>> {
        let huge_prefix: Vec<String> = (0..5000)
            .map(|i| format!("photos/2026/{i:06}.jpg"))
            .chain(["a.jpg".to_owned(), "z/last.png".to_owned()])
            .collect();
        let unicode: Vec<String> = (0..700)
            .flat_map(|i| {
                [
                    format!("写真/{i}.jpg"),
                    format!("café/{i}.jpg"),
                    format!("😀/{i}"),
                    format!("Zoë {i}+plus.jpg"),
                ]
            })
            .collect();
        let last_byte: Vec<String> = (0u8..=127)
            .filter(|byte| byte.is_ascii_graphic())
            .map(|byte| format!("same/prefix/{}", byte as char))
            .collect();
        [huge_prefix, unicode, last_byte]
            .into_iter()
            .map(|mut keys| {
                keys.sort();
                keys.dedup();
                keys
            })
            .collect()
    }

    #[test]
    fn shards_cover_every_key_once_on_skewed_key_spaces() {
        for keys in skewed_key_spaces() {
            for of in [1, 2, 3, 16, 64, 200] {
                for expected in [keys.len() as u64, keys.len() as u64 + 7] {
                    let shards = split(&keys, of, expected);
                    let ranges: Vec<KeyRange> = shards.iter().map(|(r, _)| r.clone()).collect();
                    assert_eq!(shards.len(), of as usize);
                    assert_eq!(coverage_gap(&ranges), None, "{of} shards of {}", keys.len());
                    // Every key of the report, and keys that are in no report (orphans) before,
                    // between and after them, is in exactly one shard's range...
                    let probes = keys
                        .iter()
                        .flat_map(|key| [key.clone(), format!("{key}\u{0}"), format!("{key}~")]);
                    for probe in probes.chain(["".to_owned(), "\u{10FFFF}".to_owned()]) {
                        let holding = ranges.iter().filter(|r| r.contains(&probe)).count();
                        assert_eq!(holding, 1, "{probe:?} in {holding} of {of} shards");
                    }
                    // ...each shard's keys are the ones in its range...
                    for (range, held) in &shards {
                        assert!(held.iter().all(|key| range.contains(key)));
                    }
                    // ...and the shards are balanced when the count is exact.
                    if expected == keys.len() as u64 {
                        let sizes: Vec<usize> = shards.iter().map(|(_, k)| k.len()).collect();
                        let (min, max) = (sizes.iter().min(), sizes.iter().max());
                        assert!(max.unwrap() - min.unwrap() <= 1, "{sizes:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn a_plan_with_a_gap_or_an_overlap_is_refused() {
        let range = |start: Option<&str>, end: Option<&str>| KeyRange {
            start: start.map(str::to_owned),
            end: end.map(str::to_owned),
        };
        assert_eq!(coverage_gap(&[KeyRange::ALL]), None);
        assert_eq!(
            coverage_gap(&[
                range(None, Some("m")),
                KeyRange::EMPTY,
                range(Some("m"), None)
            ]),
            None
        );
        for bad in [
            vec![range(None, Some("m")), range(Some("n"), None)],
            vec![range(None, Some("n")), range(Some("m"), None)],
            vec![range(Some("a"), None)],
            vec![range(None, Some("z"))],
            vec![KeyRange::EMPTY],
        ] {
            assert!(coverage_gap(&bad).is_some(), "{bad:?}");
        }
    }

    /// A finished shard's summary.
    fn summary(command: &str, counts: Counts, elapsed_ms: u64) -> Option<Summary> {
        use crate::report::exit_code;
        let exit_code = exit_code(&counts, command == "backfill");
        Some(Summary {
            command: command.to_owned(),
            counts,
            resumed: false,
            dry_run: false,
            elapsed_ms,
            exit_code,
            shard: None,
            shards: None,
        })
    }

    #[test]
    fn merged_counts_add_and_any_shards_drift_is_the_runs() {
        let clean = Counts {
            listed_source: 10,
            in_sync: 10,
            ..Counts::default()
        };
        let drifting = Counts {
            listed_source: 5,
            in_sync: 4,
            missing: 1,
            ..Counts::default()
        };
        let merged = merge(&[
            summary("diff", clean.clone(), 30),
            summary("diff", drifting, 50),
        ])
        .unwrap();
        assert_eq!(merged.counts.listed_source, 15);
        assert_eq!(merged.counts.missing, 1);
        assert_eq!(merged.exit_code, 1);
        assert_eq!(merged.elapsed_ms, 50, "the shards ran at once");
        assert_eq!(merged.shards, Some(2));
        let clean_run = merge(&[
            summary("diff", clean.clone(), 1),
            summary("diff", clean.clone(), 1),
        ])
        .unwrap();
        assert_eq!(clean_run.exit_code, 0);

        let error = merge(&[None, summary("diff", clean.clone(), 1), None]).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("shards 1, 3 of the plan's 3 have no summary"),
            "{error}"
        );
        let error = merge(&[
            summary("diff", clean.clone(), 1),
            summary("backfill", clean, 1),
        ])
        .unwrap_err();
        assert!(matches!(error, ShardError::Mixed { .. }), "{error}");
    }
}
