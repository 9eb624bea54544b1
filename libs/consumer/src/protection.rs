//! ECS task scale-in protection while messages are in flight.
//!
//! A service's scale-in, or a deployment, stops tasks it picks, and a task carrying a
//! multi-GiB copy would lose it. While the consumer works on anything, it asks the ECS agent
//! (`PUT $ECS_AGENT_URI/task-protection/v1/state`, which the agent turns into ECS's
//! UpdateTaskProtection with the task role) to protect the task for a few minutes, renews that
//! well before it lapses for as long as it stays busy, and drops it once idle. The expiry is
//! short on purpose: a task that stops renewing (wedged, cut off from the agent) holds up a
//! deployment for minutes, not hours.
//! (<https://docs.aws.amazon.com/AmazonECS/latest/developerguide/task-scale-in-protection-endpoint.html>)
//!
//! Protection never stands in the way of the work: the calls go out from a task of their own,
//! jobs only bump a counter, and a failed call is logged (transient or permanent, told by the
//! answer's status and error code) and tried again, soon when it may pass, at the next renewal
//! when it may not.
//!
//! What it does not do: protection does not stop a Fargate Spot reclaim or a task stopped for
//! any other reason than scale-in and deployments. Those send SIGTERM, and the consumer's drain
//! (finish what fits in the grace, release the rest) is what saves the work then.
//!
//! [`Plan`] is the decision, pure (what to ask, and when); [`Agent`] is the HTTP edge;
//! [`protect_while_busy`] runs the two.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde::Deserialize;
use tokio::sync::watch;
use tokio::time::Instant;
use yuba_model::FailureKind;
use yuba_retry::Backoff;

use crate::settings::TaskProtectionSettings;

/// The path of the agent's task-protection state, after `$ECS_AGENT_URI`.
pub const STATE_PATH: &str = "/task-protection/v1/state";
/// How long one request may take. The agent bounds its own ECS call; this is for an agent that
/// does not answer at all.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The first pause after a transient failure; it doubles, up to the renewal period.
const FIRST_RETRY: Duration = Duration::from_secs(1);

/// What to ask the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Request {
    /// `ProtectionEnabled: true` with the configured expiry: take or renew protection.
    Protect,
    /// `ProtectionEnabled: false`: make the task eligible for scale-in again.
    Release,
}

/// What the plan says to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    Now(Request),
    /// Nothing before this instant, unless the number of messages in flight changes.
    At(Instant),
    /// Nothing until the number of messages in flight changes.
    Wait,
}

/// What the task's protection is, as far as this process knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Held {
    Off,
    /// Protected by the request sent at `sent` (the expiry runs from no earlier than that).
    On {
        sent: Instant,
    },
    /// A protect request failed in a way that may still have reached ECS: it may be on.
    Unsure,
}

/// The decisions: from the messages in flight and the answers so far, what to ask and when.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    renew_every: Duration,
    release_after: Duration,
    in_flight: usize,
    /// Since when nothing is in flight (`None` while busy).
    idle_since: Option<Instant>,
    held: Held,
    /// After a failure: no request before this.
    not_before: Option<Instant>,
    failures: u32,
}

impl Plan {
    /// A fresh task: idle, unprotected (a new task starts without protection).
    pub(crate) fn new(renew_every: Duration, release_after: Duration, now: Instant) -> Plan {
        Plan {
            renew_every,
            release_after,
            in_flight: 0,
            idle_since: Some(now),
            held: Held::Off,
            not_before: None,
            failures: 0,
        }
    }

    pub(crate) fn set_in_flight(&mut self, in_flight: usize, now: Instant) {
        if in_flight > 0 {
            self.idle_since = None;
        } else if self.idle_since.is_none() {
            self.idle_since = Some(now);
        }
        self.in_flight = in_flight;
    }

