//! The delivery origin in a real browser: a gallery page of originals and variants served by
//! `yuba-serve` from the local stack, rendered by Debian's headless Chromium, which reports the
//! size at which it decoded every image. Proves what raw HTTP cannot: that a browser sends the
//! escaped paths of `yuba_delivery::path` as they are (a key with a space, unicode and a `..`
//! segment reaches the origin intact, where its unescaped spelling is rewritten by the browser
//! into another key), and decodes what the origin answers (JPEG, PNG, WebP made on demand).
//!
//! `YUBA_UPDATE_SCREENSHOT=1` also writes the page's screenshot to `docs/delivery-gallery.png`.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use aws_sdk_s3::primitives::ByteStream;
use yuba_delivery::path::{escape_key, original_path, variant_path};
use yuba_e2e::{Process, Stack, gradient_jpeg, replicate, repo_root, run_to_end};

/// The worker makes `medium`; the origin also knows `square`, which no replica has yet: the
/// browser's request is what makes it (in WebP, so the browser decodes the transform's WebP).
const WORKER_VARIANTS: &str = r#"{
    "key_template": "_variants/{variant}/{key}",
    "profiles": [
        {"name": "medium", "width": 400, "height": 400, "format": "jpeg", "quality": 80}
    ]
}"#;
const ORIGIN_VARIANTS: &str = r#"{
    "key_template": "_variants/{variant}/{key}",
    "profiles": [
        {"name": "medium", "width": 400, "height": 400, "format": "jpeg", "quality": 80},
        {"name": "square", "width": 160, "height": 160, "fit": "cover", "format": "webp", "quality": 80}
    ]
}"#;

/// A key a browser would rewrite if its path were not escaped as one opaque segment (with
/// UTF-8 of two and three bytes that the screenshot's DejaVu font can show)...
const DOTTED_KEY: &str = "gallery/sp ace/café Ωμέγα €/../portrait.jpg";
/// ...into this one, which holds another image: a rewritten request shows as a wrong size.
const DECOY_KEY: &str = "gallery/sp ace/portrait.jpg";

/// What Chromium may take, start to end, for one page.
const BROWSER_SECONDS: u64 = 60;
const WINDOW: (u32, u32) = (1000, 940);

/// One `<img>` of the page and what the browser must make of it.
#[derive(Debug)]
struct Tile {
    caption: String,
    /// The `src`, a path on the origin.
    src: String,
    /// The path the origin must see the browser ask for.
    asked: String,
    /// The image's natural size, as the browser decodes it.
    size: (u32, u32),
    /// How the origin must answer the browser (`x-yuba-served`).
    served: &'static str,
}

/// Each source: its key, bytes, content type and size; then its variants' sizes.
struct Source {
    key: &'static str,
    body: Vec<u8>,
    content_type: &'static str,
    size: (u32, u32),
    medium: (u32, u32),
}

fn sources() -> Vec<Source> {
    let source = |key, body, content_type, size, medium| Source {
        key,
        body,
        content_type,
        size,
        medium,
    };
    vec![
        source(
            "gallery/sea.jpg",
            gradient_jpeg(1200, 900, 1),
            "image/jpeg",
            (1200, 900),
            (400, 300),
        ),
        source(
            "gallery/notes.png",
            translucent_png(800, 500),
            "image/png",
            (800, 500),
            (400, 250),
        ),
        source(
            DOTTED_KEY,
            gradient_jpeg(600, 800, 3),
            "image/jpeg",
            (600, 800),
            (300, 400),
        ),
        source(
            DECOY_KEY,
            gradient_jpeg(240, 180, 4),
            "image/jpeg",
            (240, 180),
            (240, 180),
        ),
    ]
}

/// A `width`×`height` RGBA PNG whose alpha fades left to right.
fn translucent_png(width: u32, height: u32) -> Vec<u8> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, width, height);
    encoder.set_color(png::ColorType::Rgba);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().expect("a PNG header in memory");
    let mut pixels = Vec::with_capacity((width * height * 4) as usize);
    for y in 0..height {
        for x in 0..width {
            let alpha = 64 + x * 191 / width;
            pixels.extend_from_slice(&[(y % 256) as u8, 40, 200, alpha as u8]);
        }
    }
    writer
        .write_image_data(&pixels)
        .expect("a PNG body in memory");
    writer.finish().expect("a PNG end in memory");
    out
}

