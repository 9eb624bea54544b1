//! Recognising a source by its bytes, and counting its frames without decoding any.
//!
//! The content type on an S3 object is whatever the uploader claimed; only the magic numbers say
//! which decoder may look at the bytes.

use crate::TransformError;

/// A source format yuba decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceFormat {
    Jpeg,
    Png,
    Gif,
    Webp,
}

impl SourceFormat {
    pub const ALL: [SourceFormat; 4] = [
        SourceFormat::Jpeg,
        SourceFormat::Png,
        SourceFormat::Gif,
        SourceFormat::Webp,
    ];

    /// The format whose [`content_type`](SourceFormat::content_type) this is: how a replica's
    /// record names the format its bytes were identified as.
    pub fn from_content_type(content_type: &str) -> Option<SourceFormat> {
        SourceFormat::ALL
            .into_iter()
            .find(|format| format.content_type() == content_type)
    }

    pub fn name(self) -> &'static str {
        match self {
            SourceFormat::Jpeg => "JPEG",
            SourceFormat::Png => "PNG",
            SourceFormat::Gif => "GIF",
            SourceFormat::Webp => "WebP",
        }
    }

    /// The media type, for matching profiles by what the bytes are rather than what the upload
    /// claimed.
    pub fn content_type(self) -> &'static str {
        match self {
            SourceFormat::Jpeg => "image/jpeg",
            SourceFormat::Png => "image/png",
            SourceFormat::Gif => "image/gif",
            SourceFormat::Webp => "image/webp",
        }
    }
}

pub(crate) const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

/// The format of `bytes`, from its magic number.
pub(crate) fn sniff(bytes: &[u8]) -> Result<SourceFormat, TransformError> {
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return Ok(SourceFormat::Jpeg);
    }
    if bytes.starts_with(PNG_SIGNATURE) {
        return Ok(SourceFormat::Png);
    }
    if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        return Ok(SourceFormat::Gif);
    }
    if bytes.len() >= 12 && &bytes[0..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        return Ok(SourceFormat::Webp);
    }
    Err(TransformError::Unsupported(
        other_format(bytes).0.to_owned(),
    ))
}

/// A name for bytes that are not a format yuba decodes, and whether they are an image at all.
/// The formats people actually upload are named, so that a recorded reason is useful.
fn other_format(bytes: &[u8]) -> (&'static str, bool) {
    if bytes.is_empty() {
        ("empty file", false)
    } else if bytes.starts_with(b"II*\0") || bytes.starts_with(b"MM\0*") {
        ("TIFF", true)
    } else if bytes.starts_with(b"BM") {
        ("BMP", true)
    } else if bytes.len() >= 12 && &bytes[4..8] == b"ftyp" {
        match &bytes[8..12] {
            b"avif" | b"avis" => ("AVIF", true),
            b"heic" | b"heix" | b"mif1" | b"msf1" | b"hevc" => ("HEIF/HEIC", true),
            _ => ("ISO media (not an image yuba decodes)", false),
        }
    } else if bytes.starts_with(b"<svg") {
        ("SVG", true)
    } else if bytes.starts_with(b"<?xml") {
        ("XML", false)
    } else if bytes.starts_with(b"%PDF") {
        ("PDF", false)
    } else if bytes.starts_with(&[0xFF, 0x0A]) || bytes.starts_with(b"\0\0\0\x0CJXL ") {
        ("JPEG XL", true)
    } else {
        ("unrecognised (no known magic number)", false)
    }
}

/// What the start of a file is, for deciding whether it should get variants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Identified {
    /// An image yuba decodes.
    Decodable(SourceFormat),
    /// An image in a format yuba does not decode (TIFF, BMP, AVIF, HEIC, SVG, JPEG XL): its
    /// missing variants are worth recording.
    UnsupportedImage(&'static str),
    /// Not an image (text, PDF, an archive, nothing recognisable).
    NotAnImage,
}

/// Identifies `bytes` (the first few dozen are enough) by magic number.
pub fn identify(bytes: &[u8]) -> Identified {
    match sniff(bytes) {
        Ok(format) => Identified::Decodable(format),
        Err(_) => match other_format(bytes) {
            (name, true) => Identified::UnsupportedImage(name),
            (_, false) => Identified::NotAnImage,
        },
    }
}

/// How many frames the source declares, read from its container structure alone. Only the first
/// frame is ever decoded, but a file with thousands of frames is refused like imgproxy does: it is
/// almost certainly not a photo, and other consumers of the original would decode them all.
pub(crate) fn frame_count(format: SourceFormat, bytes: &[u8]) -> u32 {
    match format {
        SourceFormat::Jpeg => 1,
        SourceFormat::Png => png_frames(bytes),
        SourceFormat::Gif => gif_frames(bytes),
        SourceFormat::Webp => webp_frames(bytes),
    }
}

/// APNG declares its frame count in `acTL`, which must come before the first `IDAT`.
fn png_frames(bytes: &[u8]) -> u32 {
    let mut at = PNG_SIGNATURE.len();
    while let Some(header) = bytes.get(at..at + 8) {
        let length = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let kind = &header[4..8];
        if kind == b"IDAT" {
            break;
        }
        if kind == b"acTL" {
            if let Some(data) = bytes.get(at + 8..at + 12) {
                return u32::from_be_bytes([data[0], data[1], data[2], data[3]]).max(1);
            }
            break;
        }
        at = at.saturating_add(12).saturating_add(length);
    }
    1
}

