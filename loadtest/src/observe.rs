//! Watching the replica bucket: when each uploaded object's replica, and each of its variants,
//! appeared. One listing per name prefix and poll, from the oldest object still awaited, so the
//! cost of watching stays proportional to what is outstanding, not to what was uploaded.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;
use yuba_gcs::{Gcs, ListQuery};

/// How often the bucket is listed.
const POLL: Duration = Duration::from_millis(200);

/// The names an object's copies are listed under: its replica, then one per variant profile.
#[derive(Debug, Clone)]
pub struct Layout {
    /// `<run prefix>/`: replica names are `<run prefix>/<seq:06>-<kind>.<ext>`.
    pub replicas: String,
    /// Profile name and the prefix its variants of this run's objects are named under.
    pub variants: Vec<(String, String)>,
}

/// An object's sequence number from its name under `prefix` (variants may add an extension).
fn seq_of(name: &str, prefix: &str) -> Option<u64> {
    name.strip_prefix(prefix)?.get(..6)?.parse().ok()
}

pub fn key_of(run_prefix: &str, seq: u64, kind: &str, extension: &str) -> String {
    format!("{run_prefix}/{seq:06}-{kind}.{extension}")
}

#[derive(Debug, Default)]
struct Watched {
    /// Per prefix (replicas first, then variants in profile order): awaited seqs, and when each
    /// seen one was created.
    awaited: Vec<BTreeSet<u64>>,
    created: Vec<HashMap<u64, DateTime<Utc>>>,
}

/// What has been seen so far; shared by the uploader (which adds what to await) and the poller.
#[derive(Debug, Clone)]
pub struct Watcher {
    layout: Layout,
    state: Arc<Mutex<Watched>>,
}

impl Watcher {
    pub fn new(layout: Layout) -> Watcher {
        let prefixes = 1 + layout.variants.len();
        Watcher {
            layout,
            state: Arc::new(Mutex::new(Watched {
                awaited: vec![BTreeSet::new(); prefixes],
                created: vec![HashMap::new(); prefixes],
            })),
        }
    }

    /// Starts awaiting object `seq`'s replica and, for an image, its variants.
    pub fn expect(&self, seq: u64, image: bool) {
        let mut state = lock(&self.state);
        let prefixes = if image { state.awaited.len() } else { 1 };
        for awaited in state.awaited.iter_mut().take(prefixes) {
            awaited.insert(seq);
        }
    }

    pub fn outstanding(&self) -> usize {
        lock(&self.state).awaited.iter().map(BTreeSet::len).sum()
    }

    /// When `seq`'s replica was created, and when its last variant was (if all were).
    pub fn seen(&self, seq: u64, image: bool) -> (Option<DateTime<Utc>>, Option<DateTime<Utc>>) {
        let state = lock(&self.state);
        let replica = state.created[0].get(&seq).copied();
        let variants = if image && state.created.len() > 1 {
            state.created[1..]
                .iter()
                .map(|created| created.get(&seq).copied())
                .collect::<Option<Vec<_>>>()
                .and_then(|times| times.into_iter().max())
        } else {
            None
        };
        (replica, variants)
    }

    /// Lists until `stop`, noting what appears.
    pub async fn poll(
        &self,
        gcs: &Gcs,
        bucket: &str,
        stop: CancellationToken,
    ) -> anyhow::Result<()> {
        let prefixes: Vec<String> = std::iter::once(self.layout.replicas.clone())
            .chain(
                self.layout
                    .variants
                    .iter()
                    .map(|(_, prefix)| prefix.clone()),
            )
            .collect();
        let mut failures = 0;
        loop {
            for (index, prefix) in prefixes.iter().enumerate() {
                match self.list_once(gcs, bucket, index, prefix).await {
                    Ok(()) => failures = 0,
                    // A loaded server may answer slowly or not at all for a moment; a watcher
                    // that gave up would turn that into "never replicated".
                    Err(error) if failures < 50 => {
                        failures += 1;
                        eprintln!("listing gs://{bucket}/{prefix} failed ({error}); trying again");
                    }
                    Err(error) => return Err(error.into()),
                }
            }
            tokio::select! {
                () = stop.cancelled() => return Ok(()),
                () = tokio::time::sleep(POLL) => {}
            }
        }
    }

    async fn list_once(
        &self,
        gcs: &Gcs,
        bucket: &str,
        index: usize,
        prefix: &str,
    ) -> Result<(), yuba_gcs::GcsError> {
        let Some((first, last)) = ({
            let state = lock(&self.state);
            let awaited = &state.awaited[index];
            awaited.first().copied().zip(awaited.last().copied())
        }) else {
            return Ok(());
        };
        let start = format!("{prefix}{first:06}");
        let mut token: Option<String> = None;
        loop {
            let page = gcs
                .objects()
                .list(
                    bucket,
                    &ListQuery {
                        prefix,
                        start_offset: Some(&start),
                        page_token: token.as_deref(),
                        page_size: 1000,
                        ..ListQuery::default()
                    },
                )
                .await?;
            let mut past_last = false;
            {
                let mut state = lock(&self.state);
                for object in &page.objects {
                    let Some(seq) = seq_of(&object.name, prefix) else {
                        continue;
                    };
                    past_last |= seq > last;
                    if state.awaited[index].remove(&seq) {
                        // A server that gives no creation time: the time it was first seen.
                        let created = object.created.unwrap_or_else(Utc::now);
                        state.created[index].insert(seq, created);
                    }
                }
            }
            match page.next_page_token {
                Some(next) if !past_last => token = Some(next),
                _ => return Ok(()),
            }
        }
    }
}

/// A panic elsewhere must not stop the measurement: the data behind a poisoned lock is whole.
pub fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_come_back_from_replica_and_variant_names() {
        let key = key_of("loadtest/20261123T040000", 42, "small-png", "png");
        assert_eq!(key, "loadtest/20261123T040000/000042-small-png.png");
        assert_eq!(seq_of(&key, "loadtest/20261123T040000/"), Some(42));
        let variant = format!("_variants/thumb/{key}.jpg");
        assert_eq!(
            seq_of(&variant, "_variants/thumb/loadtest/20261123T040000/"),
            Some(42)
        );
        assert_eq!(
            seq_of("loadtest/other/000001-x.bin", "loadtest/20261123T040000/"),
            None
        );
    }

    #[test]
    fn variants_count_once_all_profiles_are_seen() {
        let watcher = Watcher::new(Layout {
            replicas: "r/".into(),
            variants: vec![("a".into(), "va/".into()), ("b".into(), "vb/".into())],
        });
        watcher.expect(1, true);
        watcher.expect(2, false);
        assert_eq!(watcher.outstanding(), 4);
        let t = |s: i64| DateTime::from_timestamp(s, 0).unwrap();
        {
            let mut state = lock(&watcher.state);
            for (index, time) in [(0, 10), (1, 12)] {
                state.awaited[index].remove(&1);
                state.created[index].insert(1, t(time));
            }
        }
        assert_eq!(
            watcher.seen(1, true),
            (Some(t(10)), None),
            "profile b not yet"
        );
        {
            let mut state = lock(&watcher.state);
            state.awaited[2].remove(&1);
            state.created[2].insert(1, t(11));
        }
        assert_eq!(watcher.seen(1, true), (Some(t(10)), Some(t(12))));
        assert_eq!(watcher.outstanding(), 1, "object 2's replica");
    }
}
