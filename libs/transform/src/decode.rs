//! Decoding, bounded: the header is read and checked against the limits before any pixel buffer
//! exists, and the decoders are told the limits too, so a hostile file cannot allocate past them.
//!
//! Every source ends up as 8-bit sRGB-assumed RGB or RGBA: that is what the encoders take, and it
//! keeps one resize path. 16-bit sources lose their low byte (the outputs are 8-bit anyway),
//! greyscale is widened to RGB, palettes are expanded, and an alpha channel that is opaque
//! everywhere is dropped so that the resize and the encoders do less work.
//!
//! The embedded ICC profile is handed on (see `colour`), not applied here.

use std::io::Cursor;

use image::ImageDecoder;

use crate::orient::Orientation;
use crate::sniff::{self, SourceFormat};
use crate::{Limits, TransformError};

/// What the header says, before any pixel is decoded.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Header {
    /// The stored size (before orientation).
    pub width: u32,
    pub height: u32,
    pub orientation: Orientation,
}

/// The one decoded image every variant is made from.
#[derive(Debug)]
pub(crate) struct Decoded {
    pub header: Header,
    pub frames: u32,
    pub icc_profile: Option<Vec<u8>>,
    /// The source was CMYK or YCCK (its pixels are now naively converted RGB).
    pub cmyk: bool,
    /// 1, 2, 4 or 8: how much smaller than stored the JPEG was decoded.
    pub shrink_on_load: u32,
    /// Decoded size, stored orientation; `pixels` is `width * height * channels` bytes.
    pub width: u32,
    pub height: u32,
    pub channels: usize,
    pub pixels: Vec<u8>,
}

/// Decodes `source`; `needed_scale` gets the header and says how large, relative to the stored
/// size, the decoded image must at least be (1.0: full size), which a JPEG uses to decode at
/// 1/2, 1/4 or 1/8 of its size.
pub(crate) fn decode(
    source: &[u8],
    format: SourceFormat,
    limits: &Limits,
    needed_scale: impl FnOnce(&Header) -> f64,
) -> Result<Decoded, TransformError> {
    let frames = sniff::frame_count(format, source);
    if frames > limits.max_frames {
        return Err(TransformError::TooManyFrames {
            frames,
            max: limits.max_frames,
        });
    }
    let mut decoded = match format {
        SourceFormat::Jpeg => decode_jpeg(source, limits, needed_scale)?,
        SourceFormat::Png | SourceFormat::Gif | SourceFormat::Webp => {
            decode_other(source, format, limits)?
        }
    };
    decoded.frames = frames;
    Ok(decoded)
}

fn check_pixels(width: u32, height: u32, limits: &Limits) -> Result<(), TransformError> {
    if width == 0 || height == 0 {
        return Err(TransformError::Corrupt(format!(
            "the header declares {width}×{height} pixels"
        )));
    }
    if u64::from(width) * u64::from(height) > limits.max_pixels {
        return Err(TransformError::TooManyPixels {
            width,
            height,
            max: limits.max_pixels,
        });
    }
    Ok(())
}

/// The largest 1/n (n = 1, 2, 4, 8) that is still at least `needed`.
pub(crate) fn jpeg_denominator(needed: f64) -> u32 {
    [8, 4, 2]
        .into_iter()
        .find(|&n| 1.0 / f64::from(n) >= needed - 1e-9)
        .unwrap_or(1)
}

fn jpeg_error(error: jpeg_decoder::Error) -> TransformError {
    match error {
        jpeg_decoder::Error::Io(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            TransformError::Truncated("the JPEG data ends early".to_owned())
        }
        jpeg_decoder::Error::Unsupported(feature) => {
            TransformError::Unsupported(format!("JPEG feature {feature:?}"))
        }
        other => TransformError::Corrupt(other.to_string()),
    }
}

