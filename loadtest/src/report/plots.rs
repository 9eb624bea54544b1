//! The report's two SVG plots, drawn with plotters: latency by the second the upload finished,
//! and uploads, replicas and queue depth over time.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context as _;
use plotters::prelude::*;

use super::summary::{clamp_latency, run_end_s};
use crate::model::{ObjectResult, Run};

/// The plots' file names, relative to the report's directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plots {
    pub latency: String,
    pub throughput: String,
}

pub(super) const LATENCY_SVG: &str = "latency.svg";
pub(super) const THROUGHPUT_SVG: &str = "throughput.svg";
const PLOT_SIZE: (u32, u32) = (1000, 500);

pub fn render_plots(run: &Run, dir: &Path) -> anyhow::Result<Plots> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let end = run_end_s(run);
    for (name, svg) in [
        (LATENCY_SVG, latency_svg(run, end)?),
        (THROUGHPUT_SVG, throughput_svg(run, end)?),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, svg).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(Plots {
        latency: LATENCY_SVG.to_owned(),
        throughput: THROUGHPUT_SVG.to_owned(),
    })
}

/// The whole second a time falls in; clock mapping noise can put a time just before zero.
fn second_of(t: f64) -> usize {
    t.max(0.0).floor() as usize
}

/// Latencies grouped by the second their upload finished, so a slow stretch shows where it was.
fn latencies_by_upload_second(
    run: &Run,
    latency: impl Fn(&ObjectResult) -> Option<f64>,
) -> BTreeMap<usize, Vec<f64>> {
    let mut buckets: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
    for o in &run.objects {
        if let (Some(uploaded), Some(l)) = (o.uploaded_s, latency(o)) {
            buckets
                .entry(second_of(uploaded))
                .or_default()
                .push(clamp_latency(l));
        }
    }
    for values in buckets.values_mut() {
        values.sort_by(f64::total_cmp);
    }
    buckets
}

/// Nearest-rank quantile of sorted values; a second holds few samples, so exact is cheap.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

type Line = Vec<(f64, f64)>;

fn quantile_line(buckets: &BTreeMap<usize, Vec<f64>>, q: f64) -> Line {
    buckets
        .iter()
        .map(|(&second, values)| (second as f64, quantile(values, q)))
        .collect()
}

fn axis_max(lines: &[&Line]) -> f64 {
    let max = lines
        .iter()
        .flat_map(|l| l.iter().map(|&(_, y)| y))
        .fold(0.0, f64::max);
    // Headroom above the data keeps the legend, drawn in the upper right, off the lines.
    if max > 0.0 { max * 1.35 } else { 1.0 }
}

pub(super) fn latency_svg(run: &Run, end: f64) -> anyhow::Result<String> {
    let replicas = latencies_by_upload_second(run, ObjectResult::replica_latency_s);
    let variants = latencies_by_upload_second(run, ObjectResult::variants_latency_s);
    let p50 = quantile_line(&replicas, 0.5);
    let p99 = quantile_line(&replicas, 0.99);
    let max = quantile_line(&replicas, 1.0);
    let variants_p99 = quantile_line(&variants, 0.99);
    let y_max = axis_max(&[&max, &variants_p99]);

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, PLOT_SIZE).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "Upload → replica latency, by the second the upload finished",
                ("sans-serif", 20),
            )
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..end.max(1.0), 0.0..y_max)?;
        chart
            .configure_mesh()
            .x_desc("seconds since start")
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_desc("latency, s")
            .draw()?;
        // Max first and grey: with under 100 uploads in a second, p99 is the max, and the
        // red p99 line drawn over it stays visible.
        let mut series = vec![
            ("max", max, RGBColor(150, 150, 150)),
            ("p50", p50, BLUE),
            ("p99", p99, RED),
        ];
        if !variants_p99.is_empty() {
            series.push(("all variants p99", variants_p99, MAGENTA));
        }
        for (label, points, color) in series {
            draw_line(&mut chart, label, points, color)?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
    }
    Ok(svg)
}

fn draw_line<DB: DrawingBackend>(
    chart: &mut ChartContext<
        '_,
        DB,
        Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
    >,
    label: &str,
    points: Line,
    color: RGBColor,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    // Markers as well as a line, so a run with a single second still shows its points.
    chart.draw_series(points.iter().map(|&p| Circle::new(p, 2, color.filled())))?;
    chart
        .draw_series(LineSeries::new(points, color.stroke_width(2)))?
        .label(label)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
    Ok(())
}

fn per_second_counts(times: impl Iterator<Item = f64>, end: f64) -> Line {
    let mut counts = vec![0u64; second_of(end) + 1];
    for t in times {
        if let Some(count) = counts.get_mut(second_of(t)) {
            *count += 1;
        }
    }
    counts
        .into_iter()
        .enumerate()
        .map(|(second, n)| (second as f64, n as f64))
        .collect()
}

pub(super) fn throughput_svg(run: &Run, end: f64) -> anyhow::Result<String> {
    let uploads = per_second_counts(run.objects.iter().filter_map(|o| o.uploaded_s), end);
    let replicas = per_second_counts(
        run.objects
            .iter()
            .filter(|o| o.uploaded_s.is_some())
            .filter_map(|o| o.replica_s),
        end,
    );
    let depth: Line = run
        .queue_depth
        .iter()
        .map(|s| (s.t_s, s.depths.iter().map(|(_, d)| *d as f64).sum()))
        .collect();
    let x_range = 0.0..end.max(1.0);

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (PLOT_SIZE.0, PLOT_SIZE.1 * 3 / 2))
            .into_drawing_area();
        root.fill(&WHITE)?;
        let (upper, lower) = root.split_vertically(PLOT_SIZE.1 * 3 / 4);

        let mut rates = ChartBuilder::on(&upper)
            .caption("Uploads and replicas per second", ("sans-serif", 20))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(x_range.clone(), 0.0..axis_max(&[&uploads, &replicas]))?;
        rates
            .configure_mesh()
            .x_desc("seconds since start")
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_desc("objects/s")
            .draw()?;
        draw_line(&mut rates, "uploads/s", uploads, BLUE)?;
        draw_line(&mut rates, "replicas/s", replicas, GREEN)?;
        rates
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;

        let mut queues = ChartBuilder::on(&lower)
            .caption(
                "Queue depth (visible + in flight, all queues)",
                ("sans-serif", 20),
            )
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(x_range, 0.0..axis_max(&[&depth]))?;
        queues
            .configure_mesh()
            .x_desc("seconds since start")
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_desc("messages")
            .draw()?;
        draw_line(&mut queues, "queue depth", depth, RED)?;
        root.present()?;
    }
    Ok(svg)
}
