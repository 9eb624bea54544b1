//! The image transform: one source in, every configured variant out. Pure (no I/O, no clock),
//! single-threaded per call (the worker runs images side by side), and bounded by [`Limits`].
//!
//! The pipeline, in the order that keeps it cheap and safe:
//!
//! 1. **Bound before decoding.** The byte size is checked first, the format is sniffed from the
//!    magic number (the object's content type is only the uploader's claim), the frame count is
//!    read from the container, and the dimensions from the header; only then is a pixel buffer
//!    allocated. A tiny file declaring 60 000 × 60 000 pixels costs microseconds to refuse.
//! 2. **Decode once**, as small as the largest variant allows. For JPEG that is shrink-on-load:
//!    the IDCT runs at 1/2, 1/4 or 1/8 scale (jpeg-decoder), which is what makes libvips fast and
//!    small. Every variant is then resampled from that one image, largest first.
//! 3. **Resample** with Lanczos3 on a SIMD resizer (fast_image_resize), cropping by the
//!    [`yuba_variants::Plan`] and with alpha premultiplied around the filter so transparent
//!    pixels do not bleed their (meaningless) colour into the edges.
//! 4. **Convert and orient** the small result: an embedded RGB ICC profile to sRGB (qcms), then
//!    EXIF orientation (1–8), so variants are sRGB and upright; geometry is planned on the
//!    upright size.
//! 5. **Encode** JPEG (jpeg-encoder), lossy WebP (libwebp) or PNG, with no metadata.
//!
//! What is and is not handled:
//!
//! - JPEG baseline and progressive, greyscale, CMYK and YCCK (converted to RGB naively, assuming
//!   Photoshop's inverted Adobe CMYK); 16-bit lossless JPEG is refused as unsupported.
//! - PNG of every colour type and depth (16-bit is reduced to 8), palette and greyscale, alpha;
//!   animated GIF and WebP give their **first frame** only, APNG its default image (the frame count is
//!   still bounded by [`Limits::max_frames`]).
//! - Embedded RGB ICC profiles (Display P3, Adobe RGB) are converted to sRGB with qcms; CMYK and
//!   grey profiles are not applied (pixels taken as they are). [`SourceInfo::icc`] says which.
//!
//! Every [`TransformError`] is permanent: retrying the same bytes gives the same answer, and the
//! caller still replicates the original.

mod colour;
mod decode;
mod encode;
mod header;
mod memory;
mod orient;
mod resample;
mod sniff;

use std::cmp::Reverse;

use yuba_variants::{Format, Plan, Profile};

pub use colour::IccHandling;
pub use memory::{ESTIMATE_MARGIN, MemoryEstimate, estimate_memory};
pub use sniff::{Identified, SourceFormat, identify};

/// Safety limits, imgproxy style, checked before any pixel buffer is allocated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest `width × height` of a source (imgproxy's default is 16.8 MP; photos from current
    /// phones reach 50 MP).
    pub max_pixels: u64,
    /// Largest source, in bytes.
    pub max_bytes: u64,
    /// Most frames a source may declare (only the first is decoded).
    pub max_frames: u32,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_pixels: 50_000_000,
            max_bytes: 64 * 1024 * 1024,
            max_frames: 256,
        }
    }
}

/// The encoding of a variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    Jpeg,
    /// Lossy WebP (with alpha when the source has it).
    Webp,
    Png,
}

impl OutputFormat {
    pub fn content_type(self) -> &'static str {
        match self {
            OutputFormat::Jpeg => "image/jpeg",
            OutputFormat::Webp => "image/webp",
            OutputFormat::Png => "image/png",
        }
    }

    /// The file extension, without the dot.
    pub fn extension(self) -> &'static str {
        match self {
            OutputFormat::Jpeg => "jpg",
            OutputFormat::Webp => "webp",
            OutputFormat::Png => "png",
        }
    }

    /// The output for a profile's format: `same` keeps JPEG, PNG and WebP, and turns anything
    /// else (GIF) into PNG, which is lossless and keeps alpha.
    pub fn for_profile(format: Format, source: SourceFormat) -> OutputFormat {
        match (format, source) {
            (Format::Jpeg, _) | (Format::Same, SourceFormat::Jpeg) => OutputFormat::Jpeg,
            (Format::Webp, _) | (Format::Same, SourceFormat::Webp) => OutputFormat::Webp,
            (Format::Png, _) | (Format::Same, SourceFormat::Png | SourceFormat::Gif) => {
                OutputFormat::Png
            }
        }
    }
}