    pub(crate) fn next(&self, now: Instant) -> Next {
        let (request, due) = if self.in_flight > 0 {
            match self.held {
                Held::Off | Held::Unsure => (Request::Protect, now),
                Held::On { sent } => (Request::Protect, sent + self.renew_every),
            }
        } else {
            match self.held {
                Held::Off => return Next::Wait,
                Held::On { .. } | Held::Unsure => (
                    Request::Release,
                    self.idle_since.unwrap_or(now) + self.release_after,
                ),
            }
        };
        let due = self
            .not_before
            .map_or(due, |not_before| due.max(not_before));
        if due <= now {
            Next::Now(request)
        } else {
            Next::At(due)
        }
    }

    /// `request`, sent at `sent`, was carried out.
    pub(crate) fn succeeded(&mut self, request: Request, sent: Instant) {
        self.failures = 0;
        self.not_before = None;
        self.held = match request {
            Request::Protect => Held::On { sent },
            Request::Release => Held::Off,
        };
    }

    /// `request` failed at `now`; returns how long until the next request. A transient failure
    /// is tried again soon (doubling from a second), a permanent one at the next renewal: it
    /// will not pass by itself, but the cause (a missing grant, ECS's view of the task) can be
    /// fixed without restarting the worker.
    pub(crate) fn failed(&mut self, request: Request, kind: FailureKind, now: Instant) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let delay = match kind {
            // The curve's ceiling, without jitter: one task's requests to its own agent leave
            // no burst to spread.
            FailureKind::Transient => Backoff {
                first: FIRST_RETRY,
                max: self.renew_every,
            }
            .ceiling(self.failures),
            FailureKind::Permanent => self.renew_every,
        };
        self.not_before = Some(now + delay);
        if request == Request::Protect && self.held == Held::Off {
            // A request that timed out or lost its answer may have been carried out.
            self.held = Held::Unsure;
        }
        delay
    }

    /// Failures in a row.
    pub(crate) fn failures(&self) -> u32 {
        self.failures
    }
}

/// What went wrong with a request to the agent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgentError {
    #[error("the ECS agent at {uri} could not be reached: {reason}")]
    Unreachable { uri: String, reason: String },
    #[error("the ECS agent did not answer within {0:?}")]
    TimedOut(Duration),
    /// The agent's or ECS's exception: `{"error": {"Code", "Message", "Arn"}}`.
    #[error("the ECS agent answered {status} {code}: {message}{hint}", hint = refusal_hint(.code))]
    Refused {
        status: u16,
        code: String,
        message: String,
    },
    /// ECS's failure for this task: `{"failure": {"Reason", "Detail", "Arn"}}` (for example
    /// `TASK_NOT_VALID` for a task that belongs to no service).
    #[error("ECS did not change the task's protection: {reason}{}", .detail.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Failure {
        reason: String,
        detail: Option<String>,
    },
    #[error("the ECS agent's answer ({status}) is not what its API documents: {body}")]
    Unexpected { status: u16, body: String },
}

fn refusal_hint(code: &str) -> &'static str {
    match code {
        "AccessDeniedException" => {
            "; the task role needs ecs:UpdateTaskProtection on its cluster's tasks \
             (arn:aws:ecs:REGION:ACCOUNT:task/CLUSTER/*)"
        }
        _ => "",
    }
}

impl AgentError {
    /// Whether trying again soon can help, from the answer's structure: no answer, a 5xx, a
    /// 429, or ECS's throttling (which the agent passes on as a 400 with the code
    /// `ThrottlingException`) may pass on a retry; any other refusal or failure will not
    /// until something changes (a grant, the task's service).
    pub fn kind(&self) -> FailureKind {
        match self {
            AgentError::Unreachable { .. } | AgentError::TimedOut(_) => FailureKind::Transient,
            AgentError::Refused { status, code, .. } => {
                if *status >= 500 || *status == 429 || code == "ThrottlingException" {
                    FailureKind::Transient
                } else {
                    FailureKind::Permanent
                }
            }
            AgentError::Failure { .. } => FailureKind::Permanent,
            AgentError::Unexpected { status, .. } => {
                if *status >= 500 {
                    FailureKind::Transient
                } else {
                    FailureKind::Permanent
                }
            }
        }
    }
}

