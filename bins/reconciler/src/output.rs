//! What the operator sees: findings on stdout (text or JSON lines), a live progress line on a
//! terminal (periodic log lines otherwise), and the summary.

use std::io::{IsTerminal, Write};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{HumanBytes, HumanCount, ProgressBar, ProgressStyle};
use tokio_util::sync::CancellationToken;
use yuba_reconcile::{Counts, Finding, Live, Observer, Plan, PlanLocation, Summary};

/// Prints findings as they come and keeps the totals for the progress display.
pub struct Report {
    json: bool,
    totals: Mutex<Counts>,
    bar: Option<ProgressBar>,
}

impl Report {
    pub fn new(json: bool) -> Report {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner} {elapsed_precise} {wide_msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Report {
            json,
            totals: Mutex::new(Counts::default()),
            bar,
        }
    }

    fn totals(&self) -> Counts {
        self.totals
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Prints a line on stdout without tearing the progress line.
    fn print(&self, line: &str) {
        let write = || {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
        };
        match &self.bar {
            Some(bar) => bar.suspend(write),
            None => write(),
        }
    }

    /// Keeps the progress display current until `stop` is cancelled: a redrawn line on a
    /// terminal, a log line every `every` otherwise.
    pub fn watch(self: &Arc<Self>, live: Arc<Live>, every: Duration, stop: CancellationToken) {
        let report = Arc::clone(self);
        tokio::spawn(async move {
            let started = Instant::now();
            let tick = if report.bar.is_some() {
                Duration::from_millis(250)
            } else {
                every
            };
            let mut interval = tokio::time::interval(tick);
            interval.tick().await;
            loop {
                tokio::select! {
                    () = stop.cancelled() => break,
                    _ = interval.tick() => {}
                }
                let status = Status::of(&report.totals(), &live, started.elapsed());
                match &report.bar {
                    Some(bar) => bar.set_message(status.line()),
                    None => tracing::info!(
                        examined = status.examined,
                        listed = status.listed,
                        drift = status.drift,
                        repaired = status.repaired,
                        failed = status.failed,
                        bytes_copied = status.bytes_copied,
                        objects_per_second = status.rate.round(),
                        eta_seconds = status.eta.map(|eta| eta.as_secs()),
                        "progress"
                    ),
                }
            }
            if let Some(bar) = &report.bar {
                bar.finish_and_clear();
            }
        });
    }

    pub fn summary(&self, summary: &Summary) {
        if self.json {
            self.print(&json_line("summary", summary));
            return;
        }
        let c = &summary.counts;
        let mut text = format!(
            "\n{}: {} source objects ({}), {} replicas, {} variants",
            summary.describe(),
            HumanCount(c.listed_source),
            HumanBytes(c.listed_source_bytes),
            HumanCount(c.listed_replica),
            HumanCount(c.listed_variants),
        );
        let rows = [
            ("in sync", c.in_sync),
            ("  verified", c.verified),
            ("missing", c.missing),
            ("stale", c.stale),
            ("mismatch", c.mismatch),
            ("variants-missing", c.variants_missing),
            ("orphan", c.orphan),
            ("orphan-variant", c.orphan_variants),
            ("attributes", c.attributes),
            ("unverified", c.unverified),
            ("refused (key must change)", c.refused),
            ("repaired", c.repaired),
            ("enqueued (the workers' to do)", c.enqueued),
            ("failed", c.failed),
            ("orphans kept", c.kept),
            ("left unrepaired", c.left),
            ("outside --since/--until", c.skipped),
            ("upload parts (temporary)", c.listed_upload_parts),
            ("not in either bucket", c.not_found),
            ("looked up (inventory)", c.looked_up),
        ];
        for (name, count) in rows {
            if count > 0 || name == "in sync" {
                text.push_str(&format!("\n  {name:<24} {count:>10}"));
            }
        }
        if c.bytes_copied > 0 {
            text.push_str(&format!(
                "\n  {:<24} {:>10}",
                "copied",
                HumanBytes(c.bytes_copied).to_string()
            ));
        }
        if let Some(shard) = &summary.shard {
            text.push_str(&format!(
                "\n  {:<24} {:>10} {}",
                "shard",
                format!("{}/{}", shard.index, shard.of),
                key_range(shard.start.as_deref(), shard.end.as_deref()),
            ));
        }
        if let Some(shards) = summary.shards {
            text.push_str(&format!("\n  {:<24} {shards:>10}", "shards merged"));
        }
        text.push_str(&format!(
            "\n  {:<24} {:>10.1}s{}",
            "elapsed",
            summary.elapsed_ms as f64 / 1000.0,
            if summary.resumed {
                " (resumed; counts include the earlier run)"
            } else {
                ""
            }
        ));
        self.print(&text);
    }
}

impl Report {
    /// The plan `plan` made: where it is, and each shard's range and size.
    pub fn plan(&self, at: &PlanLocation, plan: &Plan) {
        if self.json {
            self.print(&json_line("plan", plan));
            return;
        }
        let mut text = format!(
            "plan of {} shards in {at}, from {} (made {}):",
            plan.shards.len(),
            plan.inventory,
            plan.inventory_created.to_rfc3339(),
        );
        for (index, shard) in plan.shards.iter().enumerate() {
            text.push_str(&format!(
                "\n  {:>4}  {:>12} objects {:>10}  {}",
                index + 1,
                HumanCount(shard.objects).to_string(),
                HumanBytes(shard.bytes).to_string(),
                key_range(shard.start.as_deref(), shard.end.as_deref()),
            ));
        }
        self.print(&text);
    }
}

impl Observer for Report {
    fn finding(&self, finding: &Finding) {
        if self.json {
            self.print(&json_line("finding", finding));
            return;
        }
        let mut line = format!("{:<17} {}", finding.kind.as_str(), finding.key);
        if let Some(detail) = &finding.detail {
            line.push_str(&format!("  ({detail})"));
        }
        if let Some(action) = finding.action {
            line.push_str(&format!("  → {}", action.as_str()));
        }
        if let Some(error) = &finding.error {
            line.push_str(&format!(": {error}"));
        }
        self.print(&line);
    }

