//! What a run comes to: counts, HDR percentiles of upload → replica and upload → variants
//! latency, throughput and the p99 objective, the numbers both the report and the caller use.

use hdrhistogram::Histogram;
use serde::Serialize;

use super::diagnosis::rate_limits;
use crate::model::{ObjectResult, Run};

/// The numbers the report is built from, also handed back to the caller to print.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Summary {
    /// Uploads attempted.
    pub objects: usize,
    pub uploaded: usize,
    pub upload_errors: usize,
    /// Uploaded objects whose replica appeared.
    pub replicated: usize,
    /// Uploaded objects whose replica never appeared.
    pub missing_replicas: usize,
    /// Uploaded images all of whose variants appeared (only when the scenario has profiles).
    pub variants_complete: usize,
    pub variants_missing: usize,
    /// Upload → replica, over the replicated objects only.
    pub replica_latency: Option<LatencySummary>,
    /// Upload → last variant, over the images whose variants all appeared.
    pub variants_latency: Option<LatencySummary>,
    /// Uploads per second, from the first upload's start to the last upload's end.
    pub upload_rate_per_s: Option<f64>,
    /// Replicas per second and MiB per second, from the first upload's start to the last
    /// replica.
    pub replicated_per_s: Option<f64>,
    pub replicated_mib_per_s: Option<f64>,
    /// The scenario's objective, and whether upload → replica p99 met it, counting replicas
    /// that never appeared as slower than any target. `None`: no target, or nothing uploaded.
    pub p99_target_s: Option<f64>,
    pub p99_target_met: Option<bool>,
    /// How long the run lasted as far as its record shows (the latest time in it), seconds:
    /// the denominator of the processes' CPU share.
    pub wall_s: f64,
    /// Plain sentences naming what capped the rate, when a local server was busy or the rate
    /// asked for was not reached. Empty when neither happened.
    pub rate_limits: Vec<String>,
}

/// One latency distribution, seconds.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LatencySummary {
    pub count: u64,
    pub p50_s: f64,
    pub p90_s: f64,
    pub p99_s: f64,
    pub p99_9_s: f64,
    pub max_s: f64,
    pub mean_s: f64,
}

pub fn summarize(run: &Run) -> Summary {
    let objects = &run.objects;
    let uploaded: Vec<&ObjectResult> = objects.iter().filter(|o| o.uploaded_s.is_some()).collect();
    let replica_latencies: Vec<f64> = uploaded
        .iter()
        .filter_map(|o| o.replica_latency_s())
        .map(clamp_latency)
        .collect();
    let replicated = replica_latencies.len();
    let (variant_latencies, images_uploaded) = variant_latencies(run, &uploaded);
    let throughput = Throughput::of(run, &uploaded);
    let p99_target_s = run.scenario.p99_target_s;

    let mut summary = Summary {
        objects: objects.len(),
        uploaded: uploaded.len(),
        upload_errors: objects.len() - uploaded.len(),
        replicated,
        missing_replicas: uploaded.len() - replicated,
        variants_complete: variant_latencies.len(),
        variants_missing: images_uploaded - variant_latencies.len(),
        replica_latency: latency_summary(&replica_latencies),
        variants_latency: latency_summary(&variant_latencies),
        upload_rate_per_s: throughput.uploads_per_s,
        replicated_per_s: throughput.replicas_per_s,
        replicated_mib_per_s: throughput.replicated_mib_per_s,
        p99_target_s,
        p99_target_met: p99_target_s
            .and_then(|target| p99_target_met(target, uploaded.len(), &replica_latencies)),
        wall_s: run_end_s(run),
        rate_limits: Vec::new(),
    };
    summary.rate_limits = rate_limits(run, &summary);
    summary
}

/// Upload → all variants of the uploaded images whose variants all appeared, and how many
/// images were uploaded; none of either when the scenario makes no variants.
fn variant_latencies(run: &Run, uploaded: &[&ObjectResult]) -> (Vec<f64>, usize) {
    if run.scenario.variant_profiles.is_empty() {
        return (Vec::new(), 0);
    }
    let images = || uploaded.iter().filter(|o| o.kind.is_image());
    let latencies = images()
        .filter_map(|o| o.variants_latency_s())
        .map(clamp_latency)
        .collect();
    (latencies, images().count())
}

