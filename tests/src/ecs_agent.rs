//! The ECS container agent's task scale-in protection endpoint on loopback, so the worker's
//! Fargate home can be tested against the API it talks to there, as `lambda_api` does for the
//! Lambda Runtime API.
//! (<https://docs.aws.amazon.com/AmazonECS/latest/developerguide/task-scale-in-protection-endpoint.html>)
//!
//! What it speaks, as the agent does: `$ECS_AGENT_URI` is `http://HOST/api/<container id>`;
//! `PUT` and `GET` of `$ECS_AGENT_URI/task-protection/v1/state`. A PUT takes
//! `{"ProtectionEnabled": bool, "ExpiresInMinutes": 1..=2880}` (the first required, the second
//! 120 by default, no other field), and either answers call with `{"protection":
//! {"ExpirationDate", "ProtectionEnabled", "TaskArn"}}`. ECS's refusals come back as
//! `{"failure": {"Arn", "Detail", "Reason"}}` (200) and exceptions as `{"requestID", "error":
//! {"Arn", "Code", "Message"}}` with the status of the exception. A request for another
//! container's path is a 404 `ResourceNotFoundException`, as on a real agent.
//!
//! Beyond the API: it records every request with its arrival time, and faults can be injected
//! (an exception, a failure, a hang, a dropped connection) for the next N requests or until
//! healed.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::http::{Request, read_request};

/// The task the double's container belongs to.
pub const TASK_ARN: &str =
    "arn:aws:ecs:eu-west-1:123456789012:task/yuba-test-cluster/0123456789abcdef0123456789abcdef";
/// The container id in the double's `ECS_AGENT_URI`.
pub const CONTAINER_ID: &str = "0123456789abcdef0123456789abcdef-1234567890";
const STATE: &str = "/task-protection/v1/state";

/// What to answer instead of the API's own answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// An exception, with its HTTP status: `AccessDeniedException` (400 from ECS),
    /// `ThrottlingException` (400), `ServerException` (500), `RequestCanceled` (504, the agent's
    /// own time-out calling ECS).
    Error {
        status: u16,
        code: &'static str,
        message: &'static str,
    },
    /// ECS's failure for the task (200), e.g. `TASK_NOT_VALID` for a task in no service.
    Failure { reason: &'static str },
    /// Answer (normally) only after this long; the request is recorded on arrival, with no
    /// status.
    Hang(Duration),
    /// Close the connection without an answer.
    Disconnect,
}

/// One request the double received.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// When it arrived.
    pub at: Instant,
    pub method: String,
    pub path: String,
    /// The body, if it was JSON.
    pub body: Option<serde_json::Value>,
    /// The answer's status; 0 when there was none when it was recorded: the connection was
    /// dropped, or the request is held ([`Fault::Hang`]; recorded on arrival, answered later).
    pub status: u16,
    pub answer: serde_json::Value,
}

impl Recorded {
    /// A PUT's `ProtectionEnabled`.
    pub fn protection_enabled(&self) -> Option<bool> {
        self.body.as_ref()?.get("ProtectionEnabled")?.as_bool()
    }

    /// A PUT's `ExpiresInMinutes`.
    pub fn expires_in_minutes(&self) -> Option<u64> {
        self.body.as_ref()?.get("ExpiresInMinutes")?.as_u64()
    }

    /// Whether the API carried it out: a 200 with the task's protection.
    pub fn succeeded(&self) -> bool {
        self.status == 200 && self.answer.get("protection").is_some()
    }

    /// A successful PUT that set protection to `enabled`.
    pub fn is_put(&self, enabled: bool) -> bool {
        self.method == "PUT" && self.protection_enabled() == Some(enabled) && self.succeeded()
    }
}

#[derive(Debug, Default)]
struct State {
    protected_until: Option<SystemTime>,
    requests: Vec<Recorded>,
    faults: Vec<Fault>,
    persistent: Option<Fault>,
}

impl State {
    fn protected_until(&mut self) -> Option<SystemTime> {
        if self
            .protected_until
            .is_some_and(|until| until <= SystemTime::now())
        {
            // Lapsed: ECS sets protectionEnabled back to false.
            self.protected_until = None;
        }
        self.protected_until
    }

