use md5::Md5;
use sha2::{Digest, Sha256};
use thiserror::Error;
use yuba_model::Checksums;

/// What the source said the content is, before any byte was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpectedContent {
    pub size: u64,
    /// From a single-part ETag.
    pub md5: Option<[u8; 16]>,
    /// From S3's full-object CRC32C.
    pub crc32c: Option<u32>,
}

/// The bytes read do not match what the source promised: they were damaged or cut short on the
/// way from S3. Reading again can succeed, so this is transient.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum IntegrityError {
    #[error("the source sent more than the {expected} bytes it announced")]
    TooLong { expected: u64 },
    #[error("the source stream ended after {received} of {expected} bytes")]
    TooShort { expected: u64, received: u64 },
    #[error("the content's MD5 is {actual} but the source ETag says {expected}")]
    Md5Mismatch { expected: String, actual: String },
    #[error("the content's CRC32C is {actual} but S3's checksum says {expected}")]
    Crc32cMismatch { expected: String, actual: String },
}

/// Hashes a byte stream as it passes and proves it is the content the source announced.
///
/// The verdict comes the moment the last announced byte arrives, before that byte is handed on:
/// an upload fed through the verifier fails before it can be finalised with bad content.
#[derive(Debug, Clone)]
pub struct ContentVerifier {
    expected: ExpectedContent,
    received: u64,
    sha256: Sha256,
    crc32c: u32,
    md5: Md5,
    verdict: Option<Checksums>,
}

impl ContentVerifier {
    pub fn new(expected: ExpectedContent) -> Self {
        ContentVerifier {
            expected,
            received: 0,
            sha256: Sha256::new(),
            crc32c: 0,
            md5: Md5::new(),
            verdict: None,
        }
    }

    /// Takes the next piece. `Ok(Some(checksums))` once the content is complete and verified.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<Option<Checksums>, IntegrityError> {
        let received = self.received + chunk.len() as u64;
        if received > self.expected.size || (self.verdict.is_some() && !chunk.is_empty()) {
            return Err(IntegrityError::TooLong {
                expected: self.expected.size,
            });
        }
        self.received = received;
        self.sha256.update(chunk);
        self.md5.update(chunk);
        self.crc32c = crc32c::crc32c_append(self.crc32c, chunk);
        if self.received == self.expected.size && self.verdict.is_none() {
            self.verdict = Some(self.conclude()?);
        }
        Ok(self.verdict)
    }

    /// Called at the end of the stream: the verdict, or why there is none.
    pub fn finish(&mut self) -> Result<Checksums, IntegrityError> {
        if self.verdict.is_none() && self.expected.size == 0 {
            self.verdict = Some(self.conclude()?);
        }
        self.verdict.ok_or(IntegrityError::TooShort {
            expected: self.expected.size,
            received: self.received,
        })
    }

    fn conclude(&self) -> Result<Checksums, IntegrityError> {
        let checksums = Checksums {
            sha256: self.sha256.clone().finalize().into(),
            crc32c: self.crc32c,
            md5: self.md5.clone().finalize().into(),
        };
        if let Some(expected) = self.expected.md5
            && expected != checksums.md5
        {
            return Err(IntegrityError::Md5Mismatch {
                expected: hex::encode(expected),
                actual: checksums.md5_hex(),
            });
        }
        if let Some(expected) = self.expected.crc32c
            && expected != checksums.crc32c
        {
            return Err(IntegrityError::Crc32cMismatch {
                expected: yuba_model::crc32c_to_base64(expected),
                actual: checksums.crc32c_base64(),
            });
        }
        Ok(checksums)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HELLO_MD5: &str = "5eb63bbbe01eeed093cb22bb8f5acdc3";
    const HELLO_SHA256: &str = "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9";

    fn md5(hex_digest: &str) -> [u8; 16] {
        let mut out = [0; 16];
        hex::decode_to_slice(hex_digest, &mut out).unwrap();
        out
    }

    fn expect(size: u64) -> ExpectedContent {
        ExpectedContent {
            size,
            md5: None,
            crc32c: None,
        }
    }

    #[test]
    fn known_digests_of_hello_world() {
        let mut verifier = ContentVerifier::new(ExpectedContent {
            size: 11,
            md5: Some(md5(HELLO_MD5)),
            crc32c: Some(0xc994_65aa),
        });
        assert_eq!(verifier.feed(b"hello ").unwrap(), None);
        let checksums = verifier.feed(b"world").unwrap().unwrap();
        assert_eq!(checksums.sha256_hex(), HELLO_SHA256);
        assert_eq!(checksums.md5_hex(), HELLO_MD5);
        assert_eq!(checksums.crc32c_base64(), "yZRlqg==");
        assert_eq!(verifier.feed(b"").unwrap(), Some(checksums));
        assert_eq!(verifier.finish(), Ok(checksums));
    }

    #[test]
    fn empty_content_has_the_empty_digests() {
        let mut verifier = ContentVerifier::new(ExpectedContent {
            size: 0,
            md5: Some(md5("d41d8cd98f00b204e9800998ecf8427e")),
            crc32c: Some(0),
        });
        let checksums = verifier.finish().unwrap();
        assert_eq!(
            checksums.sha256_hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn damaged_content_is_caught_before_its_last_byte_passes() {
        let mut verifier = ContentVerifier::new(ExpectedContent {
            md5: Some(md5(HELLO_MD5)),
            ..expect(11)
        });
        verifier.feed(b"hello ").unwrap();
        assert!(matches!(
            verifier.feed(b"w0rld"),
            Err(IntegrityError::Md5Mismatch { .. })
        ));

        let mut verifier = ContentVerifier::new(ExpectedContent {
            crc32c: Some(1),
            ..expect(11)
        });
        assert!(matches!(
            verifier.feed(b"hello world"),
            Err(IntegrityError::Crc32cMismatch { .. })
        ));
    }

    #[test]
    fn short_and_long_streams_are_refused() {
        let mut short = ContentVerifier::new(expect(11));
        short.feed(b"hello").unwrap();
        assert_eq!(
            short.finish(),
            Err(IntegrityError::TooShort {
                expected: 11,
                received: 5
            })
        );
        let mut long = ContentVerifier::new(expect(3));
        assert_eq!(
            long.feed(b"four"),
            Err(IntegrityError::TooLong { expected: 3 })
        );
        let mut after_the_end = ContentVerifier::new(expect(2));
        after_the_end.feed(b"ab").unwrap();
        assert_eq!(
            after_the_end.feed(b"c"),
            Err(IntegrityError::TooLong { expected: 2 })
        );
    }
}
