use std::time::Duration;

use yuba_model::FailureKind;
use yuba_retry::{Backoff, Jitter};
use yuba_startup::{ConfigError, Env};

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
    /// (ECS: `stopTimeout`, 30 s by default, at most 120 s on Fargate; the CDK app sets both).
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

/// ECS task scale-in protection while the consumer has messages in flight (see
/// [`protection`](crate::protection)): on when the ECS agent announces its endpoint
/// (`ECS_AGENT_URI`, which ECS sets in every container of a task) and `YUBA_TASK_PROTECTION` is
/// not `false`; `None` anywhere else (a laptop, the tests, Lambda), where nothing is called.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskProtectionSettings {
    /// `$ECS_AGENT_URI`: `http://169.254.170.2/api/<container id>` on ECS.
    pub agent_uri: String,
    /// `ExpiresInMinutes` of every request: how long a task that stops renewing (wedged, cut
    /// off from the agent) can keep holding up a deployment or a scale-in.
    pub expires_in_minutes: u32,
    /// How often protection is renewed while busy: at most half the expiry, so that one failed
    /// renewal never lets it lapse.
    pub renew_every: Duration,
    /// How long the consumer stays idle before it drops protection, so that the gaps between
    /// jobs of a stream do not cost two agent (and ECS API) calls each.
    pub release_after: Duration,
}

/// ECS accepts 1 to 2,880 minutes; a short expiry is the point (a stuck task must not hold a
/// deployment for long), so the setting stops at an hour.
const MAX_PROTECTION_MINUTES: u64 = 60;

impl TaskProtectionSettings {
    pub fn from_env(env: &Env) -> Result<Option<Self>, ConfigError> {
        if !env.flag("YUBA_TASK_PROTECTION", true)? {
            return Ok(None);
        }
        let Some(agent_uri) = env.optional("ECS_AGENT_URI") else {
            return Ok(None);
        };
        let parsed = agent_uri.parse::<http::Uri>().ok();
        let is_http_url = parsed
            .as_ref()
            .is_some_and(|uri| uri.scheme_str() == Some("http") && uri.authority().is_some());
        if !is_http_url {
            return Err(env.invalid(
                "ECS_AGENT_URI",
                "expected the ECS agent's http:// URL as ECS sets it \
                 (http://169.254.170.2/api/...); set YUBA_TASK_PROTECTION=false to run without \
                 task scale-in protection",
            ));
        }
        let expires_in_minutes = env.number_in(
            "YUBA_TASK_PROTECTION_MINUTES",
            5,
            1..=MAX_PROTECTION_MINUTES,
        )?;
        let renew_every = env.seconds_in(
            "YUBA_TASK_PROTECTION_RENEW_SECONDS",
            Duration::from_secs(60),
            1.0..=1800.0,
        )?;
        if renew_every.as_secs_f64() * 2.0 > (expires_in_minutes * 60) as f64 {
            return Err(env.invalid(
                "YUBA_TASK_PROTECTION_RENEW_SECONDS",
                format!(
                    "must be at most half of YUBA_TASK_PROTECTION_MINUTES ({expires_in_minutes} \
                     min), so that one failed renewal does not let the protection lapse"
                ),
            ));
        }
        Ok(Some(TaskProtectionSettings {
            agent_uri,
            expires_in_minutes: u32::try_from(expires_in_minutes).unwrap_or(1),
            renew_every,
            release_after: env.seconds_in(
                "YUBA_TASK_PROTECTION_IDLE_SECONDS",
                Duration::from_secs(10),
                0.0..=600.0,
            )?,
        }))
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

    /// The delay after `attempt` failures: the [`Backoff`] from `base` up to `max`, drawn with
    /// [`Jitter::Equal`] so that a burst of failures does not come back as a burst, and none
    /// comes back before half its ceiling.
    pub fn delay(&self, attempt: u32) -> Duration {
        let curve = Backoff {
            first: self.base,
            max: self.max,
        };
        curve.pause(attempt, Jitter::Equal)
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

    const AGENT: &str = "http://169.254.170.2/api/0123456789abcdef-1234567890";

    #[test]
    fn task_protection_is_on_only_where_the_ecs_agent_is() {
        assert_eq!(TaskProtectionSettings::from_env(&env(&[])).unwrap(), None);
        let on = TaskProtectionSettings::from_env(&env(&[("ECS_AGENT_URI", AGENT)]))
            .unwrap()
            .unwrap();
        assert_eq!(on.agent_uri, AGENT);
        assert_eq!(on.expires_in_minutes, 5);
        assert_eq!(on.renew_every, Duration::from_secs(60));
        assert_eq!(on.release_after, Duration::from_secs(10));
        let off = TaskProtectionSettings::from_env(&env(&[
            ("ECS_AGENT_URI", AGENT),
            ("YUBA_TASK_PROTECTION", "false"),
        ]))
        .unwrap();
        assert_eq!(off, None);
    }

    #[test]
    fn task_protection_settings_are_checked_at_start_up() {
        let bad = |pairs: &[(&str, &str)]| {
            let mut all = vec![("ECS_AGENT_URI", AGENT)];
            all.extend_from_slice(pairs);
            TaskProtectionSettings::from_env(&env(&all))
                .unwrap_err()
                .to_string()
        };
        let renewal_too_slow = bad(&[
            ("YUBA_TASK_PROTECTION_MINUTES", "2"),
            ("YUBA_TASK_PROTECTION_RENEW_SECONDS", "61"),
        ]);
        assert!(
            renewal_too_slow.starts_with("YUBA_TASK_PROTECTION_RENEW_SECONDS")
                && renewal_too_slow.contains("at most half"),
            "{renewal_too_slow}"
        );
        let too_long = bad(&[("YUBA_TASK_PROTECTION_MINUTES", "2880")]);
        assert!(
            too_long.starts_with("YUBA_TASK_PROTECTION_MINUTES"),
            "{too_long}"
        );
        let zero = bad(&[("YUBA_TASK_PROTECTION_MINUTES", "0")]);
        assert!(zero.starts_with("YUBA_TASK_PROTECTION_MINUTES"), "{zero}");
        let not_a_url = TaskProtectionSettings::from_env(&env(&[("ECS_AGENT_URI", "agent")]))
            .unwrap_err()
            .to_string();
        assert!(
            not_a_url.starts_with("ECS_AGENT_URI") && not_a_url.contains("YUBA_TASK_PROTECTION"),
            "{not_a_url}"
        );
        // The shortest the API allows, renewed every second: what the end-to-end tests use.
        let fast = TaskProtectionSettings::from_env(&env(&[
            ("ECS_AGENT_URI", AGENT),
            ("YUBA_TASK_PROTECTION_MINUTES", "1"),
            ("YUBA_TASK_PROTECTION_RENEW_SECONDS", "1"),
            ("YUBA_TASK_PROTECTION_IDLE_SECONDS", "0"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(
            (
                fast.expires_in_minutes,
                fast.renew_every,
                fast.release_after
            ),
            (1, Duration::from_secs(1), Duration::ZERO)
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
