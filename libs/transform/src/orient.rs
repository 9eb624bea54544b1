//! EXIF orientation, applied to the small outputs rather than the large decoded image.
//!
//! Rotating a decoded 24 MP photo costs a full copy of it; rotating a 1600 px variant costs a
//! tenth of that. So the plan (made on the upright size) is mapped back into the stored
//! orientation, the stored pixels are resampled, and only the result is turned upright.

/// An EXIF orientation value, 1–8; anything else is treated as 1 (as browsers do).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Orientation(u8);

impl Orientation {
    pub(crate) const UPRIGHT: Orientation = Orientation(1);

    pub(crate) fn from_exif(value: u8) -> Orientation {
        if (1..=8).contains(&value) {
            Orientation(value)
        } else {
            Orientation::UPRIGHT
        }
    }

    pub(crate) fn value(self) -> u8 {
        self.0
    }

    /// Whether width and height swap between the stored and the upright image.
    pub(crate) fn transposes(self) -> bool {
        self.0 >= 5
    }

    /// The upright size of a stored `width` × `height` image.
    pub(crate) fn upright(self, width: u32, height: u32) -> (u32, u32) {
        if self.transposes() {
            (height, width)
        } else {
            (width, height)
        }
    }

    /// Maps a rectangle `(left, top, width, height)` of the upright image back onto the stored
    /// image of `stored_width` × `stored_height`.
    pub(crate) fn rect_to_stored(
        self,
        (l, t, w, h): (f64, f64, f64, f64),
        stored_width: f64,
        stored_height: f64,
    ) -> (f64, f64, f64, f64) {
        let (sw, sh) = (stored_width, stored_height);
        match self.0 {
            2 => (sw - l - w, t, w, h),
            3 => (sw - l - w, sh - t - h, w, h),
            4 => (l, sh - t - h, w, h),
            5 => (t, l, h, w),
            6 => (t, sh - l - w, h, w),
            7 => (sw - t - h, sh - l - w, h, w),
            8 => (sw - t - h, l, h, w),
            _ => (l, t, w, h),
        }
    }

    /// Turns a stored-orientation buffer of `width` × `height` pixels of `channels` bytes
    /// upright; returns the pixels and the upright size.
    pub(crate) fn apply(
        self,
        pixels: Vec<u8>,
        width: u32,
        height: u32,
        channels: usize,
    ) -> (Vec<u8>, u32, u32) {
        if self.0 == 1 {
            return (pixels, width, height);
        }
        let (w, h) = (width as usize, height as usize);
        let (out_w, out_h) = if self.transposes() { (h, w) } else { (w, h) };
        let mut out = vec![0u8; pixels.len()];
        for y in 0..out_h {
            for x in 0..out_w {
                // The stored pixel shown at upright (x, y).
                let (sx, sy) = match self.0 {
                    2 => (w - 1 - x, y),
                    3 => (w - 1 - x, h - 1 - y),
                    4 => (x, h - 1 - y),
                    5 => (y, x),
                    6 => (y, h - 1 - x),
                    7 => (w - 1 - y, h - 1 - x),
                    8 => (w - 1 - y, x),
                    _ => (x, y),
                };
                let from = (sy * w + sx) * channels;
                let to = (y * out_w + x) * channels;
                out[to..to + channels].copy_from_slice(&pixels[from..from + channels]);
            }
        }
        (out, out_w as u32, out_h as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 3×2 stored image whose pixels are their own index.
    fn stored() -> Vec<u8> {
        (0..6).collect()
    }

    #[test]
    fn buffers_turn_upright() {
        // Stored:  0 1 2
        //          3 4 5
        let cases: [(u8, &[u8], (u32, u32)); 8] = [
            (1, &[0, 1, 2, 3, 4, 5], (3, 2)),
            (2, &[2, 1, 0, 5, 4, 3], (3, 2)),
            (3, &[5, 4, 3, 2, 1, 0], (3, 2)),
            (4, &[3, 4, 5, 0, 1, 2], (3, 2)),
            (5, &[0, 3, 1, 4, 2, 5], (2, 3)),
            (6, &[3, 0, 4, 1, 5, 2], (2, 3)),
            (7, &[5, 2, 4, 1, 3, 0], (2, 3)),
            (8, &[2, 5, 1, 4, 0, 3], (2, 3)),
        ];
        for (value, expected, size) in cases {
            let (out, w, h) = Orientation::from_exif(value).apply(stored(), 3, 2, 1);
            assert_eq!(
                (out.as_slice(), (w, h)),
                (expected, size),
                "orientation {value}"
            );
        }
    }

    #[test]
    fn rectangles_map_like_pixels() {
        // The upright pixel at (x, y) is the unit rectangle there; mapped back it must cover the
        // stored pixel that `apply` puts at (x, y).
        for value in 1..=8u8 {
            let o = Orientation::from_exif(value);
            let (out, uw, _) = o.apply(stored(), 3, 2, 1);
            for (i, &pixel) in out.iter().enumerate() {
                let (x, y) = ((i as u32 % uw) as f64, (i as u32 / uw) as f64);
                let (l, t, w, h) = o.rect_to_stored((x, y, 1.0, 1.0), 3.0, 2.0);
                assert_eq!((w, h), (1.0, 1.0));
                assert_eq!(
                    f64::from(pixel),
                    t * 3.0 + l,
                    "orientation {value} at {x},{y}"
                );
            }
        }
    }

    #[test]
    fn unknown_values_mean_upright() {
        assert_eq!(Orientation::from_exif(0), Orientation::UPRIGHT);
        assert_eq!(Orientation::from_exif(9), Orientation::UPRIGHT);
    }
}
