//! What gets uploaded: a weighted mix of bodies, made once before the run so that the run
//! measures yuba and not the generator.

use std::path::Path;

use anyhow::{Context, bail};
use bytes::Bytes;
use rand::Rng;
use yuba_loadtest::model::{MixPart, ObjectKind};

#[derive(Debug)]
pub struct Body {
    pub kind: ObjectKind,
    pub bytes: Bytes,
    pub content_type: &'static str,
    pub extension: &'static str,
}

#[derive(Debug)]
pub struct Mix {
    parts: Vec<(u32, Vec<Body>)>,
}

/// Large objects go past the local pipeline's 8 MiB routing threshold, to the Fargate worker.
const LARGE_BYTES: usize = 12 << 20;

impl Mix {
    /// Pass-through copies: small objects that are not images, 4 KiB to 256 KiB.
    pub fn pass_through() -> Mix {
        let bodies = [4 << 10, 16 << 10, 64 << 10, 256 << 10]
            .into_iter()
            .enumerate()
            .map(|(i, len)| binary(ObjectKind::SmallBinary, len, i as u64))
            .collect();
        Mix {
            parts: vec![(1, bodies)],
        }
    }

    /// What an image bucket receives: photos (the JPEGs in `corpus`), small PNGs, and now and
    /// then a large file that is not an image.
    pub fn photos(corpus: &Path) -> anyhow::Result<Mix> {
        let photos = read_photos(corpus)?;
        let pngs = [(256, 256), (640, 480)]
            .into_iter()
            .enumerate()
            .map(|(i, (w, h))| small_png(w, h, i as u8))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Mix {
            parts: vec![
                (14, photos),
                (5, pngs),
                (1, vec![binary(ObjectKind::LargeBinary, LARGE_BYTES, 99)]),
            ],
        })
    }

    /// Only the photos: the load that the transform benchmark's capacity is stated in.
    pub fn photos_only(corpus: &Path) -> anyhow::Result<Mix> {
        Ok(Mix {
            parts: vec![(1, read_photos(corpus)?)],
        })
    }

    /// Every body, each once.
    pub fn bodies(&self) -> impl Iterator<Item = &Body> + Clone {
        self.parts.iter().flat_map(|(_, bodies)| bodies.iter())
    }

    /// One body, chosen by weight.
    pub fn pick(&self, rng: &mut impl Rng) -> &Body {
        let total: u32 = self.parts.iter().map(|(w, _)| w).sum();
        let mut ticket = rng.random_range(0..total.max(1));
        for (weight, bodies) in &self.parts {
            if ticket < *weight {
                return &bodies[rng.random_range(0..bodies.len())];
            }
            ticket -= weight;
        }
        let (_, bodies) = &self.parts[0];
        &bodies[0]
    }

    pub fn describe(&self) -> Vec<MixPart> {
        self.parts
            .iter()
            .map(|(weight, bodies)| MixPart {
                kind: bodies[0].kind,
                weight: *weight,
                sizes: bodies.iter().map(|b| b.bytes.len() as u64).collect(),
            })
            .collect()
    }
}

/// The JPEGs in `corpus`, in name order.
fn read_photos(corpus: &Path) -> anyhow::Result<Vec<Body>> {
    let mut photos = Vec::new();
    let entries = std::fs::read_dir(corpus).with_context(|| {
            format!(
                "reading the photo corpus {}: fetch it with `make loadtest-corpus` or pass --corpus DIR",
                corpus.display()
            )
        })?;
    let mut paths: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| e.eq_ignore_ascii_case("jpg") || e.eq_ignore_ascii_case("jpeg"))
        })
        .collect();
    paths.sort();
    for path in paths {
        photos.push(Body {
            kind: ObjectKind::Photo,
            bytes: Bytes::from(
                std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
            ),
            content_type: "image/jpeg",
            extension: "jpg",
        });
    }
    if photos.is_empty() {
        bail!(
            "no .jpg files in {}: pass --corpus DIR with some photos",
            corpus.display()
        );
    }
    Ok(photos)
}

fn binary(kind: ObjectKind, len: usize, seed: u64) -> Body {
    Body {
        kind,
        bytes: Bytes::from(yuba_e2e::pseudo_random_bytes(len, seed)),
        content_type: "application/octet-stream",
        extension: "bin",
    }
}

/// A PNG of gradients and noise, so that it neither compresses to nothing nor is all noise.
fn small_png(width: u32, height: u32, seed: u8) -> anyhow::Result<Body> {
    let noise = yuba_e2e::pseudo_random_bytes((width * height) as usize, u64::from(seed));
    let mut rgb = Vec::with_capacity((width * height * 3) as usize);
    for y in 0..height {
        for x in 0..width {
            let n = noise[(y * width + x) as usize] / 8;
            rgb.extend_from_slice(&[(x % 256) as u8 ^ n, (y % 256) as u8, seed.wrapping_add(n)]);
        }
    }
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.write_header()?.write_image_data(&rgb)?;
    Ok(Body {
        kind: ObjectKind::SmallPng,
        bytes: Bytes::from(out),
        content_type: "image/png",
        extension: "png",
    })
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn picks_follow_the_weights() {
        let mix = Mix {
            parts: vec![
                (3, vec![binary(ObjectKind::SmallBinary, 1, 1)]),
                (1, vec![binary(ObjectKind::LargeBinary, 2, 2)]),
            ],
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let large = (0..4000)
            .filter(|_| mix.pick(&mut rng).kind == ObjectKind::LargeBinary)
            .count();
        assert!((850..1150).contains(&large), "{large}");
    }

    #[test]
    fn generated_pngs_decode() {
        let body = small_png(64, 32, 3).unwrap();
        let decoder = png::Decoder::new(std::io::Cursor::new(body.bytes.to_vec()));
        let reader = decoder.read_info().unwrap();
        assert_eq!((reader.info().width, reader.info().height), (64, 32));
    }

    #[test]
    fn a_corpus_without_photos_is_refused_with_what_to_do() {
        let empty =
            std::env::temp_dir().join(format!("yuba-loadtest-empty-{}", std::process::id()));
        std::fs::create_dir_all(&empty).unwrap();
        let error = Mix::photos(&empty).unwrap_err().to_string();
        std::fs::remove_dir_all(&empty).unwrap();
        assert!(
            error.contains("no .jpg files") && error.contains("--corpus"),
            "{error}"
        );
        let missing = Mix::photos(Path::new("/nonexistent/corpus")).unwrap_err();
        assert!(
            format!("{missing:#}").contains("make loadtest-corpus"),
            "{missing:#}"
        );
    }
}
