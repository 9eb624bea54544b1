use std::time::Duration;

use yuba_config::{ConfigError, Env};
use yuba_model::FailureKind;

/// How a [`Consumer`](crate::Consumer) polls its queue.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsumerSettings {
    pub queue_url: String,
    /// Messages worked on at once.
    pub concurrency: usize,
    /// Long-poll wait per ReceiveMessage (SQS allows up to 20 s).
    pub receive_wait: Duration,
    /// How long a received message stays invisible; renewed every half of it while the message
    /// is being worked on, so a slow job is never handed to a second consumer.
    pub visibility_timeout: Duration,
    /// After a stop signal: how long in-flight messages may take to finish before they are
    /// released (made visible) for another consumer. Keep it below the platform's stop timeout
    /// (ECS: `stopTimeout`, 30 s by default).
    pub shutdown_grace: Duration,
    pub backoff: MessageBackoff,
}

impl ConsumerSettings {
    /// `queue_var` names the variable that holds the queue URL, which differs per program.
    pub fn from_env(
        env: &Env,
        queue_var: &str,
        default_concurrency: u64,
    ) -> Result<Self, ConfigError> {
        let queue_url = env.required(queue_var, "set it to the URL of the SQS queue to consume")?;
        if !queue_url.starts_with("http://") && !queue_url.starts_with("https://") {
            return Err(env.invalid(
                queue_var,
                "expected a queue URL (https://sqs.REGION.amazonaws.com/ACCOUNT/NAME)",
            ));
        }
        let settings = ConsumerSettings {
            queue_url,
            concurrency: usize::try_from(env.number_in(
                "YUBA_CONCURRENCY",
                default_concurrency,
                1..=1024,
            )?)
            .unwrap_or(1),
            receive_wait: env.seconds_in(
                "YUBA_RECEIVE_WAIT_SECONDS",
                Duration::from_secs(20),
                0.0..=20.0,
            )?,
            visibility_timeout: env.seconds_in(
                "YUBA_VISIBILITY_TIMEOUT_SECONDS",
                Duration::from_secs(60),
                2.0..=43_200.0,
            )?,
            shutdown_grace: env.seconds_in(
                "YUBA_SHUTDOWN_GRACE_SECONDS",
                Duration::from_secs(25),
                0.0..=3600.0,
            )?,
            backoff: MessageBackoff::from_env(env)?,
        };
        Ok(settings)
    }
}

/// When a failed message is seen again, on Lambda and off it alike.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MessageBackoff {
    /// First delay before a transiently failed message is seen again; doubles per receive.
    pub base: Duration,
    pub max: Duration,
}

impl MessageBackoff {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(MessageBackoff {
            base: env.seconds_in(
                "YUBA_RETRY_BASE_SECONDS",
                Duration::from_secs(2),
                0.0..=3600.0,
            )?,
            max: env.seconds_in(
                "YUBA_RETRY_MAX_SECONDS",
                Duration::from_secs(300),
                0.0..=43_200.0,
            )?,
        })
    }

    /// How long a message that failed on its `receive_count`-th receive stays invisible.
    /// A permanent failure is visible again at once, so that SQS moves it to the dead-letter
    /// queue after the queue's maxReceiveCount without waiting; a transient one backs off.
    pub fn visible_in(&self, kind: FailureKind, receive_count: u32) -> Duration {
        match kind {
            FailureKind::Transient => self.delay(receive_count),
            FailureKind::Permanent => Duration::ZERO,
        }
    }

    /// Exponential in the attempt, capped, with jitter so that a burst of failures does not
    /// come back as a burst.
    pub fn delay(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(20);
        let ceiling = self.base.saturating_mul(1 << exponent).min(self.max);
        ceiling.mul_f64(0.5 + rand::random::<f64>() / 2.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        Env::from_pairs(pairs.iter().copied())
    }

    #[test]
    fn defaults_suit_a_fargate_service() {
        let settings =
            ConsumerSettings::from_env(&env(&[("Q", "http://127.0.0.1:5000/123/work")]), "Q", 8)
                .unwrap();
        assert_eq!(settings.concurrency, 8);
        assert_eq!(settings.receive_wait, Duration::from_secs(20));
        assert!(
            settings.shutdown_grace < Duration::from_secs(30),
            "inside ECS's default stop timeout"
        );
    }

    #[test]
    fn bad_settings_name_the_variable() {
        let missing = ConsumerSettings::from_env(&env(&[]), "YUBA_QUEUE_URL", 8).unwrap_err();
        assert!(missing.to_string().starts_with("YUBA_QUEUE_URL is not set"));
        let not_a_url = ConsumerSettings::from_env(&env(&[("Q", "work")]), "Q", 8).unwrap_err();
        assert!(not_a_url.to_string().contains("queue URL"));
        let too_long_poll = ConsumerSettings::from_env(
            &env(&[("Q", "https://q"), ("YUBA_RECEIVE_WAIT_SECONDS", "30")]),
            "Q",
            8,
        )
        .unwrap_err();
        assert!(
            too_long_poll
                .to_string()
                .contains("YUBA_RECEIVE_WAIT_SECONDS")
        );
    }

    #[test]
    fn retry_delays_grow_and_are_capped() {
        let backoff = MessageBackoff {
            base: Duration::from_secs(2),
            max: Duration::from_secs(60),
        };
        let first = backoff.visible_in(FailureKind::Transient, 1);
        assert!(
            first >= Duration::from_secs(1) && first <= Duration::from_secs(2),
            "{first:?}"
        );
        let fourth = backoff.visible_in(FailureKind::Transient, 4);
        assert!(
            fourth >= Duration::from_secs(8) && fourth <= Duration::from_secs(16),
            "{fourth:?}"
        );
        assert!(backoff.visible_in(FailureKind::Transient, 40) <= Duration::from_secs(60));
        assert_eq!(
            backoff.visible_in(FailureKind::Permanent, 1),
            Duration::ZERO
        );
    }
}
