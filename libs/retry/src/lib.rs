//! Retrying transient failures without turning a failing service into a retry storm.
//!
//! [`run`] makes an operation's attempts: a transient failure ([`FailureKind::Transient`]:
//! throttling, 5xx, a timeout, a connection reset, a body cut short) is retried after a pause
//! drawn by the [`RetryPolicy`] (capped exponential backoff, full jitter), within its attempt
//! and time limits, and only while the client's [`RetryBudget`] has tokens for it; a permanent
//! failure is returned at once.
//!
//! [`Backoff`] is that curve on its own, for the pauses that are not in-process retries: how
//! long a failed SQS message stays invisible before it is tried again. Every backoff in yuba is
//! drawn by it, so there is one definition of the curve and its jitter.
//!
//! ```no_run
//! use yuba_retry::{FailureKind, RetryBudget, RetryPolicy, Retryable};
//!
//! #[derive(Debug)]
//! struct HttpError {
//!     /// `None`: no answer.
//!     status: Option<u16>,
//! }
//!
//! impl std::fmt::Display for HttpError {
//!     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
//!         write!(f, "HTTP {:?}", self.status)
//!     }
//! }
//!
//! impl Retryable for HttpError {
//!     fn kind(&self) -> FailureKind {
//!         match self.status {
//!             None | Some(408 | 429 | 500..) => FailureKind::Transient,
//!             Some(_) => FailureKind::Permanent,
//!         }
//!     }
//!
//!     fn is_timeout(&self) -> bool {
//!         self.status.is_none()
//!     }
//! }
//!
//! async fn put(name: &str) -> Result<u64, HttpError> {
//!     Ok(1)
//! }
//!
//! /// `budget`: the client's one, cloned into each of its requests.
//! async fn upload(budget: &RetryBudget) -> Result<u64, HttpError> {
//!     let policy = RetryPolicy { max_attempts: 4, ..RetryPolicy::default() };
//!     yuba_retry::run(&policy, budget, "uploading gs://b/k", || put("k")).await
//! }
//! ```

mod backoff;
mod budget;
mod policy;

use std::fmt::Display;

use tokio::time::Instant;
pub use yuba_model::FailureKind;

pub use backoff::{Backoff, Jitter};
pub use budget::RetryBudget;
pub use policy::RetryPolicy;

/// An error that says whether trying again can help.
pub trait Retryable {
    /// Transient failures are retried; permanent ones are returned at once.
    fn kind(&self) -> FailureKind;

    /// Whether the attempt failed for want of an answer (a timeout, a refused or reset
    /// connection, a body cut short) rather than with one (throttling, a 5xx). Retrying such a
    /// failure costs the [`RetryBudget`] more. By default, `false`.
    fn is_timeout(&self) -> bool {
        false
    }
}

/// Runs `op` until it succeeds, fails permanently, or may not be retried any more, and returns
/// its last result.
///
/// A transient failure is retried after [`RetryPolicy::backoff`] unless that was the last of
/// `policy.max_attempts`, the pause would end past `policy.time_limit` (from the start of the
/// first attempt: no sleep goes past it), or `budget` refuses the retry. Each retry is logged
/// (`tracing::warn!`, with `what`, the attempt, the error and the pause), as is a refusal by the
/// budget. The first attempt is always made.
pub async fn run<T, E, F, Fut>(
    policy: &RetryPolicy,
    budget: &RetryBudget,
    what: &str,
    mut op: F,
) -> Result<T, E>
where
    E: Retryable + Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let started = Instant::now();
    let mut last_retry_cost = None;
    let mut attempt = 1;
    loop {
        let error = match op().await {
            Ok(value) => {
                budget.succeeded(last_retry_cost);
                return Ok(value);
            }
            Err(error) => error,
        };
        if !error.kind().is_transient() || attempt >= policy.attempts() {
            return Err(error);
        }
        let pause = policy.backoff(attempt);
        if started.elapsed() + pause > policy.time_limit {
            return Err(error);
        }
        let cost = RetryBudget::retry_cost(&error);
        if !budget.try_withdraw(cost) {
            tracing::warn!(
                attempt,
                %error,
                tokens = budget.tokens(),
                retries_refused = budget.retries_refused(),
                "{what} failed; not retrying: the retry budget is spent"
            );
            return Err(error);
        }
        last_retry_cost = Some(cost);
        tracing::warn!(attempt, %error, ?pause, "{what} failed; retrying");
        tokio::time::sleep(pause).await;
        attempt += 1;
    }
}