fn decode_jpeg(
    source: &[u8],
    limits: &Limits,
    needed_scale: impl FnOnce(&Header) -> f64,
) -> Result<Decoded, TransformError> {
    let mut decoder = jpeg_decoder::Decoder::new(Cursor::new(source));
    // Belt and braces: the pixel check below already bounds the buffer (4 bytes for CMYK).
    decoder.set_max_decoding_buffer_size(
        usize::try_from(limits.max_pixels.saturating_mul(4)).unwrap_or(usize::MAX),
    );
    decoder.read_info().map_err(jpeg_error)?;
    let info = decoder
        .info()
        .ok_or_else(|| TransformError::Corrupt("JPEG without a frame header".to_owned()))?;
    let (width, height) = (u32::from(info.width), u32::from(info.height));
    check_pixels(width, height, limits)?;
    // EXIF (APP1) precedes the frame header in every writer we know of, so `read_info` has it.
    let orientation = decoder
        .exif_data()
        .and_then(image::metadata::Orientation::from_exif_chunk)
        .map_or(Orientation::UPRIGHT, |o| {
            Orientation::from_exif(o.to_exif())
        });
    let icc_profile = decoder.icc_profile();
    let header = Header {
        width,
        height,
        orientation,
    };
    let denominator = jpeg_denominator(needed_scale(&header));
    let scaled = |length: u16| -> u16 {
        let n = denominator as u16;
        length.div_ceil(n)
    };
    let (decoded_width, decoded_height) = decoder
        .scale(scaled(info.width), scaled(info.height))
        .map_err(jpeg_error)?;
    let raw = decoder.decode().map_err(jpeg_error)?;
    let (decoded_width, decoded_height) = (u32::from(decoded_width), u32::from(decoded_height));
    let expected = decoded_width as usize * decoded_height as usize;
    let pixels = match info.pixel_format {
        jpeg_decoder::PixelFormat::RGB24 => raw,
        jpeg_decoder::PixelFormat::L8 => raw.iter().flat_map(|&l| [l, l, l]).collect(),
        jpeg_decoder::PixelFormat::CMYK32 => cmyk_to_rgb(&raw),
        jpeg_decoder::PixelFormat::L16 => {
            return Err(TransformError::Unsupported(
                "16-bit (lossless) JPEG".to_owned(),
            ));
        }
    };
    if pixels.len() != expected * 3 {
        return Err(TransformError::Corrupt(format!(
            "decoded {} bytes for {decoded_width}×{decoded_height} pixels",
            pixels.len()
        )));
    }
    Ok(Decoded {
        header,
        frames: 1,
        icc_profile,
        cmyk: info.pixel_format == jpeg_decoder::PixelFormat::CMYK32,
        shrink_on_load: denominator,
        width: decoded_width,
        height: decoded_height,
        channels: 3,
        pixels,
    })
}

/// CMYK to RGB, naively (no ICC): `(1 - C)(1 - K)`. jpeg-decoder hands back `255 - stored` for
/// both CMYK and YCCK scans; Photoshop (the writer of nearly every CMYK JPEG, always with an
/// Adobe APP14 marker) stores inverted ink, so what arrives here is the ink amount.
fn cmyk_to_rgb(cmyk: &[u8]) -> Vec<u8> {
    let mut rgb = Vec::with_capacity(cmyk.len() / 4 * 3);
    for pixel in cmyk.chunks_exact(4) {
        let white = 255 - u32::from(pixel[3]);
        for &ink in &pixel[..3] {
            let value = (255 - u32::from(ink)) * white;
            // Rounded division by 255.
            rgb.push(((value + 127) / 255) as u8);
        }
    }
    rgb
}

fn image_error(error: image::ImageError) -> TransformError {
    match error {
        image::ImageError::Limits(limit) => TransformError::Corrupt(format!(
            "the decoder refused to allocate past the limits: {limit}"
        )),
        image::ImageError::Unsupported(unsupported) => {
            TransformError::Unsupported(unsupported.to_string())
        }
        image::ImageError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            TransformError::Truncated(io.to_string())
        }
        other => {
            let detail = other.to_string();
            // The PNG and GIF decoders report a short file as a format error.
            if detail.contains("EOF") || detail.contains("eof") || detail.contains("truncat") {
                TransformError::Truncated(detail)
            } else {
                TransformError::Corrupt(detail)
            }
        }
    }
}

