//! The report of one run: a Markdown page with HDR histogram summaries of upload → replica and
//! upload → variants latency, two SVG plots (latency and throughput over time), the processes'
//! CPU and memory with a plain sentence when something other than yuba capped the rate, the
//! cost estimate, and the raw numbers as JSON so the report can be rendered again later.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context as _;
use hdrhistogram::Histogram;
use plotters::prelude::*;
use serde::Serialize;

use crate::cost::{self, CostTable, Prices};
use crate::model::{ObjectKind, ObjectResult, ProcessRole, Run};

/// A local server using at least this share of one core is taken to be what capped the rate:
/// moto and fake-gcs-server serve requests on what is in effect one core.
const BUSY_SERVER_SHARE: f64 = 0.8;
/// Uploads below this share of the rate asked for count as the rate not being reached.
const RATE_SHORTFALL: f64 = 0.9;
/// The share of the machine's cores the stand-ins and the generator must take, together, for
/// a run that fell behind to be put down to sharing the machine.
const SHARED_MACHINE_SHARE: f64 = 0.2;
/// How many distinct error messages the report lists.
const ERRORS_LISTED: usize = 5;

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

/// The plots' file names, relative to the report's directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plots {
    pub latency: String,
    pub throughput: String,
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
    let missing_replicas = uploaded.len() - replicated;

    let expects_variants = !run.scenario.variant_profiles.is_empty();
    let variant_latencies: Vec<f64> = if expects_variants {
        uploaded
            .iter()
            .filter(|o| o.kind.is_image())
            .filter_map(|o| o.variants_latency_s())
            .map(clamp_latency)
            .collect()
    } else {
        Vec::new()
    };
    let images_uploaded = if expects_variants {
        uploaded.iter().filter(|o| o.kind.is_image()).count()
    } else {
        0
    };

    let first_start = objects
        .iter()
        .map(|o| o.upload_started_s)
        .min_by(f64::total_cmp);
    let last_upload = uploaded
        .iter()
        .filter_map(|o| o.uploaded_s)
        .max_by(f64::total_cmp);
    let upload_rate_per_s = match (first_start, last_upload) {
        (Some(start), Some(end)) => per_second(uploaded.len() as f64, end - start),
        _ => None,
    };

    let replicas: Vec<&&ObjectResult> = uploaded.iter().filter(|o| o.replica_s.is_some()).collect();
    let last_replica = replicas
        .iter()
        .filter_map(|o| o.replica_s)
        .max_by(f64::total_cmp);
    let (replicated_per_s, replicated_mib_per_s) = match (first_start, last_replica) {
        (Some(start), Some(end)) => {
            let mib = replicas.iter().map(|o| o.bytes as f64).sum::<f64>() / MIB;
            (
                per_second(replicas.len() as f64, end - start),
                per_second(mib, end - start),
            )
        }
        _ => (None, None),
    };

    let p99_target_s = run.scenario.p99_target_s;
    let p99_target_met = p99_target_s.filter(|_| !uploaded.is_empty()).map(|target| {
        // A replica that never appeared is later than any target, so p99 is taken over
        // every uploaded object: a run losing 2% of its copies must not pass on the rest.
        let within = replica_latencies.iter().filter(|&&l| l <= target).count();
        let needed = (uploaded.len() as f64 * 0.99).ceil() as usize;
        within >= needed
    });

    let mut summary = Summary {
        objects: objects.len(),
        uploaded: uploaded.len(),
        upload_errors: objects.len() - uploaded.len(),
        replicated,
        missing_replicas,
        variants_complete: variant_latencies.len(),
        variants_missing: images_uploaded - variant_latencies.len(),
        replica_latency: latency_summary(&replica_latencies),
        variants_latency: latency_summary(&variant_latencies),
        upload_rate_per_s,
        replicated_per_s,
        replicated_mib_per_s,
        p99_target_s,
        p99_target_met,
        wall_s: run_end_s(run),
        rate_limits: Vec::new(),
    };
    summary.rate_limits = rate_limits(run, &summary);
    summary
}

const MIB: f64 = 1024.0 * 1024.0;

/// GCS's creation times are mapped onto the run's clock through the wall clock, so a replica
/// can seem to appear a little before its upload finished; that is noise, not a negative delay.
fn clamp_latency(seconds: f64) -> f64 {
    seconds.max(0.0)
}

