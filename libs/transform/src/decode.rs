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

use crate::header;
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
    // The size the container declares up front is checked before any decoder runs, so even a
    // malformed bomb gets the right reason.
    // The header is what the render's memory was estimated from (`memory`): one that cannot be
    // read is refused here, as the estimate assumed.
    let declared = header::declared(format, source).ok_or_else(|| {
        TransformError::Corrupt(format!("the {} header cannot be read", format.name()))
    })?;
    check_pixels(declared.width, declared.height, limits)?;
    let mut decoded = match format {
        SourceFormat::Jpeg => decode_jpeg(source, limits, needed_scale)?,
        SourceFormat::Png => decode_png(source, limits, needed_scale)?,
        SourceFormat::Gif | SourceFormat::Webp => decode_other(source, format, limits)?,
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
        jpeg_decoder::PixelFormat::L8 => grey_to_rgb(raw),
        jpeg_decoder::PixelFormat::CMYK32 => cmyk_to_rgb(raw),
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

/// Grey to RGB, in the same buffer (grown, then filled from the back), so the image is not held
/// twice.
fn grey_to_rgb(mut pixels: Vec<u8>) -> Vec<u8> {
    let count = pixels.len();
    pixels.resize(count * 3, 0);
    for pixel in (0..count).rev() {
        let grey = pixels[pixel];
        pixels[pixel * 3..pixel * 3 + 3].fill(grey);
    }
    pixels
}

/// CMYK to RGB, naively (no ICC): `(1 - C)(1 - K)`, in place. jpeg-decoder hands back
/// `255 - stored` for both CMYK and YCCK scans; Photoshop (the writer of nearly every CMYK JPEG,
/// always with an Adobe APP14 marker) stores inverted ink, so what arrives here is the ink amount.
fn cmyk_to_rgb(mut pixels: Vec<u8>) -> Vec<u8> {
    let count = pixels.len() / 4;
    for pixel in 0..count {
        let cmyk = &pixels[pixel * 4..pixel * 4 + 4];
        let white = 255 - u32::from(cmyk[3]);
        // Rounded division by 255.
        let rgb = [0, 1, 2].map(|i| (((255 - u32::from(cmyk[i])) * white + 127) / 255) as u8);
        pixels[pixel * 3..pixel * 3 + 3].copy_from_slice(&rgb);
    }
    pixels.truncate(count * 3);
    pixels.shrink_to_fit();
    pixels
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
            // The GIF decoder reports a short file as a format error.
            if detail.contains("EOF") || detail.contains("eof") || detail.contains("truncat") {
                TransformError::Truncated(detail)
            } else {
                TransformError::Corrupt(detail)
            }
        }
    }
}

fn png_error(error: png::DecodingError) -> TransformError {
    match error {
        png::DecodingError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            TransformError::Truncated("the PNG data ends early".to_owned())
        }
        png::DecodingError::LimitsExceeded => TransformError::Corrupt(
            "the PNG decoder refused to allocate past its limits".to_owned(),
        ),
        other => TransformError::Corrupt(other.to_string()),
    }
}

/// The most a PNG is shrunk while its rows are decoded; past it the reduced image is already
/// tiny.
const MAX_BOX_SHRINK: u32 = 16;

/// The box shrink (an integer n: n × n source pixels averaged into one) applied to a PNG's rows
/// as they are decoded, so the full-size image never exists. As libvips does before its Lanczos
/// `reduce`, the box takes only what leaves Lanczos at least a 2× reduction of its own, which
/// keeps the box's blur out of the result.
pub(crate) fn box_shrink(needed: f64) -> u32 {
    if needed <= 0.0 {
        return MAX_BOX_SHRINK;
    }
    // Truncation is the point: the largest n with 1/n >= 2 × needed.
    let n = (1.0 / (2.0 * needed) + 1e-9).floor();
    if n >= f64::from(MAX_BOX_SHRINK) {
        MAX_BOX_SHRINK
    } else if n >= 1.0 {
        n as u32
    } else {
        1
    }
}