/// The task's protection as the agent reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Protection {
    pub enabled: bool,
    /// When it lapses, as the agent writes it (RFC 3339); `None` when off.
    pub expiration: Option<String>,
    pub task_arn: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Answer {
    protection: Option<ProtectedTask>,
    failure: Option<Failure>,
    error: Option<ErrorBody>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ProtectedTask {
    expiration_date: Option<String>,
    protection_enabled: Option<bool>,
    task_arn: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Failure {
    reason: Option<String>,
    detail: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ErrorBody {
    code: Option<String>,
    message: Option<String>,
}

/// Reads the agent's answer to a request that asked for protection `enabled`.
pub(crate) fn interpret(status: u16, body: &[u8], enabled: bool) -> Result<Protection, AgentError> {
    let unexpected = || AgentError::Unexpected {
        status,
        body: String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned(),
    };
    let answer: Answer = serde_json::from_slice(body).map_err(|_| unexpected())?;
    if let Some(error) = answer.error {
        return Err(AgentError::Refused {
            status,
            code: error.code.unwrap_or_default(),
            message: error.message.unwrap_or_default(),
        });
    }
    if status != 200 {
        return Err(unexpected());
    }
    if let Some(failure) = answer.failure {
        return Err(AgentError::Failure {
            reason: failure.reason.unwrap_or_default(),
            detail: failure.detail,
        });
    }
    let protection = answer.protection.ok_or_else(unexpected)?;
    // The state ECS reports must be the one asked for; anything else is not success.
    if protection.protection_enabled != Some(enabled) {
        return Err(unexpected());
    }
    Ok(Protection {
        enabled,
        expiration: protection.expiration_date,
        task_arn: protection.task_arn,
    })
}

/// The agent's task-protection endpoint: plain HTTP/1.1 to a link-local address, one short
/// connection per request (a request a minute needs no pool).
#[derive(Debug, Clone)]
pub struct Agent {
    uri: http::Uri,
    expires_in_minutes: u32,
}

impl Agent {
    /// `agent_uri` is `$ECS_AGENT_URI`, checked by [`TaskProtectionSettings::from_env`].
    pub fn new(agent_uri: &str, expires_in_minutes: u32) -> Result<Agent, AgentError> {
        let unreachable = |reason: &str| AgentError::Unreachable {
            uri: agent_uri.to_owned(),
            reason: reason.to_owned(),
        };
        let uri = format!("{}{STATE_PATH}", agent_uri.trim_end_matches('/'))
            .parse::<http::Uri>()
            .map_err(|error| unreachable(&error.to_string()))?;
        if uri.scheme_str() != Some("http") || uri.authority().is_none() {
            return Err(unreachable("not an http:// URL"));
        }
        Ok(Agent {
            uri,
            expires_in_minutes,
        })
    }

    /// Asks for `request` and reads the answer.
    pub(crate) async fn send(&self, request: Request) -> Result<Protection, AgentError> {
        let (enabled, body) = match request {
            Request::Protect => (
                true,
                serde_json::json!({
                    "ProtectionEnabled": true,
                    "ExpiresInMinutes": self.expires_in_minutes,
                }),
            ),
            Request::Release => (false, serde_json::json!({ "ProtectionEnabled": false })),
        };
        let (status, answer) = tokio::time::timeout(REQUEST_TIMEOUT, self.put(body.to_string()))
            .await
            .map_err(|_| AgentError::TimedOut(REQUEST_TIMEOUT))??;
        interpret(status, &answer, enabled)
    }

    async fn put(&self, body: String) -> Result<(u16, Bytes), AgentError> {
        let unreachable = |reason: String| AgentError::Unreachable {
            uri: self.uri.to_string(),
            reason,
        };
        let authority = self
            .uri
            .authority()
            .ok_or_else(|| unreachable("no host".to_owned()))?;
        let address = format!(
            "{}:{}",
            authority.host(),
            authority.port_u16().unwrap_or(80)
        );
        let stream = tokio::net::TcpStream::connect(&address)
            .await
            .map_err(|error| unreachable(error.to_string()))?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|error| unreachable(error.to_string()))?;
        // The connection is driven by its own task and ends when the exchange is over.
        tokio::spawn(connection);
        let request = http::Request::put(self.uri.path())
            .header(http::header::HOST, authority.as_str())
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|error| unreachable(error.to_string()))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|error| unreachable(error.to_string()))?;
        let status = response.status().as_u16();
        let answer = response
            .into_body()
            .collect()
            .await
            .map_err(|error| unreachable(error.to_string()))?
            .to_bytes();
        Ok((status, answer))
    }
}

