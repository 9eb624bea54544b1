//! The head of the answer to a read of one stored object: status, headers, and which bytes of
//! the object the body carries. The server fetches the object's facts, asks [`respond`], then
//! streams what it says; the HTTP rules live here, once, for both of its homes.

use chrono::{DateTime, Utc};

use crate::conditional::{Conditions, Validators, http_date, not_modified, parse_http_date};
use crate::range::{self, Answer};

/// The methods an image origin answers; anything else is `405` with `Allow: GET, HEAD`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
}

impl Method {
    /// `None` for a method the origin does not answer.
    pub fn parse(method: &str) -> Option<Method> {
        match method {
            "GET" => Some(Method::Get),
            "HEAD" => Some(Method::Head),
            _ => None,
        }
    }
}

/// What the request asks beyond its target.
#[derive(Debug, Clone, Copy, Default)]
pub struct Asked<'a> {
    pub conditions: Conditions<'a>,
    pub range: Option<&'a str>,
    pub if_range: Option<&'a str>,
}

/// What the replica says of the object to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub size: u64,
    pub validators: Validators,
    pub content_type: Option<String>,
    pub cache_control: Option<String>,
    /// Whether byte ranges are served (originals; a variant is small and answered whole).
    pub ranges: bool,
}

/// Which bytes of the object the body carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    Empty,
    Whole,
    Bytes { first: u64, last: u64 },
}

/// Status, headers and body of an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Body,
}

/// The answer to `method` with `asked` for the object `stored` describes.
pub fn respond(method: Method, asked: &Asked<'_>, stored: &Stored) -> Head {
    let mut headers = validator_headers(stored);
    if not_modified(&asked.conditions, &stored.validators) {
        return Head {
            status: 304,
            headers,
            body: Body::Empty,
        };
    }
    headers.push((
        "Content-Type",
        stored
            .content_type
            .clone()
            .unwrap_or_else(|| "application/octet-stream".to_owned()),
    ));
    let ranged = stored.ranges && method == Method::Get && range_applies(asked.if_range, stored);
    if stored.ranges {
        headers.push(("Accept-Ranges", "bytes".to_owned()));
    }
    let answer = if ranged {
        range::answer(asked.range, stored.size)
    } else {
        Answer::Whole
    };
    let (status, body, length) = match answer {
        Answer::Whole => (200, Body::Whole, stored.size),
        Answer::Part { first, last } => {
            headers.push((
                "Content-Range",
                format!("bytes {first}-{last}/{}", stored.size),
            ));
            (206, Body::Bytes { first, last }, last - first + 1)
        }
        Answer::NotSatisfiable => {
            headers.push(("Content-Range", format!("bytes */{}", stored.size)));
            (416, Body::Empty, 0)
        }
    };
    headers.push(("Content-Length", length.to_string()));
    let body = if method == Method::Head {
        Body::Empty
    } else {
        body
    };
    Head {
        status,
        headers,
        body,
    }
}

/// The headers a `304` repeats from the `200` it stands for (RFC 9110 §15.4.5).
fn validator_headers(stored: &Stored) -> Vec<(&'static str, String)> {
    let mut headers = vec![("ETag", stored.validators.etag.clone())];
    if let Some(modified) = stored.validators.last_modified {
        headers.push(("Last-Modified", http_date(modified)));
    }
    if let Some(cache_control) = &stored.cache_control {
        headers.push(("Cache-Control", cache_control.clone()));
    }
    headers
}