/// PNG through the png crate itself, which the `image` wrapper does not expose: 16-bit samples
/// are cut to 8 and palettes and low bit depths expanded by the decoder, row by row
/// (`STRIP_16 | EXPAND`), so no 16-bit image is ever held; a non-interlaced image is box-shrunk
/// as its rows arrive ([`box_shrink`]), so the full-size image is never held either.
fn decode_png(
    source: &[u8],
    limits: &Limits,
    needed_scale: impl FnOnce(&Header) -> f64,
) -> Result<Decoded, TransformError> {
    let mut decoder = png::Decoder::new(Cursor::new(source));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder.read_info().map_err(png_error)?;
    let info = reader.info();
    let (width, height) = (info.width, info.height);
    check_pixels(width, height, limits)?;
    let orientation = info
        .exif_metadata
        .as_deref()
        .and_then(image::metadata::Orientation::from_exif_chunk)
        .map_or(Orientation::UPRIGHT, |o| {
            Orientation::from_exif(o.to_exif())
        });
    let icc_profile = info.icc_profile.as_deref().map(<[u8]>::to_vec);
    let interlaced = info.interlaced;
    let header = Header {
        width,
        height,
        orientation,
    };
    let samples = reader.output_color_type().0.samples();
    let channels = if samples == 2 || samples == 4 { 4 } else { 3 };
    let shrink = if interlaced {
        1
    } else {
        box_shrink(needed_scale(&header))
    };
    let rows = Rows {
        width: width as usize,
        height: height as usize,
        samples,
        channels,
    };
    let pixels = if shrink == 1 {
        rows.decode_whole(&mut reader)?
    } else {
        rows.decode_shrunk(&mut reader, shrink as usize)?
    };
    let (decoded_width, decoded_height) = (width.div_ceil(shrink), height.div_ceil(shrink));
    let (channels, pixels) = drop_opaque_alpha(channels, pixels);
    Ok(Decoded {
        header,
        frames: 1,
        icc_profile,
        cmyk: false,
        shrink_on_load: shrink,
        width: decoded_width,
        height: decoded_height,
        channels,
        pixels,
    })
}

/// The rows of a PNG as the decoder hands them out (8-bit, `samples` per pixel: grey,
/// grey + alpha, RGB or RGBA) and what they become (`channels`: 3 or 4).
struct Rows {
    width: usize,
    height: usize,
    samples: usize,
    channels: usize,
}

impl Rows {
    /// The whole image, in one buffer of its final size: the decoder writes its samples at the
    /// front and grey is widened in place, from the back.
    fn decode_whole<R: std::io::BufRead + std::io::Seek>(
        &self,
        reader: &mut png::Reader<R>,
    ) -> Result<Vec<u8>, TransformError> {
        let pixels = self.width * self.height;
        let mut buffer = vec![0u8; pixels * self.channels];
        reader
            .next_frame(&mut buffer[..pixels * self.samples])
            .map_err(png_error)?;
        for pixel in (0..pixels).rev() {
            let [r, g, b, a] = rgba(&buffer[pixel * self.samples..], self.samples);
            let out = &mut buffer[pixel * self.channels..][..self.channels];
            out[..3].copy_from_slice(&[r, g, b]);
            if self.channels == 4 {
                out[3] = a;
            }
        }
        Ok(buffer)
    }

    /// Every `n` × `n` block of pixels averaged into one as the rows arrive, with colour weighted
    /// by alpha (premultiplied), so transparent pixels do not bleed their colour into the
    /// average. Memory: one row of the source and one of sums, and the reduced image.
    fn decode_shrunk<R: std::io::BufRead + std::io::Seek>(
        &self,
        reader: &mut png::Reader<R>,
        n: usize,
    ) -> Result<Vec<u8>, TransformError> {
        let out_width = self.width.div_ceil(n);
        let mut out = Vec::with_capacity(out_width * self.height.div_ceil(n) * self.channels);
        // Per reduced pixel: the sums of r·a, g·a, b·a and a.
        let mut sums = vec![0u64; out_width * 4];
        for y in 0..self.height {
            let row = reader
                .next_row()
                .map_err(png_error)?
                .ok_or_else(|| TransformError::Truncated("the PNG has too few rows".to_owned()))?;
            for (x, sample) in row.data().chunks_exact(self.samples).enumerate() {
                let [r, g, b, a] = rgba(sample, self.samples).map(u64::from);
                let sum = &mut sums[x / n * 4..][..4];
                sum[0] += r * a;
                sum[1] += g * a;
                sum[2] += b * a;
                sum[3] += a;
            }
            if (y + 1) % n == 0 || y + 1 == self.height {
                let rows = (y % n + 1) as u64;
                for (block, sum) in sums.chunks_exact_mut(4).enumerate() {
                    let columns = n.min(self.width - block * n) as u64;
                    let count = rows * columns;
                    let alpha = sum[3];
                    for colour in &sum[..3] {
                        out.push(rounded_div(*colour, alpha) as u8);
                    }
                    if self.channels == 4 {
                        out.push(rounded_div(alpha, count) as u8);
                    }
                    sum.fill(0);
                }
            }
        }
        Ok(out)
    }
}

fn rounded_div(value: u64, by: u64) -> u64 {
    (value + by / 2).checked_div(by).unwrap_or(0)
}

