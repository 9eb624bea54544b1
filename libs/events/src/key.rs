use thiserror::Error;

/// Why a key from an S3 event notification cannot be decoded.
///
/// Both mean the key was not encoded by S3 (which escapes every `%` as `%25` and only ever
/// encodes UTF-8): the payload was forged, altered, or produced by an emitter with other rules.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum KeyDecodeError {
    #[error(
        "`%` at byte {offset} of the key is not followed by two hex digits (found {found:?}); \
         S3 writes a literal `%` as `%25`, so this key was not URL-encoded by S3"
    )]
    InvalidEscape { offset: usize, found: String },
    #[error(
        "the decoded key is not UTF-8 (the bytes after decoded byte {valid_up_to} are not); \
         S3 keys are UTF-8, so this key was not URL-encoded by S3"
    )]
    NotUtf8 { valid_up_to: usize },
}

/// Decodes an object key as S3 writes it into event notifications (`s3.object.key`), and into
/// the `Key` column of CSV inventory reports (`yuba-inventory`).
///
/// S3 form-URL-encodes keys there (`application/x-www-form-urlencoded`): a space becomes `+`,
/// a literal `+` becomes `%2B`, and non-ASCII UTF-8 is percent-encoded byte by byte. A plain
/// percent-decoder would leave `+` alone and replicate `a b.jpg` as `a+b.jpg`, a different
/// object. Decoding is strict: a malformed escape is an error rather than being passed through,
/// because guessing would silently copy to (or delete) the wrong name.
pub fn decode_event_key(raw: &str) -> Result<String, KeyDecodeError> {
    if !raw.contains(['%', '+']) {
        return Ok(raw.to_owned());
    }
    let bytes = raw.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => {
                decoded.push(b' ');
                i += 1;
            }
            b'%' => {
                let high = bytes.get(i + 1).copied().and_then(hex_value);
                let low = bytes.get(i + 2).copied().and_then(hex_value);
                let (Some(high), Some(low)) = (high, low) else {
                    return Err(KeyDecodeError::InvalidEscape {
                        offset: i,
                        found: raw[i..].chars().take(3).collect(),
                    });
                };
                decoded.push((high << 4) | low);
                i += 3;
            }
            other => {
                decoded.push(other);
                i += 1;
            }
        }
    }
    String::from_utf8(decoded).map_err(|error| KeyDecodeError::NotUtf8 {
        valid_up_to: error.utf8_error().valid_up_to(),
    })
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

    #[test]
    fn plus_is_a_space_and_percent_2b_is_a_plus() {
        assert_eq!(decode_event_key("a+b%2Bc%20d").unwrap(), "a b+c d");
        assert_eq!(decode_event_key("a+b%2Bc.jpg").unwrap(), "a b+c.jpg");
        assert_eq!(
            decode_event_key("%2b").unwrap(),
            "+",
            "hex digits in either case"
        );
        assert_eq!(
            decode_event_key("photos/2026/cat.jpg").unwrap(),
            "photos/2026/cat.jpg"
        );
        assert_eq!(decode_event_key("100%25").unwrap(), "100%");
        assert_eq!(
            decode_event_key("test%2F10%3A47%3A07.log").unwrap(),
            "test/10:47:07.log"
        );
    }

    #[test]
    fn percent_encoded_utf8_is_decoded() {
        assert_eq!(decode_event_key("%E6%97%A5").unwrap(), "日");
        assert_eq!(
            decode_event_key("caf%C3%A9+%E6%97%A5%E6%9C%AC.jpg").unwrap(),
            "café 日本.jpg"
        );
        assert_eq!(
            decode_event_key("raw-é").unwrap(),
            "raw-é",
            "unencoded UTF-8 passes"
        );
    }

    #[test]
    fn malformed_escapes_are_refused_with_their_position() {
        assert_eq!(
            decode_event_key("a%ZZ"),
            Err(KeyDecodeError::InvalidEscape {
                offset: 1,
                found: "%ZZ".into()
            })
        );
        for truncated in ["%", "%4", "a%4", "日%"] {
            assert!(
                matches!(
                    decode_event_key(truncated),
                    Err(KeyDecodeError::InvalidEscape { .. })
                ),
                "{truncated}"
            );
        }
        // A `%` before a multi-byte character must not split it when quoting what was found.
        assert_eq!(
            decode_event_key("%日本"),
            Err(KeyDecodeError::InvalidEscape {
                offset: 0,
                found: "%日本".into()
            })
        );
    }

    #[test]
    fn bytes_that_are_not_utf8_are_refused() {
        assert_eq!(
            decode_event_key("%FF"),
            Err(KeyDecodeError::NotUtf8 { valid_up_to: 0 })
        );
        assert_eq!(
            decode_event_key("ab%E6%97"),
            Err(KeyDecodeError::NotUtf8 { valid_up_to: 2 }),
            "a truncated sequence"
        );
    }

    #[test]
    fn every_ascii_byte_decodes_from_its_escape_in_either_case() {
        for byte in 0_u8..0x80 {
            let expected = char::from(byte).to_string();
            for raw in [format!("%{byte:02X}"), format!("%{byte:02x}")] {
                assert_eq!(decode_event_key(&raw).unwrap(), expected, "{raw}");
            }
        }
        // Control characters come through as themselves; CR and LF too (S3 keys may hold
        // them; whether GCS can is the worker's decision, with its own reason).
        assert_eq!(
            decode_event_key("a%00b%09c%0D%0Ad%1B%7F").unwrap(),
            "a\0b\tc\r\nd\u{1b}\u{7f}"
        );
        // `+` is a space only outside escapes; an escape's digits are never re-read.
        assert_eq!(decode_event_key("%2B+%20%252B").unwrap(), "+  %2B");
        assert_eq!(decode_event_key("%2F%2f/").unwrap(), "///");
    }

    #[test]
    fn percent_sequences_that_are_not_utf8_are_refused_with_why() {
        for (raw, valid_up_to) in [
            ("ok%C3%28", 2),     // a lead byte followed by ASCII
            ("%C0%AF", 0),       // an overlong `/`
            ("%E0%80%AF", 0),    // another overlong `/`
            ("%ED%A0%80", 0),    // a UTF-16 surrogate
            ("%F4%90%80%80", 0), // past U+10FFFF
            ("x%80", 1),         // a lone continuation byte
            ("%F0%9F%98", 0),    // a truncated four-byte sequence
            ("%FE%FF", 0),       // bytes UTF-8 never uses
        ] {
            let error = decode_event_key(raw).unwrap_err();
            assert_eq!(error, KeyDecodeError::NotUtf8 { valid_up_to }, "{raw}");
            let message = error.to_string();
            assert!(
                message.contains("not UTF-8") && message.contains("not URL-encoded by S3"),
                "{message}"
            );
        }
        // An escape cut short by `+` or the end is an escape error, not a guess.
        for raw in ["%+1", "%%41", "%2", "a%", "%G0"] {
            assert!(
                matches!(
                    decode_event_key(raw),
                    Err(KeyDecodeError::InvalidEscape { .. })
                ),
                "{raw}"
            );
        }
    }

    #[test]
    fn normalisation_forms_decode_to_distinct_keys() {
        let nfc = decode_event_key("caf%C3%A9.jpg").unwrap();
        let nfd = decode_event_key("cafe%CC%81.jpg").unwrap();
        assert_eq!(nfc, "caf\u{e9}.jpg");
        assert_eq!(nfd, "cafe\u{301}.jpg");
        assert_ne!(nfc, nfd);
    }

    #[test]
    fn a_1000_byte_key_decodes() {
        let key = "é".repeat(500);
        assert_eq!(key.len(), 1000);
        let encoded = "%C3%A9".repeat(500);
        assert_eq!(decode_event_key(&encoded).unwrap(), key);
        let ascii = "k".repeat(1000);
        assert_eq!(decode_event_key(&ascii).unwrap(), ascii);
    }

    #[test]
    fn keys_round_trip_through_form_encoding() {
        for key in [
            "a b+c d",
            "photos/ünïcödé/日本 (1).jpg",
            "100% & more?=;:@,$",
            "tab\there",
            "  leading and trailing  ",
        ] {
            let percent = utf8_percent_encode(key, NON_ALPHANUMERIC).to_string();
            assert_eq!(decode_event_key(&percent).unwrap(), key);
            let form = percent.replace("%20", "+");
            assert_eq!(decode_event_key(&form).unwrap(), key);
        }
    }
}
