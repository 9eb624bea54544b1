//! Numbers as people read them in the report: latencies, rates and sizes.

/// Latency for people: "412 ms", "1.9 s", "35 s".
pub(crate) fn duration(seconds: f64) -> String {
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

pub(crate) fn rate(per_s: f64) -> String {
    if per_s < 10.0 {
        format!("{per_s:.2}")
    } else {
        format!("{per_s:.1}")
    }
}

pub(crate) fn bytes(n: f64) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_latency_for_people() {
        assert_eq!(duration(0.412), "412 ms");
        assert_eq!(duration(1.94), "1.9 s");
        assert_eq!(duration(0.0042), "4.2 ms");
        assert_eq!(duration(35.2), "35 s");
        assert_eq!(bytes(4096.0), "4.0 KiB");
    }
}
