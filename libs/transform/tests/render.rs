//! Golden tests over images the tests make themselves: geometry, orientation, colour, alpha,
//! the odd formats, and the refusals.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use image::{ImageEncoder, Rgba, RgbaImage};
use yuba_transform::{IccHandling, Limits, OutputFormat, SourceFormat, TransformError, render};
use yuba_variants::{Fit, Format, Profile};

const RED: [u8; 3] = [255, 0, 0];
const GREEN: [u8; 3] = [0, 255, 0];
const BLUE: [u8; 3] = [0, 0, 255];
const WHITE: [u8; 3] = [255, 255, 255];

fn profile(
    name: &str,
    width: Option<u32>,
    height: Option<u32>,
    fit: Fit,
    format: Format,
) -> Profile {
    Profile {
        name: name.into(),
        width,
        height,
        fit,
        upscale: false,
        format,
        quality: 90,
        prefixes: Vec::new(),
        content_types: Vec::new(),
    }
}

fn inside(name: &str, side: u32, format: Format) -> Profile {
    profile(name, Some(side), Some(side), Fit::Inside, format)
}

/// Quadrants: red top-left, green top-right, blue bottom-left, white bottom-right.
fn quadrants(width: u32, height: u32) -> Vec<u8> {
    let mut rgb = Vec::with_capacity((width * height * 3) as usize);
    for y in 0..height {
        for x in 0..width {
            let colour = match (x < width / 2, y < height / 2) {
                (true, true) => RED,
                (false, true) => GREEN,
                (true, false) => BLUE,
                (false, false) => WHITE,
            };
            rgb.extend_from_slice(&colour);
        }
    }
    rgb
}

fn jpeg(rgb: &[u8], width: u32, height: u32, exif: Option<&[u8]>, progressive: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut encoder = jpeg_encoder::Encoder::new(&mut out, 95);
    encoder.set_progressive(progressive);
    if let Some(exif) = exif {
        encoder.add_exif_metadata(exif).unwrap();
    }
    encoder
        .encode(
            rgb,
            width as u16,
            height as u16,
            jpeg_encoder::ColorType::Rgb,
        )
        .unwrap();
    out
}

/// A big-endian TIFF header with one IFD entry: Orientation (0x0112), SHORT, 1, `value`.
fn exif_orientation(value: u16) -> Vec<u8> {
    let mut tiff = b"MM\0\x2A\0\0\0\x08\0\x01\x01\x12\0\x03\0\0\0\x01".to_vec();
    tiff.extend_from_slice(&value.to_be_bytes());
    tiff.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    tiff
}

fn decode_rgba(bytes: &[u8]) -> RgbaImage {
    if bytes.starts_with(&[0xFF, 0xD8]) {
        // The `image` crate is built without JPEG here; the transform's own decoder reads them.
        let mut decoder = jpeg_decoder::Decoder::new(bytes);
        let rgb = decoder.decode().unwrap();
        let info = decoder.info().unwrap();
        assert_eq!(info.pixel_format, jpeg_decoder::PixelFormat::RGB24);
        let rgb = image::RgbImage::from_raw(info.width.into(), info.height.into(), rgb).unwrap();
        return image::DynamicImage::ImageRgb8(rgb).into_rgba8();
    }
    image::load_from_memory(bytes).unwrap().into_rgba8()
}

fn near(actual: &Rgba<u8>, expected: [u8; 3], tolerance: u8) -> bool {
    actual.0[..3]
        .iter()
        .zip(expected)
        .all(|(&a, e)| a.abs_diff(e) <= tolerance)
}

fn png(image: &image::DynamicImage) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    image.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