/// One encoded variant.
#[derive(Clone, PartialEq, Eq)]
pub struct Variant {
    /// The profile's name.
    pub profile: String,
    pub format: OutputFormat,
    pub width: u32,
    pub height: u32,
    pub bytes: Vec<u8>,
}

impl std::fmt::Debug for Variant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The bytes are noise in logs; their length is what matters.
        f.debug_struct("Variant")
            .field("profile", &self.profile)
            .field("format", &self.format)
            .field("width", &self.width)
            .field("height", &self.height)
            .field("bytes", &self.bytes.len())
            .finish()
    }
}

/// What the transform learnt about the source, for logs, metrics and the replica's metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceInfo {
    pub format: SourceFormat,
    /// Upright size (after EXIF orientation).
    pub width: u32,
    pub height: u32,
    /// The EXIF orientation that was applied (1 when none).
    pub orientation: u8,
    /// Frames the container declares (only the first was decoded).
    pub frames: u32,
    /// 1, 2, 4 or 8: the JPEG was decoded at 1/n of its size (always 1 for other formats).
    pub shrink_on_load: u32,
    /// The size actually decoded (stored orientation).
    pub decoded_width: u32,
    pub decoded_height: u32,
    /// What was done with the source's embedded colour profile.
    pub icc: IccHandling,
}

/// The result of [`render`]: the variants, largest first, and what was learnt on the way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub source: SourceInfo,
    pub variants: Vec<Variant>,
}

/// Why a source gave no variants. All are permanent for these bytes.
#[derive(Debug, thiserror::Error)]
pub enum TransformError {
    #[error("unsupported image format: {0}")]
    Unsupported(String),
    #[error("source is {bytes} bytes, more than the limit of {max}")]
    TooLarge { bytes: u64, max: u64 },
    #[error("source is {width}×{height} pixels, more than the limit of {max} pixels")]
    TooManyPixels { width: u32, height: u32, max: u64 },
    #[error("source declares {frames} frames, more than the limit of {max}")]
    TooManyFrames { frames: u32, max: u32 },
    #[error("truncated image: {0}")]
    Truncated(String),
    #[error("corrupt image: {0}")]
    Corrupt(String),
    #[error("resampling failed: {0}")]
    Resample(String),
    #[error("encoding {format:?} failed: {detail}")]
    Encode {
        format: OutputFormat,
        detail: String,
    },
    /// A decoder or encoder panicked on these bytes: a bug in it, but still a property of the
    /// input, so as permanent as the others.
    #[error("the transform panicked on this input: {0}")]
    Panicked(String),
}

impl TransformError {
    /// Every label [`TransformError::kind`] gives, for what iterates over them (the metric
    /// catalog's `VariantError` values); `kinds_are_exactly_what_kind_gives` holds the two
    /// together.
    pub const KINDS: [&'static str; 9] = [
        "unsupported",
        "too_large",
        "too_many_pixels",
        "too_many_frames",
        "truncated",
        "corrupt",
        "resample",
        "encode",
        "panicked",
    ];

    /// A short, fixed label for metrics (the `Display` text has the details).
    pub fn kind(&self) -> &'static str {
        match self {
            TransformError::Unsupported(_) => "unsupported",
            TransformError::TooLarge { .. } => "too_large",
            TransformError::TooManyPixels { .. } => "too_many_pixels",
            TransformError::TooManyFrames { .. } => "too_many_frames",
            TransformError::Truncated(_) => "truncated",
            TransformError::Corrupt(_) => "corrupt",
            TransformError::Resample(_) => "resample",
            TransformError::Encode { .. } => "encode",
            TransformError::Panicked(_) => "panicked",
        }
    }
}

/// The stored-orientation size to resample to, and the crop of the stored image, for one plan.
fn stored_geometry(plan: &Plan, orientation: orient::Orientation, stored: (u32, u32)) -> Geometry {
    let crop = orientation.rect_to_stored(plan.crop, f64::from(stored.0), f64::from(stored.1));
    let (width, height) = if orientation.transposes() {
        (plan.height, plan.width)
    } else {
        (plan.width, plan.height)
    };
    Geometry {
        crop,
        width,
        height,
    }
}

struct Geometry {
    crop: (f64, f64, f64, f64),
    width: u32,
    height: u32,
}

