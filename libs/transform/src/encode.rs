//! Encoders. Outputs carry no metadata at all (no EXIF, no ICC, no XMP): variants are upright and
//! their pixels are sRGB, so there is nothing left for a viewer to apply, and nothing private
//! (camera serials, GPS) leaks into public thumbnails.

use crate::{OutputFormat, TransformError};

/// An upright, resized image ready to encode.
#[derive(Debug)]
pub(crate) struct Pixels {
    pub width: u32,
    pub height: u32,
    /// 3 (RGB) or 4 (RGBA, straight alpha).
    pub channels: usize,
    pub data: Vec<u8>,
}

pub(crate) fn encode(
    pixels: &Pixels,
    format: OutputFormat,
    quality: u8,
) -> Result<Vec<u8>, TransformError> {
    let quality = quality.clamp(1, 100);
    let failed = |detail: String| TransformError::Encode { format, detail };
    match format {
        OutputFormat::Jpeg => {
            let (width, height) = match (u16::try_from(pixels.width), u16::try_from(pixels.height))
            {
                (Ok(w), Ok(h)) => (w, h),
                _ => return Err(failed("JPEG sides are limited to 65535 pixels".to_owned())),
            };
            let flattened;
            let rgb = if pixels.channels == 4 {
                flattened = flatten_on_white(&pixels.data);
                &flattened
            } else {
                &pixels.data
            };
            let mut out = Vec::new();
            let mut encoder = jpeg_encoder::Encoder::new(&mut out, quality);
            // libjpeg's defaults, which is what sizes are compared with: 4:2:0 with averaged
            // chroma, and Huffman tables fitted to the image (a few per cent smaller).
            encoder.set_sampling_factor(jpeg_encoder::SamplingFactor::F_2_2);
            encoder.set_chroma_subsampling_method(jpeg_encoder::ChromaSubsamplingMethod::Average);
            encoder.set_optimized_huffman_tables(true);
            encoder
                .encode(rgb, width, height, jpeg_encoder::ColorType::Rgb)
                .map_err(|e| failed(e.to_string()))?;
            Ok(out)
        }
        OutputFormat::Webp => {
            let layout = if pixels.channels == 4 {
                webp::PixelLayout::Rgba
            } else {
                webp::PixelLayout::Rgb
            };
            let encoder = webp::Encoder::new(&pixels.data, layout, pixels.width, pixels.height);
            let memory = encoder
                .encode_simple(false, f32::from(quality))
                .map_err(|e| failed(format!("{e:?}")))?;
            Ok(memory.to_vec())
        }
        OutputFormat::Png => {
            use image::ImageEncoder;
            let color = if pixels.channels == 4 {
                image::ExtendedColorType::Rgba8
            } else {
                image::ExtendedColorType::Rgb8
            };
            let mut out = Vec::new();
            image::codecs::png::PngEncoder::new(&mut out)
                .write_image(&pixels.data, pixels.width, pixels.height, color)
                .map_err(|e| failed(e.to_string()))?;
            Ok(out)
        }
    }
}

/// JPEG has no alpha: composite onto white, which is what a transparent logo on a web page
/// usually sits on (black, the other choice, turns transparent text into a black box).
fn flatten_on_white(rgba: &[u8]) -> Vec<u8> {
    let mut rgb = Vec::with_capacity(rgba.len() / 4 * 3);
    for pixel in rgba.chunks_exact(4) {
        let alpha = u32::from(pixel[3]);
        for &channel in &pixel[..3] {
            let value = u32::from(channel) * alpha + 255 * (255 - alpha);
            rgb.push(((value + 127) / 255) as u8);
        }
    }
    rgb
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transparency_flattens_onto_white() {
        assert_eq!(
            flatten_on_white(&[10, 20, 30, 255, 0, 0, 0, 0, 0, 0, 0, 128]),
            [10, 20, 30, 255, 255, 255, 127, 127, 127]
        );
    }
}
