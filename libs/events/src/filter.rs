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
    /// Admits every key.
    pub fn everything() -> KeyFilter {
        KeyFilter::default()
    }

    /// Empty strings are dropped: an empty prefix or suffix would admit every key, which is what
    /// an empty list already means, and keeping it would hide a typo in the configuration.
    pub fn new(prefixes: Vec<String>, suffixes: Vec<String>) -> KeyFilter {
        let keep = |list: Vec<String>| list.into_iter().filter(|s| !s.is_empty()).collect();
        KeyFilter {
            prefixes: keep(prefixes),
            suffixes: keep(suffixes),
        }
    }

    /// Parses comma-separated lists as found in environment variables
    /// (`YUBA_KEY_PREFIXES="photos/,avatars/"`, `YUBA_KEY_SUFFIXES=".jpg,.jpeg,.png"`). Entries
    /// are trimmed and empty ones dropped, so `""` means "no constraint".
    ///
    /// A prefix or suffix that contains a comma, or starts or ends with whitespace, cannot be
    /// written this way; build such a filter with [`KeyFilter::new`].
    pub fn from_lists(prefixes: &str, suffixes: &str) -> KeyFilter {
        let split = |list: &str| list.split(',').map(|s| s.trim().to_owned()).collect();
        KeyFilter::new(split(prefixes), split(suffixes))
    }

    /// A key passes when it starts with one of the prefixes (or there are none) and ends with
    /// one of the suffixes (or there are none). Matching is byte-exact and case-sensitive, as
    /// S3 keys are.
    pub fn admits(&self, key: &str) -> bool {
        let prefix_ok =
            self.prefixes.is_empty() || self.prefixes.iter().any(|p| key.starts_with(p.as_str()));
        let suffix_ok =
            self.suffixes.is_empty() || self.suffixes.iter().any(|s| key.ends_with(s.as_str()));
        prefix_ok && suffix_ok
    }

    /// Whether the filter admits every key.
    pub fn is_everything(&self) -> bool {
        self.prefixes.is_empty() && self.suffixes.is_empty()
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

    #[test]
    fn an_empty_filter_admits_everything() {
        let filter = KeyFilter::from_lists("", " , ");
        assert!(filter.is_everything());
        assert_eq!(filter, KeyFilter::everything());
        assert!(filter.admits("anything/at all"));
        assert!(filter.admits(""));
    }

    #[test]
    fn lists_are_trimmed_and_empties_dropped() {
        let filter = KeyFilter::from_lists(" photos/ ,, avatars/ ", ".jpg, .png ,");
        assert_eq!(filter.prefixes(), ["photos/", "avatars/"]);
        assert_eq!(filter.suffixes(), [".jpg", ".png"]);
    }

    #[test]
    fn a_key_needs_one_prefix_and_one_suffix() {
        let filter = KeyFilter::from_lists("photos/,avatars/", ".jpg,.png");
        assert!(filter.admits("photos/cat.jpg"));
        assert!(filter.admits("avatars/me.png"));
        assert!(!filter.admits("photos/cat.gif"), "wrong suffix");
        assert!(!filter.admits("docs/cat.jpg"), "wrong prefix");
        assert!(!filter.admits("photos/cat.JPG"), "case-sensitive, as S3 is");
    }

    #[test]
    fn either_list_alone_constrains_only_its_end() {
        let prefixes_only = KeyFilter::from_lists("photos/", "");
        assert!(prefixes_only.admits("photos/a.txt"));
        assert!(!prefixes_only.admits("other/a.jpg"));
        let suffixes_only = KeyFilter::from_lists("", ".jpg");
        assert!(suffixes_only.admits("anywhere/a.jpg"));
        assert!(!suffixes_only.admits("anywhere/a.png"));
    }

    #[test]
    fn new_keeps_what_lists_cannot_express() {
        let filter = KeyFilter::new(vec!["a,b/".into(), String::new()], vec![" .jpg".into()]);
        assert_eq!(filter.prefixes(), ["a,b/"]);
        assert!(filter.admits("a,b/x .jpg"));
        assert!(!filter.admits("a,b/x.jpg"));
    }
}
