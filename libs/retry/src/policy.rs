use std::time::Duration;

use crate::backoff::{Backoff, Jitter};

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
    /// The pause after `attempt` failed attempts: drawn under the [`Backoff`] from
    /// `first_backoff` up to `max_backoff` with [`Jitter::Full`], since a retry made in-process
    /// costs one request whenever it comes.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let curve = Backoff {
            first: self.first_backoff,
            max: self.max_backoff,
        };
        curve.pause(attempt, Jitter::Full)
    }

    pub(crate) fn attempts(&self) -> u32 {
        self.max_attempts.max(1)
    }
}