#[test]
fn every_exif_orientation_gives_an_upright_variant() {
    let (width, height) = (64u32, 48u32);
    let upright = quadrants(width, height);
    let thumb = inside("thumb", 32, Format::Png);
    for value in 1..=8u8 {
        // Store the upright picture the way a camera with this orientation would.
        let transposed = value >= 5;
        let (sw, sh) = if transposed {
            (height, width)
        } else {
            (width, height)
        };
        let mut stored = vec![0u8; upright.len()];
        for y in 0..height {
            for x in 0..width {
                let (sx, sy) = match value {
                    2 => (sw - 1 - x, y),
                    3 => (sw - 1 - x, sh - 1 - y),
                    4 => (x, sh - 1 - y),
                    5 => (y, x),
                    6 => (y, sh - 1 - x),
                    7 => (sw - 1 - y, sh - 1 - x),
                    8 => (sw - 1 - y, x),
                    _ => (x, y),
                };
                let from = ((y * width + x) * 3) as usize;
                let to = ((sy * sw + sx) * 3) as usize;
                stored[to..to + 3].copy_from_slice(&upright[from..from + 3]);
            }
        }
        let source = jpeg(
            &stored,
            sw,
            sh,
            Some(&exif_orientation(value.into())),
            false,
        );
        let rendered = render(&source, &[&thumb], &Limits::default()).unwrap();
        assert_eq!(rendered.source.orientation, value);
        assert_eq!(
            (rendered.source.width, rendered.source.height),
            (width, height)
        );
        let variant = &rendered.variants[0];
        assert_eq!(
            (variant.width, variant.height),
            (32, 24),
            "orientation {value}"
        );
        let out = decode_rgba(&variant.bytes);
        assert_eq!(out.dimensions(), (32, 24));
        for (x, y, colour) in [(2, 2, RED), (29, 2, GREEN), (2, 21, BLUE), (29, 21, WHITE)] {
            let pixel = out.get_pixel(x, y);
            assert!(
                near(pixel, colour, 40),
                "orientation {value}: pixel {x},{y} is {pixel:?}, want {colour:?}"
            );
        }
    }
}

#[test]
fn each_fit_gets_its_dimensions_and_aspect() {
    let source = jpeg(&quadrants(600, 400), 600, 400, None, false);
    let profiles = [
        inside("inside", 100, Format::Jpeg),
        profile("cover", Some(100), Some(100), Fit::Cover, Format::Jpeg),
        profile("fill", Some(100), Some(20), Fit::Fill, Format::Jpeg),
        profile("wide", Some(300), None, Fit::Inside, Format::Jpeg),
        profile("big", Some(2000), None, Fit::Inside, Format::Jpeg),
    ];
    let refs: Vec<&Profile> = profiles.iter().collect();
    let rendered = render(&source, &refs, &Limits::default()).unwrap();
    let sizes: Vec<(&str, u32, u32)> = rendered
        .variants
        .iter()
        .map(|v| (v.profile.as_str(), v.width, v.height))
        .collect();
    // Largest first; `big` is not upscaled.
    assert_eq!(
        sizes,
        [
            ("big", 600, 400),
            ("wide", 300, 200),
            ("cover", 100, 100),
            ("inside", 100, 67),
            ("fill", 100, 20),
        ]
    );
    for variant in &rendered.variants {
        assert_eq!(variant.format, OutputFormat::Jpeg);
        let out = decode_rgba(&variant.bytes);
        assert_eq!(out.dimensions(), (variant.width, variant.height));
    }
    // Cover crops the centre: left and right thirds are cut, so the corners keep their colours
    // and the split between red and green stays in the middle.
    let cover = decode_rgba(&rendered.variants[2].bytes);
    assert!(near(cover.get_pixel(5, 5), RED, 40));
    assert!(near(cover.get_pixel(94, 5), GREEN, 40));
    assert!(near(cover.get_pixel(5, 94), BLUE, 40));
}

