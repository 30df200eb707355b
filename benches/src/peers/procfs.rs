//! What a process costs, read from `/proc`: CPU time (nanosecond `schedstat` summed over the
//! live threads when the kernel has it, else `utime + stime` clock ticks) and peak resident
//! memory (`VmHWM`).

use std::fs;

/// Clock ticks per second of `/proc/<pid>/stat` (`USER_HZ`, 100 on every Linux this runs on).
const TICKS_PER_SECOND: u64 = 100;

/// The CPU time `pid` (or this process, with `None`) has used so far, in nanoseconds.
///
/// Sums the first field of `/proc/<pid>/task/*/schedstat` (nanoseconds on a CPU, per live
/// thread); falls back to `utime + stime` of `/proc/<pid>/stat` (10 ms ticks, includes
/// threads that have exited) when `schedstat` is missing. Both count every thread, so a
/// multi-threaded runtime or a gateway's worker threads are included.
pub fn cpu_ns(pid: Option<u32>) -> Option<u64> {
    schedstat_ns(pid).or_else(|| stat_ns(pid))
}

fn proc_dir(pid: Option<u32>) -> String {
    match pid {
        Some(pid) => format!("/proc/{pid}"),
        None => "/proc/self".to_owned(),
    }
}

fn schedstat_ns(pid: Option<u32>) -> Option<u64> {
    let mut total = 0u64;
    let mut any = false;
    for entry in fs::read_dir(format!("{}/task", proc_dir(pid))).ok()? {
        let path = entry.ok()?.path().join("schedstat");
        // A thread may exit between listing and reading: skip it.
        let Ok(text) = fs::read_to_string(path) else {
            continue;
        };
        total += text.split_whitespace().next()?.parse::<u64>().ok()?;
        any = true;
    }
    any.then_some(total)
}

fn stat_ns(pid: Option<u32>) -> Option<u64> {
    let text = fs::read_to_string(format!("{}/stat", proc_dir(pid))).ok()?;
    parse_stat_ticks(&text).map(|ticks| ticks * (1_000_000_000 / TICKS_PER_SECOND))
}

/// `utime + stime` (fields 14 and 15) of a `/proc/<pid>/stat` line, in ticks. The command
/// name (field 2) is in parentheses and may hold spaces, so fields are counted after the last
/// `)`.
pub fn parse_stat_ticks(text: &str) -> Option<u64> {
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // After `)`: field 3 (state) is the first; utime is field 14, so skip 11.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// The peak resident set size of `pid` (or this process) in KiB: `VmHWM` of
/// `/proc/<pid>/status`.
pub fn peak_rss_kb(pid: Option<u32>) -> Option<u64> {
    let text = fs::read_to_string(format!("{}/status", proc_dir(pid))).ok()?;
    parse_status_kb(&text, "VmHWM:")
}

/// Resets the peak resident set of `pid` (or this process) to its current RSS, by writing `5`
/// to `/proc/<pid>/clear_refs` (Linux 4.0+); `false` when the kernel refused. Lets a gateway
/// process that serves several points report each point's own peak.
pub fn reset_peak_rss(pid: Option<u32>) -> bool {
    fs::write(format!("{}/clear_refs", proc_dir(pid)), "5").is_ok()
}

/// The value in KiB of `key` (such as `VmHWM:`) in a `/proc/<pid>/status` text.
pub fn parse_status_kb(text: &str, key: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        let line = "42 (a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 1 0 5 1000 50";
        assert_eq!(parse_stat_ticks(line), Some(10));
        assert_eq!(parse_stat_ticks("42 (x) S 1"), None);
    }

    #[test]
    fn status_values_are_read_by_key() {
        let text = "Name:\tx\nVmHWM:\t   12345 kB\nVmRSS:\t 100 kB\n";
        assert_eq!(parse_status_kb(text, "VmHWM:"), Some(12345));
        assert_eq!(parse_status_kb(text, "VmSwap:"), None);
    }

    #[test]
    fn this_process_has_cpu_time_and_a_peak_rss() {
        assert!(cpu_ns(None).is_some());
        assert!(peak_rss_kb(None).is_some_and(|kb| kb > 0));
    }
}