    fn page_done(&self, totals: &Counts) {
        *self
            .totals
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = totals.clone();
    }
}

/// One moment of a run, for the progress display.
struct Status {
    examined: u64,
    listed: u64,
    drift: u64,
    repaired: u64,
    enqueued: u64,
    failed: u64,
    bytes_copied: u64,
    rate: f64,
    eta: Option<Duration>,
}

impl Status {
    fn of(totals: &Counts, live: &Live, elapsed: Duration) -> Status {
        let examined = live.examined.load(Ordering::Relaxed);
        let bytes_copied = live.bytes_copied.load(Ordering::Relaxed);
        let bytes_to_copy = live.bytes_to_copy.load(Ordering::Relaxed);
        let seconds = elapsed.as_secs_f64().max(0.001);
        let byte_rate = bytes_copied as f64 / seconds;
        // Only the copies found so far are known: the ETA is for those.
        let eta = (bytes_copied > 0 && bytes_to_copy > bytes_copied)
            .then(|| Duration::from_secs_f64((bytes_to_copy - bytes_copied) as f64 / byte_rate));
        Status {
            examined,
            listed: totals.listed_source.max(examined),
            drift: totals.drift(),
            repaired: totals.repaired,
            enqueued: totals.enqueued,
            failed: totals.failed,
            bytes_copied,
            rate: examined as f64 / seconds,
            eta,
        }
    }

    fn line(&self) -> String {
        let mut line = format!(
            "{} objects ({:.0}/s) · drift {} · repaired {}",
            HumanCount(self.examined),
            self.rate,
            HumanCount(self.drift),
            HumanCount(self.repaired),
        );
        if self.enqueued > 0 {
            line.push_str(&format!(" · enqueued {}", HumanCount(self.enqueued)));
        }
        if self.failed > 0 {
            line.push_str(&format!(" · failed {}", HumanCount(self.failed)));
        }
        if self.bytes_copied > 0 {
            line.push_str(&format!(" · copied {}", HumanBytes(self.bytes_copied)));
        }
        if let Some(eta) = self.eta {
            line.push_str(&format!(" · ETA {}", indicatif::HumanDuration(eta)));
        }
        line
    }
}

/// A shard's keys, for people: `keys from "a" to "m" (excluded)`.
fn key_range(start: Option<&str>, end: Option<&str>) -> String {
    let start = start.map_or("the start".to_owned(), |key| format!("{key:?}"));
    let end = end.map_or("the end".to_owned(), |key| format!("{key:?} (excluded)"));
    format!("keys from {start} to {end}")
}

/// A JSON object with `"type"` first, then the fields of `value` (an object).
fn json_line(kind: &str, value: &impl serde::Serialize) -> String {
    let fields = serde_json::to_string(value)
        .unwrap_or_else(|error| unreachable!("report types serialise: {error}"));
    match fields.strip_prefix('{') {
        Some("}") | None => format!("{{\"type\":\"{kind}\"}}"),
        Some(rest) => format!("{{\"type\":\"{kind}\",{rest}"),
    }
}