#[test]
fn alpha_survives_png_and_webp_and_is_flattened_into_jpeg() {
    // Left half opaque red, right half fully transparent (with garbage colour behind it).
    let source = RgbaImage::from_fn(200, 100, |x, _| {
        if x < 100 {
            Rgba([255, 0, 0, 255])
        } else {
            Rgba([0, 255, 0, 0])
        }
    });
    let source = png(&image::DynamicImage::ImageRgba8(source));
    let profiles = [
        inside("png", 50, Format::Png),
        inside("webp", 50, Format::Webp),
        inside("jpeg", 50, Format::Jpeg),
        inside("same", 50, Format::Same),
    ];
    let refs: Vec<&Profile> = profiles.iter().collect();
    let rendered = render(&source, &refs, &Limits::default()).unwrap();
    assert_eq!(rendered.source.format, SourceFormat::Png);
    for variant in &rendered.variants {
        let out = decode_rgba(&variant.bytes);
        assert_eq!(out.dimensions(), (50, 25));
        let (opaque, clear) = (out.get_pixel(5, 12), out.get_pixel(45, 12));
        match variant.format {
            OutputFormat::Jpeg => {
                assert!(near(opaque, RED, 30), "{opaque:?}");
                assert!(near(clear, WHITE, 10), "flattened onto white: {clear:?}");
            }
            OutputFormat::Png | OutputFormat::Webp => {
                assert_eq!(opaque.0[3], 255, "{}", variant.profile);
                assert_eq!(clear.0[3], 0, "{}", variant.profile);
                assert!(near(opaque, RED, 30), "{opaque:?}");
                // Premultiplied resampling: no green bleeds into the opaque edge.
                let edge = out.get_pixel(24, 12);
                assert!(edge.0[1] < 40, "green bled into the edge: {edge:?}");
            }
        }
    }
    let same = rendered
        .variants
        .iter()
        .find(|v| v.profile == "same")
        .unwrap();
    assert_eq!(same.format, OutputFormat::Png);
}

#[test]
fn cmyk_and_ycck_jpegs_decode_to_srgb() {
    // Ink amounts (0 = none), the Photoshop convention jpeg-encoder writes (inverted, with an
    // Adobe marker).
    let inks: [([u8; 4], [u8; 3]); 4] = [
        ([255, 0, 0, 0], [0, 255, 255]),
        ([0, 255, 255, 0], [255, 0, 0]),
        ([0, 0, 0, 0], [255, 255, 255]),
        ([0, 0, 0, 255], [0, 0, 0]),
    ];
    let (width, height) = (64u32, 64u32);
    let mut cmyk = Vec::new();
    for y in 0..height {
        for x in 0..width {
            let quadrant = usize::from(x >= 32) + 2 * usize::from(y >= 32);
            cmyk.extend_from_slice(&inks[quadrant].0);
        }
    }
    let thumb = inside("thumb", 32, Format::Png);
    for colour_type in [
        jpeg_encoder::ColorType::Cmyk,
        jpeg_encoder::ColorType::CmykAsYcck,
    ] {
        let mut source = Vec::new();
        jpeg_encoder::Encoder::new(&mut source, 95)
            .encode(&cmyk, width as u16, height as u16, colour_type)
            .unwrap();
        let rendered = render(&source, &[&thumb], &Limits::default()).unwrap();
        let out = decode_rgba(&rendered.variants[0].bytes);
        for (quadrant, (x, y)) in [(8, 8), (24, 8), (8, 24), (24, 24)].into_iter().enumerate() {
            let pixel = out.get_pixel(x, y);
            let want = inks[quadrant].1;
            assert!(
                near(pixel, want, 30),
                "{colour_type:?} quadrant {quadrant}: {pixel:?}, want {want:?}"
            );
        }
    }
}

#[test]
fn sixteen_bit_grey_and_palette_pngs_decode() {
    let thumb = inside("thumb", 20, Format::Png);
    let limits = Limits::default();

    let deep = image::ImageBuffer::from_fn(40, 40, |x, _| {
        if x < 20 {
            image::Rgb([65535u16, 0, 0])
        } else {
            image::Rgb([0, 0, 65535])
        }
    });
    let rendered = render(
        &png(&image::DynamicImage::ImageRgb16(deep)),
        &[&thumb],
        &limits,
    )
    .unwrap();
    let out = decode_rgba(&rendered.variants[0].bytes);
    assert!(near(out.get_pixel(2, 10), RED, 5));
    assert!(near(out.get_pixel(17, 10), BLUE, 5));

    let grey =
        image::GrayImage::from_fn(40, 40, |x, _| image::Luma([if x < 20 { 30 } else { 220 }]));
    let rendered = render(
        &png(&image::DynamicImage::ImageLuma8(grey)),
        &[&thumb],
        &limits,
    )
    .unwrap();
    let out = decode_rgba(&rendered.variants[0].bytes);
    assert!(near(out.get_pixel(2, 10), [30, 30, 30], 3));
    assert!(near(out.get_pixel(17, 10), [220, 220, 220], 3));

    // Palette with a transparent entry (tRNS): red, then transparent.
    let mut palette_png = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut palette_png, 40, 40);
        encoder.set_color(png::ColorType::Indexed);
        encoder.set_depth(png::BitDepth::Eight);
        encoder.set_palette(vec![255, 0, 0, 0, 0, 255]);
        encoder.set_trns(vec![255, 0]);
        let mut writer = encoder.write_header().unwrap();
        let indices: Vec<u8> = (0..40 * 40).map(|i| u8::from(i % 40 >= 20)).collect();
        writer.write_image_data(&indices).unwrap();
    }
    let rendered = render(&palette_png, &[&thumb], &limits).unwrap();
    let out = decode_rgba(&rendered.variants[0].bytes);
    assert!(near(out.get_pixel(2, 10), RED, 5));
    assert_eq!(out.get_pixel(2, 10).0[3], 255);
    assert_eq!(out.get_pixel(17, 10).0[3], 0);
}