/// The page's tiles: every source's original, stored `medium` and on-demand `square`, and the
/// dotted key's path unescaped (which a browser turns into the decoy's).
fn tiles(sources: &[Source]) -> Vec<Tile> {
    let mut tiles = Vec::new();
    for source in sources.iter().filter(|s| s.key != DECOY_KEY) {
        let tile = |caption: String, src: String, size, served| Tile {
            caption,
            asked: src.clone(),
            src,
            size,
            served,
        };
        let key = source.key;
        tiles.extend([
            tile(key.into(), original_path(key), source.size, "original"),
            tile(
                format!("medium of {key}"),
                variant_path("medium", key),
                source.medium,
                "hit",
            ),
            tile(
                format!("square of {key}"),
                variant_path("square", key),
                (160, 160),
                "rendered",
            ),
        ]);
    }
    let naive: Vec<String> = DOTTED_KEY.split('/').map(escape_key).collect();
    tiles.push(Tile {
        caption: format!(
            "{DOTTED_KEY}, its '/' and '..' unescaped: the browser asks for {DECOY_KEY}"
        ),
        src: format!("/{}", naive.join("/")),
        asked: original_path(DECOY_KEY),
        size: (240, 180),
        served: "original",
    });
    tiles
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_shows_every_original_and_variant_at_its_size() -> anyhow::Result<()> {
    let chromium = chromium()?;
    let stack = Stack::start("gallery", 1)?;
    let sources = sources();
    put_and_replicate(&stack, &sources).await?;
    let (serve, address) = stack
        .spawn_serve(&[("YUBA_VARIANTS", ORIGIN_VARIANTS)])
        .await?;
    let tiles = tiles(&sources);
    let page = stack.dir.join("gallery.html");
    std::fs::write(&page, gallery_html(address, &tiles))?;

    let dom = browse(&stack, &chromium, &page, &["--dump-dom"]).await?;
    let seen = results(&dom)?;
    for (at, tile) in tiles.iter().enumerate() {
        let (state, size) = seen
            .get(at)
            .cloned()
            .with_context(|| format!("no result for tile {at}: {dom}"))?;
        assert_eq!(
            (state.as_str(), size),
            ("load", tile.size),
            "{} ({})\n{}",
            tile.caption,
            tile.src,
            serve.raw_log()
        );
    }
    the_origin_saw_each_path_as_written(&serve, &tiles);
    screenshot(&stack, &chromium, &page).await?;
    Ok(())
}

async fn put_and_replicate(stack: &Stack, sources: &[Source]) -> anyhow::Result<()> {
    let s3 = stack.s3().await;
    let replicator = stack
        .replicator(
            stack.var("AWS_ENDPOINT_URL"),
            &[("YUBA_VARIANTS", WORKER_VARIANTS)],
        )
        .await?;
    for source in sources {
        s3.put_object()
            .bucket(stack.source_bucket())
            .key(source.key)
            .content_type(source.content_type)
            .body(ByteStream::from(source.body.clone()))
            .send()
            .await?;
        replicator
            .run(&replicate(stack.source_bucket(), source.key))
            .await?;
    }
    Ok(())
}

/// Debian's `chromium` on the PATH, or a failure that says how to install it: a missing
/// browser must not pass for a browser that saw nothing wrong.
fn chromium() -> anyhow::Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("chromium"))
        .find(|candidate| candidate.is_file())
        .context(
            "Debian's chromium is not installed: run `make browser` \
             (as root: `.venv/bin/python scripts/debian.py chromium`, i.e. apt-get install chromium)",
        )
}

/// Runs headless Chromium on `page` with `args`, killed (its whole process group, by GNU
/// timeout) after BROWSER_SECONDS; its stdout.
async fn browse(
    stack: &Stack,
    chromium: &Path,
    page: &Path,
    args: &[&str],
) -> anyhow::Result<String> {
    let mut command = Command::new("timeout");
    command
        .args(["--kill-after=5", &BROWSER_SECONDS.to_string()])
        .arg(chromium)
        // Root (these machines) needs --no-sandbox; a profile of its own keeps runs apart.
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
        ])
        .arg(format!(
            "--user-data-dir={}",
            stack.dir.join("chromium").display()
        ))
        // Virtual time runs out only once the page is idle: every image answered.
        .arg("--virtual-time-budget=30000")
        .args(args)
        .arg(format!("file://{}", page.display()));
    let finished = run_to_end(command, Duration::from_secs(BROWSER_SECONDS + 15)).await?;
    ensure!(
        finished.code == Some(0),
        "chromium exited {:?} (124: killed after {BROWSER_SECONDS} s)\n{}",
        finished.code,
        finished.stderr
    );
    Ok(finished.stdout)
}