/// Holds the task's scale-in protection while `in_flight` (the number of messages being worked
/// on) is above zero, as [`Plan`] decides; runs until aborted.
pub(crate) async fn protect_while_busy(
    settings: TaskProtectionSettings,
    mut in_flight: watch::Receiver<usize>,
) {
    let agent = match Agent::new(&settings.agent_uri, settings.expires_in_minutes) {
        Ok(agent) => agent,
        Err(error) => {
            tracing::error!(%error, "task scale-in protection is off");
            return;
        }
    };
    let mut plan = Plan::new(settings.renew_every, settings.release_after, Instant::now());
    loop {
        let now = Instant::now();
        plan.set_in_flight(*in_flight.borrow_and_update(), now);
        let next = plan.next(now);
        let request = match next {
            Next::Now(request) => request,
            Next::At(at) => {
                tokio::select! {
                    () = tokio::time::sleep_until(at) => {}
                    changed = in_flight.changed() => if changed.is_err() { return },
                }
                continue;
            }
            Next::Wait => {
                if in_flight.changed().await.is_err() {
                    return;
                }
                continue;
            }
        };
        let sent = Instant::now();
        match agent.send(request).await {
            Ok(protection) => {
                let was = plan.clone();
                plan.succeeded(request, sent);
                log_success(request, &was, &protection, settings.expires_in_minutes);
            }
            Err(error) => {
                let kind = error.kind();
                let retry_in = plan.failed(request, kind, Instant::now());
                let action = match request {
                    Request::Protect => "protecting the task from scale-in failed",
                    Request::Release => "dropping the task's scale-in protection failed",
                };
                match kind {
                    FailureKind::Transient => tracing::warn!(
                        %error, failure = kind.as_str(), failures = plan.failures(), ?retry_in,
                        "{action}; trying again"
                    ),
                    FailureKind::Permanent => tracing::error!(
                        %error, failure = kind.as_str(), failures = plan.failures(), ?retry_in,
                        "{action}; trying again at the next renewal"
                    ),
                }
            }
        }
    }
}