fn per_second(amount: f64, seconds: f64) -> Option<f64> {
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
fn run_end_s(run: &Run) -> f64 {
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

fn cpu_share(cpu_s: f64, wall_s: f64) -> Option<f64> {
    (wall_s > 0.0).then(|| cpu_s / wall_s)
}

fn rate_limits(run: &Run, summary: &Summary) -> Vec<String> {
    let mut sentences = Vec::new();
    let busy: Vec<_> = run
        .processes
        .iter()
        .filter(|p| p.role == ProcessRole::Server)
        .filter_map(|p| Some((p, cpu_share(p.cpu_s, summary.wall_s)?)))
        .filter(|&(_, share)| share >= BUSY_SERVER_SHARE)
        .collect();
    for (process, share) in &busy {
        sentences.push(format!(
            "The local server {} used {:.0}% of one core ({:.1} CPU s over {:.1} s), so it, \
             not yuba, capped the rate of this run.",
            process.name,
            share * 100.0,
            process.cpu_s,
            summary.wall_s
        ));
    }

    if busy.is_empty() {
        sentences.extend(shared_machine(run, summary));
    }

    let (Some(asked), Some(achieved)) = (run.scenario.rate_per_s, summary.upload_rate_per_s) else {
        return sentences;
    };
    if asked <= 0.0 || achieved >= RATE_SHORTFALL * asked {
        return sentences;
    }
    let mut sentence = format!(
        "Uploads reached {} objects/s, {:.0}% of the {} objects/s asked for",
        rate(achieved),
        achieved / asked * 100.0,
        rate(asked)
    );
    let concurrency_cap = mean_upload_s(run)
        .and_then(|mean| per_second(run.scenario.concurrency as f64, mean).map(|cap| (mean, cap)));
    if !busy.is_empty() {
        let names: Vec<&str> = busy.iter().map(|(p, _)| p.name.as_str()).collect();
        let _ = write!(
            sentence,
            ": the busy local server ({}) is the limit, not yuba.",
            names.join(", ")
        );
    } else if let Some((mean, cap)) = concurrency_cap.filter(|&(_, cap)| cap < asked) {
        let _ = write!(
            sentence,
            ": with at most {} uploads in flight and uploads taking {} on average, the \
             concurrency allows at most {} objects/s.",
            run.scenario.concurrency,
            duration(mean),
            rate(cap)
        );
    } else {
        let _ = write!(
            sentence,
            ": no local server was busy and the concurrency was not the limit, so the load \
             generator or the machine ({} cores) was.",
            run.environment.cores
        );
    }
    sentences.push(sentence);
    sentences
}

/// When yuba fell behind on a machine whose cores it shared with the stand-ins for the clouds
/// and with the load generator, how the cores were split: no single stand-in need be busy for
/// them together to take what yuba lacked.
fn shared_machine(run: &Run, summary: &Summary) -> Option<String> {
    let fell_behind = summary.missing_replicas > 0
        || summary.p99_target_met == Some(false)
        || matches!(
            (summary.replicated_per_s, summary.upload_rate_per_s),
            (Some(done), Some(uploaded)) if done < RATE_SHORTFALL * uploaded
        );
    let cores = run.environment.cores as f64;
    let cores_of = |roles: &[ProcessRole]| -> f64 {
        run.processes
            .iter()
            .filter(|p| roles.contains(&p.role))
            .filter_map(|p| cpu_share(p.cpu_s, summary.wall_s))
            .sum()
    };
    let others = cores_of(&[ProcessRole::Server, ProcessRole::LoadGenerator]);
    if !fell_behind || cores <= 0.0 || others < SHARED_MACHINE_SHARE * cores {
        return None;
    }
    let each: Vec<String> = run
        .processes
        .iter()
        .filter(|p| matches!(p.role, ProcessRole::Server | ProcessRole::LoadGenerator))
        .filter_map(|p| {
            Some(format!(
                "{} {:.2}",
                p.name,
                cpu_share(p.cpu_s, summary.wall_s)?
            ))
        })
        .collect();
    Some(format!(
        "yuba fell behind on a machine it shared: the local servers and the load generator used {others:.2} of its {cores:.0} cores ({}), which left yuba's processes {:.2} cores; they used {:.2}.",
        each.join(", "),
        cores - others,
        cores_of(&[ProcessRole::Worker, ProcessRole::Ingest]),
    ))
}

fn mean_upload_s(run: &Run) -> Option<f64> {
    let times: Vec<f64> = run
        .objects
        .iter()
        .filter_map(|o| Some(o.uploaded_s? - o.upload_started_s))
        .collect();
    (!times.is_empty()).then(|| times.iter().sum::<f64>() / times.len() as f64)
}

pub fn to_markdown(run: &Run, summary: &Summary, costs: &CostTable, plots: &Plots) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail; the Result only comes from the fmt::Write trait.
    let _ = render_markdown(&mut out, run, summary, costs, plots);
    out
}

fn render_markdown(
    out: &mut String,
    run: &Run,
    summary: &Summary,
    costs: &CostTable,
    plots: &Plots,
) -> std::fmt::Result {
    let scenario = &run.scenario;
    writeln!(
        out,
        "# Load test: {} ({})\n",
        scenario.name,
        display_date(&run.started_at)
    )?;

    // What ran.
    writeln!(out, "## What ran\n")?;
    let pace = match scenario.rate_per_s {
        Some(r) => format!(
            "{} uploads/s (open loop), at most {} in flight",
            rate(r),
            scenario.concurrency
        ),
        None => format!(
            "as fast as {} uploads in flight allowed",
            scenario.concurrency
        ),
    };
    let environment = format!(
        "{} on {} cores",
        run.environment.target, run.environment.cores
    );
    writeln!(
        out,
        "Against {environment}: {pace}, for {} of uploads, then up to {} waiting for replicas. \
         {} uploads attempted.\n",
        duration(scenario.duration_s),
        duration(scenario.drain_s),
        summary.objects
    )?;
    writeln!(out, "| Kind | Weight | Uploaded | Mean size |")?;
    writeln!(out, "|---|---:|---:|---:|")?;
    // Kinds the mix does not list can still show up in a hand-edited or older run.json.
    let mut rows: Vec<(ObjectKind, Option<u32>)> = scenario
        .mix
        .iter()
        .map(|p| (p.kind, Some(p.weight)))
        .collect();
    for o in &run.objects {
        if !rows.iter().any(|&(kind, _)| kind == o.kind) {
            rows.push((o.kind, None));
        }
    }
    for (kind, weight) in rows {
        let sizes: Vec<u64> = run
            .objects
            .iter()
            .filter(|o| o.kind == kind && o.uploaded_s.is_some())
            .map(|o| o.bytes)
            .collect();
        let mean = if sizes.is_empty() {
            "—".to_owned()
        } else {
            bytes(sizes.iter().sum::<u64>() as f64 / sizes.len() as f64)
        };
        let weight = weight.map_or_else(|| "—".to_owned(), |w| w.to_string());
        writeln!(
            out,
            "| {} | {weight} | {} | {mean} |",
            kind.as_str(),
            sizes.len(),
        )?;
    }
    if scenario.variant_profiles.is_empty() {
        writeln!(out, "\nVariant profiles: none (pass-through copies).\n")?;
    } else {
        let profiles: Vec<String> = scenario
            .variant_profiles
            .iter()
            .map(|p| format!("`{p}`"))
            .collect();
        writeln!(out, "\nVariant profiles: {}.\n", profiles.join(", "))?;
    }

    // Latency.
    writeln!(out, "## Latency\n")?;
    writeln!(out, "| | p50 | p90 | p99 | p99.9 | max | mean | count |")?;
    writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|")?;
    latency_row(out, "upload → replica", summary.replica_latency.as_ref())?;
    if !scenario.variant_profiles.is_empty() {
        latency_row(
            out,
            "upload → all variants",
            summary.variants_latency.as_ref(),
        )?;
    }
    writeln!(out)?;
    let mut missing = Vec::new();
    if summary.missing_replicas > 0 {
        missing.push(format!(
            "{} of {} uploaded objects never replicated",
            summary.missing_replicas, summary.uploaded
        ));
    }
    if summary.variants_missing > 0 {
        missing.push(format!(
            "{} of {} uploaded images never got all their variants",
            summary.variants_missing,
            summary.variants_missing + summary.variants_complete
        ));
    }
    if !missing.is_empty() {
        writeln!(
            out,
            "Missing within the {} drain: {}; they are left out of the latencies above.\n",
            duration(scenario.drain_s),
            missing.join("; ")
        )?;
    }
    writeln!(out, "{}\n", target_sentence(summary))?;

    // Throughput.
    writeln!(out, "## Throughput\n")?;
    let opt_rate = |r: Option<f64>| r.map(rate).unwrap_or_else(|| "—".to_owned());
    let asked = scenario
        .rate_per_s
        .map(|r| format!(" (asked for {})", rate(r)))
        .unwrap_or_default();
    writeln!(
        out,
        "Uploads: {} objects/s{asked}. Replicated: {} objects/s, {} MiB/s (first upload to last \
         replica).\n",
        opt_rate(summary.upload_rate_per_s),
        opt_rate(summary.replicated_per_s),
        summary
            .replicated_mib_per_s
            .map(rate)
            .unwrap_or_else(|| "—".to_owned()),
    )?;

    // Errors.
    writeln!(out, "## Errors\n")?;
    let errors = distinct_errors(run);
    if summary.upload_errors == 0 && errors.is_empty() {
        writeln!(out, "No upload failed.\n")?;
    } else {
        writeln!(
            out,
            "{} of {} uploads failed.\n",
            summary.upload_errors, summary.objects
        )?;
        for (message, count) in errors.iter().take(ERRORS_LISTED) {
            writeln!(out, "- {message} (×{count})")?;
        }
        if errors.len() > ERRORS_LISTED {
            writeln!(
                out,
                "- … and {} other messages",
                errors.len() - ERRORS_LISTED
            )?;
        }
        writeln!(out)?;
    }

    // Processes.
    writeln!(out, "## Processes\n")?;
    if run.processes.is_empty() {
        writeln!(out, "No process was measured.\n")?;
    } else {
        writeln!(
            out,
            "CPU share is CPU time over the run's {} of wall time, as a share of one core.\n",
            duration(summary.wall_s)
        )?;
        writeln!(out, "| Process | Role | CPU s | CPU share | Peak RSS |")?;
        writeln!(out, "|---|---|---:|---:|---:|")?;
        for p in &run.processes {
            let share = cpu_share(p.cpu_s, summary.wall_s)
                .map(|s| format!("{:.0}%", s * 100.0))
                .unwrap_or_else(|| "—".to_owned());
            writeln!(
                out,
                "| {} | {} | {:.1} | {} | {} |",
                table_cell(&p.name),
                role(p.role),
                p.cpu_s,
                share,
                bytes(p.peak_rss_bytes as f64)
            )?;
        }
        writeln!(out)?;
    }
    for sentence in &summary.rate_limits {
        writeln!(out, "**Rate limit:** {sentence}\n")?;
    }

    // Plots.
    writeln!(out, "## Plots\n")?;
    writeln!(out, "![Latency over time]({})\n", plots.latency)?;
    writeln!(out, "![Throughput over time]({})\n", plots.throughput)?;

    // Cost. The table brings its own heading; only a bare one needs ours.
    let cost = costs.to_markdown();
    let cost = cost.trim();
    if !cost.starts_with('#') {
        writeln!(out, "## Cost\n")?;
    }
    if cost.is_empty() {
        writeln!(out, "No cost estimate.\n")?;
    } else {
        writeln!(out, "{cost}\n")?;
    }

    writeln!(
        out,
        "The raw numbers (every object's times, queue depths, processes) are in `run.json`."
    )
}

fn latency_row(out: &mut String, name: &str, latency: Option<&LatencySummary>) -> std::fmt::Result {
    match latency {
        Some(l) => writeln!(
            out,
            "| {name} | {} | {} | {} | {} | {} | {} | {} |",
            duration(l.p50_s),
            duration(l.p90_s),
            duration(l.p99_s),
            duration(l.p99_9_s),
            duration(l.max_s),
            duration(l.mean_s),
            l.count
        ),
        None => writeln!(out, "| {name} | — | — | — | — | — | — | 0 |"),
    }
}

fn target_sentence(summary: &Summary) -> String {
    let Some(target) = summary.p99_target_s else {
        return "No p99 target was set for this scenario.".to_owned();
    };
    let p99 = summary
        .replica_latency
        .as_ref()
        .map(|l| duration(l.p99_s))
        .unwrap_or_else(|| "—".to_owned());
    match summary.p99_target_met {
        None => format!(
            "p99 target (upload → replica ≤ {}): not evaluated, nothing was uploaded.",
            duration(target)
        ),
        Some(true) => format!(
            "p99 target (upload → replica ≤ {}): **met** (p99 {p99}).",
            duration(target)
        ),
        Some(false) => {
            let lost = if summary.missing_replicas > 0 {
                format!(
                    "; counting the {} replicas that never appeared as late",
                    summary.missing_replicas
                )
            } else {
                String::new()
            };
            format!(
                "p99 target (upload → replica ≤ {}): **missed** (p99 {p99}{lost}).",
                duration(target)
            )
        }
    }
}

/// Distinct messages with how often each came, in the order they first came.
fn distinct_errors(run: &Run) -> Vec<(String, usize)> {
    let mut order = Vec::new();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for error in run.objects.iter().filter_map(|o| o.error.as_deref()) {
        let message = one_line(error, 300);
        let count = counts.entry(message.clone()).or_insert(0);
        if *count == 0 {
            order.push(message);
        }
        *count += 1;
    }
    order
        .into_iter()
        .map(|m| {
            let count = counts.get(&m).copied().unwrap_or(0);
            (m, count)
        })
        .collect()
}

/// Error messages are arbitrary text (AWS errors run over lines); a list item needs one line.
fn one_line(text: &str, max_chars: usize) -> String {
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= max_chars {
        flat
    } else {
        let mut cut: String = flat.chars().take(max_chars).collect();
        cut.push('…');
        cut
    }
}

fn table_cell(text: &str) -> String {
    one_line(text, 100).replace('|', "\\|")
}

fn role(role: ProcessRole) -> &'static str {
    match role {
        ProcessRole::Ingest => "ingest",
        ProcessRole::Worker => "worker",
        ProcessRole::Server => "local server",
        ProcessRole::LoadGenerator => "load generator",
    }
}

