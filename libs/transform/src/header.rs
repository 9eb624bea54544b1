//! What a source's header declares, read from its first bytes alone, before the rest has arrived:
//! enough to know what decoding it will cost (see `memory`). Nothing here allocates in
//! proportion to the image, and a header that ends before it says everything is `None`, never a
//! guess.

use crate::sniff::{PNG_SIGNATURE, SourceFormat, gif_descriptors};

/// The size and pixel layout a source declares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Declared {
    /// The stored size (before EXIF orientation).
    pub width: u32,
    pub height: u32,
    pub layout: Layout,
}

/// What decides the decoder's buffers, per format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Layout {
    Jpeg {
        /// SOF2 (and the other progressive frames): every coefficient of the image is held
        /// until the last scan.
        progressive: bool,
        /// Each component's sampling factors (horizontal, vertical).
        sampling: Vec<(u8, u8)>,
    },
    Png {
        /// Samples per pixel as stored: 1 (grey, palette), 2 (grey + alpha), 3 (RGB), 4 (RGBA).
        samples: u8,
        /// Adam7: the rows arrive in seven passes, so the image cannot be decoded in strips.
        interlaced: bool,
        /// A `tRNS` chunk (transparency for grey, RGB and palette images) comes before the first
        /// `IDAT`; `None` when the bytes end before the first `IDAT` does.
        transparency: Option<bool>,
    },
    Gif,
    Webp {
        alpha: bool,
    },
}

impl Layout {
    /// Whether the decoded image may carry an alpha channel (so four channels, not three).
    pub(crate) fn may_have_alpha(&self) -> bool {
        match self {
            Layout::Jpeg { .. } => false,
            Layout::Png {
                samples,
                transparency,
                ..
            } => *samples == 2 || *samples == 4 || *transparency != Some(false),
            Layout::Gif => true,
            Layout::Webp { alpha } => *alpha,
        }
    }
}

/// The header of `bytes` (the first bytes of a source of `format`), or `None` if they end before
/// it does, or it is malformed (the decoder then gives the reason).
pub(crate) fn declared(format: SourceFormat, bytes: &[u8]) -> Option<Declared> {
    match format {
        SourceFormat::Jpeg => jpeg(bytes),
        SourceFormat::Png => png(bytes),
        SourceFormat::Gif => gif(bytes),
        SourceFormat::Webp => webp(bytes),
    }
}

fn u16_le(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}

fn u16_be(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}

fn u32_be(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

fn u24_le(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at + 3)?;
    Some(u32::from(b[0]) | u32::from(b[1]) << 8 | u32::from(b[2]) << 16)
}

/// Walks the JPEG segments up to the frame header (SOFn). EXIF, ICC and other APPn segments come
/// first in every writer; each is at most 64 KiB, but there may be many.
fn jpeg(bytes: &[u8]) -> Option<Declared> {
    let mut at = 2;
    loop {
        if *bytes.get(at)? != 0xFF {
            return None;
        }
        // Any number of 0xFF fill bytes may precede a marker.
        while *bytes.get(at + 1)? == 0xFF {
            at += 1;
        }
        let marker = *bytes.get(at + 1)?;
        at += 2;
        match marker {
            // Standalone markers: no length.
            0x01 | 0xD0..=0xD7 => continue,
            // A scan before any frame header, or the end of the image: malformed.
            0xDA | 0xD9 => return None,
            0xC0..=0xCF if !matches!(marker, 0xC4 | 0xC8 | 0xCC) => {
                return jpeg_frame(
                    bytes.get(at..)?,
                    matches!(marker, 0xC2 | 0xC6 | 0xCA | 0xCE),
                );
            }
            _ => at += usize::from(u16_be(bytes, at)?),
        }
    }
}

/// A frame header: length, precision, height, width, then (id, sampling, table) per component.
fn jpeg_frame(segment: &[u8], progressive: bool) -> Option<Declared> {
    let segment = segment.get(..usize::from(u16_be(segment, 0)?))?;
    let height = u16_be(segment, 3)?;
    let width = u16_be(segment, 5)?;
    let count = usize::from(*segment.get(7)?);
    let sampling = (0..count)
        .map(|i| {
            let factors = *segment.get(8 + 3 * i + 1)?;
            Some((factors >> 4, factors & 0x0F))
        })
        .collect::<Option<Vec<_>>>()?;
    // A height of 0 (set later by a DNL marker) or sampling factors outside 1..=4 are for the
    // decoder to refuse.
    if height == 0
        || sampling
            .iter()
            .any(|&(h, v)| !(1..=4).contains(&h) || !(1..=4).contains(&v))
    {
        return None;
    }
    Some(Declared {
        width: u32::from(width),
        height: u32::from(height),
        layout: Layout::Jpeg {
            progressive,
            sampling,
        },
    })
}