fn animated_gif(frames: &[[u8; 3]]) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut encoder = image::codecs::gif::GifEncoder::new(&mut out);
        for colour in frames {
            let [r, g, b] = *colour;
            let frame = RgbaImage::from_pixel(30, 20, Rgba([r, g, b, 255]));
            encoder.encode_frame(image::Frame::new(frame)).unwrap();
        }
    }
    out
}

#[test]
fn an_animated_gif_gives_its_first_frame_as_png() {
    let source = animated_gif(&[RED, BLUE, GREEN]);
    let same = inside("same", 15, Format::Same);
    let rendered = render(&source, &[&same], &Limits::default()).unwrap();
    assert_eq!(rendered.source.format, SourceFormat::Gif);
    assert_eq!(rendered.source.frames, 3);
    let variant = &rendered.variants[0];
    assert_eq!(variant.format, OutputFormat::Png);
    assert_eq!((variant.width, variant.height), (15, 10));
    let out = decode_rgba(&variant.bytes);
    assert!(
        near(out.get_pixel(7, 5), RED, 5),
        "{:?}",
        out.get_pixel(7, 5)
    );

    let few = Limits {
        max_frames: 2,
        ..Limits::default()
    };
    let refused = render(&source, &[&same], &few).unwrap_err();
    assert!(
        matches!(refused, TransformError::TooManyFrames { frames: 3, max: 2 }),
        "{refused}"
    );
}

#[test]
fn webp_sources_stay_webp_under_same() {
    let source = RgbaImage::from_fn(40, 40, |x, _| {
        Rgba([0, 0, 255, if x < 20 { 255 } else { 0 }])
    });
    let mut webp = Vec::new();
    image::codecs::webp::WebPEncoder::new_lossless(&mut webp)
        .write_image(source.as_raw(), 40, 40, image::ExtendedColorType::Rgba8)
        .unwrap();
    let same = inside("same", 20, Format::Same);
    let rendered = render(&webp, &[&same], &Limits::default()).unwrap();
    assert_eq!(rendered.source.format, SourceFormat::Webp);
    let variant = &rendered.variants[0];
    assert_eq!(variant.format, OutputFormat::Webp);
    let out = decode_rgba(&variant.bytes);
    assert_eq!(out.get_pixel(2, 10).0[3], 255);
    assert_eq!(out.get_pixel(17, 10).0[3], 0);
}

#[test]
fn progressive_jpeg_decodes() {
    let source = jpeg(&quadrants(128, 96), 128, 96, None, true);
    let thumb = inside("thumb", 64, Format::Jpeg);
    let rendered = render(&source, &[&thumb], &Limits::default()).unwrap();
    let out = decode_rgba(&rendered.variants[0].bytes);
    assert_eq!(out.dimensions(), (64, 48));
    assert!(near(out.get_pixel(4, 4), RED, 40));
    assert!(near(out.get_pixel(60, 44), WHITE, 40));
}

