//! The URL scheme of the delivery path.
//!
//! - An original is served at `/` + its key, escaped by [`escape_key`]: CloudFront reads it from
//!   S3 first and fails over to the replica, and both must read the same key from the same URL.
//! - A variant is served at `/_yuba-variants/{profile}/` + its source's key, escaped alike. Only
//!   configured profiles exist, so a URL cannot ask for a size of its own.
//!
//! **Escaping.** Browsers rewrite paths before sending them (WHATWG URL standard): a `.` or `..`
//! segment, in any spelling (`%2e`, `.%2E`), is removed along with its parent, and `\` becomes
//! `/`. So [`escape_key`] percent-encodes every byte but RFC 3986's unreserved characters and
//! `/`, and when a key would still hold an empty, `.` or `..` segment, encodes its `/` too,
//! making the key one opaque segment (`a/../b` → `a%2F..%2Fb`). Browsers send such a URL as it
//! is, CloudFront has nothing to normalise in it, and S3 decodes it to the key.
//!
//! **Reading.** [`parse`] decodes a path as S3 does: every `%XX` once, `+` left a plus, nothing
//! else changed, so the failover reads exactly the key the primary would have, whatever spelling
//! a client used. What S3 would refuse (a broken `%` escape, bytes that are not UTF-8) is refused.
//! See `docs/design/delivery-research.md` for the sources.

use thiserror::Error;

/// The first segment of every variant's path. Keys under it are not served as originals:
/// CloudFront sends the prefix to the variants' behaviour.
pub const VARIANTS_PREFIX: &str = "_yuba-variants/";

/// What a request path names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The replica of `key`.
    Original { key: String },
    /// The variant `profile` of the replica of `key`.
    Variant { profile: String, key: String },
}

/// Why a path names nothing: each is a 400, with what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PathError {
    #[error("the path must start with '/'")]
    NotAbsolute,
    #[error("the path names no key: give one after the '/'")]
    NoKey,
    #[error(
        "'%{escape}' at byte {at} is not a percent escape: write '%' as '%25' (escape_key does)"
    )]
    BadEscape { at: usize, escape: String },
    #[error("the key is not UTF-8 once decoded: S3 keys are UTF-8")]
    NotUtf8,
    #[error(
        "a variant's path is {VARIANTS_PREFIX}{{profile}}/{{key}}: the profile is missing or empty"
    )]
    NoProfile,
}

/// The path of the replica of `key`.
pub fn original_path(key: &str) -> String {
    format!("/{}", escape_key(key))
}

/// The path of variant `profile` of `key`. Profile names are `[a-z0-9_-]`, which need no escape.
pub fn variant_path(profile: &str, key: &str) -> String {
    format!("/{VARIANTS_PREFIX}{profile}/{}", escape_key(key))
}

/// `key` as one or more path segments that every party reads back as `key` (see the module's
/// documentation). The two keys that are a dot segment whole, `.` and `..`, have no such
/// spelling; GCS cannot name an object so, so they have no replica to serve either.
pub fn escape_key(key: &str) -> String {
    let opaque = key
        .split('/')
        .any(|segment| matches!(segment, "" | "." | ".."));
    let mut escaped = String::with_capacity(key.len());
    for byte in key.bytes() {
        let literal = byte.is_ascii_alphanumeric()
            || matches!(byte, b'-' | b'.' | b'_' | b'~')
            || (byte == b'/' && !opaque);
        if literal {
            escaped.push(char::from(byte));
        } else {
            escaped.push_str(&format!("%{byte:02X}"));
        }
    }
    escaped
}

/// What `path` (the request target's path, without its query) names.
pub fn parse(path: &str) -> Result<Target, PathError> {
    let rest = path.strip_prefix('/').ok_or(PathError::NotAbsolute)?;
    if let Some(variant) = rest.strip_prefix(VARIANTS_PREFIX) {
        let (profile, key) = variant.split_once('/').ok_or(PathError::NoProfile)?;
        if profile.is_empty() {
            return Err(PathError::NoProfile);
        }
        return Ok(Target::Variant {
            profile: decode(profile)?,
            key: decode_key(key)?,
        });
    }
    Ok(Target::Original {
        key: decode_key(rest)?,
    })
}

fn decode_key(escaped: &str) -> Result<String, PathError> {
    let key = decode(escaped)?;
    if key.is_empty() {
        return Err(PathError::NoKey);
    }
    Ok(key)
}

