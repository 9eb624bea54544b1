//! Object metadata read recently, kept for a short while (`YUBA_SERVE_METADATA_SECONDS`): a hit
//! then costs one request to GCS (its bytes) instead of two or three. What it costs is staleness,
//! bounded by that lifetime: an overwritten or deleted replica is seen at most that late (what
//! CloudFront caches is held far longer). A generation that is gone is never served from it: a
//! read that finds one gone makes the origin forget everything and look again.
//!
//! Only objects that exist are kept: a 404 for a key about to be replicated is not prolonged.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use yuba_gcs::ObjectInfo;

/// Entries kept at most: a record's metadata is under a KiB, so a few MiB.
const CAPACITY: usize = 4096;

#[derive(Debug)]
pub(crate) struct Recent {
    lifetime: Duration,
    entries: Mutex<HashMap<String, (Instant, ObjectInfo)>>,
}

impl Recent {
    /// Keeps metadata for `lifetime`; zero keeps none.
    pub(crate) fn new(lifetime: Duration) -> Recent {
        Recent {
            lifetime,
            entries: Mutex::default(),
        }
    }

    pub(crate) fn is_on(&self) -> bool {
        !self.lifetime.is_zero()
    }

    /// `name`'s metadata, if it was read less than the lifetime before `now`.
    pub(crate) fn get(&self, name: &str, now: Instant) -> Option<ObjectInfo> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let (read, info) = entries.get(name)?;
        (now.saturating_duration_since(*read) < self.lifetime).then(|| info.clone())
    }

    /// Keeps `info`, read at `now`. When full, the entries past their lifetime make room; if
    /// none are, it is not kept.
    pub(crate) fn keep(&self, info: &ObjectInfo, now: Instant) {
        if !self.is_on() {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= CAPACITY {
            let lifetime = self.lifetime;
            entries.retain(|_, (read, _)| now.saturating_duration_since(*read) < lifetime);
        }
        if entries.len() < CAPACITY {
            entries.insert(info.name.clone(), (now, info.clone()));
        }
    }

    pub(crate) fn forget_all(&self) {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(name: &str, generation: i64) -> ObjectInfo {
        ObjectInfo {
            name: name.to_owned(),
            generation,
            metageneration: 1,
            size: 1,
            crc32c: None,
            md5: None,
            content_type: None,
            cache_control: None,
            metadata: HashMap::new(),
            created: None,
        }
    }

    #[test]
    fn metadata_is_kept_for_its_lifetime_and_no_longer() {
        let recent = Recent::new(Duration::from_secs(1));
        let now = Instant::now();
        recent.keep(&info("a.jpg", 7), now);
        let seen = |at| recent.get("a.jpg", at).map(|info| info.generation);
        assert_eq!(seen(now), Some(7));
        assert_eq!(seen(now + Duration::from_millis(999)), Some(7));
        assert_eq!(seen(now + Duration::from_secs(1)), None);
        assert_eq!(recent.get("b.jpg", now), None);
        recent.forget_all();
        assert_eq!(seen(now), None);
    }

    #[test]
    fn a_zero_lifetime_keeps_nothing() {
        let recent = Recent::new(Duration::ZERO);
        let now = Instant::now();
        recent.keep(&info("a.jpg", 7), now);
        assert!(!recent.is_on());
        assert_eq!(recent.get("a.jpg", now), None);
    }

    #[test]
    fn when_full_only_expired_entries_make_room() {
        let recent = Recent::new(Duration::from_secs(1));
        let start = Instant::now();
        for at in 0..CAPACITY {
            recent.keep(&info(&format!("{at}"), 1), start);
        }
        recent.keep(&info("late", 1), start);
        assert_eq!(recent.get("late", start), None, "kept past the capacity");
        let later = start + Duration::from_secs(2);
        recent.keep(&info("late", 1), later);
        assert!(recent.get("late", later).is_some());
        assert_eq!(recent.get("0", later), None);
    }
}