/// Rates over the run, each from the first upload's start.
struct Throughput {
    /// To the last upload's end.
    uploads_per_s: Option<f64>,
    /// To the last replica.
    replicas_per_s: Option<f64>,
    replicated_mib_per_s: Option<f64>,
}

impl Throughput {
    fn of(run: &Run, uploaded: &[&ObjectResult]) -> Throughput {
        let first_start = run
            .objects
            .iter()
            .map(|o| o.upload_started_s)
            .min_by(f64::total_cmp);
        let last_upload = uploaded
            .iter()
            .filter_map(|o| o.uploaded_s)
            .max_by(f64::total_cmp);
        let uploads_per_s = match (first_start, last_upload) {
            (Some(start), Some(end)) => per_second(uploaded.len() as f64, end - start),
            _ => None,
        };

        let replicas: Vec<&&ObjectResult> =
            uploaded.iter().filter(|o| o.replica_s.is_some()).collect();
        let last_replica = replicas
            .iter()
            .filter_map(|o| o.replica_s)
            .max_by(f64::total_cmp);
        let (replicas_per_s, replicated_mib_per_s) = match (first_start, last_replica) {
            (Some(start), Some(end)) => {
                let mib = replicas.iter().map(|o| o.bytes as f64).sum::<f64>() / MIB;
                (
                    per_second(replicas.len() as f64, end - start),
                    per_second(mib, end - start),
                )
            }
            _ => (None, None),
        };
        Throughput {
            uploads_per_s,
            replicas_per_s,
            replicated_mib_per_s,
        }
    }
}

/// Whether 99% of the uploaded objects replicated within `target_s`; `None` when nothing was
/// uploaded.
fn p99_target_met(target_s: f64, uploaded: usize, replica_latencies: &[f64]) -> Option<bool> {
    if uploaded == 0 {
        return None;
    }
    // A replica that never appeared is later than any target, so p99 is taken over
    // every uploaded object: a run losing 2% of its copies must not pass on the rest.
    let within = replica_latencies.iter().filter(|&&l| l <= target_s).count();
    let needed = (uploaded as f64 * 0.99).ceil() as usize;
    Some(within >= needed)
}

const MIB: f64 = 1024.0 * 1024.0;

/// GCS's creation times are mapped onto the run's clock through the wall clock, so a replica
/// can seem to appear a little before its upload finished; that is noise, not a negative delay.
pub(super) fn clamp_latency(seconds: f64) -> f64 {
    seconds.max(0.0)
}

pub(super) fn per_second(amount: f64, seconds: f64) -> Option<f64> {
    (seconds > 0.0).then(|| amount / seconds)
}

fn latency_summary(latencies_s: &[f64]) -> Option<LatencySummary> {
    if latencies_s.is_empty() {
        return None;
    }
    // Auto-resizing, so any latency fits; recording cannot fail short of u64::MAX / 2 µs.
    let mut histogram = Histogram::<u64>::new(3).ok()?;
    for &l in latencies_s {
        let micros = (l * 1e6).round() as u64;
        // saturating_record alone would not resize, clamping everything to the initial 2 µs.
        if histogram.record(micros).is_err() {
            histogram.saturating_record(micros);
        }
    }
    let at = |q: f64| histogram.value_at_quantile(q) as f64 / 1e6;
    Some(LatencySummary {
        count: histogram.len(),
        p50_s: at(0.5),
        p90_s: at(0.9),
        p99_s: at(0.99),
        p99_9_s: at(0.999),
        // Exact rather than from the histogram, whose buckets round the largest value up.
        max_s: latencies_s.iter().copied().fold(0.0, f64::max),
        mean_s: latencies_s.iter().sum::<f64>() / latencies_s.len() as f64,
    })
}

