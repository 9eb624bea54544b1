//! Splitting a listing into key ranges that are listed at once and still joined in key order.
//!
//! A flat listing is one request after another: each page needs the token of the one before.
//! One level of a delimiter listing of both buckets names the "directories" under a prefix, and
//! the keys under a directory are a contiguous run in UTF-8 byte order (every key that starts
//! with `p/` sorts after `p/` and before the first key that does not). So each directory is a
//! range of its own: listed and merge-joined separately, several at once, and emitted one range
//! after another, the pairs are still in key order and the checkpoint still means "every key up
//! to here is done".

use yuba_aws::ListedObject;
use yuba_gcs::ObjectInfo;

/// The delimiter of the hierarchy that ranges follow.
pub const DELIMITER: &str = "/";

/// The keys from `start` (inclusive) to `end` (exclusive), in UTF-8 byte order; `None` is
/// unbounded. Contiguous ranges, each starting where the one before ends, hold every key once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyRange {
    pub start: Option<String>,
    pub end: Option<String>,
}

impl KeyRange {
    /// Every key.
    pub const ALL: KeyRange = KeyRange {
        start: None,
        end: None,
    };

    /// No key: `["", "")`, the range a shard gets when there are more shards than keys.
    pub const EMPTY: KeyRange = KeyRange {
        start: Some(String::new()),
        end: Some(String::new()),
    };

    /// Whether it holds no key (it ends where it starts, or before).
    pub fn is_empty(&self) -> bool {
        matches!((&self.start, &self.end), (Some(start), Some(end)) if start >= end)
    }

    pub fn contains(&self, key: &str) -> bool {
        self.start.as_deref().is_none_or(|start| key >= start)
            && self.end.as_deref().is_none_or(|end| key < end)
    }
}

/// A run of keys, in key order with the ranges before and after it.
#[derive(Debug, Clone, PartialEq)]
pub enum Range {
    /// Keys a level listing returned itself (not under a deeper prefix), both sides sorted.
    Listed {
        sources: Vec<ListedObject>,
        replicas: Vec<ObjectInfo>,
    },
    /// Every key under this prefix, still to be listed.
    Prefix(String),
}

/// One level under a prefix, as both delimiter listings returned it (each sorted).
#[derive(Debug, Default)]
pub struct Level {
    pub sources: Vec<ListedObject>,
    pub source_prefixes: Vec<String>,
    pub replicas: Vec<ObjectInfo>,
    pub replica_prefixes: Vec<String>,
}

impl Level {
    /// The level's ranges in key order: its directories (present on either side) and, between
    /// them, runs of the keys it listed itself.
    pub fn into_ranges(self) -> Vec<Range> {
        let mut prefixes = self.source_prefixes;
        prefixes.extend(self.replica_prefixes);
        prefixes.sort_unstable();
        prefixes.dedup();
        let mut sources = self.sources.into_iter().peekable();
        let mut replicas = self.replicas.into_iter().peekable();
        let mut ranges = Vec::with_capacity(prefixes.len() * 2 + 1);
        let mut listed = |ranges: &mut Vec<Range>, bound: Option<&str>| {
            let before = |key: &str| bound.is_none_or(|bound| key < bound);
            let sources: Vec<ListedObject> =
                std::iter::from_fn(|| sources.next_if(|o| before(&o.key))).collect();
            let replicas: Vec<ObjectInfo> =
                std::iter::from_fn(|| replicas.next_if(|o| before(&o.name))).collect();
            if !sources.is_empty() || !replicas.is_empty() {
                ranges.push(Range::Listed { sources, replicas });
            }
        };
        for prefix in prefixes {
            listed(&mut ranges, Some(&prefix));
            ranges.push(Range::Prefix(prefix));
        }
        listed(&mut ranges, None);
        ranges
    }
}

