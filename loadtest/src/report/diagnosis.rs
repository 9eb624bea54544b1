//! What capped a run's rate, in plain sentences: a busy local server, the machine shared with
//! the stand-ins for the clouds, the concurrency, or the load generator.

use std::fmt::Write as _;

use super::human::{duration, rate};
use super::summary::{Summary, per_second};
use crate::model::{ProcessRole, ProcessUsage, Run};

/// A local server using at least this share of one core is taken to be what capped the rate:
/// moto and fake-gcs-server serve requests on what is in effect one core.
const BUSY_SERVER_SHARE: f64 = 0.8;
/// Uploads below this share of the rate asked for count as the rate not being reached.
const RATE_SHORTFALL: f64 = 0.9;
/// The share of the machine's cores the stand-ins and the generator must take, together, for
/// a run that fell behind to be put down to sharing the machine.
const SHARED_MACHINE_SHARE: f64 = 0.2;

pub(super) fn cpu_share(cpu_s: f64, wall_s: f64) -> Option<f64> {
    (wall_s > 0.0).then(|| cpu_s / wall_s)
}

pub(super) fn rate_limits(run: &Run, summary: &Summary) -> Vec<String> {
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
    let busy: Vec<&ProcessUsage> = busy.into_iter().map(|(process, _)| process).collect();
    sentences.extend(rate_shortfall(run, summary, &busy));
    sentences
}

/// When uploads fell short of the rate asked for, how far and what held them back.
fn rate_shortfall(run: &Run, summary: &Summary, busy: &[&ProcessUsage]) -> Option<String> {
    let (Some(asked), Some(achieved)) = (run.scenario.rate_per_s, summary.upload_rate_per_s) else {
        return None;
    };
    if asked <= 0.0 || achieved >= RATE_SHORTFALL * asked {
        return None;
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
        let names: Vec<&str> = busy.iter().map(|p| p.name.as_str()).collect();
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
    Some(sentence)
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

#[cfg(test)]
mod tests {
    use crate::model::{ProcessRole, ProcessUsage};
    use crate::report::fixture::{markdown, run};
    use crate::report::summarize;

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
}