/// One pixel of 8-bit grey, grey + alpha, RGB or RGBA as RGBA.
fn rgba(sample: &[u8], samples: usize) -> [u8; 4] {
    match samples {
        1 => [sample[0], sample[0], sample[0], 255],
        2 => [sample[0], sample[0], sample[0], sample[1]],
        3 => [sample[0], sample[1], sample[2], 255],
        _ => [sample[0], sample[1], sample[2], sample[3]],
    }
}

/// RGBA whose alpha is 255 everywhere becomes RGB, in place (the resize and the encoders then do
/// less work, and no second image is allocated to do it).
fn drop_opaque_alpha(channels: usize, mut pixels: Vec<u8>) -> (usize, Vec<u8>) {
    if channels != 4 || !pixels.chunks_exact(4).all(|p| p[3] == 255) {
        return (channels, pixels);
    }
    let count = pixels.len() / 4;
    for pixel in 0..count {
        pixels.copy_within(pixel * 4..pixel * 4 + 3, pixel * 3);
    }
    pixels.truncate(count * 3);
    pixels.shrink_to_fit();
    (3, pixels)
}

fn decode_other(
    source: &[u8],
    format: SourceFormat,
    limits: &Limits,
) -> Result<Decoded, TransformError> {
    let mut image_limits = image::Limits::default();
    // Large enough for the biggest allowed image as 8-bit RGBA, and no more.
    image_limits.max_alloc = Some(limits.max_pixels.saturating_mul(4).max(1 << 20));
    let max_side = u32::try_from(limits.max_pixels).unwrap_or(u32::MAX);
    image_limits.max_image_width = Some(max_side);
    image_limits.max_image_height = Some(max_side);
    let cursor = Cursor::new(source);
    if format == SourceFormat::Gif {
        let mut decoder = image::codecs::gif::GifDecoder::new(cursor).map_err(image_error)?;
        decoder.set_limits(image_limits).map_err(image_error)?;
        decode_with(decoder, limits)
    } else {
        let mut decoder = image::codecs::webp::WebPDecoder::new(cursor).map_err(image_error)?;
        decoder.set_limits(image_limits).map_err(image_error)?;
        decode_with(decoder, limits)
    }
}

/// Decodes the first (for animations, the only decoded) frame. GIF and WebP decode to 8-bit RGB
/// or RGBA, so the conversions below move the buffer rather than copy it.
fn decode_with(mut decoder: impl ImageDecoder, limits: &Limits) -> Result<Decoded, TransformError> {
    let (width, height) = decoder.dimensions();
    check_pixels(width, height, limits)?;
    let orientation = decoder.orientation().map_or(Orientation::UPRIGHT, |o| {
        Orientation::from_exif(o.to_exif())
    });
    let icc_profile = decoder.icc_profile().ok().flatten();
    let image = image::DynamicImage::from_decoder(decoder).map_err(image_error)?;
    let (channels, pixels) = if image.color().has_alpha() {
        drop_opaque_alpha(4, image.into_rgba8().into_raw())
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
        assert_eq!(cmyk_to_rgb(vec![0, 0, 0, 0]), [255, 255, 255]);
        assert_eq!(cmyk_to_rgb(vec![0, 0, 0, 255]), [0, 0, 0]);
        assert_eq!(
            cmyk_to_rgb(vec![0, 255, 255, 0, 255, 0, 255, 0]),
            [255, 0, 0, 0, 255, 0]
        );
    }

    #[test]
    fn grey_and_opaque_alpha_are_converted_in_place() {
        assert_eq!(grey_to_rgb(vec![1, 2]), [1, 1, 1, 2, 2, 2]);
        assert_eq!(
            drop_opaque_alpha(4, vec![1, 2, 3, 255, 4, 5, 6, 255]),
            (3, vec![1, 2, 3, 4, 5, 6])
        );
        let translucent = vec![1, 2, 3, 255, 4, 5, 6, 254];
        assert_eq!(drop_opaque_alpha(4, translucent.clone()), (4, translucent));
    }

    #[test]
    fn the_box_shrink_leaves_lanczos_at_least_half() {
        assert_eq!(box_shrink(1.0), 1);
        assert_eq!(box_shrink(0.5), 1);
        assert_eq!(box_shrink(0.26), 1);
        assert_eq!(box_shrink(0.25), 2);
        assert_eq!(box_shrink(0.2286), 2);
        assert_eq!(box_shrink(0.1), 5);
        assert_eq!(box_shrink(0.001), MAX_BOX_SHRINK);
        assert_eq!(box_shrink(0.0), MAX_BOX_SHRINK);
    }
}