/// Renders every profile from `source`, largest variant first.
///
/// The profiles are taken as given (the caller has already matched them to the key and content
/// type). With no profiles the source is still checked and decoded (at the smallest size).
///
/// A panic inside a decoder (third-party code fed hostile bytes) is caught and reported as
/// [`TransformError::Panicked`], so one bad image cannot take down a worker serving others.
pub fn render(
    source: &[u8],
    profiles: &[&Profile],
    limits: &Limits,
) -> Result<Rendered, TransformError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        render_unguarded(source, profiles, limits)
    }))
    .unwrap_or_else(|payload| {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".to_owned());
        Err(TransformError::Panicked(message))
    })
}

fn render_unguarded(
    source: &[u8],
    profiles: &[&Profile],
    limits: &Limits,
) -> Result<Rendered, TransformError> {
    let bytes = source.len() as u64;
    if bytes > limits.max_bytes {
        return Err(TransformError::TooLarge {
            bytes,
            max: limits.max_bytes,
        });
    }
    let format = sniff::sniff(source)?;
    let decoded = decode::decode(source, format, limits, |header| {
        needed_scale(profiles, header)
    })?;
    let header = decoded.header;
    let orientation = header.orientation;
    let (upright_width, upright_height) = orientation.upright(header.width, header.height);

    let mut jobs: Vec<(&Profile, Plan)> = profiles
        .iter()
        .map(|profile| (*profile, profile.plan(upright_width, upright_height)))
        .collect();
    jobs.sort_by_key(|(_, plan)| Reverse(u64::from(plan.width) * u64::from(plan.height)));

    let (icc, to_srgb) = colour::to_srgb(
        decoded.icc_profile.as_deref(),
        decoded.cmyk,
        decoded.channels,
    );
    let source = SourceInfo {
        format,
        width: upright_width,
        height: upright_height,
        orientation: orientation.value(),
        frames: decoded.frames,
        shrink_on_load: decoded.shrink_on_load,
        decoded_width: decoded.width,
        decoded_height: decoded.height,
        icc,
    };
    let mut canvas = resample::Canvas::new(decoded, to_srgb)?;
    let mut variants = Vec::with_capacity(jobs.len());
    for (profile, plan) in jobs {
        let pixels = canvas.resample(&plan)?;
        let output = OutputFormat::for_profile(profile.format, format);
        let bytes = encode::encode(&pixels, output, profile.quality)?;
        variants.push(Variant {
            profile: profile.name.clone(),
            format: output,
            width: pixels.width,
            height: pixels.height,
            bytes,
        });
    }
    Ok(Rendered { source, variants })
}

/// How large, relative to the stored size, the decoded image must be so that every variant is
/// resampled down (never up) from it: the largest ratio of output to crop over all profiles.
fn needed_scale(profiles: &[&Profile], header: &decode::Header) -> f64 {
    let orientation = header.orientation;
    let (upright_width, upright_height) = orientation.upright(header.width, header.height);
    profiles
        .iter()
        .map(|profile| {
            let plan = profile.plan(upright_width, upright_height);
            let geometry = stored_geometry(&plan, orientation, (header.width, header.height));
            let (_, _, crop_width, crop_height) = geometry.crop;
            (f64::from(geometry.width) / crop_width).max(f64::from(geometry.height) / crop_height)
        })
        .fold(0.0, f64::max)
}

#[cfg(test)]
mod kind_tests {
    use super::*;

    /// One error of each variant (the match is exhaustive, so a new variant must be added
    /// here before this compiles) against the hand-written list.
    #[test]
    fn kinds_are_exactly_what_kind_gives() {
        let every = |error: &TransformError| match error {
            TransformError::Unsupported(_)
            | TransformError::TooLarge { .. }
            | TransformError::TooManyPixels { .. }
            | TransformError::TooManyFrames { .. }
            | TransformError::Truncated(_)
            | TransformError::Corrupt(_)
            | TransformError::Resample(_)
            | TransformError::Encode { .. }
            | TransformError::Panicked(_) => error.kind(),
        };
        let errors = [
            TransformError::Unsupported(String::new()),
            TransformError::TooLarge { bytes: 2, max: 1 },
            TransformError::TooManyPixels {
                width: 2,
                height: 2,
                max: 1,
            },
            TransformError::TooManyFrames { frames: 2, max: 1 },
            TransformError::Truncated(String::new()),
            TransformError::Corrupt(String::new()),
            TransformError::Resample(String::new()),
            TransformError::Encode {
                format: OutputFormat::Png,
                detail: String::new(),
            },
            TransformError::Panicked(String::new()),
        ];
        let kinds: Vec<&str> = errors.iter().map(every).collect();
        assert_eq!(kinds, TransformError::KINDS);
    }
}