/// `If-Range` (§13.1.5): the range is served only if the client's copy is the current one, by
/// a strong entity-tag match or an exact date; otherwise the whole object is sent.
fn range_applies(if_range: Option<&str>, stored: &Stored) -> bool {
    let Some(condition) = if_range.map(str::trim) else {
        return true;
    };
    if condition.starts_with('"') {
        return condition == stored.validators.etag;
    }
    if condition.starts_with("W/") {
        return false; // a weak tag never matches here
    }
    let same_second =
        |modified: DateTime<Utc>, date: DateTime<Utc>| modified.timestamp() == date.timestamp();
    match (stored.validators.last_modified, parse_http_date(condition)) {
        (Some(modified), Some(date)) => same_second(modified, date),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(ranges: bool) -> Stored {
        Stored {
            size: 1000,
            validators: Validators {
                etag: "\"v1\"".to_owned(),
                last_modified: parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            },
            content_type: Some("image/jpeg".to_owned()),
            cache_control: Some("public, max-age=31536000, immutable".to_owned()),
            ranges,
        }
    }

    fn header<'a>(head: &'a Head, name: &str) -> Option<&'a str> {
        head.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn a_get_sends_the_whole_object_with_its_validators() {
        let head = respond(Method::Get, &Asked::default(), &stored(true));
        assert_eq!((head.status, head.body), (200, Body::Whole));
        assert_eq!(header(&head, "ETag"), Some("\"v1\""));
        assert_eq!(
            header(&head, "Last-Modified"),
            Some("Sun, 06 Nov 1994 08:49:37 GMT")
        );
        assert_eq!(header(&head, "Content-Type"), Some("image/jpeg"));
        assert_eq!(header(&head, "Content-Length"), Some("1000"));
        assert_eq!(header(&head, "Accept-Ranges"), Some("bytes"));
    }

    #[test]
    fn a_head_says_the_same_and_sends_nothing() {
        let get = respond(Method::Get, &Asked::default(), &stored(true));
        let head = respond(Method::Head, &Asked::default(), &stored(true));
        assert_eq!((head.status, head.body), (200, Body::Empty));
        assert_eq!(head.headers, get.headers);
    }

    #[test]
    fn a_current_copy_gets_a_304_with_its_validators_and_no_body() {
        let asked = Asked {
            conditions: Conditions {
                if_none_match: Some("\"v1\""),
                if_modified_since: None,
            },
            range: Some("bytes=0-9"),
            if_range: None,
        };
        let head = respond(Method::Get, &asked, &stored(true));
        assert_eq!((head.status, head.body), (304, Body::Empty));
        assert_eq!(header(&head, "ETag"), Some("\"v1\""));
        assert_eq!(
            header(&head, "Cache-Control"),
            Some("public, max-age=31536000, immutable")
        );
        assert_eq!(header(&head, "Content-Length"), None);
    }

    #[test]
    fn a_range_of_an_original_is_a_206_and_past_the_end_a_416() {
        let asked = |range| Asked {
            range: Some(range),
            ..Asked::default()
        };
        let part = respond(Method::Get, &asked("bytes=10-19"), &stored(true));
        assert_eq!(
            (part.status, part.body),
            (
                206,
                Body::Bytes {
                    first: 10,
                    last: 19
                }
            )
        );
        assert_eq!(header(&part, "Content-Range"), Some("bytes 10-19/1000"));
        assert_eq!(header(&part, "Content-Length"), Some("10"));
        let past = respond(Method::Get, &asked("bytes=1000-"), &stored(true));
        assert_eq!((past.status, past.body), (416, Body::Empty));
        assert_eq!(header(&past, "Content-Range"), Some("bytes */1000"));
        // A variant is answered whole.
        let variant = respond(Method::Get, &asked("bytes=10-19"), &stored(false));
        assert_eq!((variant.status, variant.body), (200, Body::Whole));
        assert_eq!(header(&variant, "Accept-Ranges"), None);
    }

    #[test]
    fn if_range_serves_the_range_only_to_the_current_copy() {
        let asked = |if_range| Asked {
            range: Some("bytes=0-9"),
            if_range: Some(if_range),
            ..Asked::default()
        };
        for (if_range, status) in [
            ("\"v1\"", 206),
            ("\"v0\"", 200),
            ("W/\"v1\"", 200),
            ("Sun, 06 Nov 1994 08:49:37 GMT", 206),
            ("Sun, 06 Nov 1994 08:49:38 GMT", 200),
        ] {
            let head = respond(Method::Get, &asked(if_range), &stored(true));
            assert_eq!(head.status, status, "If-Range: {if_range}");
        }
    }

    #[test]
    fn only_reads_are_answered() {
        assert_eq!(Method::parse("GET"), Some(Method::Get));
        assert_eq!(Method::parse("HEAD"), Some(Method::Head));
        for other in ["POST", "PUT", "DELETE", "get", "OPTIONS"] {
            assert_eq!(Method::parse(other), None, "{other}");
        }
    }
}
