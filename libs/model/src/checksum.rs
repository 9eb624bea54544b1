use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

/// The digests yuba computes over every replicated byte stream.
///
/// sha256 is the strong, tool-independent identity of the content (recorded in the replica's
/// metadata); crc32c is the one checksum S3 and GCS both understand (GCS validates uploads
/// against it); md5 is what single-part S3 ETags and GCS `md5Hash` are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checksums {
    pub sha256: [u8; 32],
    pub crc32c: u32,
    pub md5: [u8; 16],
}

impl Checksums {
    /// Lowercase hex, as `sha256sum` prints it.
    pub fn sha256_hex(&self) -> String {
        hex::encode(self.sha256)
    }

    /// Base64 of the big-endian bytes: the encoding of GCS's `crc32c` field and of S3's
    /// `x-amz-checksum-crc32c`.
    pub fn crc32c_base64(&self) -> String {
        crc32c_to_base64(self.crc32c)
    }

    /// Lowercase hex, as S3 prints a single-part ETag.
    pub fn md5_hex(&self) -> String {
        hex::encode(self.md5)
    }
}

pub fn crc32c_to_base64(crc32c: u32) -> String {
    BASE64.encode(crc32c.to_be_bytes())
}

/// Decodes the base64 big-endian form used by GCS and S3; `None` if it is not 4 bytes of base64.
pub fn crc32c_from_base64(encoded: &str) -> Option<u32> {
    let bytes = BASE64.decode(encoded.trim()).ok()?;
    let bytes: [u8; 4] = bytes.try_into().ok()?;
    Some(u32::from_be_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_base64_round_trips_in_gcs_encoding() {
        // GCS documents crc32c("") == "AAAAAA==" and the crc32c of "hello world" as "yZRlqg==".
        assert_eq!(crc32c_to_base64(0), "AAAAAA==");
        assert_eq!(crc32c_to_base64(0xc994_65aa), "yZRlqg==");
        assert_eq!(crc32c_from_base64("yZRlqg=="), Some(0xc994_65aa));
        assert_eq!(crc32c_from_base64("not base64"), None);
        assert_eq!(
            crc32c_from_base64("AAAAAAAA"),
            None,
            "six bytes is not a crc32c"
        );
    }
}
