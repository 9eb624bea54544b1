//! What a render will allocate, known from the source's header alone, so that a caller running
//! several at once can admit each by its cost before any pixel exists (a 423 KB PNG can declare
//! 7000 × 7000 16-bit pixels).
//!
//! The estimate follows the decode path [`crate::render`] takes for that header (the JPEG
//! shrink-on-load scale, the PNG box shrink, the channels kept) and the buffers of each step:
//!
//! - **decoding**, per decoder: jpeg-decoder holds a progressive JPEG's coefficients for the whole
//!   image (two bytes per sample of every component, at full size whatever the scale), the
//!   components' planes at the decoded scale, and its output; the PNG path holds its output only
//!   (a strip-shrunk PNG, the reduced image); GIF and WebP (image's decoders) their output and
//!   the decoder's own state;
//! - **resampling**, per variant (largest first, the resizer's buffers reused): the decoded image,
//!   the resizer's intermediate image (the crop's width × the output's height: the vertical
//!   pass runs first for 8-bit pixels), the output, its upright copy and the encoder's buffers.
//!
//! The peak is the larger of the two phases plus a fixed allowance for the decoders' and
//! encoders' own state. `tests/memory.rs` holds the estimate to the peak RSS measured for every
//! decode path (within [`ESTIMATE_MARGIN`]).

use yuba_variants::Profile;

use crate::decode::{Header, box_shrink, jpeg_denominator};
use crate::header::{Declared, Layout, declared};
use crate::orient::Orientation;
use crate::sniff::sniff;
use crate::{Limits, needed_scale, stored_geometry};

const MIB: u64 = 1024 * 1024;

/// The fixed part of every render: the decoders' tables and zlib state, the encoders' state, the
/// resizer's coefficients, the thread's stack in use.
const FIXED: u64 = 6 * MIB;

/// How far the measured peak may exceed the estimate: a fraction of it, and a fixed amount
/// (page rounding, allocator slack). `tests/memory.rs` fails a decode path that exceeds it.
pub const ESTIMATE_MARGIN: (f64, u64) = (0.10, 4 * MIB);

/// Bytes per output pixel that the encoders allocate beyond the pixels they are given (libwebp
/// converts to YUV 4:2:0 with alpha and keeps its own output; the JPEG and PNG encoders' output
/// grows as they write).
const ENCODE_BYTES_PER_PIXEL: u64 = 4;

/// What rendering a source will take, from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryEstimate {
    /// The render allocates at most about this many bytes beyond the source it is given.
    Bytes(u64),
    /// The header is not within the bytes given: estimate again with more of the source.
    NeedMoreBytes,
}

/// Estimates the peak memory of [`crate::render`]`(source, profiles, limits)` from `head`, the
/// first bytes of `source` (`complete` when `head` is all of it).
///
/// A source the render refuses before decoding (not a format it decodes, too many pixels, a
/// header it cannot read) costs only the fixed part.
pub fn estimate_memory(
    head: &[u8],
    complete: bool,
    profiles: &[&Profile],
    limits: &Limits,
) -> MemoryEstimate {
    let Ok(format) = sniff(head) else {
        return MemoryEstimate::Bytes(FIXED);
    };
    match declared(format, head) {
        Some(declared) => {
            let pixels = u64::from(declared.width) * u64::from(declared.height);
            if pixels == 0 || pixels > limits.max_pixels {
                return MemoryEstimate::Bytes(FIXED);
            }
            MemoryEstimate::Bytes(FIXED + peak(&declared, profiles))
        }
        // The render refuses a source whose header cannot be read (`decode` checks it first).
        None if complete => MemoryEstimate::Bytes(FIXED),
        None => MemoryEstimate::NeedMoreBytes,
    }
}

/// The decoded image's size and channels, and the decoder's peak.
struct Decoding {
    width: u64,
    height: u64,
    channels: u64,
    /// The stored size is divided by this.
    shrink: u32,
    peak: u64,
}

fn peak(declared: &Declared, profiles: &[&Profile]) -> u64 {
    // The EXIF orientation is not read here; the scale that needs the larger decode of the two
    // (upright or transposed) is assumed.
    let needed = [Orientation::UPRIGHT, Orientation::from_exif(6)]
        .into_iter()
        .map(|orientation| {
            let header = Header {
                width: declared.width,
                height: declared.height,
                orientation,
            };
            needed_scale(profiles, &header)
        })
        .fold(0.0, f64::max);
    let decoding = decoding(declared, needed);
    let decoded = decoding.width * decoding.height * decoding.channels;
    decoding
        .peak
        .max(decoded + resampling(declared, &decoding, profiles))
}

fn decoding(declared: &Declared, needed: f64) -> Decoding {
    let (width, height) = (u64::from(declared.width), u64::from(declared.height));
    let alpha = declared.layout.may_have_alpha();
    let channels = if alpha { 4 } else { 3 };
    match &declared.layout {
        Layout::Jpeg {
            progressive,
            sampling,
        } => jpeg(
            width,
            height,
            *progressive,
            sampling,
            jpeg_denominator(needed),
        ),
        Layout::Png { interlaced, .. } => {
            let shrink = if *interlaced { 1 } else { box_shrink(needed) };
            let (w, h) = (
                width.div_ceil(u64::from(shrink)),
                height.div_ceil(u64::from(shrink)),
            );
            Decoding {
                width: w,
                height: h,
                channels,
                shrink,
                // The output, written once; the rows and sums are within the fixed part.
                peak: w * h * channels,
            }
        }
        Layout::Gif | Layout::Webp { .. } => Decoding {
            width,
            height,
            channels,
            shrink: 1,
            // The output as RGBA (or RGB for lossy WebP), and the decoder's own state: lossy
            // WebP's YUV 4:2:0 planes, a GIF frame that is not the whole canvas. Measured: 5
            // bytes per pixel at most (`tests/memory.rs`).
            peak: width * height * 5,
        },
    }
}