    fn next_fault(&mut self) -> Option<Fault> {
        if self.faults.is_empty() {
            self.persistent.clone()
        } else {
            Some(self.faults.remove(0))
        }
    }
}

#[derive(Debug)]
pub struct EcsAgent {
    uri: String,
    state: Arc<Mutex<State>>,
    /// Bumped on every recorded request, for waiters.
    recorded: watch::Receiver<usize>,
    server: tokio::task::JoinHandle<()>,
}

impl EcsAgent {
    pub async fn start() -> anyhow::Result<EcsAgent> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let uri = format!("http://{}/api/{CONTAINER_ID}", listener.local_addr()?);
        let state: Arc<Mutex<State>> = Arc::default();
        let (bump, recorded) = watch::channel(0_usize);
        let bump = Arc::new(bump);
        let shared = Arc::clone(&state);
        let server = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = Arc::clone(&shared);
                let bump = Arc::clone(&bump);
                tokio::spawn(async move {
                    if let Err(error) = serve(stream, &state, &bump).await {
                        eprintln!("ecs agent double: {error:#}");
                    }
                });
            }
        });
        Ok(EcsAgent {
            uri,
            state,
            recorded,
            server,
        })
    }

    /// The value of `ECS_AGENT_URI`.
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// Answers the next `times` requests with `fault` (after those already queued).
    pub fn fail(&self, fault: Fault, times: usize) {
        self.lock().faults.extend(std::iter::repeat_n(fault, times));
    }

    /// Answers every request with `fault` until [`EcsAgent::heal`].
    pub fn fail_until_healed(&self, fault: Fault) {
        self.lock().persistent = Some(fault);
    }

    pub fn heal(&self) {
        let mut state = self.lock();
        state.persistent = None;
        state.faults.clear();
    }

    /// Whether the task is protected now, as a GET would answer.
    pub fn protected(&self) -> bool {
        self.lock().protected_until().is_some()
    }

    /// Every request so far, in order of arrival.
    pub fn requests(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }

    /// Waits until `done` holds for the requests so far (checked on each new one), up to
    /// `timeout`; returns them.
    pub async fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&[Recorded]) -> bool,
    ) -> anyhow::Result<Vec<Recorded>> {
        let mut recorded = self.recorded.clone();
        let waited = tokio::time::timeout(timeout, async {
            loop {
                let requests = self.requests();
                if done(&requests) {
                    return requests;
                }
                if recorded.changed().await.is_err() {
                    return requests;
                }
            }
        })
        .await;
        match waited {
            Ok(requests) if done(&requests) => Ok(requests),
            _ => anyhow::bail!(
                "waited {timeout:?} for {what}; the agent saw:\n{}",
                describe(&self.requests())
            ),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for EcsAgent {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// The requests, one per line, for a failing assertion's message.
pub fn describe(requests: &[Recorded]) -> String {
    let Some(first) = requests.first() else {
        return "(no request)".to_owned();
    };
    requests
        .iter()
        .map(|r| {
            format!(
                "+{:>7.3}s {} {} {} -> {} {}",
                r.at.duration_since(first.at).as_secs_f64(),
                r.method,
                r.path,
                r.body.as_ref().map(ToString::to_string).unwrap_or_default(),
                r.status,
                r.answer
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn error(status: u16, arn: &str, code: &str, message: &str) -> (u16, serde_json::Value) {
    let mut error = serde_json::json!({"Code": code, "Message": message});
    if !arn.is_empty() {
        error["Arn"] = arn.into();
    }
    (status, serde_json::json!({ "error": error }))
}

fn protection(until: Option<SystemTime>) -> serde_json::Value {
    let expiration = until.map(|until| {
        chrono::DateTime::<chrono::Utc>::from(until)
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    });
    serde_json::json!({"protection": {
        "ExpirationDate": expiration,
        "ProtectionEnabled": until.is_some(),
        "TaskArn": TASK_ARN,
    }})
}

/// The API's answer to a request for the double's own container.
fn answer(state: &mut State, method: &str, body: &[u8]) -> (u16, serde_json::Value) {
    match method {
        "GET" => (200, protection(state.protected_until())),
        "PUT" => {
            // The agent decodes strictly: unknown fields and wrong types are refused.
            #[derive(serde::Deserialize)]
            #[serde(deny_unknown_fields)]
            #[allow(non_snake_case)]
            struct Put {
                ProtectionEnabled: Option<bool>,
                ExpiresInMinutes: Option<i64>,
            }
            let Ok(put) = serde_json::from_slice::<Put>(body) else {
                return error(
                    400,
                    "",
                    "InvalidParameterException",
                    "UpdateTaskProtection: failed to decode request",
                );
            };
            let Some(enabled) = put.ProtectionEnabled else {
                return error(
                    400,
                    TASK_ARN,
                    "InvalidParameterException",
                    "Invalid request: does not contain 'ProtectionEnabled' field",
                );
            };
            let minutes = put.ExpiresInMinutes.unwrap_or(120);
            if enabled && !(1..=2880).contains(&minutes) {
                let (status, mut body) = error(
                    400,
                    TASK_ARN,
                    "InvalidParameterException",
                    "expiresInMinutes must be between 1 and 2880",
                );
                body["requestID"] = "00000000-0000-0000-0000-000000000000".into();
                return (status, body);
            }
            state.protected_until = enabled.then(|| {
                SystemTime::now() + Duration::from_secs(u64::try_from(minutes).unwrap_or(0) * 60)
            });
            (200, protection(state.protected_until))
        }
        _ => error(405, "", "InvalidParameterException", "method not allowed"),
    }
}

/// One keep-alive connection.
async fn serve(
    stream: TcpStream,
    state: &Mutex<State>,
    bump: &watch::Sender<usize>,
) -> anyhow::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    loop {
        let Some(Request {
            method,
            path,
            body,
            close,
            ..
        }) = read_request(&mut reader).await?
        else {
            return Ok(());
        };
        let at = Instant::now();

        let lock = || state.lock().unwrap_or_else(|p| p.into_inner());
        let record = |status: u16, answer: serde_json::Value| {
            let mut state = lock();
            state.requests.push(Recorded {
                at,
                method: method.clone(),
                path: path.clone(),
                body: serde_json::from_slice(&body).ok(),
                status,
                answer,
            });
            bump.send_modify(|count| *count += 1);
        };
        let fault = lock().next_fault();
        let hung = if let Some(Fault::Hang(delay)) = fault {
            record(0, serde_json::json!({ "held for": delay.as_secs_f64() }));
            tokio::time::sleep(delay).await;
            true
        } else {
            false
        };
        let answered = match (&fault, path.strip_prefix("/api/")) {
            (Some(Fault::Disconnect), _) => None,
            (
                Some(Fault::Error {
                    status,
                    code,
                    message,
                }),
                _,
            ) => {
                let (status, mut body) = error(*status, TASK_ARN, code, message);
                body["requestID"] = "11111111-2222-3333-4444-555555555555".into();
                Some((status, body))
            }
            (Some(Fault::Failure { reason }), _) => Some((
                200,
                serde_json::json!({"failure": {"Arn": TASK_ARN, "Detail": null, "Reason": reason}}),
            )),
            (_, Some(rest)) if rest.split_once('/').is_some_and(|(_, p)| p == &STATE[1..]) => {
                let (container, _) = rest.split_once('/').unwrap_or_default();
                if container == CONTAINER_ID {
                    Some(answer(&mut lock(), &method, &body))
                } else {
                    Some(error(
                        404,
                        "",
                        "ResourceNotFoundException",
                        "Failed to find a task for the request",
                    ))
                }
            }
            _ => Some((404, serde_json::json!({"error": "no such path"}))),
        };
        let (status, answer) = answered.clone().unwrap_or((0, serde_json::Value::Null));
        if !hung {
            record(status, answer.clone());
        }
        if answered.is_none() {
            return Ok(());
        }
        let payload = answer.to_string();
        let reason = match status {
            200 => "OK",
            400 => "Bad Request",
            404 => "Not Found",
            _ => "Error",
        };
        let head = format!(
            "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{}\r\n",
            payload.len(),
            if close { "connection: close\r\n" } else { "" }
        );
        write.write_all(head.as_bytes()).await?;
        write.write_all(payload.as_bytes()).await?;
        if close {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    /// A request to the double over a plain socket, as curl would send it.
    async fn send(
        agent: &EcsAgent,
        method: &str,
        path: &str,
        body: &str,
    ) -> (u16, serde_json::Value) {
        let address = agent
            .uri()
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        let mut stream = TcpStream::connect(address).await.unwrap();
        let request = format!(
            "{method} {path} HTTP/1.1\r\nhost: agent\r\ncontent-type: application/json\r\n\
             content-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer).await;
        let status = answer
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
        (status, serde_json::from_str(body).unwrap_or_default())
    }

    #[tokio::test]
    async fn it_speaks_the_documented_api() {
        let agent = EcsAgent::start().await.unwrap();
        let state = format!("/api/{CONTAINER_ID}{STATE}");
        let (status, got) = send(&agent, "GET", &state, "").await;
        assert_eq!(status, 200);
        assert_eq!(got["protection"]["ProtectionEnabled"], false);
        assert_eq!(got["protection"]["ExpirationDate"], serde_json::Value::Null);

        let (status, put) = send(
            &agent,
            "PUT",
            &state,
            r#"{"ProtectionEnabled":true,"ExpiresInMinutes":60}"#,
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(put["protection"]["ProtectionEnabled"], true);
        assert_eq!(put["protection"]["TaskArn"], TASK_ARN);
        assert!(
            put["protection"]["ExpirationDate"]
                .as_str()
                .unwrap()
                .ends_with('Z')
        );
        assert!(agent.protected());

        for (body, code) in [
            (
                r#"{"ProtectionEnabled":true,"Extra":1}"#,
                "InvalidParameterException",
            ),
            (r#"{"ExpiresInMinutes":5}"#, "InvalidParameterException"),
            (
                r#"{"ProtectionEnabled":true,"ExpiresInMinutes":0}"#,
                "InvalidParameterException",
            ),
        ] {
            let (status, refused) = send(&agent, "PUT", &state, body).await;
            assert_eq!(
                (status, refused["error"]["Code"].as_str()),
                (400, Some(code)),
                "{body}"
            );
        }
        let (status, other) =
            send(&agent, "GET", &format!("/api/another-container{STATE}"), "").await;
        assert_eq!(status, 404);
        assert_eq!(other["error"]["Code"], "ResourceNotFoundException");

        let (_, off) = send(&agent, "PUT", &state, r#"{"ProtectionEnabled":false}"#).await;
        assert_eq!(off["protection"]["ProtectionEnabled"], false);
        assert!(!agent.protected());
        assert_eq!(agent.requests().len(), 7);
    }

    #[tokio::test]
    async fn faults_replace_answers_and_are_recorded() {
        let agent = EcsAgent::start().await.unwrap();
        let state = format!("/api/{CONTAINER_ID}{STATE}");
        agent.fail(
            Fault::Error {
                status: 400,
                code: "ThrottlingException",
                message: "Rate exceeded",
            },
            1,
        );
        agent.fail(
            Fault::Failure {
                reason: "TASK_NOT_VALID",
            },
            1,
        );
        let on = r#"{"ProtectionEnabled":true,"ExpiresInMinutes":1}"#;
        let (status, throttled) = send(&agent, "PUT", &state, on).await;
        assert_eq!(
            (status, &throttled["error"]["Code"]),
            (400, &"ThrottlingException".into())
        );
        assert!(throttled["requestID"].is_string());
        let (status, failed) = send(&agent, "PUT", &state, on).await;
        assert_eq!(
            (status, &failed["failure"]["Reason"]),
            (200, &"TASK_NOT_VALID".into())
        );
        assert!(!agent.protected(), "a fault changes nothing");
        agent.fail_until_healed(Fault::Disconnect);
        assert_eq!(send(&agent, "PUT", &state, on).await.0, 0);
        agent.heal();
        assert_eq!(send(&agent, "PUT", &state, on).await.0, 200);
        let requests = agent
            .wait_for("four requests", Duration::from_secs(5), |r| r.len() == 4)
            .await
            .unwrap();
        let statuses: Vec<u16> = requests.iter().map(|r| r.status).collect();
        assert_eq!(statuses, vec![400, 200, 0, 200]);
        assert!(!requests[1].succeeded() && requests[3].is_put(true));
        assert_eq!(requests[3].expires_in_minutes(), Some(1));
    }
}
