//! Images that stress the worker, shared by the end-to-end tests and the load tool's benchmarks.

/// The decompression-amplification image of issue 16: 7000 × 7000 RGBA, 16 bits per sample
/// (49 MP, within every limit; 392 MB decoded as it is), written row by row (never held whole):
/// a soft gradient under a translucent band, so the alpha is real and the file a few hundred KB.
pub fn amplification_png() -> Vec<u8> {
    const SIDE: u32 = 7000;
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, SIDE, SIDE);
    encoder.set_color(png::ColorType::Rgba);
    encoder.set_depth(png::BitDepth::Sixteen);
    encoder.set_compression(png::Compression::High);
    let mut writer = encoder
        .write_header()
        .expect("writing a PNG into memory cannot fail");
    let mut stream = writer
        .stream_writer()
        .expect("writing a PNG into memory cannot fail");
    let mut row = vec![0u8; SIDE as usize * 8];
    for y in 0..SIDE {
        for (x, pixel) in row.chunks_exact_mut(8).enumerate() {
            let x = x as u32;
            let alpha: u16 = if (y / 500) % 2 == 0 { 0xFFFF } else { 0x8000 };
            for (channel, value) in [
                x / 50 * 460,
                y / 50 * 460,
                (x + y) / 100 * 460,
                u32::from(alpha),
            ]
            .into_iter()
            .enumerate()
            {
                pixel[channel * 2..channel * 2 + 2]
                    .copy_from_slice(&(value.min(0xFFFF) as u16).to_be_bytes());
            }
        }
        std::io::Write::write_all(&mut stream, &row)
            .expect("writing a PNG into memory cannot fail");
    }
    stream
        .finish()
        .expect("writing a PNG into memory cannot fail");
    writer
        .finish()
        .expect("writing a PNG into memory cannot fail");
    out
}
