//! The memory estimate against the memory a render really takes, for every decode path: 8- and
//! 16-bit PNG of every colour type (grey, grey + alpha, RGB, RGBA, palette with and without
//! transparency), whole and box-shrunk in strips; JPEG baseline, progressive, 4:2:0 and 4:4:4,
//! grey and CMYK at each shrink-on-load scale; GIF; lossless and lossy WebP.
//!
//! Each render runs in a child process of its own (this test binary, run again for the ignored
//! `child_measures_one_render`), which resets its peak RSS after reading the source
//! (`/proc/self/clear_refs`, 5) and reports the growth of `VmHWM` over the render: the bytes the
//! render made resident, whatever allocated them. The estimate may be exceeded by no more than
//! [`ESTIMATE_MARGIN`], and must not be so generous that it wastes the budget (at most
//! [`MAX_OVER`] × the measured peak, plus the fixed part).

#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::process::Command;

use image::ImageEncoder;
use yuba_transform::{ESTIMATE_MARGIN, Limits, MemoryEstimate, estimate_memory, render};
use yuba_variants::{Fit, Format, Profile};

const CASE_FILE: &str = "YUBA_MEMORY_CASE_FILE";
const CASE_PROFILE: &str = "YUBA_MEMORY_CASE_BOX";
/// How many times the measured peak the estimate may be, at most.
const MAX_OVER: f64 = 2.0;
const MIB: u64 = 1024 * 1024;

const WIDTH: u32 = 3000;
const HEIGHT: u32 = 2000;

fn profile(side: u32) -> Profile {
    Profile {
        name: "v".into(),
        width: Some(side),
        height: Some(side),
        fit: Fit::Inside,
        upscale: false,
        format: Format::Jpeg,
        quality: 80,
        prefixes: Vec::new(),
        content_types: Vec::new(),
    }
}

/// A photo-like picture: smooth gradients with a little noise, so the encoders do real work.
fn picture(channels: usize, translucent: bool) -> Vec<u8> {
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let mut pixels = Vec::with_capacity(WIDTH as usize * HEIGHT as usize * channels);
    for y in 0..HEIGHT {
        for x in 0..WIDTH {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let noise = (seed & 15) as u32;
            let base = [x * 255 / WIDTH, y * 255 / HEIGHT, (x + y) * 127 / WIDTH];
            for value in base.iter().take(channels.min(3)) {
                pixels.push((value + noise).min(255) as u8);
            }
            if channels == 2 || channels == 4 {
                pixels.push(if translucent { (x % 256) as u8 } else { 255 });
            }
            if channels == 2 {
                // Grey + alpha: the one grey sample is the first pushed; drop the others.
                let len = pixels.len();
                pixels.drain(len - 3..len - 2);
            }
        }
    }
    pixels
}

fn png(colour: png::ColorType, depth: png::BitDepth, palette_alpha: Option<bool>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, WIDTH, HEIGHT);
    encoder.set_color(colour);
    encoder.set_depth(depth);
    encoder.set_compression(png::Compression::Fast);
    let samples = match colour {
        png::ColorType::Grayscale | png::ColorType::Indexed => 1,
        png::ColorType::GrayscaleAlpha => 2,
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
    };
    let eight = if colour == png::ColorType::Indexed {
        let palette: Vec<u8> = (0..=255u8).flat_map(|i| [i, 255 - i, i / 2]).collect();
        encoder.set_palette(palette);
        if palette_alpha == Some(true) {
            encoder.set_trns((0..=255u8).collect::<Vec<_>>());
        }
        picture(1, false)
    } else {
        picture(samples, true)
    };
    let data: Vec<u8> = if depth == png::BitDepth::Sixteen {
        eight.iter().flat_map(|&v| [v, v ^ 0x5A]).collect()
    } else {
        eight
    };
    let mut writer = encoder.write_header().unwrap();
    writer.write_image_data(&data).unwrap();
    writer.finish().unwrap();
    out
}