/// The run does not record its own end; the latest thing it saw (queue samples go on through
/// the drain) is the closest stand-in, and never less than the upload phase.
pub(super) fn run_end_s(run: &Run) -> f64 {
    let object_times = run.objects.iter().flat_map(|o| {
        [
            Some(o.upload_started_s),
            o.uploaded_s,
            o.replica_s,
            o.variants_s,
        ]
        .into_iter()
        .flatten()
    });
    let sample_times = run.queue_depth.iter().map(|s| s.t_s);
    object_times
        .chain(sample_times)
        .filter(|t| t.is_finite())
        .fold(run.scenario.duration_s.max(0.0), f64::max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixture::{markdown, run};

    fn assert_close(actual: f64, expected: f64, tolerance: f64) {
        assert!(
            (actual - expected).abs() <= tolerance,
            "{actual} is not within {tolerance} of {expected}"
        );
    }

    #[test]
    fn percentiles_of_a_uniform_distribution() {
        let summary = summarize(&run());
        let l = summary.replica_latency.unwrap();
        assert_eq!(l.count, 1000);
        // Three significant digits: within 0.1% of the value, plus float noise in the input.
        assert_close(l.p50_s, 0.500, 0.001);
        assert_close(l.p90_s, 0.900, 0.001);
        assert_close(l.p99_s, 0.990, 0.001);
        assert_close(l.p99_9_s, 0.999, 0.001);
        assert_close(l.max_s, 1.000, 1e-9);
        assert_close(l.mean_s, 0.5005, 1e-6);
        assert!(summary.variants_latency.is_none());
        assert_eq!(summary.uploaded, 1000);
        assert_eq!(summary.replicated, 1000);
        assert_close(summary.upload_rate_per_s.unwrap(), 50.0, 0.1);
        let last_replica = run()
            .objects
            .iter()
            .filter_map(|o| o.replica_s)
            .fold(0.0, f64::max);
        assert_close(
            summary.replicated_per_s.unwrap(),
            1000.0 / (last_replica - 0.01),
            1e-9,
        );
        assert_close(
            summary.replicated_mib_per_s.unwrap(),
            1000.0 * 4096.0 / MIB / (last_replica - 0.01),
            1e-9,
        );
    }

    #[test]
    fn missing_replicas_are_counted_and_left_out_of_latency() {
        let mut run = run();
        // The ten slowest never appear, and one object failed to upload at all.
        for o in &mut run.objects {
            if o.replica_latency_s().is_some_and(|l| l > 0.9905) {
                o.replica_s = None;
            }
        }
        run.objects[0].uploaded_s = None;
        run.objects[0].replica_s = None;
        run.objects[0].error = Some("SlowDown: please reduce\nyour request rate".to_owned());
        let summary = summarize(&run);
        assert_eq!(summary.objects, 1000);
        assert_eq!(summary.uploaded, 999);
        assert_eq!(summary.upload_errors, 1);
        assert_eq!(summary.missing_replicas, 10);
        let l = summary.replica_latency.unwrap();
        assert_eq!(l.count, summary.replicated as u64);
        assert!(l.max_s <= 0.9905, "max {}", l.max_s);

        let md = markdown(&run);
        assert!(
            md.contains("10 of 999 uploaded objects never replicated"),
            "{md}"
        );
        assert!(
            md.contains("SlowDown: please reduce your request rate (×1)"),
            "{md}"
        );
    }

    #[test]
    fn negative_latency_clamps_to_zero() {
        let mut run = run();
        run.objects[0].replica_s = Some(run.objects[0].uploaded_s.unwrap() - 0.2);
        let l = summarize(&run).replica_latency.unwrap();
        assert_eq!(l.count, 1000);
        assert!(l.mean_s >= 0.0);
    }

    #[test]
    fn target_met() {
        let summary = summarize(&run());
        assert_eq!(summary.p99_target_met, Some(true));
        assert!(markdown(&run()).contains("**met**"));
    }

    #[test]
    fn target_missed() {
        let mut run = run();
        run.scenario.p99_target_s = Some(0.5);
        assert_eq!(summarize(&run).p99_target_met, Some(false));
        assert!(markdown(&run).contains("**missed**"));
    }

    #[test]
    fn target_missed_when_replicas_are_lost() {
        let mut run = run();
        // p99 of what arrived stays under the target, but 5% never arrived.
        for o in run.objects.iter_mut().step_by(20) {
            o.replica_s = None;
        }
        let summary = summarize(&run);
        assert!(summary.replica_latency.unwrap().p99_s <= 1.0);
        assert_eq!(summary.p99_target_met, Some(false));
    }

    #[test]
    fn no_target_is_not_judged() {
        let mut run = run();
        run.scenario.p99_target_s = None;
        assert_eq!(summarize(&run).p99_target_met, None);
    }
}
