use crate::config::{Fit, Profile};

/// How to make one variant from a source of known size: take the `crop` rectangle of the
/// (upright) source, in source pixels, and resample it to `width` × `height`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Plan {
    /// `(left, top, width, height)` in source pixels; fractional, for an exact centre crop.
    pub crop: (f64, f64, f64, f64),
    pub width: u32,
    pub height: u32,
}

impl Plan {
    /// The factor by which the source shrinks (≥ 1 when the variant is smaller): what decides
    /// how far a JPEG may be shrunk while it is decoded.
    pub fn shrink(&self) -> f64 {
        let (_, _, crop_width, crop_height) = self.crop;
        (crop_width / f64::from(self.width)).min(crop_height / f64::from(self.height))
    }
}

impl Profile {
    /// The plan for a source of `width` × `height` pixels (after orientation is applied).
    pub fn plan(&self, width: u32, height: u32) -> Plan {
        let (source_w, source_h) = (f64::from(width.max(1)), f64::from(height.max(1)));
        let whole = (0.0, 0.0, source_w, source_h);
        let box_w = self.width.map(f64::from);
        let box_h = self.height.map(f64::from);
        let cap = |scale: f64| if self.upscale { scale } else { scale.min(1.0) };
        let pixels = |length: f64| (length.round() as u32).max(1);
        match self.fit {
            Fit::Inside => {
                let scale = match (box_w, box_h) {
                    (Some(w), Some(h)) => (w / source_w).min(h / source_h),
                    (Some(w), None) => w / source_w,
                    (None, Some(h)) => h / source_h,
                    (None, None) => 1.0,
                };
                let scale = cap(scale);
                Plan {
                    crop: whole,
                    width: pixels(source_w * scale),
                    height: pixels(source_h * scale),
                }
            }
            Fit::Cover => {
                // Validation guarantees both sides for cover and fill.
                let (w, h) = (box_w.unwrap_or(source_w), box_h.unwrap_or(source_h));
                let scale = cap((w / source_w).max(h / source_h));
                let out_w = w.min(source_w * scale);
                let out_h = h.min(source_h * scale);
                let (crop_w, crop_h) = (out_w / scale, out_h / scale);
                Plan {
                    crop: (
                        (source_w - crop_w) / 2.0,
                        (source_h - crop_h) / 2.0,
                        crop_w,
                        crop_h,
                    ),
                    width: pixels(out_w),
                    height: pixels(out_h),
                }
            }
            Fit::Fill => {
                let (w, h) = (box_w.unwrap_or(source_w), box_h.unwrap_or(source_h));
                let (w, h) = if self.upscale {
                    (w, h)
                } else {
                    (w.min(source_w), h.min(source_h))
                };
                Plan {
                    crop: whole,
                    width: pixels(w),
                    height: pixels(h),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Format;

    fn profile(width: Option<u32>, height: Option<u32>, fit: Fit, upscale: bool) -> Profile {
        Profile {
            name: "p".into(),
            width,
            height,
            fit,
            upscale,
            format: Format::Jpeg,
            quality: 80,
            prefixes: Vec::new(),
            content_types: Vec::new(),
        }
    }

    #[test]
    fn inside_keeps_the_aspect_within_the_box() {
        let plan = profile(Some(1600), Some(1600), Fit::Inside, false).plan(6000, 4000);
        assert_eq!((plan.width, plan.height), (1600, 1067));
        assert_eq!(plan.crop, (0.0, 0.0, 6000.0, 4000.0));
        assert!((plan.shrink() - 3.75).abs() < 0.01);
        let portrait = profile(Some(800), Some(800), Fit::Inside, false).plan(3000, 4000);
        assert_eq!((portrait.width, portrait.height), (600, 800));
        let by_width = profile(Some(200), None, Fit::Inside, false).plan(4000, 1000);
        assert_eq!((by_width.width, by_width.height), (200, 50));
        let by_height = profile(None, Some(100), Fit::Inside, false).plan(4000, 1000);
        assert_eq!((by_height.width, by_height.height), (400, 100));
    }

    #[test]
    fn small_sources_are_not_upscaled_unless_asked() {
        let kept = profile(Some(1600), None, Fit::Inside, false).plan(800, 600);
        assert_eq!((kept.width, kept.height), (800, 600));
        let grown = profile(Some(1600), None, Fit::Inside, true).plan(800, 600);
        assert_eq!((grown.width, grown.height), (1600, 1200));
        let cover = profile(Some(400), Some(400), Fit::Cover, false).plan(300, 600);
        assert_eq!(
            (cover.width, cover.height),
            (300, 400),
            "cropped, not grown"
        );
        let fill = profile(Some(400), Some(400), Fit::Fill, false).plan(300, 600);
        assert_eq!((fill.width, fill.height), (300, 400));
    }

    #[test]
    fn cover_fills_the_box_and_crops_the_centre() {
        let plan = profile(Some(200), Some(200), Fit::Cover, false).plan(6000, 4000);
        assert_eq!((plan.width, plan.height), (200, 200));
        let (left, top, w, h) = plan.crop;
        assert_eq!((left, top, w, h), (1000.0, 0.0, 4000.0, 4000.0));
        assert!((plan.shrink() - 20.0).abs() < 1e-9);
    }

    #[test]
    fn fill_stretches_to_the_box() {
        let plan = profile(Some(300), Some(100), Fit::Fill, false).plan(1000, 1000);
        assert_eq!((plan.width, plan.height), (300, 100));
        assert_eq!(plan.crop, (0.0, 0.0, 1000.0, 1000.0));
    }

    #[test]
    fn degenerate_sources_still_give_a_pixel() {
        let plan = profile(Some(10), None, Fit::Inside, false).plan(10_000, 1);
        assert_eq!((plan.width, plan.height), (10, 1));
    }
}
