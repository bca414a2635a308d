//! CPU time and memory of a process, read from `/proc/<pid>` (Linux only):
//! the server's, given `--server-pid`, and the generator's own.

use std::time::Duration;

/// Clock ticks per second of `/proc/<pid>/stat` times (`CLK_TCK`, 100 on every Linux we run on).
const CLK_TCK: u64 = 100;

/// CPU time and memory of one process at one moment.
#[derive(Debug, Clone, Copy, Default, serde::Serialize, serde::Deserialize)]
pub struct Usage {
    /// User plus system CPU time, in seconds.
    pub cpu_s: f64,
    /// Resident set size, in KiB.
    pub rss_kib: u64,
    /// Peak resident set size so far, in KiB.
    pub rss_peak_kib: u64,
}

/// Read a process's usage; `None` if it does not exist (or this is not Linux).
pub fn usage(pid: &str) -> Option<Usage> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces: fields are counted after its ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib = |key: &str| status.lines().find_map(|l| l.strip_prefix(key)).and_then(|v| v.split_whitespace().next()).and_then(|v| v.parse().ok()).unwrap_or(0);
    Some(Usage { cpu_s: Duration::from_millis(ticks * 1000 / CLK_TCK).as_secs_f64(), rss_kib: kib("VmRSS:"), rss_peak_kib: kib("VmHWM:") })
}

/// The summed usage of several processes (a cluster's nodes); `None` if none is readable.
pub fn usage_of(pids: &[u32]) -> Option<Usage> {
    let all: Vec<Usage> = pids.iter().filter_map(|p| usage(&p.to_string())).collect();
    if all.is_empty() {
        return None;
    }
    Some(all.iter().fold(Usage::default(), |a, u| Usage {
        cpu_s: a.cpu_s + u.cpu_s,
        rss_kib: a.rss_kib + u.rss_kib,
        rss_peak_kib: a.rss_peak_kib + u.rss_peak_kib,
    }))
}

pub fn own() -> Usage {
    usage("self").unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_its_own_process() {
        let u = super::own();
        assert!(u.rss_kib > 0);
    }
}
