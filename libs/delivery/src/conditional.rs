//! Conditional GET and HEAD (RFC 9110 §13): whether the client's copy is still good, so the
//! answer is `304 Not Modified` with no body. A CDN revalidates its cached variants this way.
//!
//! Only the conditions a read-only origin meets are evaluated: `If-None-Match` and, without it,
//! `If-Modified-Since` (§13.2.2 steps 3 and 4). `If-Match` and `If-Unmodified-Since` guard
//! writes, which this origin does not take.

use chrono::{DateTime, Utc};

/// What the origin knows of the representation it would send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validators {
    /// A strong entity tag, quoted: `"…"`.
    pub etag: String,
    /// Whole seconds: HTTP dates carry no fraction.
    pub last_modified: Option<DateTime<Utc>>,
}

/// The request's conditional headers, as sent.
#[derive(Debug, Clone, Copy, Default)]
pub struct Conditions<'a> {
    pub if_none_match: Option<&'a str>,
    pub if_modified_since: Option<&'a str>,
}

/// Whether the client's copy is current: answer `304` instead of the representation.
pub fn not_modified(conditions: &Conditions<'_>, validators: &Validators) -> bool {
    if let Some(list) = conditions.if_none_match {
        // §13.1.2: with If-None-Match, If-Modified-Since is ignored.
        return list.trim() == "*" || matches_weakly(list, &validators.etag);
    }
    match (conditions.if_modified_since, validators.last_modified) {
        (Some(since), Some(modified)) => match parse_http_date(since) {
            // §13.1.3: an invalid date is ignored, and the representation sent.
            Some(since) => modified.timestamp() <= since.timestamp(),
            None => false,
        },
        _ => false,
    }
}

/// Whether any entity tag in a comma-separated `If-None-Match` list matches `etag` by the weak
/// comparison (§8.8.3.2): `W/` prefixes are ignored, the quoted tags compared.
fn matches_weakly(list: &str, etag: &str) -> bool {
    let opaque = |tag: &str| tag.trim().trim_start_matches("W/").to_owned();
    let ours = opaque(etag);
    list.split(',').any(|tag| opaque(tag) == ours)
}

/// An HTTP date in the preferred IMF-fixdate form, or either obsolete form a recipient must
/// accept (§5.6.7): RFC 850 and asctime.
pub fn parse_http_date(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if let Ok(date) = DateTime::parse_from_rfc2822(text) {
        return Some(date.with_timezone(&Utc));
    }
    for format in ["%A, %d-%b-%y %H:%M:%S GMT", "%a %b %e %H:%M:%S %Y"] {
        if let Ok(date) = chrono::NaiveDateTime::parse_from_str(text, format) {
            return Some(date.and_utc());
        }
    }
    None
}

/// `date` as an IMF-fixdate, for `Last-Modified`.
pub fn http_date(date: DateTime<Utc>) -> String {
    date.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validators() -> Validators {
        Validators {
            etag: "\"abc\"".to_owned(),
            last_modified: parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
        }
    }

    fn check(if_none_match: Option<&str>, if_modified_since: Option<&str>) -> bool {
        let conditions = Conditions {
            if_none_match,
            if_modified_since,
        };
        not_modified(&conditions, &validators())
    }

    #[test]
    fn an_entity_tag_the_client_holds_is_not_modified() {
        assert!(check(Some("\"abc\""), None));
        assert!(check(Some("\"x\", W/\"abc\""), None));
        assert!(check(Some("*"), None));
        assert!(!check(Some("\"abd\""), None));
        // If-None-Match decides alone, even against a date that would say "not modified".
        assert!(!check(
            Some("\"abd\""),
            Some("Mon, 07 Nov 1994 08:49:37 GMT")
        ));
    }

    #[test]
    fn a_date_at_or_after_the_last_modification_is_not_modified() {
        assert!(check(None, Some("Sun, 06 Nov 1994 08:49:37 GMT")));
        assert!(check(None, Some("Sunday, 06-Nov-94 09:00:00 GMT")));
        assert!(check(None, Some("Sun Nov  6 08:49:37 1994")));
        assert!(!check(None, Some("Sun, 06 Nov 1994 08:49:36 GMT")));
        assert!(
            !check(None, Some("yesterday")),
            "an invalid date is ignored"
        );
        assert!(!check(None, None));
    }

    #[test]
    fn last_modified_is_written_as_an_imf_fixdate_and_read_back() {
        let date = validators().last_modified.unwrap();
        assert_eq!(http_date(date), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(parse_http_date(&http_date(date)), Some(date));
    }
}
