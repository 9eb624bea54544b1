use thiserror::Error;

use crate::job::MAX_KEY_BYTES;

/// The key prefix of the deployment canary's objects. A deployment's pre-traffic hook puts a
/// small object under it in a bucket the stack owns (not the source bucket) and sends a forced
/// replicate job for it through the new worker version; its replica lands under the same
/// prefix in the replica bucket. So the worker replicates such keys like any other, and the
/// reconciler, whose source listing never holds them, leaves them alone in the replica bucket
/// (counted apart, never an orphan, never deleted). Source buckets must not use it.
pub const CANARY_PREFIX: &str = "_yuba-canary/";

/// Why an S3 key cannot be used as a GCS object name as it is.
///
/// Each message names the rule and what to do: yuba never renames (two S3 keys must never
/// share a replica), so the only fix is on the source side.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ObjectNameError {
    #[error(
        "the key is empty; no S3 object has an empty key, so the job or event that named it \
         is malformed: check what produced it"
    )]
    Empty,
    #[error(
        "the key is {0} bytes long; GCS object names are at most 1024 bytes of UTF-8: \
         copy the S3 object to a shorter key (yuba does not shorten names)"
    )]
    TooLong(usize),
    #[error(
        "the key contains a carriage return or line feed, which GCS object names cannot hold: \
         copy the S3 object to a key without them (yuba does not rewrite names)"
    )]
    LineBreak,
    #[error(
        "the key is `.` or `..`, which GCS refuses as an object name: copy the S3 object to \
         another key (yuba does not rewrite names)"
    )]
    DotName,
    #[error(
        "keys under `.well-known/acme-challenge/` are reserved by GCS: copy the S3 object to \
         another key, or list only the prefixes to replicate in YUBA_FILTER_PREFIXES"
    )]
    AcmeChallenge,
}

