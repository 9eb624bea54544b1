use thiserror::Error;

/// Why an S3 key cannot be used as a GCS object name as it is.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ObjectNameError {
    #[error("the key is empty")]
    Empty,
    #[error("the key is {0} bytes long; GCS object names are at most 1024 bytes of UTF-8")]
    TooLong(usize),
    #[error("the key contains a carriage return or line feed, which GCS object names cannot hold")]
    LineBreak,
    #[error("the key is `.` or `..`, which GCS refuses as an object name")]
    DotName,
    #[error("keys under `.well-known/acme-challenge/` are reserved by GCS")]
    AcmeChallenge,
}

/// The GCS object name of the replica of S3 key `key`: the key itself, byte for byte.
///
/// yuba never rewrites names, so that no two S3 keys can map onto one replica; a key that GCS
/// cannot hold is refused with the reason instead. The rules are GCS's documented naming
/// requirements (S3's are looser).
pub fn gcs_object_name(key: &str) -> Result<&str, ObjectNameError> {
    if key.is_empty() {
        return Err(ObjectNameError::Empty);
    }
    if key.len() > 1024 {
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
}
