//! Renders the variants of local image files, as the worker would: try a variant configuration
//! on your own images, and the yuba side of `scripts/bench_variants.py`.
//!
//! ```sh
//! cargo run --release -p yuba-transform --example render -- \
//!     --variants variants.json --out /tmp/variants photo.jpg [more.png ...]
//! ```
//!
//! Every profile of the document is applied (its prefix and content-type filters are for the
//! worker). Each variant goes to `OUT/<image stem>.<profile>.<ext>`; one JSON line per image
//! says what was made.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use yuba_transform::{Limits, render};
use yuba_variants::VariantConfig;

struct Args {
    variants: PathBuf,
    out: PathBuf,
    images: Vec<PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut variants = None;
    let mut out = None;
    let mut images = Vec::new();
    let mut args = std::env::args_os().skip(1);
    while let Some(arg) = args.next() {
        match arg.to_str() {
            Some("--variants") => variants = args.next().map(PathBuf::from),
            Some("--out") => out = args.next().map(PathBuf::from),
            Some(flag) if flag.starts_with("--") => return Err(format!("unknown option {flag}")),
            _ => images.push(PathBuf::from(arg)),
        }
    }
    let usage = "usage: render --variants FILE --out DIR IMAGE...";
    Ok(Args {
        variants: variants.ok_or(usage)?,
        out: out.ok_or(usage)?,
        images: if images.is_empty() {
            return Err(usage.to_owned());
        } else {
            images
        },
    })
}

fn run(args: &Args) -> Result<(), String> {
    let document = std::fs::read_to_string(&args.variants)
        .map_err(|error| format!("{}: {error}", args.variants.display()))?;
    let config = VariantConfig::from_json(&document).map_err(|error| error.to_string())?;
    let profiles: Vec<_> = config.profiles.iter().collect();
    std::fs::create_dir_all(&args.out)
        .map_err(|error| format!("{}: {error}", args.out.display()))?;
    for image in &args.images {
        let source =
            std::fs::read(image).map_err(|error| format!("{}: {error}", image.display()))?;
        let rendered = render(&source, &profiles, &Limits::default())
            .map_err(|error| format!("{}: {error}", image.display()))?;
        let stem = image
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("image");
        let mut made = Vec::new();
        for variant in &rendered.variants {
            let name = format!("{stem}.{}.{}", variant.profile, variant.format.extension());
            write(&args.out.join(&name), &variant.bytes)?;
            made.push(serde_json::json!({
                "profile": variant.profile, "width": variant.width, "height": variant.height,
                "bytes": variant.bytes.len(), "file": name,
            }));
        }
        let line = serde_json::json!({
            "image": image.display().to_string(),
            "width": rendered.source.width,
            "height": rendered.source.height,
            "shrink_on_load": rendered.source.shrink_on_load,
            "variants": made,
        });
        println!("{line}");
    }
    Ok(())
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), String> {
    std::fs::write(path, bytes).map_err(|error| format!("{}: {error}", path.display()))
}

fn main() -> ExitCode {
    match parse_args().and_then(|args| run(&args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("render: {error}");
            ExitCode::FAILURE
        }
    }
}