/// The GCS object name of the replica of S3 key `key`: the key itself, byte for byte.
///
/// yuba never rewrites names, so that no two S3 keys can map onto one replica; a key that GCS
/// cannot hold is refused with the reason instead. The rules are GCS's documented naming
/// requirements (S3's are looser):
///
/// - 1 to 1,024 bytes of UTF-8 (a `&str` is UTF-8; the length counts bytes, not characters);
/// - no carriage return or line feed;
/// - not `.` or `..` (as the whole name: `a/../b`, `./a` or `...` are ordinary names, since an
///   object name is one opaque string, not a path);
/// - not starting with `.well-known/acme-challenge/`.
///
/// Everything else passes unchanged: `//`, a leading `/`, every printable ASCII character, and
/// control characters other than CR and LF. GCS discourages the latter (they are not valid in
/// XML 1.0, so its XML API cannot list them) but stores them, and the JSON API yuba uses lists
/// them; refusing them would lose objects S3 holds. Nothing is Unicode-normalised either: S3
/// and GCS compare names byte for byte, so NFC `é` and NFD `e\u{301}` are two keys and get two
/// replicas.
pub fn gcs_object_name(key: &str) -> Result<&str, ObjectNameError> {
    if key.is_empty() {
        return Err(ObjectNameError::Empty);
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(ObjectNameError::TooLong(key.len()));
    }
    if key.contains(['\r', '\n']) {
        return Err(ObjectNameError::LineBreak);
    }
    if key == "." || key == ".." {
        return Err(ObjectNameError::DotName);
    }
    if key.starts_with(".well-known/acme-challenge/") {
        return Err(ObjectNameError::AcmeChallenge);
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_gcs_can_hold_map_to_themselves() {
        for key in [
            "a b+c%20",
            "photos/ünïcödé/日本.jpg",
            "x/../y",
            "//lead",
            "a\tb",
        ] {
            assert_eq!(gcs_object_name(key), Ok(key));
        }
        let longest = "é".repeat(512);
        assert_eq!(gcs_object_name(&longest), Ok(longest.as_str()));
    }

    #[test]
    fn keys_gcs_cannot_hold_are_refused_with_the_reason() {
        assert_eq!(gcs_object_name(""), Err(ObjectNameError::Empty));
        assert_eq!(
            gcs_object_name(&"a".repeat(1025)),
            Err(ObjectNameError::TooLong(1025))
        );
        assert_eq!(gcs_object_name("a\nb"), Err(ObjectNameError::LineBreak));
        assert_eq!(gcs_object_name(".."), Err(ObjectNameError::DotName));
        assert_eq!(
            gcs_object_name(".well-known/acme-challenge/x"),
            Err(ObjectNameError::AcmeChallenge)
        );
    }

    #[test]
    fn every_printable_ascii_character_is_kept() {
        let all: String = (b' '..=b'~').map(char::from).collect();
        assert_eq!(all.len(), 95);
        assert_eq!(gcs_object_name(&all), Ok(all.as_str()));
        // Each character alone, and as a path segment: none is special to GCS (`/` included).
        for c in (b' '..=b'~').map(char::from) {
            for key in [c.to_string(), format!("dir/{c}"), format!("{c}/x")] {
                if key == "." {
                    continue;
                }
                assert_eq!(gcs_object_name(&key), Ok(key.as_str()), "{key:?}");
            }
        }
        // Characters that are wildcards or escapes elsewhere (gsutil, URLs, shells).
        for key in [
            "*", "?", "[a]", "#frag", "%2F", "%", "\\", "~user", "a+b", "&=;",
        ] {
            assert_eq!(gcs_object_name(key), Ok(key), "{key:?}");
        }
    }

    #[test]
    fn dots_and_slashes_are_names_not_paths() {
        // An object name is one opaque string: nothing resolves `..`, collapses `//` or strips
        // a leading `/`, so each of these is its own replica.
        for key in [
            "a/../b",
            "a/./b",
            "../a",
            "./a",
            "a/..",
            "a/.",
            "...",
            ". ",
            " .",
            ".a",
            "./",
            "../",
            "a//b",
            "//",
            "/",
            "/leading",
            "trailing/",
            "/../",
            ".well-known/acme-challenge",
            "/.well-known/acme-challenge/x",
            "x/.well-known/acme-challenge/y",
            ".WELL-KNOWN/ACME-CHALLENGE/x",
        ] {
            assert_eq!(gcs_object_name(key), Ok(key), "{key:?}");
        }
        assert_eq!(gcs_object_name("."), Err(ObjectNameError::DotName));
        assert_eq!(gcs_object_name(".."), Err(ObjectNameError::DotName));
        assert_eq!(
            gcs_object_name(".well-known/acme-challenge/"),
            Err(ObjectNameError::AcmeChallenge)
        );
    }

    #[test]
    fn control_characters_other_than_cr_and_lf_are_kept() {
        // GCS discourages them (XML 1.0 cannot carry them) but stores them; only CR and LF are
        // refused. Lookalike line breaks (NEL, LINE SEPARATOR, VT, FF) are not CR or LF.
        for c in (0_u8..0x20).map(char::from).chain([
            '\u{7f}', '\u{80}', '\u{85}', '\u{9f}', '\u{2028}', '\u{2029}', '\u{feff}',
        ]) {
            let key = format!("a{c}b");
            if c == '\r' || c == '\n' {
                assert_eq!(gcs_object_name(&key), Err(ObjectNameError::LineBreak));
            } else {
                assert_eq!(gcs_object_name(&key), Ok(key.as_str()), "{c:?}");
            }
        }
        for key in ["\r", "\n", "a\r\nb", "trailing\n", "\rleading", "dir/\n/x"] {
            assert_eq!(
                gcs_object_name(key),
                Err(ObjectNameError::LineBreak),
                "{key:?}"
            );
        }
    }

    #[test]
    fn the_length_limit_counts_bytes_of_utf8() {
        // 1,024 bytes of two-, three- and four-byte characters fit; one byte more does not.
        let two = "é".repeat(512);
        let three = format!("{}a", "日".repeat(341));
        let four = "😀".repeat(256);
        for key in [&two, &three, &four] {
            assert_eq!(key.len(), 1024);
            assert_eq!(gcs_object_name(key), Ok(key.as_str()));
        }
        // 341 CJK characters and a 4-byte emoji: 345 characters, 1,027 bytes.
        let over = format!("{}😀", "日".repeat(341));
        assert_eq!(gcs_object_name(&over), Err(ObjectNameError::TooLong(1027)));
        assert_eq!(
            gcs_object_name(&format!("{four}a")),
            Err(ObjectNameError::TooLong(1025))
        );
        assert_eq!(gcs_object_name("a"), Ok("a"));
    }

    #[test]
    fn unicode_normalisation_forms_stay_distinct_names() {
        let nfc = "photos/caf\u{e9}.jpg";
        let nfd = "photos/cafe\u{301}.jpg";
        assert_ne!(nfc, nfd);
        assert_eq!(gcs_object_name(nfc), Ok(nfc));
        assert_eq!(gcs_object_name(nfd), Ok(nfd));
        assert_ne!(gcs_object_name(nfc), gcs_object_name(nfd));
        // Other lookalikes: full-width solidus, Angstrom sign vs Å, a ligature, a zero-width
        // joiner. Each is itself, byte for byte.
        for key in [
            "a\u{ff0f}b",
            "\u{212b}",
            "\u{c5}",
            "\u{fb01}le",
            "a\u{200d}b",
        ] {
            assert_eq!(gcs_object_name(key).map(str::as_bytes), Ok(key.as_bytes()));
        }
    }

    #[test]
    fn errors_name_the_rule_and_what_to_do() {
        for error in [
            ObjectNameError::Empty,
            ObjectNameError::TooLong(2000),
            ObjectNameError::LineBreak,
            ObjectNameError::DotName,
            ObjectNameError::AcmeChallenge,
        ] {
            let message = error.to_string();
            assert!(message.contains(':') || message.contains(';'), "{message}");
            if error != ObjectNameError::Empty {
                assert!(message.contains("copy the S3 object to"), "{message}");
            }
        }
        assert!(
            ObjectNameError::TooLong(2000)
                .to_string()
                .contains("2000 bytes")
        );
    }
}
