//! CPU time and peak memory of processes, from Linux's /proc (proc(5)): what the memory tests,
//! the load test and the Lambda init benchmark measure the processes they start with.

use std::path::Path;

/// proc(5) gives CPU times in clock ticks of `sysconf(_SC_CLK_TCK)`, which Linux fixes at 100
/// (USER_HZ) on every architecture it exposes to user space.
const TICKS_PER_SECOND: f64 = 100.0;

/// User + system CPU seconds of `pid` so far, all its threads.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields = fields_after_name(&stat)?;
    // utime and stime are fields 14 and 15; `fields` starts at field 3 (the state).
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / TICKS_PER_SECOND)
}

/// Peak resident set size of `pid` (VmHWM), bytes.
pub fn peak_rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|line| {
        let kib = line
            .strip_prefix("VmHWM:")?
            .trim()
            .strip_suffix("kB")?
            .trim();
        kib.parse::<u64>().ok().map(|k| k * 1024)
    })
}

/// The processes whose parent is `parent`, with their names (`comm`).
pub fn children_of(parent: u32) -> Vec<(u32, String)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let ppid: u32 = fields_after_name(&stat)?.get(1)?.parse().ok()?;
            (ppid == parent).then(|| (pid, name_of(pid)))
        })
        .collect()
}

fn name_of(pid: u32) -> String {
    std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("comm"))
        .map(|name| name.trim().to_owned())
        .unwrap_or_default()
}

/// The fields of a `stat` line after `(comm)`, which may itself hold spaces and parentheses.
fn fields_after_name(stat: &str) -> Option<Vec<&str>> {
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_cpu_time_and_a_peak() {
        let me = std::process::id();
        let burn: u64 = (0..20_000_000u64).fold(0, |a, b| a.wrapping_add(b * b));
        assert!(burn > 0);
        assert!(cpu_seconds(me).is_some_and(|s| s > 0.0));
        assert!(peak_rss_bytes(me).is_some_and(|b| b > 1 << 20));
    }

    #[test]
    fn names_with_spaces_and_parentheses_do_not_shift_fields() {
        let stat = "42 (a b) c) S 7 42 42 0 -1 4194560 1 0 0 0 250 50 0 0 20 0 1 0";
        let fields = fields_after_name(stat).unwrap();
        assert_eq!(fields[1], "7");
        assert_eq!((fields[11], fields[12]), ("250", "50"));
    }

    #[test]
    fn a_spawned_child_is_found_by_its_parent() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let found = children_of(std::process::id());
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(
            found
                .iter()
                .any(|(pid, name)| *pid == child.id() && name == "sleep"),
            "{found:?}"
        );
    }
}
