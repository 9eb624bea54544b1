use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::Retryable;

/// Retries allowed to all the requests of one client, together: a token bucket, after the
/// AWS SDKs' standard retry quota (gRPC's retry throttling is the same idea).
///
/// Backoff spaces one request's retries out, but it does not stop a client from multiplying
/// its load on a service that is failing everything: with N jobs in flight and 6 attempts
/// each, a down GCS would get 6N requests instead of N, at the moment it can least take them,
/// and that extra load can keep it down after its own cause has gone. The budget bounds this:
///
/// - a retry withdraws [`RETRY_COST`](Self::RETRY_COST) tokens, or
///   [`TIMEOUT_RETRY_COST`](Self::TIMEOUT_RETRY_COST) after a failure without an answer
///   ([`Retryable::is_timeout`]);
/// - a request that succeeds at its first attempt deposits
///   [`SUCCESS_DEPOSIT`](Self::SUCCESS_DEPOSIT); one that succeeds after retries gets the
///   cost of its last retry back (that retry was worth making);
/// - when the bucket holds less than a retry costs, the retry is refused and the request
///   fails with its error. The first attempt of a request is always made, so the bucket
///   throttles retries, never the work itself.
///
/// The numbers are the AWS SDKs' (a 500-token bucket, 5 per retry, 10 per retry after a
/// timeout, 1 back per success), which have served every AWS client for years:
///
/// - A healthy client never feels it: as long as fewer than one request in five needs a retry
///   (one in ten for timeouts), the first-attempt successes pay for the retries and the bucket
///   stays full.
/// - Against a service that is down, the whole client makes at most 100 retries (50 after
///   timeouts), spread over the backoff windows of the first requests to fail, and then every
///   request gets its one attempt: about one request per job instead of `max_attempts`.
/// - It refills as requests succeed again, five first-attempt successes buying one retry, so
///   retries come back gradually as the service recovers, not all at once.
///
/// Timeouts and connection failures cost twice as much because they are the expensive ones:
/// each held a connection for the whole timeout, and the service may still be working on the
/// request it did not answer, so retrying it adds load where load is the likely cause.
///
/// Cloning is cheap and shares the bucket: give every request of a client the same one.
#[derive(Debug, Clone)]
pub struct RetryBudget {
    bucket: Arc<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    capacity: u32,
    tokens: AtomicU32,
    retries_attempted: AtomicU64,
    retries_refused: AtomicU64,
}

impl Default for RetryBudget {
    /// A full bucket of [`DEFAULT_CAPACITY`](Self::DEFAULT_CAPACITY) tokens.
    fn default() -> Self {
        RetryBudget::new(RetryBudget::DEFAULT_CAPACITY)
    }
}

impl RetryBudget {
    /// Tokens in a new bucket, and the most it holds: 100 retries.
    pub const DEFAULT_CAPACITY: u32 = 500;
    /// Tokens one retry withdraws.
    pub const RETRY_COST: u32 = 5;
    /// Tokens one retry withdraws after a failure without an answer.
    pub const TIMEOUT_RETRY_COST: u32 = 10;
    /// Tokens a request that succeeds at its first attempt deposits.
    pub const SUCCESS_DEPOSIT: u32 = 1;

    /// A full bucket of `capacity` tokens.
    pub fn new(capacity: u32) -> RetryBudget {
        RetryBudget {
            bucket: Arc::new(Bucket {
                capacity,
                tokens: AtomicU32::new(capacity),
                retries_attempted: AtomicU64::new(0),
                retries_refused: AtomicU64::new(0),
            }),
        }
    }

    /// What a retry after `error` costs.
    pub fn retry_cost(error: &(impl Retryable + ?Sized)) -> u32 {
        if error.is_timeout() {
            RetryBudget::TIMEOUT_RETRY_COST
        } else {
            RetryBudget::RETRY_COST
        }
    }

    /// Withdraws `cost` tokens for a retry, if the bucket holds them, and counts the retry as
    /// attempted; otherwise withdraws nothing, counts it as refused and returns `false`.
    pub fn try_withdraw(&self, cost: u32) -> bool {
        let bucket = &*self.bucket;
        let granted = bucket
            .tokens
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |tokens| {
                tokens.checked_sub(cost)
            })
            .is_ok();
        let counter = if granted {
            &bucket.retries_attempted
        } else {
            &bucket.retries_refused
        };
        counter.fetch_add(1, Ordering::Relaxed);
        granted
    }

    /// Records a request that succeeded: `last_retry_cost` is what its last retry withdrew
    /// (`None`: it succeeded at its first attempt).
    pub fn succeeded(&self, last_retry_cost: Option<u32>) {
        self.deposit(last_retry_cost.unwrap_or(RetryBudget::SUCCESS_DEPOSIT));
    }

    fn deposit(&self, amount: u32) {
        let capacity = self.bucket.capacity;
        // Fails only when the bucket is already full, which leaves it as it should be.
        let _ = self
            .bucket
            .tokens
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |tokens| {
                (tokens < capacity).then(|| tokens.saturating_add(amount).min(capacity))
            });
    }

    /// Tokens in the bucket now.
    pub fn tokens(&self) -> u32 {
        self.bucket.tokens.load(Ordering::Relaxed)
    }

    pub fn capacity(&self) -> u32 {
        self.bucket.capacity
    }

    /// Retries the budget has allowed since it was made.
    pub fn retries_attempted(&self) -> u64 {
        self.bucket.retries_attempted.load(Ordering::Relaxed)
    }

    /// Retries the budget has refused since it was made, each a request that failed with a
    /// transient error it could have retried otherwise.
    pub fn retries_refused(&self) -> u64 {
        self.bucket.retries_refused.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn withdrawals_stop_at_an_empty_bucket_and_deposits_at_a_full_one() {
        let budget = RetryBudget::new(12);
        assert!(budget.try_withdraw(5));
        assert!(budget.try_withdraw(5));
        assert_eq!(budget.tokens(), 2);
        assert!(!budget.try_withdraw(5), "3 tokens short");
        assert_eq!(budget.tokens(), 2, "a refusal takes nothing");
        assert_eq!(
            (budget.retries_attempted(), budget.retries_refused()),
            (2, 1)
        );

        budget.succeeded(None);
        budget.succeeded(None);
        budget.succeeded(None);
        assert_eq!(budget.tokens(), 5);
        assert!(budget.try_withdraw(5));
        budget.succeeded(Some(5));
        assert_eq!(budget.tokens(), 5, "the retry that worked is refunded");

        for _ in 0..20 {
            budget.succeeded(Some(10));
        }
        assert_eq!(budget.tokens(), 12, "never more than the capacity");
    }

    #[test]
    fn clones_share_one_bucket() {
        let budget = RetryBudget::new(10);
        let clone = budget.clone();
        assert!(clone.try_withdraw(10));
        assert!(!budget.try_withdraw(1));
        assert_eq!(budget.tokens(), 0);
        assert_eq!(
            (budget.retries_attempted(), budget.retries_refused()),
            (1, 1)
        );
    }
}
