//! The report as a Markdown page: what ran, latency against the objective, throughput, errors,
//! the processes with what capped the rate, the plots and the cost estimate; one function per
//! section, in the page's order.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};

use super::diagnosis::cpu_share;
use super::human::{bytes, duration, rate};
use super::plots::Plots;
use super::summary::{LatencySummary, Summary};
use crate::cost::CostTable;
use crate::model::{ObjectKind, ProcessRole, Run};

/// How many distinct error messages the report lists.
const ERRORS_LISTED: usize = 5;

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
) -> fmt::Result {
    writeln!(
        out,
        "# Load test: {} ({})\n",
        run.scenario.name,
        display_date(&run.started_at)
    )?;
    what_ran(out, run, summary)?;
    latency(out, run, summary)?;
    throughput(out, run, summary)?;
    errors(out, run, summary)?;
    processes(out, run, summary)?;
    writeln!(out, "## Plots\n")?;
    writeln!(out, "![Latency over time]({})\n", plots.latency)?;
    writeln!(out, "![Throughput over time]({})\n", plots.throughput)?;
    cost(out, costs)?;
    writeln!(
        out,
        "The raw numbers (every object's times, queue depths, processes) are in `run.json`."
    )
}

fn what_ran(out: &mut String, run: &Run, summary: &Summary) -> fmt::Result {
    let scenario = &run.scenario;
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
    mix_table(out, run)?;
    if scenario.variant_profiles.is_empty() {
        writeln!(out, "\nVariant profiles: none (pass-through copies).\n")
    } else {
        let profiles: Vec<String> = scenario
            .variant_profiles
            .iter()
            .map(|p| format!("`{p}`"))
            .collect();
        writeln!(out, "\nVariant profiles: {}.\n", profiles.join(", "))
    }
}

/// Each kind of object: its weight in the mix, how many were uploaded and their mean size.
fn mix_table(out: &mut String, run: &Run) -> fmt::Result {
    writeln!(out, "| Kind | Weight | Uploaded | Mean size |")?;
    writeln!(out, "|---|---:|---:|---:|")?;
    // Kinds the mix does not list can still show up in a hand-edited or older run.json.
    let mut rows: Vec<(ObjectKind, Option<u32>)> = run
        .scenario
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
    Ok(())
}

fn latency(out: &mut String, run: &Run, summary: &Summary) -> fmt::Result {
    writeln!(out, "## Latency\n")?;
    writeln!(out, "| | p50 | p90 | p99 | p99.9 | max | mean | count |")?;
    writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|")?;
    latency_row(out, "upload → replica", summary.replica_latency.as_ref())?;
    if !run.scenario.variant_profiles.is_empty() {
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
            duration(run.scenario.drain_s),
            missing.join("; ")
        )?;
    }
    writeln!(out, "{}\n", target_sentence(summary))
}

fn latency_row(out: &mut String, name: &str, latency: Option<&LatencySummary>) -> fmt::Result {
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

fn throughput(out: &mut String, run: &Run, summary: &Summary) -> fmt::Result {
    writeln!(out, "## Throughput\n")?;
    let opt_rate = |r: Option<f64>| r.map(rate).unwrap_or_else(|| "—".to_owned());
    let asked = run
        .scenario
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
    )
}

fn errors(out: &mut String, run: &Run, summary: &Summary) -> fmt::Result {
    writeln!(out, "## Errors\n")?;
    let errors = distinct_errors(run);
    if summary.upload_errors == 0 && errors.is_empty() {
        return writeln!(out, "No upload failed.\n");
    }
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
    writeln!(out)
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

/// The processes' CPU and memory, then what capped the rate.
fn processes(out: &mut String, run: &Run, summary: &Summary) -> fmt::Result {
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
    Ok(())
}

fn cost(out: &mut String, costs: &CostTable) -> fmt::Result {
    // The table brings its own heading; only a bare one needs ours.
    let cost = costs.to_markdown();
    let cost = cost.trim();
    if !cost.starts_with('#') {
        writeln!(out, "## Cost\n")?;
    }
    if cost.is_empty() {
        writeln!(out, "No cost estimate.\n")
    } else {
        writeln!(out, "{cost}\n")
    }
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