/// Every `%XX` decoded once, as S3 decodes a request path; everything else as it is.
fn decode(escaped: &str) -> Result<String, PathError> {
    let bytes = escaped.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] != b'%' {
            decoded.push(bytes[at]);
            at += 1;
            continue;
        }
        let hex = bytes.get(at + 1..at + 3);
        let value = hex
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match value {
            Some(value) => decoded.push(value),
            None => {
                let end = (at + 3).min(bytes.len());
                let escape = String::from_utf8_lossy(&bytes[at + 1..end]).into_owned();
                return Err(PathError::BadEscape { at, escape });
            }
        }
        at += 3;
    }
    String::from_utf8(decoded).map_err(|_| PathError::NotUtf8)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys that break naive schemes: dot segments, empty segments, what URLs reserve, what S3
    /// decodes differently from a form (`+`), and bytes beyond ASCII.
    const HOSTILE: &[&str] = &[
        "photos/cat.jpg",
        "a/../b",
        "../../etc/passwd",
        "./a",
        "a/.",
        "a//b",
        "/leading",
        "trailing/",
        "100%.jpg",
        "%2e%2e/x",
        "a+b c.jpg",
        "q?x=1#frag",
        "back\\slash",
        "猫/写真 1.jpg",
        "emoji/😀.png",
        "...",
        ".hidden/.x",
        "tab\tand\nnewline",
    ];

    /// What a WHATWG URL parser does to a path it is given (the parts that matter here): `\` is
    /// `/`, and a `.` or `..` segment in any spelling is removed (with its parent for `..`).
    fn as_a_browser_sends(path: &str) -> String {
        let path = path.replace('\\', "/");
        let mut segments: Vec<&str> = Vec::new();
        let parts: Vec<&str> = path.split('/').skip(1).collect();
        for (index, segment) in parts.iter().enumerate() {
            let lowered = segment.to_ascii_lowercase();
            let last = index + 1 == parts.len();
            match lowered.as_str() {
                "." | "%2e" => {
                    if last {
                        segments.push("");
                    }
                }
                ".." | ".%2e" | "%2e." | "%2e%2e" => {
                    segments.pop();
                    if last {
                        segments.push("");
                    }
                }
                _ => segments.push(segment),
            }
        }
        format!("/{}", segments.join("/"))
    }

    #[test]
    fn every_hostile_key_survives_a_browser_and_reads_back_as_itself() {
        for key in HOSTILE {
            let path = original_path(key);
            assert_eq!(
                as_a_browser_sends(&path),
                path,
                "a browser rewrites {key:?}"
            );
            assert!(
                path.bytes()
                    .all(|b| b.is_ascii_graphic() && !b"?#\\\"<>^`{}|".contains(&b)),
                "{path} holds a byte a URL path must not carry raw"
            );
            assert_eq!(
                parse(&path),
                Ok(Target::Original {
                    key: (*key).to_owned()
                })
            );
            let variant = variant_path("thumb", key);
            assert_eq!(as_a_browser_sends(&variant), variant);
            assert_eq!(
                parse(&variant),
                Ok(Target::Variant {
                    profile: "thumb".to_owned(),
                    key: (*key).to_owned()
                })
            );
        }
    }

    /// A key that is one dot segment has no URL a browser sends as it is, in any spelling; GCS
    /// cannot hold those two names either, so no replica of them exists to serve.
    #[test]
    fn the_keys_no_url_can_carry_are_those_gcs_refuses() {
        for key in [".", ".."] {
            assert_ne!(as_a_browser_sends(&original_path(key)), original_path(key));
            assert!(yuba_model::gcs_object_name(key).is_err(), "{key:?}");
        }
    }

    #[test]
    fn the_browser_model_is_the_one_that_breaks_naive_escaping() {
        // What the scheme exists for: escaping only what URLs reserve leaves dot segments,
        // which a browser resolves away.
        assert_eq!(as_a_browser_sends("/a/../b"), "/b");
        assert_eq!(as_a_browser_sends("/a/%2E%2e/b"), "/b");
        assert_eq!(as_a_browser_sends("/a/./b"), "/a/b");
        assert_eq!(as_a_browser_sends("/a\\b"), "/a/b");
        assert_eq!(as_a_browser_sends("/a//b"), "/a//b");
    }

    #[test]
    fn ordinary_keys_keep_readable_urls() {
        assert_eq!(original_path("photos/2026/cat.jpg"), "/photos/2026/cat.jpg");
        assert_eq!(original_path("a b+c.jpg"), "/a%20b%2Bc.jpg");
        assert_eq!(original_path("a//b"), "/a%2F%2Fb");
        assert_eq!(
            variant_path("small", "photos/cat.jpg"),
            "/_yuba-variants/small/photos/cat.jpg"
        );
    }

    #[test]
    fn any_spelling_s3_decodes_reads_the_same_key() {
        for (path, key) in [
            ("/photos/cat.jpg", "photos/cat.jpg"),
            ("/photos%2Fcat.jpg", "photos/cat.jpg"),
            ("/photos/c%61t.jpg", "photos/cat.jpg"),
            ("/a+b.jpg", "a+b.jpg"),
            ("/a%2bb.jpg", "a+b.jpg"),
            ("/a/../b", "a/../b"),
        ] {
            assert_eq!(
                parse(path),
                Ok(Target::Original {
                    key: key.to_owned()
                }),
                "{path}"
            );
        }
    }

    #[test]
    fn what_names_no_key_is_refused_with_the_reason() {
        assert_eq!(parse("photos/cat.jpg"), Err(PathError::NotAbsolute));
        assert_eq!(parse("/"), Err(PathError::NoKey));
        assert_eq!(
            parse("/100%.jpg"),
            Err(PathError::BadEscape {
                at: 3,
                escape: ".j".to_owned()
            })
        );
        assert_eq!(
            parse("/x%4"),
            Err(PathError::BadEscape {
                at: 1,
                escape: "4".to_owned()
            })
        );
        assert_eq!(parse("/%FF%FE"), Err(PathError::NotUtf8));
        assert_eq!(parse("/_yuba-variants/thumb"), Err(PathError::NoProfile));
        assert_eq!(parse("/_yuba-variants//a.jpg"), Err(PathError::NoProfile));
        assert_eq!(parse("/_yuba-variants/thumb/"), Err(PathError::NoKey));
        assert!(
            PathError::BadEscape {
                at: 3,
                escape: ".j".to_owned()
            }
            .to_string()
            .contains("'%25'")
        );
    }
}