fn jpeg(
    colour: jpeg_encoder::ColorType,
    progressive: bool,
    sampling: jpeg_encoder::SamplingFactor,
) -> Vec<u8> {
    let channels = match colour {
        jpeg_encoder::ColorType::Luma => 1,
        jpeg_encoder::ColorType::Cmyk => 4,
        _ => 3,
    };
    let mut pixels = picture(channels.min(3), false);
    if channels == 4 {
        pixels = pixels
            .chunks_exact(3)
            .flat_map(|p| [p[0], p[1], p[2], 40])
            .collect();
    }
    let mut out = Vec::new();
    let mut encoder = jpeg_encoder::Encoder::new(&mut out, 85);
    encoder.set_progressive(progressive);
    encoder.set_sampling_factor(sampling);
    encoder
        .encode(&pixels, WIDTH as u16, HEIGHT as u16, colour)
        .unwrap();
    out
}

fn gif() -> Vec<u8> {
    let rgba = picture(4, false);
    let mut out = Vec::new();
    let mut encoder = image::codecs::gif::GifEncoder::new_with_speed(&mut out, 30);
    let frame = image::Frame::new(image::RgbaImage::from_raw(WIDTH, HEIGHT, rgba).unwrap());
    encoder.encode_frame(frame).unwrap();
    drop(encoder);
    out
}

fn webp_lossless() -> Vec<u8> {
    let rgba = picture(4, true);
    let mut out = Vec::new();
    image::codecs::webp::WebPEncoder::new_lossless(&mut out)
        .write_image(&rgba, WIDTH, HEIGHT, image::ExtendedColorType::Rgba8)
        .unwrap();
    out
}

fn webp_lossy() -> Vec<u8> {
    let rgb = picture(3, false);
    webp::Encoder::from_rgb(&rgb, WIDTH, HEIGHT)
        .encode(80.0)
        .to_vec()
}

/// One case: what it is, its bytes, and the side of the one profile's box.
struct Case {
    name: String,
    bytes: Vec<u8>,
    side: u32,
}

fn cases() -> Vec<Case> {
    use jpeg_encoder::{ColorType as J, SamplingFactor as S};
    use png::{BitDepth as D, ColorType as C};
    let mut cases = Vec::new();
    let mut add = |name: &str, bytes: &[u8], sides: &[u32]| {
        for &side in sides {
            cases.push(Case {
                name: format!("{name} → {side} px"),
                bytes: bytes.to_vec(),
                side,
            });
        }
    };
    // PNG: whole (a box as large as the image) and shrunk in strips (400 px: a box shrink of 3).
    for (name, colour, depth, palette_alpha) in [
        ("PNG grey 8-bit", C::Grayscale, D::Eight, None),
        ("PNG grey 16-bit", C::Grayscale, D::Sixteen, None),
        ("PNG grey+alpha 8-bit", C::GrayscaleAlpha, D::Eight, None),
        ("PNG RGB 8-bit", C::Rgb, D::Eight, None),
        ("PNG RGB 16-bit", C::Rgb, D::Sixteen, None),
        ("PNG RGBA 8-bit", C::Rgba, D::Eight, None),
        ("PNG RGBA 16-bit", C::Rgba, D::Sixteen, None),
        ("PNG palette", C::Indexed, D::Eight, Some(false)),
        ("PNG palette+tRNS", C::Indexed, D::Eight, Some(true)),
    ] {
        add(name, &png(colour, depth, palette_alpha), &[WIDTH, 400]);
    }
    // JPEG at each shrink-on-load scale: 1, 1/2, 1/4, 1/8.
    let scales = [WIDTH, WIDTH / 2, WIDTH / 4, WIDTH / 8];
    add(
        "JPEG baseline 4:2:0",
        &jpeg(J::Rgb, false, S::F_2_2),
        &scales,
    );
    add(
        "JPEG baseline 4:4:4",
        &jpeg(J::Rgb, false, S::F_1_1),
        &scales,
    );
    add(
        "JPEG progressive 4:2:0",
        &jpeg(J::Rgb, true, S::F_2_2),
        &scales,
    );
    add(
        "JPEG progressive 4:4:4",
        &jpeg(J::Rgb, true, S::F_1_1),
        &scales,
    );
    add(
        "JPEG grey",
        &jpeg(J::Luma, false, S::F_1_1),
        &[WIDTH, WIDTH / 8],
    );
    add(
        "JPEG CMYK",
        &jpeg(J::Cmyk, false, S::F_1_1),
        &[WIDTH, WIDTH / 8],
    );
    add("GIF", &gif(), &[WIDTH, 400]);
    add("WebP lossless RGBA", &webp_lossless(), &[WIDTH, 400]);
    add("WebP lossy", &webp_lossy(), &[WIDTH, 400]);
    cases
}

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// The child: renders one source and prints how much its peak RSS grew. Run only by
/// `estimates_hold_for_every_decode_path`.
#[test]
#[ignore = "run as a child process by estimates_hold_for_every_decode_path"]
fn child_measures_one_render() {
    let source = std::fs::read(std::env::var(CASE_FILE).unwrap()).unwrap();
    let side: u32 = std::env::var(CASE_PROFILE).unwrap().parse().unwrap();
    let profile = profile(side);
    // Touch what the render does not allocate (the thread's stack, the code) before the reset.
    render(&source[..64], &[&profile], &Limits::default()).ok();
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
    let before = status_kib("VmHWM:");
    let rendered = render(&source, &[&profile], &Limits::default()).unwrap();
    let peak = status_kib("VmHWM:");
    assert_eq!(rendered.variants.len(), 1);
    println!("MEASURED {}", (peak - before) * 1024);
}

