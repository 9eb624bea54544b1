use std::time::Duration;

/// How often and how patiently one operation is retried.
///
/// The pause before each retry is drawn by [`RetryPolicy::backoff`]; the operation is given up
/// after `max_attempts` attempts, or as soon as the next pause would end past `time_limit`
/// (counted from the start of the first attempt). The time limit bounds the waiting, not an
/// attempt under way: each request is bounded by its client's own timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The longest pause after the first failed attempt; doubled after each further one...
    pub first_backoff: Duration,
    /// ...up to this.
    pub max_backoff: Duration,
    /// Attempts in all, the first included: 1 means no retry (0 is taken as 1).
    pub max_attempts: u32,
    /// No retry is made whose pause would end later than this after the first attempt began.
    pub time_limit: Duration,
}

impl Default for RetryPolicy {
    /// 100 ms doubling up to 10 s, 6 attempts, a minute: the limits the GCS client has used
    /// (`YUBA_GCS_RETRY_ATTEMPTS`, `YUBA_GCS_RETRY_SECONDS`). Five pauses then wait at most
    /// 0.1 + 0.2 + 0.4 + 0.8 + 1.6 = 3.1 s (half that on average), enough for a throttled or
    /// restarted backend to come back, and well inside a job's SQS visibility timeout.
    fn default() -> Self {
        RetryPolicy {
            first_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            max_attempts: 6,
            time_limit: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// The longest pause after `attempt` failed attempts (1 for the first failure):
    /// `first_backoff · 2^(attempt-1)`, at most `max_backoff`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(31);
        self.first_backoff
            .saturating_mul(1 << doublings)
            .min(self.max_backoff)
    }

    /// The pause after `attempt` failed attempts: uniform in `[0, ceiling(attempt)]` ("full
    /// jitter").
    ///
    /// Requests that fail together (a GCS brownout fails every upload in flight at once) would,
    /// with a fixed exponential schedule, all come back at the same instants and meet the
    /// recovering service as the same burst each time. Drawing the whole pause at random
    /// spreads them evenly over the window, which of the usual variants keeps both the number
    /// of calls and the total completion time lowest (Marc Brooker, "Exponential Backoff And
    /// Jitter", AWS Architecture Blog, 2015; it is also what the AWS SDKs and the Google Cloud
    /// client libraries do). The cap keeps a long outage from growing pauses past any use.
    pub fn backoff(&self, attempt: u32) -> Duration {
        self.ceiling(attempt).mul_f64(rand::random::<f64>())
    }

    pub(crate) fn attempts(&self) -> u32 {
        self.max_attempts.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            first_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            max_attempts: 10,
            time_limit: Duration::from_secs(60),
        }
    }

    #[test]
    fn the_ceiling_doubles_up_to_the_cap() {
        let policy = policy();
        let ceilings: Vec<u64> = (1..=6)
            .map(|attempt| policy.ceiling(attempt).as_millis() as u64)
            .collect();
        assert_eq!(ceilings, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(policy.ceiling(0), Duration::from_millis(100));
        assert_eq!(policy.ceiling(u32::MAX), Duration::from_secs(1));
    }

    #[test]
    fn jitter_stays_within_zero_and_the_cap_and_covers_it() {
        let policy = policy();
        for attempt in [1, 3, 5, 40] {
            let ceiling = policy.ceiling(attempt);
            let pauses: Vec<Duration> = (0..2000).map(|_| policy.backoff(attempt)).collect();
            assert!(pauses.iter().all(|pause| *pause <= ceiling), "{attempt}");
            // Full jitter: the draws cover the whole window rather than sitting at its top (no
            // jitter) or in its upper half ("equal jitter"). Each check fails by chance with
            // probability 0.9^2000.
            let (shortest, longest) = (pauses.iter().min(), pauses.iter().max());
            assert!(shortest.is_some_and(|p| *p < ceiling / 10), "{shortest:?}");
            assert!(
                longest.is_some_and(|p| *p > ceiling * 9 / 10),
                "{longest:?}"
            );
        }
    }
}
