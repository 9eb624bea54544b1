//! A yuba binary's run measured by GNU time: wall time, CPU (user + system) and peak RSS, read
//! from the line GNU time writes last to stderr.

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use yuba_e2e::{Finished, run_to_end};

/// The format GNU time writes its line in; the prefix finds it among the binary's own output.
const FORMAT: &str = "yuba-bench %e %M %U %S";

/// One process's wall time, CPU and peak RSS, as GNU time measured them.
#[derive(Debug, Clone, Copy, Default)]
pub struct Timing {
    pub wall_s: f64,
    pub cpu_s: f64,
    pub peak_rss_mib: f64,
}

/// The command that runs a program under GNU time: add the program and its arguments.
pub fn command() -> Command {
    let mut command = Command::new("/usr/bin/time");
    command.args(["-f", FORMAT]);
    command
}

/// Runs `command` (from [`command`]) to its end, killed after `timeout`.
pub async fn run(command: Command, timeout: Duration) -> anyhow::Result<(Timing, Finished)> {
    let run = run_to_end(command, timeout).await?;
    let line = run
        .stderr
        .lines()
        .rev()
        .find_map(|line| line.strip_prefix("yuba-bench "))
        .with_context(|| format!("no GNU time line in the process's stderr:\n{}", run.stderr))?;
    let numbers: Vec<f64> = line
        .split_whitespace()
        .filter_map(|n| n.parse().ok())
        .collect();
    let [wall_s, rss_kib, user_s, sys_s] = numbers[..] else {
        bail!("unexpected GNU time line {line:?}");
    };
    let timing = Timing {
        wall_s,
        cpu_s: user_s + sys_s,
        peak_rss_mib: rss_kib / 1024.0,
    };
    Ok((timing, run))
}