#[test]
fn shrink_on_load_decodes_no_larger_than_the_largest_variant_needs() {
    let source = jpeg(&quadrants(2000, 1000), 2000, 1000, None, false);
    let small = inside("small", 200, Format::Jpeg);
    let medium = inside("medium", 600, Format::Jpeg);
    let large = inside("large", 1600, Format::Jpeg);
    let cover = profile("cover", Some(100), Some(100), Fit::Cover, Format::Jpeg);

    let cases: [(&[&Profile], u32, (u32, u32)); 4] = [
        // 2000 → 200: 1/8 gives 250 ≥ 200.
        (&[&small], 8, (250, 125)),
        // 2000 → 600: 1/4 would give 500 < 600, so 1/2.
        (&[&small, &medium], 2, (1000, 500)),
        (&[&large, &small], 1, (2000, 1000)),
        // Cover 100×100 crops 1000×1000: 1/8 gives a 125 px crop.
        (&[&cover], 8, (250, 125)),
    ];
    for (profiles, shrink, decoded) in cases {
        let rendered = render(&source, profiles, &Limits::default()).unwrap();
        assert_eq!(rendered.source.shrink_on_load, shrink);
        assert_eq!(
            (
                rendered.source.decoded_width,
                rendered.source.decoded_height
            ),
            decoded
        );
        for variant in &rendered.variants {
            let out = decode_rgba(&variant.bytes);
            assert!(near(out.get_pixel(2, 2), RED, 40));
        }
    }
}

/// A JPEG that is nothing but SOI and a frame header declaring `width` × `height`.
fn jpeg_header_only(width: u16, height: u16) -> Vec<u8> {
    let mut bytes = vec![0xFF, 0xD8, 0xFF, 0xC0, 0x00, 0x11, 0x08];
    bytes.extend_from_slice(&height.to_be_bytes());
    bytes.extend_from_slice(&width.to_be_bytes());
    bytes.extend_from_slice(&[3, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1]);
    bytes
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A PNG signature and an IHDR declaring `width` × `height` RGBA, then IEND: no pixel data.
fn png_header_only(width: u32, height: u32) -> Vec<u8> {
    let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 6, 0, 0, 0]);
    bytes.extend_from_slice(&13u32.to_be_bytes());
    bytes.extend_from_slice(&ihdr);
    bytes.extend_from_slice(&crc32(&ihdr).to_be_bytes());
    bytes.extend_from_slice(&0u32.to_be_bytes());
    bytes.extend_from_slice(b"IEND");
    bytes.extend_from_slice(&crc32(b"IEND").to_be_bytes());
    bytes
}

#[test]
fn decompression_bombs_are_refused_from_the_header() {
    let thumb = inside("thumb", 200, Format::Jpeg);
    let limits = Limits::default();
    // JPEG sides stop at 65535, so this is as big as a JPEG bomb gets (4.2 GP).
    let started = Instant::now();
    let error = render(&jpeg_header_only(65_000, 65_000), &[&thumb], &limits).unwrap_err();
    assert!(
        matches!(
            error,
            TransformError::TooManyPixels {
                width: 65_000,
                height: 65_000,
                max: 50_000_000
            }
        ),
        "{error}"
    );
    let error = render(&png_header_only(100_000, 100_000), &[&thumb], &limits).unwrap_err();
    assert!(
        matches!(
            error,
            TransformError::TooManyPixels {
                width: 100_000,
                height: 100_000,
                ..
            }
        ),
        "{error}"
    );
    assert_eq!(error.kind(), "too_many_pixels");
    assert!(error.to_string().contains("100000×100000"), "{error}");
    // Refused without touching pixels: well under what allocating 40 GB would take.
    assert!(started.elapsed() < Duration::from_secs(1));

    // Just over a lowered limit is refused too, and just under it is not.
    let tight = Limits {
        max_pixels: 128 * 96 - 1,
        ..Limits::default()
    };
    let source = jpeg(&quadrants(128, 96), 128, 96, None, false);
    assert!(matches!(
        render(&source, &[&thumb], &tight),
        Err(TransformError::TooManyPixels { .. })
    ));
    let exact = Limits {
        max_pixels: 128 * 96,
        ..Limits::default()
    };
    assert!(render(&source, &[&thumb], &exact).is_ok());
}