/// Walks GIF blocks, skipping the data sub-blocks, and counts the image descriptors. A truncated
/// file just stops the count: the decoder reports the truncation.
fn gif_frames(bytes: &[u8]) -> u32 {
    let count = gif_descriptors(bytes).count();
    u32::try_from(count).unwrap_or(u32::MAX).max(1)
}

/// The offsets of a GIF's image descriptors (0x2C), in order, as far as `bytes` go.
pub(crate) fn gif_descriptors(bytes: &[u8]) -> impl Iterator<Item = usize> + '_ {
    let skip_sub_blocks = |mut at: usize| -> Option<usize> {
        loop {
            let size = usize::from(*bytes.get(at)?);
            at += 1;
            if size == 0 {
                return Some(at);
            }
            at += size;
        }
    };
    let mut at = bytes.get(10).map(|&packed| {
        if packed & 0x80 != 0 {
            13 + (3 << ((packed & 0x07) + 1))
        } else {
            13
        }
    });
    std::iter::from_fn(move || {
        loop {
            let here = at?;
            match *bytes.get(here)? {
                0x2C => {
                    let local = *bytes.get(here + 9)?;
                    let mut next = here + 10;
                    if local & 0x80 != 0 {
                        next += 3 << ((local & 0x07) + 1);
                    }
                    // LZW minimum code size, then the image data.
                    at = skip_sub_blocks(next + 1);
                    return Some(here);
                }
                0x21 => at = skip_sub_blocks(here + 2),
                _ => return None,
            }
        }
    })
}

/// Counts the `ANMF` chunks of an animated WebP (a still WebP has none).
fn webp_frames(bytes: &[u8]) -> u32 {
    let mut at = 12;
    let mut frames = 0u32;
    while let Some(header) = bytes.get(at..at + 8) {
        let length = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
        if &header[0..4] == b"ANMF" {
            frames = frames.saturating_add(1);
        }
        // Chunks are padded to an even length.
        at = at
            .saturating_add(8)
            .saturating_add(length)
            .saturating_add(length & 1);
    }
    frames.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recorded_content_type_names_its_format_again() {
        for format in SourceFormat::ALL {
            assert_eq!(
                SourceFormat::from_content_type(format.content_type()),
                Some(format)
            );
        }
        assert_eq!(SourceFormat::from_content_type("image/heic"), None);
    }

    #[test]
    fn magic_numbers_decide_and_other_formats_are_named() {
        assert_eq!(sniff(b"\xFF\xD8\xFF\xE0").ok(), Some(SourceFormat::Jpeg));
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n").ok(), Some(SourceFormat::Png));
        assert_eq!(sniff(b"GIF89a").ok(), Some(SourceFormat::Gif));
        assert_eq!(
            sniff(b"RIFF\0\0\0\0WEBPVP8 ").ok(),
            Some(SourceFormat::Webp)
        );
        let heic = sniff(b"\0\0\0\x18ftypheic\0\0\0\0");
        assert!(matches!(heic, Err(TransformError::Unsupported(ref f)) if f == "HEIF/HEIC"));
        assert!(matches!(sniff(b"II*\0"), Err(TransformError::Unsupported(ref f)) if f == "TIFF"));
        assert!(matches!(sniff(b""), Err(TransformError::Unsupported(_))));
        assert!(matches!(
            sniff(b"hello world"),
            Err(TransformError::Unsupported(_))
        ));
    }

    #[test]
    fn frames_are_counted_from_the_container() {
        // GIF: header, screen descriptor without a colour table, two 1×1 images, trailer.
        let mut gif = b"GIF89a\x01\x00\x01\x00\x00\x00\x00".to_vec();
        for _ in 0..2 {
            gif.extend_from_slice(b"\x21\xF9\x04\x00\x00\x00\x00\x00");
            gif.extend_from_slice(b"\x2C\0\0\0\0\x01\x00\x01\x00\x00\x02\x02\x44\x01\x00");
        }
        gif.push(0x3B);
        assert_eq!(frame_count(SourceFormat::Gif, &gif), 2);
        assert_eq!(frame_count(SourceFormat::Gif, &gif[..20]), 1);

        let mut png = PNG_SIGNATURE.to_vec();
        png.extend_from_slice(&8u32.to_be_bytes());
        png.extend_from_slice(b"acTL");
        png.extend_from_slice(&300u32.to_be_bytes());
        png.extend_from_slice(&0u32.to_be_bytes());
        png.extend_from_slice(&[0; 4]);
        assert_eq!(frame_count(SourceFormat::Png, &png), 300);

        let mut webp = b"RIFF\0\0\0\0WEBPVP8X".to_vec();
        webp.extend_from_slice(&10u32.to_le_bytes());
        webp.extend_from_slice(&[0; 10]);
        for _ in 0..3 {
            webp.extend_from_slice(b"ANMF");
            webp.extend_from_slice(&3u32.to_le_bytes());
            webp.extend_from_slice(&[0; 4]);
        }
        assert_eq!(frame_count(SourceFormat::Webp, &webp), 3);
    }

    #[test]
    fn images_yuba_cannot_decode_are_told_from_other_files() {
        assert_eq!(
            identify(b"\x89PNG\r\n\x1a\n...."),
            Identified::Decodable(SourceFormat::Png)
        );
        assert_eq!(
            identify(b"II*\0rest of a tiff"),
            Identified::UnsupportedImage("TIFF")
        );
        assert_eq!(
            identify(b"<svg xmlns=..."),
            Identified::UnsupportedImage("SVG")
        );
        assert_eq!(identify(b"%PDF-1.7"), Identified::NotAnImage);
        assert_eq!(identify(b"hello, world"), Identified::NotAnImage);
        assert_eq!(identify(b""), Identified::NotAnImage);
    }
}
