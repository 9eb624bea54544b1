//! The report of one run: a Markdown page with HDR histogram summaries of upload → replica and
//! upload → variants latency, two SVG plots (latency and throughput over time), the processes'
//! CPU and memory with a plain sentence when something other than yuba capped the rate, the
//! cost estimate, and the raw numbers as JSON so the report can be rendered again later.
//!
//! [`summarize`] turns a run into its numbers (`summary.rs`, with the rate-cap diagnosis in
//! `diagnosis.rs`); [`to_markdown`] and [`render_plots`] render them (`markdown.rs`,
//! `plots.rs`, numbers for people in `human.rs`); [`write`] puts the page, the plots and
//! run.json in a directory.

mod diagnosis;
#[cfg(test)]
mod fixture;
mod human;
mod markdown;
mod plots;
mod summary;

use std::path::Path;

use anyhow::Context as _;

pub use self::markdown::to_markdown;
pub use self::plots::{Plots, render_plots};
pub use self::summary::{LatencySummary, Summary, summarize};
use crate::cost::{self, Prices};
use crate::model::Run;

pub fn write(run: &Run, prices: &Prices, dir: &Path) -> anyhow::Result<Summary> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let json = serde_json::to_string_pretty(run).context("serialising the run")?;
    let run_path = dir.join("run.json");
    std::fs::write(&run_path, json).with_context(|| format!("writing {}", run_path.display()))?;

    let summary = summarize(run);
    let plots = render_plots(run, dir)?;
    let costs = cost::estimate(run, prices);
    let markdown = to_markdown(run, &summary, &costs, &plots);
    let report_path = dir.join("report.md");
    std::fs::write(&report_path, markdown)
        .with_context(|| format!("writing {}", report_path.display()))?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::fixture::{markdown, run};
    use super::plots::{LATENCY_SVG, THROUGHPUT_SVG, latency_svg, throughput_svg};
    use super::summary::run_end_s;
    use super::*;
    use crate::model::ObjectKind;

    #[test]
    fn an_empty_run_still_reports() {
        let mut run = run();
        run.objects.clear();
        run.queue_depth.clear();
        let summary = summarize(&run);
        assert_eq!(summary.uploaded, 0);
        assert!(summary.replica_latency.is_none());
        assert_eq!(summary.upload_rate_per_s, None);
        assert_eq!(summary.p99_target_met, None);
        let end = run_end_s(&run);
        assert!(latency_svg(&run, end).unwrap().contains("<svg"));
        assert!(throughput_svg(&run, end).unwrap().contains("<svg"));
        assert!(markdown(&run).contains("not evaluated"));
    }

    /// Equal but for the last bit of floats: without serde_json's `float_roundtrip` feature its
    /// parser may land one ulp off the value that was written.
    fn assert_same_json(a: &serde_json::Value, b: &serde_json::Value, at: &str) {
        use serde_json::Value;
        match (a, b) {
            (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
                let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
                assert!(
                    (x - y).abs() <= 4.0 * f64::EPSILON * x.abs().max(y.abs()),
                    "{at}: {x} != {y}"
                );
            }
            (Value::Array(xs), Value::Array(ys)) => {
                assert_eq!(xs.len(), ys.len(), "{at}");
                for (i, (x, y)) in xs.iter().zip(ys).enumerate() {
                    assert_same_json(x, y, &format!("{at}[{i}]"));
                }
            }
            (Value::Object(xs), Value::Object(ys)) => {
                assert_eq!(xs.len(), ys.len(), "{at}");
                for (k, x) in xs {
                    assert_same_json(x, &ys[k], &format!("{at}.{k}"));
                }
            }
            _ => assert_eq!(a, b, "{at}"),
        }
    }

    #[test]
    fn write_produces_json_svgs_and_markdown() {
        let mut run = run();
        run.scenario.variant_profiles = vec!["thumb".to_owned()];
        for o in run.objects.iter_mut().take(100) {
            o.kind = ObjectKind::Photo;
            o.variants_s = o.replica_s.map(|r| r + 0.5);
        }
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir = std::env::temp_dir().join(format!(
            "yuba-loadtest-report-{}-{nanos}",
            std::process::id()
        ));
        let summary = write(&run, &Prices::default(), &dir).unwrap();
        assert_eq!(summary.variants_complete, 100);

        let json = std::fs::read_to_string(dir.join("run.json")).unwrap();
        let back: Run = serde_json::from_str(&json).unwrap();
        assert_same_json(
            &serde_json::to_value(&back).unwrap(),
            &serde_json::to_value(&run).unwrap(),
            "run",
        );
        for name in [LATENCY_SVG, THROUGHPUT_SVG] {
            let svg = std::fs::read_to_string(dir.join(name)).unwrap();
            assert!(svg.contains("<svg"), "{name}");
        }
        let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
        assert!(md.contains("p99"));
        assert!(md.contains("upload → all variants"));
        assert!(md.contains("](latency.svg)"));
        assert!(md.contains("run.json"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