fn display_date(rfc3339: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .map(|t| {
            t.with_timezone(&chrono::Utc)
                .format("%Y-%m-%d %H:%M UTC")
                .to_string()
        })
        .unwrap_or_else(|_| rfc3339.to_owned())
}

/// Latency for people: "412 ms", "1.9 s", "35 s".
fn duration(seconds: f64) -> String {
    let ms = seconds * 1000.0;
    if ms < 10.0 {
        format!("{ms:.1} ms")
    } else if seconds < 1.0 {
        format!("{ms:.0} ms")
    } else if seconds < 10.0 {
        format!("{seconds:.1} s")
    } else {
        format!("{seconds:.0} s")
    }
}

fn rate(per_s: f64) -> String {
    if per_s < 10.0 {
        format!("{per_s:.2}")
    } else {
        format!("{per_s:.1}")
    }
}

fn bytes(n: f64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024.0 {
        return format!("{n:.0} B");
    }
    let mut value = n / 1024.0;
    let mut unit = UNITS[0];
    for next in &UNITS[1..] {
        if value < 1024.0 {
            break;
        }
        value /= 1024.0;
        unit = next;
    }
    format!("{value:.1} {unit}")
}

const LATENCY_SVG: &str = "latency.svg";
const THROUGHPUT_SVG: &str = "throughput.svg";
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