#[test]
fn truncated_oversized_and_foreign_inputs_are_refused_with_a_reason() {
    let thumb = inside("thumb", 100, Format::Jpeg);
    let limits = Limits::default();
    // Noise, so the entropy-coded data is long and a cut lands inside it.
    let noise: Vec<u8> = (0..256u32 * 256 * 3)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let source = jpeg(&noise, 256, 256, None, false);
    let cut = &source[..source.len() / 2];
    let error = render(cut, &[&thumb], &limits).unwrap_err();
    assert!(matches!(error, TransformError::Truncated(_)), "{error}");
    assert_eq!(error.kind(), "truncated");

    let png_cut = png(&image::DynamicImage::ImageRgb8(
        image::RgbImage::from_raw(256, 256, noise.clone()).unwrap(),
    ));
    let error = render(&png_cut[..png_cut.len() / 2], &[&thumb], &limits).unwrap_err();
    assert!(
        matches!(
            error,
            TransformError::Truncated(_) | TransformError::Corrupt(_)
        ),
        "{error}"
    );

    let small = Limits {
        max_bytes: 100,
        ..Limits::default()
    };
    let error = render(&source, &[&thumb], &small).unwrap_err();
    assert!(
        matches!(error, TransformError::TooLarge { max: 100, .. }),
        "{error}"
    );

    let error = render(b"II*\0 a TIFF", &[&thumb], &limits).unwrap_err();
    assert_eq!(error.to_string(), "unsupported image format: TIFF");
    let error = render(b"<html>not an image</html>", &[&thumb], &limits).unwrap_err();
    assert!(matches!(error, TransformError::Unsupported(_)), "{error}");

    // A JPEG whose scan is garbage.
    let mut garbage = jpeg_header_only(16, 16);
    garbage.extend_from_slice(&[0xFF, 0xDA, 0x00, 0x02, 0xFF, 0xD9]);
    let error = render(&garbage, &[&thumb], &limits).unwrap_err();
    assert!(
        matches!(
            error,
            TransformError::Corrupt(_) | TransformError::Truncated(_)
        ),
        "{error}"
    );
}

#[test]
fn outputs_carry_no_metadata() {
    let source = jpeg(
        &quadrants(64, 64),
        64,
        64,
        Some(&exif_orientation(1)),
        false,
    );
    assert!(source.windows(4).any(|w| w == b"Exif"));
    let profiles = [
        inside("jpeg", 32, Format::Jpeg),
        inside("webp", 32, Format::Webp),
        inside("png", 32, Format::Png),
    ];
    let refs: Vec<&Profile> = profiles.iter().collect();
    let rendered = render(&source, &refs, &Limits::default()).unwrap();
    for variant in &rendered.variants {
        for marker in [&b"Exif"[..], b"ICC_PROFILE", b"iCCP", b"eXIf", b"XMP"] {
            assert!(
                !variant.bytes.windows(marker.len()).any(|w| w == marker),
                "{} carries {marker:?}",
                variant.profile
            );
        }
    }
    assert_eq!(OutputFormat::Jpeg.extension(), "jpg");
    assert_eq!(OutputFormat::Webp.content_type(), "image/webp");
}

/// `cargo test --release -p yuba-transform -- --ignored --nocapture`: the three-variant job of
/// the benchmark on a generated 6000×4000 (24 MP) photo-like JPEG.
#[test]
#[ignore = "timing, run in release"]
fn time_three_variants_of_a_24_megapixel_jpeg() {
    let (width, height) = (6000u32, 4000u32);
    let mut rgb = Vec::with_capacity((width * height * 3) as usize);
    for y in 0..height {
        for x in 0..width {
            // Smooth gradients plus a little noise: compresses like a photo, not like a flat fill.
            let noise = ((x.wrapping_mul(73_856_093) ^ y.wrapping_mul(19_349_663)) >> 7) as u8 & 15;
            rgb.push(((x * 255 / width) as u8).wrapping_add(noise));
            rgb.push(((y * 255 / height) as u8).wrapping_add(noise));
            rgb.push((((x + y) * 127 / (width + height)) as u8).wrapping_add(noise));
        }
    }
    let mut source = Vec::new();
    jpeg_encoder::Encoder::new(&mut source, 90)
        .encode(
            &rgb,
            width as u16,
            height as u16,
            jpeg_encoder::ColorType::Rgb,
        )
        .unwrap();
    drop(rgb);
    let mut profiles: Vec<Profile> = [1600, 800, 200]
        .into_iter()
        .map(|side| inside(&format!("w{side}"), side, Format::Jpeg))
        .collect();
    for profile in &mut profiles {
        profile.quality = 80;
    }
    let refs: Vec<&Profile> = profiles.iter().collect();
    let time = |refs: &[&Profile], shrink: u32| {
        let mut best = Duration::MAX;
        for _ in 0..5 {
            let started = Instant::now();
            let rendered = render(&source, refs, &Limits::default()).unwrap();
            best = best.min(started.elapsed());
            assert_eq!(rendered.variants.len(), refs.len());
            assert_eq!(rendered.source.shrink_on_load, shrink);
        }
        best.as_secs_f64() * 1000.0
    };
    println!(
        "6000×4000 JPEG ({} bytes) → 1600/800/200 px JPEG q80: best of 5 {:.1} ms; \
         200 px alone (decoded at 1/8): {:.1} ms",
        source.len(),
        time(&refs, 2),
        time(&refs[2..], 8),
    );
}

