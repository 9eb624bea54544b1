use std::time::Duration;

/// Capped exponential backoff: the one curve every pause between attempts in yuba follows.
///
/// The pause after `attempt` failures is drawn under a ceiling of `first · 2^(attempt-1)`, at
/// most `max`; the [`Jitter`] says how much of that window the draw may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The ceiling after the first failure; doubled after each further one...
    pub first: Duration,
    /// ...up to this.
    pub max: Duration,
}

/// How a pause is drawn under its ceiling.
///
/// Attempts that fail together (a brownout fails every request in flight at once) would, with
/// a fixed exponential schedule, all come back at the same instants and meet the recovering
/// service as the same burst each time. Drawing the pause at random spreads them over the
/// window (Marc Brooker, "Exponential Backoff And Jitter", AWS Architecture Blog, 2015).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Jitter {
    /// Uniform in `[0, ceiling]`: of the usual variants, the one that keeps both the number of
    /// calls and the total completion time lowest, and what the AWS SDKs and the Google Cloud
    /// client libraries do. For retries made in-process, where an early one costs one request.
    Full,
    /// Uniform in `[ceiling/2, ceiling]`: never less than half the ceiling. For a failed
    /// message's return to its queue, where a pause drawn near zero would hand the message
    /// straight back, a whole delivery spent before its cause had any time to clear.
    Equal,
}

impl Backoff {
    /// The longest pause after `attempt` failed attempts (1 for the first failure; 0 is taken
    /// as 1): `first · 2^(attempt-1)`, at most `max`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(31);
        self.first.saturating_mul(1 << doublings).min(self.max)
    }

    /// The pause after `attempt` failed attempts, drawn under [`ceiling`](Self::ceiling) as
    /// `jitter` says.
    pub fn pause(&self, attempt: u32, jitter: Jitter) -> Duration {
        let ceiling = self.ceiling(attempt);
        let share = rand::random::<f64>();
        match jitter {
            Jitter::Full => ceiling.mul_f64(share),
            Jitter::Equal => ceiling.mul_f64(0.5 + share / 2.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BACKOFF: Backoff = Backoff {
        first: Duration::from_millis(100),
        max: Duration::from_secs(1),
    };

    #[test]
    fn the_ceiling_doubles_up_to_the_cap() {
        let ceilings: Vec<u64> = (1..=6)
            .map(|attempt| BACKOFF.ceiling(attempt).as_millis() as u64)
            .collect();
        assert_eq!(ceilings, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(BACKOFF.ceiling(0), Duration::from_millis(100));
        assert_eq!(BACKOFF.ceiling(u32::MAX), Duration::from_secs(1));
    }

    /// Draws 2,000 pauses after `attempt` failures: the shortest and the longest, and the
    /// ceiling they must stay under.
    fn draws(jitter: Jitter, attempt: u32) -> (Duration, Duration, Duration) {
        let pauses: Vec<Duration> = (0..2000).map(|_| BACKOFF.pause(attempt, jitter)).collect();
        let shortest = pauses.iter().copied().min().unwrap_or_default();
        let longest = pauses.iter().copied().max().unwrap_or_default();
        (shortest, longest, BACKOFF.ceiling(attempt))
    }

    // Each check on how far the draws reach fails by chance with probability 0.9^2000.

    #[test]
    fn full_jitter_covers_the_whole_window() {
        for attempt in [1, 3, 5, 40] {
            let (shortest, longest, ceiling) = draws(Jitter::Full, attempt);
            assert!(longest <= ceiling, "{attempt}: {longest:?}");
            // Neither at its top (no jitter) nor in its upper half (equal jitter).
            assert!(shortest < ceiling / 10, "{attempt}: {shortest:?}");
            assert!(longest > ceiling * 9 / 10, "{attempt}: {longest:?}");
        }
    }

    #[test]
    fn equal_jitter_covers_the_upper_half_of_the_window() {
        for attempt in [1, 3, 5, 40] {
            let (shortest, longest, ceiling) = draws(Jitter::Equal, attempt);
            assert!(shortest >= ceiling / 2, "{attempt}: {shortest:?}");
            assert!(longest <= ceiling, "{attempt}: {longest:?}");
            assert!(shortest < ceiling * 11 / 20, "{attempt}: {shortest:?}");
            assert!(longest > ceiling * 19 / 20, "{attempt}: {longest:?}");
        }
    }
}