#[cfg(test)]
mod tests {
    use std::cell::{Cell, RefCell};
    use std::time::Duration;

    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Failure {
        /// A 503.
        Unavailable,
        /// No answer.
        TimedOut,
        /// A 403.
        Denied,
    }

    impl Retryable for Failure {
        fn kind(&self) -> FailureKind {
            match self {
                Failure::Unavailable | Failure::TimedOut => FailureKind::Transient,
                Failure::Denied => FailureKind::Permanent,
            }
        }

        fn is_timeout(&self) -> bool {
            *self == Failure::TimedOut
        }
    }

    impl Display for Failure {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "{self:?}")
        }
    }

    fn policy(max_attempts: u32) -> RetryPolicy {
        RetryPolicy {
            first_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            max_attempts,
            time_limit: Duration::from_secs(60),
        }
    }

    /// Runs an operation that answers with `results`, in turn, and then with its last one;
    /// returns the outcome and the number of attempts made.
    async fn attempts(
        policy: &RetryPolicy,
        budget: &RetryBudget,
        results: &[Result<u32, Failure>],
    ) -> (Result<u32, Failure>, usize) {
        let made = Cell::new(0);
        let outcome = run(policy, budget, "test op", || {
            let result = results[made.get().min(results.len() - 1)];
            made.set(made.get() + 1);
            async move { result }
        })
        .await;
        (outcome, made.get())
    }

    #[tokio::test(start_paused = true)]
    async fn transient_failures_are_retried_until_success() {
        let budget = RetryBudget::new(100);
        let started = Instant::now();
        let results = [Err(Failure::Unavailable), Err(Failure::TimedOut), Ok(7)];
        let (outcome, made) = attempts(&policy(5), &budget, &results).await;
        assert_eq!(outcome, Ok(7));
        assert_eq!(made, 3);
        assert_eq!(budget.retries_attempted(), 2);
        // 5 for the first retry, 10 for the one after a timeout, refunded as it worked.
        assert_eq!(budget.tokens(), 95);
        // Two pauses, each within its ceiling (100 ms, 200 ms).
        assert!(started.elapsed() <= Duration::from_millis(300));
    }

    #[tokio::test(start_paused = true)]
    async fn a_permanent_failure_is_returned_at_once() {
        let budget = RetryBudget::new(100);
        let started = Instant::now();
        let results = [Err(Failure::Denied), Ok(7)];
        let (outcome, made) = attempts(&policy(5), &budget, &results).await;
        assert_eq!(outcome, Err(Failure::Denied));
        assert_eq!(made, 1);
        assert_eq!(started.elapsed(), Duration::ZERO);
        assert_eq!(budget.tokens(), 100);
        assert_eq!(budget.retries_attempted() + budget.retries_refused(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_permanent_failure_after_transient_ones_stops_the_retries() {
        let budget = RetryBudget::new(100);
        let results = [Err(Failure::Unavailable), Err(Failure::Denied), Ok(7)];
        let (outcome, made) = attempts(&policy(5), &budget, &results).await;
        assert_eq!(outcome, Err(Failure::Denied));
        assert_eq!(made, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn attempts_stop_at_the_limit() {
        let budget = RetryBudget::new(100);
        let (outcome, made) = attempts(&policy(4), &budget, &[Err(Failure::Unavailable)]).await;
        assert_eq!(outcome, Err(Failure::Unavailable));
        assert_eq!(made, 4);
        assert_eq!(budget.retries_attempted(), 3);
        assert_eq!(budget.retries_refused(), 0);

        let (_, made) = attempts(&policy(1), &budget, &[Err(Failure::Unavailable)]).await;
        assert_eq!(made, 1, "one attempt: no retry");
        let (_, made) = attempts(&policy(0), &budget, &[Err(Failure::Unavailable)]).await;
        assert_eq!(made, 1, "the first attempt is always made");
    }

    #[tokio::test(start_paused = true)]
    async fn no_retry_is_made_past_the_time_limit() {
        // Attempts of 400 ms, pauses under 10 ms, a one-second limit: the third attempt starts
        // at about 820 ms; after it, at about 1,220 ms, the limit has passed.
        let policy = RetryPolicy {
            first_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(10),
            max_attempts: 100,
            time_limit: Duration::from_secs(1),
        };
        let budget = RetryBudget::default();
        let made = Cell::new(0);
        let outcome: Result<(), Failure> = run(&policy, &budget, "slow op", || {
            made.set(made.get() + 1);
            async {
                tokio::time::sleep(Duration::from_millis(400)).await;
                Err(Failure::TimedOut)
            }
        })
        .await;
        assert_eq!(outcome, Err(Failure::TimedOut));
        assert_eq!(made.get(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn no_pause_ends_past_the_time_limit() {
        // Pauses of up to 10 s against a 5 s limit: whether a retry is made depends on the
        // draw, but none may start later than the limit.
        let policy = RetryPolicy {
            first_backoff: Duration::from_secs(10),
            max_backoff: Duration::from_secs(10),
            max_attempts: 10,
            time_limit: Duration::from_secs(5),
        };
        let budget = RetryBudget::default();
        let mut retried = 0;
        for _ in 0..50 {
            let started = Instant::now();
            let starts = RefCell::new(Vec::new());
            let outcome: Result<(), Failure> = run(&policy, &budget, "op", || {
                starts.borrow_mut().push(started.elapsed());
                async { Err(Failure::Unavailable) }
            })
            .await;
            assert_eq!(outcome, Err(Failure::Unavailable));
            let starts = starts.into_inner();
            assert!(
                starts.iter().all(|start| *start <= policy.time_limit),
                "{starts:?}"
            );
            retried += starts.len() - 1;
        }
        // Half the draws fit, and some runs retry more than once.
        assert!(retried > 10, "{retried}");
    }

    #[tokio::test(start_paused = true)]
    async fn the_budget_empties_under_failures_and_refills_on_successes() {
        // 20 tokens: four retries at 5.
        let budget = RetryBudget::new(20);
        let policy = policy(3);
        let failing = [Err(Failure::Unavailable)];
        let mut made = Vec::new();
        for _ in 0..4 {
            made.push(attempts(&policy, &budget, &failing).await.1);
        }
        // Two jobs retry twice; then each job gets its one attempt.
        assert_eq!(made, [3, 3, 1, 1]);
        assert_eq!(budget.tokens(), 0);
        assert_eq!(budget.retries_attempted(), 4);
        assert_eq!(budget.retries_refused(), 2);

        // Five first-attempt successes buy one retry.
        for _ in 0..5 {
            assert_eq!(attempts(&policy, &budget, &[Ok(1)]).await, (Ok(1), 1));
        }
        assert_eq!(budget.tokens(), 5);
        assert_eq!(attempts(&policy, &budget, &failing).await.1, 2);
        assert_eq!(budget.tokens(), 0);
        assert_eq!(budget.retries_refused(), 3);

        // A retry that works is refunded.
        for _ in 0..5 {
            assert_eq!(attempts(&policy, &budget, &[Ok(1)]).await, (Ok(1), 1));
        }
        let results = [Err(Failure::Unavailable), Ok(1)];
        assert_eq!(attempts(&policy, &budget, &results).await, (Ok(1), 2));
        assert_eq!(budget.tokens(), 5);
    }

    #[tokio::test(start_paused = true)]
    async fn a_retry_after_a_timeout_costs_more() {
        let budget = RetryBudget::new(20);
        let (_, made) = attempts(&policy(10), &budget, &[Err(Failure::TimedOut)]).await;
        assert_eq!(made, 3, "two retries at 10");
        assert_eq!(budget.retries_attempted(), 2);
        assert_eq!(budget.retries_refused(), 1);
    }
}