/// The ranges, less the keys up to and including `after` (where a resumed run starts).
pub fn after(ranges: Vec<Range>, after: &str) -> Vec<Range> {
    ranges
        .into_iter()
        .filter_map(|range| match range {
            Range::Listed {
                mut sources,
                mut replicas,
            } => {
                sources.retain(|o| o.key.as_str() > after);
                replicas.retain(|o| o.name.as_str() > after);
                (!sources.is_empty() || !replicas.is_empty())
                    .then_some(Range::Listed { sources, replicas })
            }
            // A directory wholly before `after` is done; one that holds it is listed after it.
            Range::Prefix(prefix) => (prefix.as_str() > after || after.starts_with(&prefix))
                .then_some(Range::Prefix(prefix)),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::tests::{listed as source, record, stored};

    fn listed(key: &str) -> ListedObject {
        source(key, "e", 1)
    }

    fn replica(name: &str) -> ObjectInfo {
        stored(&record(name, "e", 1, 1), 1, 1)
    }

    fn shape(ranges: &[Range]) -> Vec<String> {
        ranges
            .iter()
            .map(|range| match range {
                Range::Listed { sources, replicas } => format!(
                    "listed s3[{}] gcs[{}]",
                    sources
                        .iter()
                        .map(|o| o.key.as_str())
                        .collect::<Vec<_>>()
                        .join(" "),
                    replicas
                        .iter()
                        .map(|o| o.name.as_str())
                        .collect::<Vec<_>>()
                        .join(" ")
                ),
                Range::Prefix(prefix) => format!("prefix {prefix}"),
            })
            .collect()
    }

    fn level() -> Level {
        // "b.jpg" < "b/" < "b0": a key can sort on either side of a directory of its name.
        Level {
            sources: vec![listed("a.jpg"), listed("b.jpg"), listed("b0"), listed("z")],
            source_prefixes: vec!["b/".into(), "c/".into()],
            replicas: vec![replica("a.jpg"), replica("b0"), replica("y")],
            replica_prefixes: vec!["_variants/".into(), "b/".into(), "d/".into()],
        }
    }

    #[test]
    fn a_level_becomes_its_directories_and_the_runs_of_keys_between_them_in_key_order() {
        assert_eq!(
            shape(&level().into_ranges()),
            [
                "prefix _variants/",
                "listed s3[a.jpg b.jpg] gcs[a.jpg]",
                "prefix b/",
                "listed s3[b0] gcs[b0]",
                "prefix c/",
                "prefix d/",
                "listed s3[z] gcs[y]",
            ]
        );
    }

    #[test]
    fn a_flat_level_is_one_run_and_an_empty_one_nothing() {
        let flat = Level {
            sources: vec![listed("a"), listed("b")],
            replicas: vec![replica("b")],
            ..Level::default()
        };
        assert_eq!(shape(&flat.into_ranges()), ["listed s3[a b] gcs[b]"]);
        assert!(Level::default().into_ranges().is_empty());
    }

    #[test]
    fn resuming_drops_what_is_done_and_keeps_the_directory_that_holds_the_position() {
        let ranges = level().into_ranges();
        assert_eq!(
            shape(&after(ranges.clone(), "b/x")),
            [
                "prefix b/",
                "listed s3[b0] gcs[b0]",
                "prefix c/",
                "prefix d/",
                "listed s3[z] gcs[y]"
            ]
        );
        assert_eq!(
            shape(&after(ranges.clone(), "b.jpg")),
            [
                "prefix b/",
                "listed s3[b0] gcs[b0]",
                "prefix c/",
                "prefix d/",
                "listed s3[z] gcs[y]"
            ]
        );
        assert_eq!(
            shape(&after(ranges.clone(), "a.jpg")),
            [
                "listed s3[b.jpg] gcs[]",
                "prefix b/",
                "listed s3[b0] gcs[b0]",
                "prefix c/",
                "prefix d/",
                "listed s3[z] gcs[y]"
            ]
        );
        assert_eq!(shape(&after(ranges, "y")), ["listed s3[z] gcs[]"]);
    }
}