fn measure(case: &Case) -> u64 {
    let path = std::env::temp_dir().join(format!("yuba-memory-case-{}", std::process::id()));
    std::fs::File::create(&path)
        .unwrap()
        .write_all(&case.bytes)
        .unwrap();
    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "child_measures_one_render",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CASE_FILE, &path)
        .env(CASE_PROFILE, case.side.to_string())
        .output()
        .unwrap();
    std::fs::remove_file(&path).unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let measured = stdout
        .lines()
        .find_map(|line| line.split("MEASURED ").nth(1))
        .unwrap_or_else(|| {
            panic!(
                "{}: the child reported nothing:\n{stdout}\n{}",
                case.name,
                String::from_utf8_lossy(&output.stderr)
            )
        });
    measured.trim().parse().unwrap()
}

#[test]
fn estimates_hold_for_every_decode_path() {
    let (fraction, slack) = ESTIMATE_MARGIN;
    let mut failures = Vec::new();
    println!(
        "{:<40} {:>10} {:>10} {:>7}",
        "case", "estimate", "measured", "ratio"
    );
    for case in cases() {
        let profile = profile(case.side);
        let limits = Limits::default();
        let MemoryEstimate::Bytes(estimate) =
            estimate_memory(&case.bytes, true, &[&profile], &limits)
        else {
            panic!("{}: the whole source gave no estimate", case.name);
        };
        // The header alone gives the same estimate as the whole source.
        let head = &case.bytes[..case.bytes.len().min(64 * 1024)];
        assert_eq!(
            estimate_memory(head, false, &[&profile], &limits),
            MemoryEstimate::Bytes(estimate),
            "{}",
            case.name
        );
        let measured = measure(&case);
        let ratio = estimate as f64 / measured.max(1) as f64;
        println!(
            "{:<40} {:>8.1}MB {:>8.1}MB {:>7.2}",
            case.name,
            estimate as f64 / 1e6,
            measured as f64 / 1e6,
            ratio
        );
        if measured as f64 > estimate as f64 * (1.0 + fraction) + slack as f64 {
            failures.push(format!(
                "{}: under-estimated ({estimate} < {measured})",
                case.name
            ));
        }
        if estimate as f64 > measured as f64 * MAX_OVER + 8.0 * MIB as f64 {
            failures.push(format!(
                "{}: over-estimated ({estimate} > {MAX_OVER} × {measured})",
                case.name
            ));
        }
    }
    if std::env::var_os("YUBA_MEMORY_REPORT_ONLY").is_none() {
        assert!(failures.is_empty(), "{failures:#?}");
    }
}