/// The logical screen, or the first frame's extent if it reaches past it: the decoder allocates
/// a buffer for the frame as declared.
fn gif(bytes: &[u8]) -> Option<Declared> {
    let first = gif_descriptors(bytes).next()?;
    let extent =
        |at: usize| Some(u32::from(u16_le(bytes, at)?) + u32::from(u16_le(bytes, at + 4)?));
    Some(Declared {
        width: u32::from(u16_le(bytes, 6)?).max(extent(first + 1)?),
        height: u32::from(u16_le(bytes, 8)?).max(extent(first + 3)?),
        layout: Layout::Gif,
    })
}

/// `IHDR` (always the first chunk), then the chunks before the first `IDAT` for `tRNS`.
fn png(bytes: &[u8]) -> Option<Declared> {
    let at = PNG_SIGNATURE.len();
    if bytes.get(at + 4..at + 8)? != b"IHDR" {
        return None;
    }
    let width = u32_be(bytes, at + 8)?;
    let height = u32_be(bytes, at + 12)?;
    let samples = match *bytes.get(at + 17)? {
        0 | 3 => 1,
        4 => 2,
        2 => 3,
        6 => 4,
        _ => return None,
    };
    let interlaced = *bytes.get(at + 20)? == 1;
    let mut transparency = None;
    let mut chunk = at;
    while let (Some(length), Some(kind)) = (u32_be(bytes, chunk), bytes.get(chunk + 4..chunk + 8)) {
        match kind {
            b"tRNS" => {
                transparency = Some(true);
                break;
            }
            b"IDAT" => {
                transparency = Some(false);
                break;
            }
            _ => chunk = chunk.saturating_add(12).saturating_add(length as usize),
        }
    }
    Some(Declared {
        width,
        height,
        layout: Layout::Png {
            samples,
            interlaced,
            transparency,
        },
    })
}