fn latency_svg(run: &Run, end: f64) -> anyhow::Result<String> {
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

fn throughput_svg(run: &Run, end: f64) -> anyhow::Result<String> {
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
    use super::*;
    use crate::model::{Environment, MixPart, ProcessUsage, QueueSample, Scenario};

    fn object(i: usize, uploaded_s: f64, latency_s: Option<f64>) -> ObjectResult {
        ObjectResult {
            key: format!("loadtest/{i:06}"),
            kind: ObjectKind::SmallBinary,
            bytes: 4096,
            due_s: uploaded_s - 0.01,
            upload_started_s: uploaded_s - 0.01,
            uploaded_s: Some(uploaded_s),
            replica_s: latency_s.map(|l| uploaded_s + l),
            variants_s: None,
            error: None,
        }
    }

    /// 1000 pass-through copies at 50/s, with latencies 1..=1000 ms in a shuffled order.
    fn run() -> Run {
        let objects = (1..=1000)
            .map(|i| {
                let uploaded = i as f64 / 50.0;
                let latency_ms = (i * 7919) % 1000 + 1;
                object(i, uploaded, Some(latency_ms as f64 / 1000.0))
            })
            .collect();
        Run {
            scenario: Scenario {
                name: "pass-through".to_owned(),
                rate_per_s: Some(50.0),
                concurrency: 32,
                duration_s: 20.0,
                drain_s: 60.0,
                variant_profiles: Vec::new(),
                mix: vec![MixPart {
                    kind: ObjectKind::SmallBinary,
                    weight: 1,
                    sizes: vec![4096],
                }],
                p99_target_s: Some(1.0),
            },
            started_at: "2025-06-01T12:00:00Z".to_owned(),
            environment: Environment {
                target: "local stack".to_owned(),
                cores: 2,
            },
            objects,
            queue_depth: (0..=21)
                .map(|t| QueueSample {
                    t_s: t as f64,
                    depths: vec![("events".to_owned(), 3), ("dlq".to_owned(), 0)],
                })
                .collect(),
            processes: vec![
                ProcessUsage {
                    name: "worker-lambda".to_owned(),
                    role: ProcessRole::Worker,
                    cpu_s: 4.0,
                    peak_rss_bytes: 60 << 20,
                },
                ProcessUsage {
                    name: "moto".to_owned(),
                    role: ProcessRole::Server,
                    cpu_s: 5.0,
                    peak_rss_bytes: 200 << 20,
                },
            ],
        }
    }

    fn plots() -> Plots {
        Plots {
            latency: LATENCY_SVG.to_owned(),
            throughput: THROUGHPUT_SVG.to_owned(),
        }
    }

    fn markdown(run: &Run) -> String {
        let costs = cost::estimate(run, &Prices::default());
        to_markdown(run, &summarize(run), &costs, &plots())
    }

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

    #[test]
    fn busy_server_is_named_as_the_cap() {
        let mut run = run();
        run.processes[1].cpu_s = 19.0;
        let summary = summarize(&run);
        assert_eq!(summary.rate_limits.len(), 1, "{:?}", summary.rate_limits);
        let md = markdown(&run);
        assert!(
            md.contains("The local server moto used 90% of one core"),
            "{md}"
        );
    }

    #[test]
    fn no_cap_sentence_when_nothing_limited() {
        let run = run();
        let summary = summarize(&run);
        assert!(summary.rate_limits.is_empty(), "{:?}", summary.rate_limits);
        assert!(!markdown(&run).contains("Rate limit"));
    }

    #[test]
    fn a_run_that_fell_behind_on_a_shared_machine_says_how_the_cores_were_split() {
        let mut run = run();
        run.scenario.p99_target_s = Some(0.5);
        // Over about 20 s: moto 0.3 and the generator 0.15 of a core, over a fifth of the machine.
        run.processes[1].cpu_s = 6.0;
        run.processes.push(ProcessUsage {
            name: "yuba-loadtest".to_owned(),
            role: ProcessRole::LoadGenerator,
            cpu_s: 3.0,
            peak_rss_bytes: 30 << 20,
        });
        let summary = summarize(&run);
        let limits = &summary.rate_limits;
        assert_eq!(limits.len(), 1, "{limits:?}");
        let share = |cpu_s: f64| cpu_s / summary.wall_s;
        let expected = format!(
            "used {:.2} of its 2 cores (moto {:.2}, yuba-loadtest {:.2}), which left yuba's \
             processes {:.2} cores; they used {:.2}.",
            share(9.0),
            share(6.0),
            share(3.0),
            2.0 - share(9.0),
            share(4.0)
        );
        assert!(limits[0].contains(&expected), "{limits:?} vs {expected}");
        // Keeping up, the same split is not a limit.
        run.scenario.p99_target_s = Some(1.0);
        assert!(summarize(&run).rate_limits.is_empty());
    }

    #[test]
    fn rate_shortfall_is_explained() {
        let mut run = run();
        run.scenario.rate_per_s = Some(100.0);
        let summary = summarize(&run);
        assert_eq!(summary.rate_limits.len(), 1);
        assert!(
            summary.rate_limits[0].contains("of the 100.0 objects/s asked for"),
            "{:?}",
            summary.rate_limits
        );
    }

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

    #[test]
    fn formats_latency_for_people() {
        assert_eq!(duration(0.412), "412 ms");
        assert_eq!(duration(1.94), "1.9 s");
        assert_eq!(duration(0.0042), "4.2 ms");
        assert_eq!(duration(35.2), "35 s");
        assert_eq!(bytes(4096.0), "4.0 KiB");
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
