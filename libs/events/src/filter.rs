use yuba_model::CANARY_PREFIX;

/// Which keys yuba replicates: the prefix/suffix rule of S3 notification filters, applied to
/// decoded keys.
///
/// The bucket's own notification filter already narrows what S3 sends, but a bucket that feeds
/// several consumers (or EventBridge, which has no per-target key filter in S3) delivers more;
/// this is yuba's own, deployment-configured view. Unlike S3's filter, values here are plain
/// keys, not URL-encoded ones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyFilter {
    prefixes: Vec<String>,
    suffixes: Vec<String>,
}

impl KeyFilter {
    /// Empty strings are dropped: an empty prefix or suffix would admit every key, which is what
    /// an empty list already means, and keeping it would hide a typo in the configuration.
    pub fn new(prefixes: Vec<String>, suffixes: Vec<String>) -> KeyFilter {
        let keep = |list: Vec<String>| list.into_iter().filter(|s| !s.is_empty()).collect();
        KeyFilter {
            prefixes: keep(prefixes),
            suffixes: keep(suffixes),
        }
    }

    /// A key passes when it starts with one of the prefixes (or there are none) and ends with
    /// one of the suffixes (or there are none). Matching is byte-exact and case-sensitive, as
    /// S3 keys are.
    ///
    /// Keys under [`CANARY_PREFIX`] always pass: they are the deployment probe's objects (in the
    /// stack's own canary bucket), and a probe whose notification ingest filtered away would pass
    /// without a job ever being enqueued, proving nothing.
    pub fn admits(&self, key: &str) -> bool {
        if key.starts_with(CANARY_PREFIX) {
            return true;
        }
        let prefix_ok =
            self.prefixes.is_empty() || self.prefixes.iter().any(|p| key.starts_with(p.as_str()));
        let suffix_ok =
            self.suffixes.is_empty() || self.suffixes.iter().any(|s| key.ends_with(s.as_str()));
        prefix_ok && suffix_ok
    }

    pub fn prefixes(&self) -> &[String] {
        &self.prefixes
    }

    pub fn suffixes(&self) -> &[String] {
        &self.suffixes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(prefixes: &[&str], suffixes: &[&str]) -> KeyFilter {
        let owned = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect();
        KeyFilter::new(owned(prefixes), owned(suffixes))
    }

    #[test]
    fn an_empty_filter_admits_everything() {
        let filter = filter(&[], &[""]);
        assert_eq!(filter, KeyFilter::default());
        assert!(filter.admits("anything/at all"));
        assert!(filter.admits(""));
    }

    #[test]
    fn a_key_needs_one_prefix_and_one_suffix() {
        let filter = filter(&["photos/", "avatars/"], &[".jpg", ".png"]);
        assert!(filter.admits("photos/cat.jpg"));
        assert!(filter.admits("avatars/me.png"));
        assert!(!filter.admits("photos/cat.gif"), "wrong suffix");
        assert!(!filter.admits("docs/cat.jpg"), "wrong prefix");
        assert!(!filter.admits("photos/cat.JPG"), "case-sensitive, as S3 is");
    }

    #[test]
    fn the_deployment_probes_keys_pass_any_filter() {
        let filter = filter(&["photos/"], &[".jpg"]);
        assert!(filter.admits(&format!("{CANARY_PREFIX}ingest.png")));
        assert!(!filter.admits("_yuba-canary-not/ingest.png"));
    }

    #[test]
    fn either_list_alone_constrains_only_its_end() {
        let prefixes_only = filter(&["photos/"], &[]);
        assert!(prefixes_only.admits("photos/a.txt"));
        assert!(!prefixes_only.admits("other/a.jpg"));
        let suffixes_only = filter(&[], &[".jpg"]);
        assert!(suffixes_only.admits("anywhere/a.jpg"));
        assert!(!suffixes_only.admits("anywhere/a.png"));
    }

    #[test]
    fn values_are_matched_exactly() {
        let filter = filter(&["a,b/", ""], &[" .jpg"]);
        assert_eq!(filter.prefixes(), ["a,b/"]);
        assert!(filter.admits("a,b/x .jpg"));
        assert!(!filter.admits("a,b/x.jpg"));
    }
}