/// Each tile's load state and natural size, in page order, from the page's `<pre id=result>`.
fn results(dom: &str) -> anyhow::Result<Vec<(String, (u32, u32))>> {
    let (_, element) = dom
        .split_once(r#"<pre id="result""#)
        .with_context(|| format!("no result element in the page Chromium dumped:\n{dom}"))?;
    let text = element
        .split_once('>')
        .and_then(|(_, rest)| rest.split_once("</pre>"))
        .map(|(text, _)| text)
        .with_context(|| format!("the result element is not closed:\n{dom}"))?;
    if text.trim().is_empty() {
        bail!("the page's script wrote no result (did the load event fire?):\n{dom}");
    }
    let rows: Vec<serde_json::Value> = serde_json::from_str(text).context("the result's JSON")?;
    Ok(rows
        .iter()
        .map(|row| {
            let size = |name: &str| row[name].as_u64().unwrap_or(0) as u32;
            let state = row["state"].as_str().unwrap_or("missing").to_owned();
            (state, (size("width"), size("height")))
        })
        .collect())
}

/// The origin's log: each path once, as the page wrote it (but the unescaped one, which the
/// browser rewrote), answered as expected: originals, the worker's variants found, the
/// origin-only profile rendered on the browser's request.
fn the_origin_saw_each_path_as_written(serve: &Process, tiles: &[Tile]) {
    let answered: Vec<(String, String)> = serve
        .log_lines()
        .into_iter()
        .filter(|line| line["message"] == "answered")
        .map(|line| {
            let text = |name: &str| line[name].as_str().unwrap_or_default().to_owned();
            (text("path"), text("served"))
        })
        .collect();
    for tile in tiles {
        let asked: Vec<&str> = answered
            .iter()
            .filter(|(path, _)| path == &tile.asked)
            .map(|(_, served)| served.as_str())
            .collect();
        assert_eq!(asked, [tile.served], "{}: {answered:#?}", tile.asked);
    }
    assert_eq!(answered.len(), tiles.len(), "{answered:#?}");
}

/// The page as Chromium shows it, in the stack's directory; in docs/ with
/// YUBA_UPDATE_SCREENSHOT=1 (so that `make test` does not rewrite a tracked file).
async fn screenshot(stack: &Stack, chromium: &Path, page: &Path) -> anyhow::Result<()> {
    let shot = stack.dir.join("delivery-gallery.png");
    let window = format!("--window-size={},{}", WINDOW.0, WINDOW.1);
    let screenshot = format!("--screenshot={}", shot.display());
    browse(stack, chromium, page, &[&window, &screenshot]).await?;
    let png = std::fs::read(&shot).context("Chromium wrote no screenshot")?;
    ensure!(
        png.starts_with(b"\x89PNG\r\n\x1a\n"),
        "the screenshot is no PNG"
    );
    if std::env::var("YUBA_UPDATE_SCREENSHOT").as_deref() == Ok("1") {
        std::fs::write(repo_root().join("docs/delivery-gallery.png"), png)?;
    }
    Ok(())
}

/// The gallery: one figure per tile, and a script that, once every image has loaded or failed
/// (the window's load event waits for them all), writes each one's state and natural size into
/// `<pre id=result>` as JSON, and into its caption for the screenshot.
fn gallery_html(origin: SocketAddr, tiles: &[Tile]) -> String {
    let mut figures = String::new();
    for (at, tile) in tiles.iter().enumerate() {
        let _ = write!(
            figures,
            r#"<figure><img id="t{at}" src="http://{origin}{src}" onload="settle(this, 'load')" onerror="settle(this, 'error')"><figcaption>{caption}<br>expected {w}×{h}, {served} · <b id="c{at}">pending</b></figcaption></figure>"#,
            src = html_text(&tile.src),
            caption = html_text(&tile.caption),
            w = tile.size.0,
            h = tile.size.1,
            served = tile.served,
        );
        figures.push('\n');
    }
    format!(
        r#"<!doctype html>
<html><head><meta charset="utf-8"><title>yuba-serve gallery</title>
<style>
body {{ font: 13px sans-serif; margin: 12px; }}
main {{ display: grid; grid-template-columns: repeat(3, 1fr); gap: 10px; }}
figure {{ margin: 0; padding: 6px; border: 1px solid #ccc; }}
img {{ max-width: 100%; max-height: 140px; display: block;
      background: repeating-conic-gradient(#ddd 0 25%, #fff 0 50%) 0 0 / 16px 16px; }}
figcaption {{ overflow-wrap: anywhere; }}
</style>
<script>
function settle(img, state) {{ img.dataset.state = state; }}
window.addEventListener('load', () => {{
  const rows = [...document.images].map(img => {{
    const row = {{ state: img.dataset.state || 'pending', width: img.naturalWidth, height: img.naturalHeight }};
    document.getElementById('c' + img.id.slice(1)).textContent = row.state + ' ' + row.width + '×' + row.height;
    return row;
  }});
  document.getElementById('result').textContent = JSON.stringify(rows);
}});
</script></head>
<body><h3>Originals and variants from yuba-serve (http://{origin}), as Chromium decodes them</h3>
<main>
{figures}</main>
<pre id="result" hidden></pre>
</body></html>
"#
    )
}

/// `text` safe in an HTML attribute or element.
fn html_text(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