fn log_success(request: Request, was: &Plan, protection: &Protection, minutes: u32) {
    let expiration = protection.expiration.as_deref().unwrap_or("");
    match (request, was.held) {
        (Request::Protect, Held::On { .. }) => {
            tracing::debug!(expiration, "task scale-in protection renewed");
        }
        (Request::Protect, _) => tracing::info!(
            task_arn = protection.task_arn.as_deref().unwrap_or(""),
            expiration,
            expires_in_minutes = minutes,
            "task scale-in protection on while messages are in flight"
        ),
        (Request::Release, _) => tracing::info!("task scale-in protection off: idle"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RENEW: Duration = Duration::from_secs(60);
    const LINGER: Duration = Duration::from_secs(10);

    fn plan() -> (Plan, Instant) {
        let start = Instant::now();
        (Plan::new(RENEW, LINGER, start), start)
    }

    #[test]
    fn an_idle_consumer_asks_for_nothing() {
        let (plan, start) = plan();
        assert_eq!(plan.next(start), Next::Wait);
        assert_eq!(plan.next(start + Duration::from_secs(3600)), Next::Wait);
    }

    #[test]
    fn the_first_job_takes_protection_at_once_and_a_busy_task_renews_it() {
        let (mut plan, start) = plan();
        plan.set_in_flight(1, start);
        assert_eq!(plan.next(start), Next::Now(Request::Protect));
        plan.succeeded(Request::Protect, start);
        // Renewed a period after the request went out, not after its answer came back.
        assert_eq!(
            plan.next(start + Duration::from_secs(1)),
            Next::At(start + RENEW)
        );
        // More jobs change nothing.
        plan.set_in_flight(5, start + Duration::from_secs(2));
        assert_eq!(
            plan.next(start + Duration::from_secs(2)),
            Next::At(start + RENEW)
        );
        assert_eq!(plan.next(start + RENEW), Next::Now(Request::Protect));
        plan.succeeded(Request::Protect, start + RENEW);
        assert_eq!(plan.next(start + RENEW), Next::At(start + RENEW * 2));
    }

    #[test]
    fn an_idle_task_drops_protection_after_the_linger_and_a_new_job_within_it_keeps_it() {
        let (mut plan, start) = plan();
        plan.set_in_flight(1, start);
        plan.succeeded(Request::Protect, start);
        let idle = start + Duration::from_secs(5);
        plan.set_in_flight(0, idle);
        assert_eq!(plan.next(idle), Next::At(idle + LINGER));
        // Busy again before the linger is out: no release, and the renewal keeps its time.
        plan.set_in_flight(1, idle + Duration::from_secs(3));
        assert_eq!(
            plan.next(idle + Duration::from_secs(3)),
            Next::At(start + RENEW)
        );
        let idle = start + Duration::from_secs(20);
        plan.set_in_flight(0, idle);
        // Idle again: the linger counts from the last job's end, and renewals stop.
        assert_eq!(plan.next(idle + LINGER), Next::Now(Request::Release));
        plan.succeeded(Request::Release, idle + LINGER);
        assert_eq!(plan.next(idle + LINGER), Next::Wait);
        assert_eq!(plan.next(start + RENEW * 5), Next::Wait);
    }

    #[test]
    fn a_zero_linger_releases_at_once() {
        let start = Instant::now();
        let mut plan = Plan::new(RENEW, Duration::ZERO, start);
        plan.set_in_flight(1, start);
        plan.succeeded(Request::Protect, start);
        plan.set_in_flight(0, start + Duration::from_secs(1));
        assert_eq!(
            plan.next(start + Duration::from_secs(1)),
            Next::Now(Request::Release)
        );
    }

    #[test]
    fn transient_failures_are_retried_soon_with_a_growing_pause() {
        let (mut plan, start) = plan();
        plan.set_in_flight(1, start);
        let pauses: Vec<Duration> = (0..8)
            .map(|_| plan.failed(Request::Protect, FailureKind::Transient, start))
            .collect();
        assert_eq!(pauses[0], Duration::from_secs(1));
        assert_eq!(pauses[1], Duration::from_secs(2));
        assert_eq!(pauses[2], Duration::from_secs(4));
        assert_eq!(pauses[7], RENEW, "never longer than the renewal period");
        assert_eq!(plan.failures(), 8);
        assert_eq!(plan.next(start), Next::At(start + RENEW));
        assert_eq!(plan.next(start + RENEW), Next::Now(Request::Protect));
        plan.succeeded(Request::Protect, start + RENEW);
        assert_eq!(plan.failures(), 0);
        assert_eq!(plan.next(start + RENEW), Next::At(start + RENEW * 2));
    }

    #[test]
    fn a_permanent_failure_is_retried_at_the_next_renewal() {
        let (mut plan, start) = plan();
        plan.set_in_flight(1, start);
        assert_eq!(
            plan.failed(Request::Protect, FailureKind::Permanent, start),
            RENEW
        );
        assert_eq!(
            plan.next(start + Duration::from_secs(1)),
            Next::At(start + RENEW)
        );
        assert_eq!(plan.next(start + RENEW), Next::Now(Request::Protect));
    }

    #[test]
    fn a_failed_protect_may_have_landed_so_an_idle_task_releases_it() {
        let (mut plan, start) = plan();
        plan.set_in_flight(1, start);
        plan.failed(Request::Protect, FailureKind::Transient, start);
        plan.set_in_flight(0, start + Duration::from_millis(100));
        // Not before the retry pause, nor before the linger.
        assert_eq!(
            plan.next(start + Duration::from_millis(100)),
            Next::At(start + Duration::from_millis(100) + LINGER)
        );
        assert_eq!(
            plan.next(start + Duration::from_secs(11)),
            Next::Now(Request::Release)
        );
    }

    #[test]
    fn a_failed_release_is_tried_again() {
        let (mut plan, start) = plan();
        plan.set_in_flight(1, start);
        plan.succeeded(Request::Protect, start);
        plan.set_in_flight(0, start);
        let at = start + LINGER;
        assert_eq!(plan.next(at), Next::Now(Request::Release));
        let pause = plan.failed(Request::Release, FailureKind::Transient, at);
        assert_eq!(plan.next(at), Next::At(at + pause));
        assert_eq!(plan.next(at + pause), Next::Now(Request::Release));
    }

    #[test]
    fn answers_are_read_as_the_agent_documents_them() {
        let protected = br#"{"protection":{"ExpirationDate":"2022-10-06T02:29:16Z",
            "ProtectionEnabled":true,"TaskArn":"arn:aws:ecs:us-west-2:111122223333:task/1234567890abcdef0"}}"#;
        assert_eq!(
            interpret(200, protected, true),
            Ok(Protection {
                enabled: true,
                expiration: Some("2022-10-06T02:29:16Z".to_owned()),
                task_arn: Some(
                    "arn:aws:ecs:us-west-2:111122223333:task/1234567890abcdef0".to_owned()
                ),
            })
        );
        // Asked to protect, told it is off: not a success.
        assert!(matches!(
            interpret(200, protected, false),
            Err(AgentError::Unexpected { status: 200, .. })
        ));
        let released =
            br#"{"protection":{"ExpirationDate":null,"ProtectionEnabled":false,"TaskArn":"arn"}}"#;
        assert!(interpret(200, released, false).is_ok());

        let failure =
            br#"{"failure":{"Arn":"arn:aws:ecs:us-west-2:111122223333:task/1234567890abcdef0",
            "Detail":null,"Reason":"TASK_NOT_VALID"}}"#;
        let error = interpret(200, failure, true).unwrap_err();
        assert_eq!(error.kind(), FailureKind::Permanent);
        assert!(error.to_string().contains("TASK_NOT_VALID"), "{error}");
    }

    #[test]
    fn errors_are_transient_or_permanent_by_status_and_code() {
        let refused = |status: u16, code: &str| {
            let body = serde_json::json!({"requestID": "12345-abc", "error": {
                "Arn": "arn:aws:ecs:us-west-2:555555555555:task/my-cluster-name/1234567890abcdef0",
                "Code": code, "Message": "Rate exceeded"}});
            interpret(status, body.to_string().as_bytes(), true).unwrap_err()
        };
        assert_eq!(
            refused(400, "ThrottlingException").kind(),
            FailureKind::Transient
        );
        assert_eq!(
            refused(500, "ServerException").kind(),
            FailureKind::Transient
        );
        assert_eq!(
            refused(504, "RequestCanceled").kind(),
            FailureKind::Transient
        );
        assert_eq!(
            refused(429, "TooManyRequests").kind(),
            FailureKind::Transient
        );
        assert_eq!(
            refused(400, "InvalidParameterException").kind(),
            FailureKind::Permanent
        );
        assert_eq!(
            refused(404, "ResourceNotFoundException").kind(),
            FailureKind::Permanent
        );
        let denied = refused(400, "AccessDeniedException");
        assert_eq!(denied.kind(), FailureKind::Permanent);
        assert!(
            denied
                .to_string()
                .contains("needs ecs:UpdateTaskProtection"),
            "{denied}"
        );
        // The message's words decide nothing.
        assert_eq!(refused(400, "Whatever").kind(), FailureKind::Permanent);
        assert_eq!(
            interpret(502, b"<html>bad gateway</html>", true)
                .unwrap_err()
                .kind(),
            FailureKind::Transient
        );
        assert_eq!(
            interpret(200, b"{}", true).unwrap_err().kind(),
            FailureKind::Permanent
        );
        assert_eq!(
            AgentError::TimedOut(REQUEST_TIMEOUT).kind(),
            FailureKind::Transient
        );
    }

    #[test]
    fn the_agent_is_addressed_below_its_uri() {
        let agent = Agent::new("http://169.254.170.2/api/abc-123/", 5).unwrap();
        assert_eq!(
            agent.uri.to_string(),
            "http://169.254.170.2/api/abc-123/task-protection/v1/state"
        );
        assert!(Agent::new("https://agent/api/x", 5).is_err());
    }
}
