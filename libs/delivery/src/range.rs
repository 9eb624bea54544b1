//! Byte ranges of an original (RFC 9110 §14): `Range: bytes=…` on a GET answers `206 Partial
//! Content` with one range, or `416 Range Not Satisfiable` when no range overlaps the content.
//!
//! One range is served; a request for several gets the whole representation (§14.2 lets a server
//! ignore Range), as S3 does, which answers a multi-range request with the whole object too.

/// What to send for a request's `Range` header, given the content's length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// `200` with everything: no Range, one the server ignores, or several.
    Whole,
    /// `206` with bytes `first..=last` (`Content-Range: bytes first-last/length`).
    Part { first: u64, last: u64 },
    /// `416` with `Content-Range: bytes */length`.
    NotSatisfiable,
}

/// The answer to `range` (the header's value, if sent) for content of `length` bytes.
pub fn answer(range: Option<&str>, length: u64) -> Answer {
    let Some(range) = range else {
        return Answer::Whole;
    };
    // §14.2: a Range in a unit the server does not know, or malformed, is ignored.
    let Some(set) = range.trim().strip_prefix("bytes=") else {
        return Answer::Whole;
    };
    if set.contains(',') {
        return Answer::Whole;
    }
    match parse_spec(set.trim()) {
        Some(spec) => spec.within(length),
        None => Answer::Whole,
    }
}

/// One range spec: `first-`, `first-last` or `-suffix`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Spec {
    From { first: u64, last: Option<u64> },
    Suffix(u64),
}

fn parse_spec(spec: &str) -> Option<Spec> {
    let (first, last) = spec.split_once('-')?;
    let number = |text: &str| {
        (!text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()))
            .then(|| text.parse::<u64>().ok())
            .flatten()
    };
    if first.is_empty() {
        return number(last).map(Spec::Suffix);
    }
    let first = number(first)?;
    let last = if last.is_empty() {
        None
    } else {
        Some(number(last)?)
    };
    if last.is_some_and(|last| last < first) {
        return None; // §14.1.1: invalid, so the Range is ignored
    }
    Some(Spec::From { first, last })
}

impl Spec {
    /// §14.1.1-2: a range from past the end is unsatisfiable; a last position past the end, or a
    /// suffix longer than the content, is cut to the content; a zero-length suffix is nothing.
    fn within(self, length: u64) -> Answer {
        match self {
            Spec::From { first, .. } if first >= length => Answer::NotSatisfiable,
            Spec::From { first, last } => Answer::Part {
                first,
                last: last.map_or(length - 1, |last| last.min(length - 1)),
            },
            Spec::Suffix(0) => Answer::NotSatisfiable,
            Spec::Suffix(_) if length == 0 => Answer::NotSatisfiable,
            Spec::Suffix(suffix) => Answer::Part {
                first: length.saturating_sub(suffix),
                last: length - 1,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_range_is_cut_to_the_content() {
        assert_eq!(
            answer(Some("bytes=0-99"), 1000),
            Answer::Part { first: 0, last: 99 }
        );
        assert_eq!(
            answer(Some("bytes=900-"), 1000),
            Answer::Part {
                first: 900,
                last: 999
            }
        );
        assert_eq!(
            answer(Some("bytes=900-5000"), 1000),
            Answer::Part {
                first: 900,
                last: 999
            }
        );
        assert_eq!(
            answer(Some("bytes=-100"), 1000),
            Answer::Part {
                first: 900,
                last: 999
            }
        );
        assert_eq!(
            answer(Some("bytes=-5000"), 1000),
            Answer::Part {
                first: 0,
                last: 999
            }
        );
        assert_eq!(
            answer(Some(" bytes= 5-5 "), 1000),
            Answer::Part { first: 5, last: 5 }
        );
    }

    #[test]
    fn a_range_past_the_end_is_not_satisfiable() {
        assert_eq!(answer(Some("bytes=1000-"), 1000), Answer::NotSatisfiable);
        assert_eq!(
            answer(Some("bytes=1000-1001"), 1000),
            Answer::NotSatisfiable
        );
        assert_eq!(answer(Some("bytes=-0"), 1000), Answer::NotSatisfiable);
        assert_eq!(answer(Some("bytes=0-"), 0), Answer::NotSatisfiable);
        assert_eq!(answer(Some("bytes=-1"), 0), Answer::NotSatisfiable);
    }

    #[test]
    fn what_the_server_may_ignore_gets_everything() {
        for range in [
            None,
            Some("items=0-1"),
            Some("bytes=5-1"),
            Some("bytes=a-b"),
            Some("bytes=-"),
            Some("bytes=+1-2"),
            Some("bytes=0-1,5-6"),
        ] {
            assert_eq!(answer(range, 1000), Answer::Whole, "{range:?}");
        }
    }
}