fn decode_other(
    source: &[u8],
    format: SourceFormat,
    limits: &Limits,
) -> Result<Decoded, TransformError> {
    let mut image_limits = image::Limits::default();
    // Large enough for the biggest allowed image at 16 bits per channel with alpha, and no more.
    image_limits.max_alloc = Some(limits.max_pixels.saturating_mul(8).max(1 << 20));
    let max_side = u32::try_from(limits.max_pixels).unwrap_or(u32::MAX);
    image_limits.max_image_width = Some(max_side);
    image_limits.max_image_height = Some(max_side);
    if let Some((width, height)) = sniff::declared_size(format, source) {
        check_pixels(width, height, limits)?;
    }
    let cursor = Cursor::new(source);
    match format {
        SourceFormat::Png => {
            let decoder = image::codecs::png::PngDecoder::with_limits(cursor, image_limits)
                .map_err(image_error)?;
            decode_with(decoder, limits)
        }
        SourceFormat::Gif => {
            let mut decoder = image::codecs::gif::GifDecoder::new(cursor).map_err(image_error)?;
            decoder.set_limits(image_limits).map_err(image_error)?;
            decode_with(decoder, limits)
        }
        SourceFormat::Webp | SourceFormat::Jpeg => {
            let mut decoder = image::codecs::webp::WebPDecoder::new(cursor).map_err(image_error)?;
            decoder.set_limits(image_limits).map_err(image_error)?;
            decode_with(decoder, limits)
        }
    }
}

/// Decodes the first (for animations, the only decoded) frame.
fn decode_with(mut decoder: impl ImageDecoder, limits: &Limits) -> Result<Decoded, TransformError> {
    let (width, height) = decoder.dimensions();
    check_pixels(width, height, limits)?;
    let orientation = decoder.orientation().map_or(Orientation::UPRIGHT, |o| {
        Orientation::from_exif(o.to_exif())
    });
    let icc_profile = decoder.icc_profile().ok().flatten();
    let image = image::DynamicImage::from_decoder(decoder).map_err(image_error)?;
    let (channels, pixels) = if image.color().has_alpha() {
        let rgba = image.into_rgba8().into_raw();
        if rgba.chunks_exact(4).all(|p| p[3] == 255) {
            (
                3,
                rgba.chunks_exact(4)
                    .flat_map(|p| [p[0], p[1], p[2]])
                    .collect(),
            )
        } else {
            (4, rgba)
        }
    } else {
        (3, image.into_rgb8().into_raw())
    };
    Ok(Decoded {
        header: Header {
            width,
            height,
            orientation,
        },
        frames: 1,
        icc_profile,
        cmyk: false,
        shrink_on_load: 1,
        width,
        height,
        channels,
        pixels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_smallest_sufficient_jpeg_scale_is_chosen() {
        assert_eq!(jpeg_denominator(1.0), 1);
        assert_eq!(jpeg_denominator(1.5), 1);
        assert_eq!(jpeg_denominator(0.6), 1);
        assert_eq!(jpeg_denominator(0.5), 2);
        assert_eq!(jpeg_denominator(1.0 / 3.75), 2);
        assert_eq!(jpeg_denominator(0.25), 4);
        assert_eq!(jpeg_denominator(0.2), 4);
        assert_eq!(jpeg_denominator(0.1), 8);
        assert_eq!(jpeg_denominator(0.0), 8);
    }

    #[test]
    fn cmyk_ink_becomes_rgb() {
        assert_eq!(cmyk_to_rgb(&[0, 0, 0, 0]), [255, 255, 255]);
        assert_eq!(cmyk_to_rgb(&[0, 0, 0, 255]), [0, 0, 0]);
        assert_eq!(cmyk_to_rgb(&[0, 255, 255, 0]), [255, 0, 0]);
        assert_eq!(cmyk_to_rgb(&[255, 0, 255, 0]), [0, 255, 0]);
    }
}