#[test]
fn an_animated_webp_gives_its_first_frame() {
    let config = webp::WebPConfig::new().unwrap();
    let red = RgbaImage::from_pixel(30, 20, Rgba([255, 0, 0, 255]));
    let blue = RgbaImage::from_pixel(30, 20, Rgba([0, 0, 255, 255]));
    let mut encoder = webp::AnimEncoder::new(30, 20, &config);
    encoder.add_frame(webp::AnimFrame::from_rgba(red.as_raw(), 30, 20, 0));
    encoder.add_frame(webp::AnimFrame::from_rgba(blue.as_raw(), 30, 20, 100));
    let source = encoder.try_encode().unwrap().to_vec();
    let same = inside("same", 15, Format::Same);
    let rendered = render(&source, &[&same], &Limits::default()).unwrap();
    assert_eq!(rendered.source.format, SourceFormat::Webp);
    assert_eq!(rendered.source.frames, 2);
    let out = decode_rgba(&rendered.variants[0].bytes);
    assert_eq!(out.dimensions(), (15, 10));
    assert!(
        near(out.get_pixel(7, 5), RED, 30),
        "{:?}",
        out.get_pixel(7, 5)
    );
}

#[test]
fn png_exif_orientation_is_honoured() {
    // Stored 20×40 with red on top; orientation 6 (rotate 90° clockwise) puts red on the right.
    let mut source = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut source, 20, 40);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().unwrap();
        writer
            .write_chunk(png::chunk::eXIf, &exif_orientation(6))
            .unwrap();
        let pixels: Vec<u8> = (0..20 * 40)
            .flat_map(|i| if i / 20 < 20 { RED } else { BLUE })
            .collect();
        writer.write_image_data(&pixels).unwrap();
    }
    let thumb = inside("thumb", 20, Format::Png);
    let rendered = render(&source, &[&thumb], &Limits::default()).unwrap();
    assert_eq!(rendered.source.orientation, 6);
    let out = decode_rgba(&rendered.variants[0].bytes);
    assert_eq!(out.dimensions(), (20, 10));
    assert!(
        near(out.get_pixel(17, 5), RED, 5),
        "{:?}",
        out.get_pixel(17, 5)
    );
    assert!(
        near(out.get_pixel(2, 5), BLUE, 5),
        "{:?}",
        out.get_pixel(2, 5)
    );
}

