//! The merge-join of two listings sorted by key: pure, fed one page at a time, so memory is a
//! page or two whatever the bucket size.

use std::collections::VecDeque;

use thiserror::Error;
use yuba_aws::ListedObject;
use yuba_gcs::ObjectInfo;

use crate::classify::Pair;

/// What the join needs next.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    Pair(Box<Pair>),
    /// Feed the next page of the S3 listing.
    NeedSources,
    /// Feed the next page of the GCS listing.
    NeedReplicas,
    Done,
}

#[derive(Debug, Error, PartialEq, Eq)]
#[error(
    "the {side} listing is not in key order ({previous:?} came before {next:?}); a merge-join \
     needs both servers to list in UTF-8 byte order, as S3 and GCS do"
)]
pub struct OrderError {
    pub side: &'static str,
    pub previous: String,
    pub next: String,
}

/// Both listings, as far as they have been fed, and where each ended.
#[derive(Debug, Default)]
pub struct Join {
    sources: VecDeque<ListedObject>,
    replicas: VecDeque<ObjectInfo>,
    sources_done: bool,
    replicas_done: bool,
    last_source: Option<String>,
    last_replica: Option<String>,
}

impl Join {
    pub fn new() -> Join {
        Join::default()
    }

    /// `last`: the listing has no more pages.
    pub fn feed_sources(&mut self, page: Vec<ListedObject>, last: bool) -> Result<(), OrderError> {
        for object in page {
            ascending("S3", &mut self.last_source, &object.key)?;
            self.sources.push_back(object);
        }
        self.sources_done = last;
        Ok(())
    }

    pub fn feed_replicas(&mut self, page: Vec<ObjectInfo>, last: bool) -> Result<(), OrderError> {
        for object in page {
            ascending("GCS", &mut self.last_replica, &object.name)?;
            self.replicas.push_back(object);
        }
        self.replicas_done = last;
        Ok(())
    }

    pub fn next_step(&mut self) -> Step {
        if self.sources.is_empty() && !self.sources_done {
            return Step::NeedSources;
        }
        if self.replicas.is_empty() && !self.replicas_done {
            return Step::NeedReplicas;
        }
        let order = match (self.sources.front(), self.replicas.front()) {
            (None, None) => return Step::Done,
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (Some(source), Some(replica)) => source.key.as_str().cmp(replica.name.as_str()),
        };
        let (source, replica) = match order {
            std::cmp::Ordering::Less => (self.sources.pop_front(), None),
            std::cmp::Ordering::Greater => (None, self.replicas.pop_front()),
            std::cmp::Ordering::Equal => (self.sources.pop_front(), self.replicas.pop_front()),
        };
        let key = source
            .as_ref()
            .map(|s| s.key.clone())
            .or_else(|| replica.as_ref().map(|r| r.name.clone()))
            .unwrap_or_default();
        Step::Pair(Box::new(Pair {
            key,
            source,
            replica,
        }))
    }
}

fn ascending(side: &'static str, last: &mut Option<String>, next: &str) -> Result<(), OrderError> {
    if let Some(previous) = last.as_deref()
        && previous >= next
    {
        return Err(OrderError {
            side,
            previous: previous.to_owned(),
            next: next.to_owned(),
        });
    }
    *last = Some(next.to_owned());
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::classify::tests::listed;

    fn replica(name: &str) -> ObjectInfo {
        ObjectInfo {
            name: name.into(),
            generation: 1,
            metageneration: 1,
            size: 0,
            crc32c: None,
            md5: None,
            content_type: None,
            cache_control: None,
            metadata: HashMap::new(),
            created: None,
        }
    }

    /// Runs a join to the end, feeding pages of `page` entries, and returns each pair as
    /// (key, in S3, in GCS).
    fn run(sources: &[&str], replicas: &[&str], page: usize) -> Vec<(String, bool, bool)> {
        let mut sources = sources.chunks(page).peekable();
        let mut replicas = replicas.chunks(page).peekable();
        let mut join = Join::new();
        let mut out = Vec::new();
        loop {
            match join.next_step() {
                Step::Pair(pair) => {
                    out.push((pair.key, pair.source.is_some(), pair.replica.is_some()))
                }
                Step::NeedSources => {
                    let chunk = sources.next().unwrap_or_default();
                    let entries = chunk.iter().map(|k| listed(k, "e", 1)).collect();
                    join.feed_sources(entries, sources.peek().is_none())
                        .unwrap();
                }
                Step::NeedReplicas => {
                    let chunk = replicas.next().unwrap_or_default();
                    let entries = chunk.iter().map(|k| replica(k)).collect();
                    join.feed_replicas(entries, replicas.peek().is_none())
                        .unwrap();
                }
                Step::Done => return out,
            }
        }
    }

    #[test]
    fn keys_pair_up_across_page_boundaries() {
        let sources = ["a", "b", "c", "d/e", "z"];
        let replicas = ["0", "b", "c", "d", "d/e", "é"];
        for page in 1..=6 {
            assert_eq!(
                run(&sources, &replicas, page),
                [
                    ("0".to_owned(), false, true),
                    ("a".to_owned(), true, false),
                    ("b".to_owned(), true, true),
                    ("c".to_owned(), true, true),
                    ("d".to_owned(), false, true),
                    ("d/e".to_owned(), true, true),
                    ("z".to_owned(), true, false),
                    ("é".to_owned(), false, true),
                ],
                "page size {page}"
            );
        }
    }

    #[test]
    fn empty_listings_join_to_nothing() {
        assert!(run(&[], &[], 3).is_empty());
        assert_eq!(run(&["a"], &[], 3), [("a".to_owned(), true, false)]);
    }

    #[test]
    fn a_listing_out_of_order_is_an_error_not_a_wrong_answer() {
        let mut join = Join::new();
        let error = join
            .feed_sources(vec![listed("b", "e", 1), listed("a", "e", 1)], true)
            .unwrap_err();
        assert_eq!(error.side, "S3");
        let mut join = Join::new();
        join.feed_replicas(vec![replica("a")], false).unwrap();
        assert!(join.feed_replicas(vec![replica("a")], true).is_err());
    }
}