/// The first chunk: `VP8X` (extended: canvas size and an alpha flag), `VP8L` (lossless) or
/// `VP8 ` (lossy, no alpha).
fn webp(bytes: &[u8]) -> Option<Declared> {
    let (width, height, alpha) = match bytes.get(12..16)? {
        b"VP8X" => (
            u24_le(bytes, 24)? + 1,
            u24_le(bytes, 27)? + 1,
            bytes.get(20)? & 0x10 != 0,
        ),
        b"VP8L" => {
            if *bytes.get(20)? != 0x2F {
                return None;
            }
            let bits = u32::from_le_bytes(bytes.get(21..25)?.try_into().ok()?);
            (
                (bits & 0x3FFF) + 1,
                ((bits >> 14) & 0x3FFF) + 1,
                bits >> 28 & 1 == 1,
            )
        }
        b"VP8 " => {
            if bytes.get(23..26)? != [0x9D, 0x01, 0x2A] {
                return None;
            }
            (
                u32::from(u16_le(bytes, 26)? & 0x3FFF),
                u32::from(u16_le(bytes, 28)? & 0x3FFF),
                false,
            )
        }
        _ => return None,
    };
    Some(Declared {
        width,
        height,
        layout: Layout::Webp { alpha },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png_header(colour_type: u8, interlace: u8, before_idat: &[&[u8]]) -> Vec<u8> {
        let mut png = PNG_SIGNATURE.to_vec();
        png.extend_from_slice(&13u32.to_be_bytes());
        png.extend_from_slice(b"IHDR");
        png.extend_from_slice(&7000u32.to_be_bytes());
        png.extend_from_slice(&5000u32.to_be_bytes());
        png.extend_from_slice(&[16, colour_type, 0, 0, interlace]);
        png.extend_from_slice(&[0; 4]);
        for kind in before_idat {
            png.extend_from_slice(&2u32.to_be_bytes());
            png.extend_from_slice(kind);
            png.extend_from_slice(&[0; 6]);
        }
        png
    }

    #[test]
    fn png_headers_say_size_samples_interlace_and_transparency() {
        let png = png_header(6, 0, &[b"iCCP", b"IDAT"]);
        let png_declared = declared(SourceFormat::Png, &png).unwrap();
        assert_eq!((png_declared.width, png_declared.height), (7000, 5000));
        assert_eq!(
            png_declared.layout,
            Layout::Png {
                samples: 4,
                interlaced: false,
                transparency: Some(false)
            }
        );
        let rgb = declared(SourceFormat::Png, &png_header(2, 1, &[b"tRNS"])).unwrap();
        assert!(rgb.layout.may_have_alpha());
        assert!(matches!(
            rgb.layout,
            Layout::Png {
                samples: 3,
                interlaced: true,
                ..
            }
        ));
        let opaque = declared(SourceFormat::Png, &png_header(2, 0, &[b"IDAT"])).unwrap();
        assert!(!opaque.layout.may_have_alpha());
        // The bytes end before the first IDAT: a tRNS may still come, so alpha is assumed.
        let cut = declared(SourceFormat::Png, &png_header(2, 0, &[])).unwrap();
        assert!(cut.layout.may_have_alpha());
        assert_eq!(
            declared(SourceFormat::Png, &png_header(6, 0, &[])[..20]),
            None
        );
    }

    #[test]
    fn jpeg_headers_are_found_past_app_segments() {
        let mut jpeg = vec![0xFF, 0xD8, 0xFF, 0xE1];
        jpeg.extend_from_slice(&1002u16.to_be_bytes());
        jpeg.extend_from_slice(&[0; 1000]);
        // Fill bytes before the marker are allowed.
        jpeg.extend_from_slice(&[0xFF, 0xFF, 0xC2, 0, 17, 8]);
        jpeg.extend_from_slice(&4000u16.to_be_bytes());
        jpeg.extend_from_slice(&6000u16.to_be_bytes());
        jpeg.extend_from_slice(&[3, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1]);
        let jpeg_declared = declared(SourceFormat::Jpeg, &jpeg).unwrap();
        assert_eq!((jpeg_declared.width, jpeg_declared.height), (6000, 4000));
        assert_eq!(
            jpeg_declared.layout,
            Layout::Jpeg {
                progressive: true,
                sampling: vec![(2, 2), (1, 1), (1, 1)]
            }
        );
        assert_eq!(declared(SourceFormat::Jpeg, &jpeg[..500]), None);
        assert_eq!(declared(SourceFormat::Jpeg, &jpeg[..jpeg.len() - 1]), None);
        // A scan before any frame header is malformed.
        assert_eq!(
            declared(SourceFormat::Jpeg, &[0xFF, 0xD8, 0xFF, 0xDA, 0, 2]),
            None
        );
    }

    #[test]
    fn webp_and_gif_headers() {
        let mut lossless = b"RIFF\0\0\0\0WEBPVP8L\0\0\0\0\x2F".to_vec();
        let bits: u32 = 99 | 49 << 14 | 1 << 28;
        lossless.extend_from_slice(&bits.to_le_bytes());
        let webp = declared(SourceFormat::Webp, &lossless).unwrap();
        assert_eq!((webp.width, webp.height), (100, 50));
        assert_eq!(webp.layout, Layout::Webp { alpha: true });

        let mut extended = b"RIFF\0\0\0\0WEBPVP8X\x0A\0\0\0\x10\0\0\0".to_vec();
        extended.extend_from_slice(&[0x3F, 0x1F, 0, 0x0F, 0, 0]);
        let webp = declared(SourceFormat::Webp, &extended).unwrap();
        assert_eq!((webp.width, webp.height), (8000, 16));

        // A 16 × 16 screen whose first frame is 8000 wide, at x = 10.
        let mut gif = b"GIF89a\x10\x00\x10\x00\x00\x00\x00".to_vec();
        gif.extend_from_slice(b"\x2C\x0A\x00\x00\x00\x40\x1F\x10\x00\x00\x02\x02\x44\x01\x00");
        let screen = declared(SourceFormat::Gif, &gif).unwrap();
        assert_eq!((screen.width, screen.height), (8010, 16));
        assert_eq!(declared(SourceFormat::Gif, &gif[..15]), None);
    }
}
