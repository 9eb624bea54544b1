//! From the decoded source to each variant's pixels: the crop a plan asks for, resampled with
//! Lanczos3 on premultiplied alpha, back to straight alpha, into sRGB, and turned upright.

use fast_image_resize as fr;
use yuba_variants::Plan;

use crate::decode::Decoded;
use crate::encode::Pixels;
use crate::orient::Orientation;
use crate::{TransformError, stored_geometry};

/// The decoded source, ready to be resampled into one variant after another.
pub(crate) struct Canvas {
    image: fr::images::Image<'static>,
    pixel_type: fr::PixelType,
    channels: usize,
    alpha: bool,
    mul_div: fr::MulDiv,
    resizer: fr::Resizer,
    /// Decoded pixels per stored pixel: a JPEG decoded at 1/n maps stored pixel x to x/n
    /// exactly (its decoded size is rounded up, so `decoded / stored` would drift by a pixel).
    scale: f64,
    decoded: (u32, u32),
    stored: (u32, u32),
    orientation: Orientation,
    to_srgb: Option<qcms::Transform>,
}

impl Canvas {
    /// Takes the decoded pixels (premultiplying their alpha in place) and the transform into
    /// sRGB that applies to them, if any.
    pub(crate) fn new(
        decoded: Decoded,
        to_srgb: Option<qcms::Transform>,
    ) -> Result<Canvas, TransformError> {
        let alpha = decoded.channels == 4;
        let pixel_type = if alpha {
            fr::PixelType::U8x4
        } else {
            fr::PixelType::U8x3
        };
        let mut image = fr::images::Image::from_vec_u8(
            decoded.width,
            decoded.height,
            decoded.pixels,
            pixel_type,
        )
        .map_err(resample_error)?;
        // Alpha is premultiplied around the filter so transparent pixels do not bleed their
        // (meaningless) colour into the edges. Done here, in the decoded image itself, because
        // the resizer's own `use_alpha` premultiplies into a second image of the full size.
        let mul_div = fr::MulDiv::default();
        if alpha {
            mul_div
                .multiply_alpha_inplace(&mut image)
                .map_err(resample_error)?;
        }
        Ok(Canvas {
            image,
            pixel_type,
            channels: decoded.channels,
            alpha,
            mul_div,
            resizer: fr::Resizer::new(),
            scale: 1.0 / f64::from(decoded.shrink_on_load),
            decoded: (decoded.width, decoded.height),
            stored: (decoded.header.width, decoded.header.height),
            orientation: decoded.header.orientation,
            to_srgb,
        })
    }

    /// The upright, sRGB pixels of the variant `plan` describes.
    pub(crate) fn resample(&mut self, plan: &Plan) -> Result<Pixels, TransformError> {
        let geometry = stored_geometry(plan, self.orientation, self.stored);
        let (left, top, width, height) = geometry.crop;
        let (left, top) = ((left * self.scale).max(0.0), (top * self.scale).max(0.0));
        let width = (width * self.scale).min(f64::from(self.decoded.0) - left);
        let height = (height * self.scale).min(f64::from(self.decoded.1) - top);
        let mut resized = fr::images::Image::new(geometry.width, geometry.height, self.pixel_type);
        // Lanczos3 as libvips uses for downsizing, on pixels already premultiplied.
        let options = fr::ResizeOptions::new()
            .resize_alg(fr::ResizeAlg::Convolution(fr::FilterType::Lanczos3))
            .use_alpha(false)
            .crop(left, top, width, height);
        self.resizer
            .resize(&self.image, &mut resized, &options)
            .map_err(resample_error)?;
        if self.alpha {
            self.mul_div
                .divide_alpha_inplace(&mut resized)
                .map_err(resample_error)?;
        }
        let mut resized = resized.into_vec();
        if let Some(transform) = &self.to_srgb {
            transform.apply(&mut resized);
        }
        let (data, width, height) =
            self.orientation
                .apply(resized, geometry.width, geometry.height, self.channels);
        Ok(Pixels {
            width,
            height,
            channels: self.channels,
            data,
        })
    }
}

fn resample_error(error: impl std::fmt::Display) -> TransformError {
    TransformError::Resample(error.to_string())
}