/// jpeg-decoder: a progressive frame's coefficients (64 `i16` per block of every component, at
/// full size, MCU-aligned), every component's plane at the decoded scale, and its output (grey
/// one byte per pixel, CMYK four, widened or narrowed to RGB in place).
fn jpeg(
    width: u64,
    height: u64,
    progressive: bool,
    sampling: &[(u8, u8)],
    denominator: u32,
) -> Decoding {
    let max_h = u64::from(sampling.iter().map(|s| s.0).max().unwrap_or(1));
    let max_v = u64::from(sampling.iter().map(|s| s.1).max().unwrap_or(1));
    let mcus_x = width.div_ceil(8 * max_h);
    let mcus_y = height.div_ceil(8 * max_v);
    let n = u64::from(denominator);
    let block = 8 / n;
    let mut coefficients = 0;
    let mut planes = 0;
    for &(h, v) in sampling {
        let blocks = mcus_x * u64::from(h) * mcus_y * u64::from(v);
        if progressive {
            // Two bytes each, and a quarter more: after the last scan the decoder copies them
            // row by row into the queues of its per-component IDCT threads, which may lag.
            coefficients += blocks * 64 * 2 * 5 / 4;
        }
        planes += blocks * block * block;
    }
    let (w, h) = (width.div_ceil(n), height.div_ceil(n));
    let output = w * h * (sampling.len() as u64).max(3);
    Decoding {
        width: w,
        height: h,
        channels: 3,
        shrink: denominator,
        peak: coefficients + planes + output,
    }
}

/// The largest of the variants' resampling buffers (they are made one after another, largest
/// first, and the resizer keeps its intermediate buffer at its largest).
fn resampling(declared: &Declared, decoding: &Decoding, profiles: &[&Profile]) -> u64 {
    let scale = 1.0 / f64::from(decoding.shrink);
    let stored = (declared.width, declared.height);
    let mut intermediate = 0u64;
    let mut outputs = 0u64;
    for orientation in [Orientation::UPRIGHT, Orientation::from_exif(6)] {
        let (upright_width, upright_height) = orientation.upright(stored.0, stored.1);
        for profile in profiles {
            let plan = profile.plan(upright_width, upright_height);
            let geometry = stored_geometry(&plan, orientation, stored);
            let crop_width = ((geometry.crop.2 * scale).ceil() as u64).min(decoding.width);
            let (w, h) = (u64::from(geometry.width), u64::from(geometry.height));
            // The filter's support reaches a few pixels past the crop on each side.
            intermediate = intermediate.max((crop_width + 8) * h * decoding.channels);
            // The output, its upright copy, and the encoder's.
            outputs = outputs.max(w * h * (2 * decoding.channels + ENCODE_BYTES_PER_PIXEL));
        }
    }
    intermediate + outputs
}

#[cfg(test)]
mod tests {
    use super::*;
    use yuba_variants::VariantConfig;

    fn profiles(document: &str) -> VariantConfig {
        VariantConfig::from_json(document).unwrap()
    }

    fn png_header(width: u32, height: u32, colour_type: u8) -> Vec<u8> {
        let mut png = crate::sniff::PNG_SIGNATURE.to_vec();
        png.extend_from_slice(&13u32.to_be_bytes());
        png.extend_from_slice(b"IHDR");
        png.extend_from_slice(&width.to_be_bytes());
        png.extend_from_slice(&height.to_be_bytes());
        png.extend_from_slice(&[16, colour_type, 0, 0, 0]);
        png.extend_from_slice(&[0; 4]);
        png.extend_from_slice(&0u32.to_be_bytes());
        png.extend_from_slice(b"IDAT");
        png
    }

    #[test]
    fn a_small_target_shrinks_a_large_png_while_it_decodes() {
        let config = profiles(
            r#"{"profiles": [{"name": "s", "width": 400, "height": 400, "format": "jpeg"}]}"#,
        );
        let small: Vec<&Profile> = config.profiles.iter().collect();
        let config = profiles(
            r#"{"profiles": [{"name": "l", "width": 7000, "height": 7000, "format": "jpeg"}]}"#,
        );
        let large: Vec<&Profile> = config.profiles.iter().collect();
        let png = png_header(7000, 7000, 6);
        let limits = Limits::default();
        let MemoryEstimate::Bytes(small) = estimate_memory(&png, false, &small, &limits) else {
            panic!("the header is all there");
        };
        let MemoryEstimate::Bytes(large) = estimate_memory(&png, false, &large, &limits) else {
            panic!("the header is all there");
        };
        // 7000² RGBA is 196 MB at full size; 400 px needs only 1/8 of it (1/16 of the pixels).
        assert!(large > 196_000_000, "{large}");
        assert!(small < 30_000_000, "{small}");
    }

    #[test]
    fn refused_and_unreadable_sources_cost_the_fixed_part() {
        let none: Vec<&Profile> = Vec::new();
        let limits = Limits::default();
        let bomb = png_header(60_000, 60_000, 6);
        assert_eq!(
            estimate_memory(&bomb, false, &none, &limits),
            MemoryEstimate::Bytes(FIXED)
        );
        assert_eq!(
            estimate_memory(b"not an image", true, &none, &limits),
            MemoryEstimate::Bytes(FIXED)
        );
        let cut = &png_header(100, 100, 6)[..20];
        assert_eq!(
            estimate_memory(cut, false, &none, &limits),
            MemoryEstimate::NeedMoreBytes
        );
        assert_eq!(
            estimate_memory(cut, true, &none, &limits),
            MemoryEstimate::Bytes(FIXED)
        );
    }
}