/// A minimal ICC v2 display profile: gamma 2.2 and the sRGB (D50-adapted) colorants, with red
/// and blue swapped. Pure red in such a source means sRGB blue: only a real conversion gets that.
fn swapped_primaries_icc() -> Vec<u8> {
    fn s15(value: f64) -> [u8; 4] {
        ((value * 65536.0).round() as i32).to_be_bytes()
    }
    fn xyz(x: f64, y: f64, z: f64) -> Vec<u8> {
        let mut tag = b"XYZ \0\0\0\0".to_vec();
        for v in [x, y, z] {
            tag.extend_from_slice(&s15(v));
        }
        tag
    }
    let curve = b"curv\0\0\0\0\0\0\0\x01\x02\x33\0\0".to_vec();
    let tags: [(&[u8; 4], Vec<u8>); 7] = [
        (b"rXYZ", xyz(0.1431, 0.0606, 0.7141)),
        (b"gXYZ", xyz(0.3851, 0.7169, 0.0971)),
        (b"bXYZ", xyz(0.4361, 0.2225, 0.0139)),
        (b"wtpt", xyz(0.9642, 1.0, 0.8249)),
        (b"rTRC", curve.clone()),
        (b"gTRC", curve.clone()),
        (b"bTRC", curve),
    ];
    let mut table = (tags.len() as u32).to_be_bytes().to_vec();
    let mut data = Vec::new();
    let data_start = 128 + 4 + 12 * tags.len();
    for (signature, tag) in &tags {
        table.extend_from_slice(*signature);
        table.extend_from_slice(&((data_start + data.len()) as u32).to_be_bytes());
        table.extend_from_slice(&(tag.len() as u32).to_be_bytes());
        data.extend_from_slice(tag);
    }
    let size = data_start + data.len();
    let mut header = vec![0u8; 128];
    header[0..4].copy_from_slice(&(size as u32).to_be_bytes());
    header[8..12].copy_from_slice(&[2, 0x10, 0, 0]);
    header[12..16].copy_from_slice(b"mntr");
    header[16..20].copy_from_slice(b"RGB ");
    header[20..24].copy_from_slice(b"XYZ ");
    header[36..40].copy_from_slice(b"acsp");
    for (i, v) in [0.9642, 1.0, 0.8249].into_iter().enumerate() {
        header[68 + 4 * i..72 + 4 * i].copy_from_slice(&s15(v));
    }
    [header, table, data].concat()
}

#[test]
fn an_embedded_rgb_icc_profile_is_converted_to_srgb() {
    let icc = swapped_primaries_icc();
    let mut source = Vec::new();
    let mut encoder = jpeg_encoder::Encoder::new(&mut source, 95);
    encoder.add_icc_profile(&icc).unwrap();
    let red: Vec<u8> = (0..32 * 32).flat_map(|_| RED).collect();
    encoder
        .encode(&red, 32, 32, jpeg_encoder::ColorType::Rgb)
        .unwrap();
    let profiles = [
        inside("png", 16, Format::Png),
        inside("jpeg", 16, Format::Jpeg),
    ];
    let refs: Vec<&Profile> = profiles.iter().collect();
    let rendered = render(&source, &refs, &Limits::default()).unwrap();
    assert_eq!(rendered.source.icc, IccHandling::Converted);
    for variant in &rendered.variants {
        let out = decode_rgba(&variant.bytes);
        let pixel = out.get_pixel(8, 8);
        assert!(near(pixel, BLUE, 30), "{}: {pixel:?}", variant.profile);
    }

    // Without the profile the same pixels stay red.
    let plain = jpeg(&red, 32, 32, None, false);
    let rendered = render(&plain, &refs, &Limits::default()).unwrap();
    assert_eq!(rendered.source.icc, IccHandling::Absent);
    let out = decode_rgba(&rendered.variants[0].bytes);
    assert!(near(out.get_pixel(8, 8), RED, 30));
}

#[test]
fn damaged_files_give_errors_or_images_never_aborts() {
    let thumb = inside("thumb", 16, Format::Jpeg);
    let limits = Limits::default();
    let quads = quadrants(48, 32);
    let rgba = RgbaImage::from_fn(48, 32, |x, y| Rgba([x as u8 * 5, y as u8 * 7, 0, 200]));
    let mut webp = Vec::new();
    image::codecs::webp::WebPEncoder::new_lossless(&mut webp)
        .write_image(rgba.as_raw(), 48, 32, image::ExtendedColorType::Rgba8)
        .unwrap();
    let sources = [
        jpeg(&quads, 48, 32, Some(&exif_orientation(6)), false),
        jpeg(&quads, 48, 32, None, true),
        png(&image::DynamicImage::ImageRgba8(rgba)),
        animated_gif(&[RED, BLUE]),
        webp,
    ];
    // A fixed xorshift, so that a failure reproduces.
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for source in &sources {
        for _ in 0..150 {
            let mut damaged = source.clone();
            for _ in 0..1 + next() % 4 {
                let at = (next() % damaged.len() as u64) as usize;
                damaged[at] = next() as u8;
            }
            if next() % 4 == 0 {
                damaged.truncate((next() % damaged.len() as u64) as usize);
            }
            if let Ok(rendered) = render(&damaged, &[&thumb], &limits) {
                assert_eq!(rendered.variants.len(), 1);
            }
        }
    }
}
