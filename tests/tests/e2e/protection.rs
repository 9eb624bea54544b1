//! ECS task scale-in protection, against a loopback ECS agent that speaks the documented
//! task-protection API (`yuba_e2e::ecs_agent`) and a real SQS (moto): the consumer takes
//! protection when a job starts, renews it while the job runs, drops it once idle; the agent
//! failing, refusing or hanging costs no job and no time at shutdown; and the worker binary
//! does it in its Fargate home.
//!
//! Protection lasts a minute (the least the API takes) and is renewed every second or two, so
//! that renewals show within a test; passes and failures hang on the order of events the agent
//! recorded, and time only in generous bounds.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use yuba_aws::permissions::Need;
use yuba_consumer::permissions as consumer_permissions;
use yuba_consumer::{
    Consumer, ConsumerSettings, ConsumerStats, Delivery, Handler, HandlerError,
    TaskProtectionSettings,
};
use yuba_e2e::ecs_agent::{EcsAgent, Fault, Recorded, describe};
use yuba_e2e::{Stack, dump_logs, eventually, queue_depth, replica_of};
use yuba_startup::Env;

const WAIT: Duration = Duration::from_secs(30);

/// Messages whose body is `slow` wait for the gate to open; others finish at once. Every start
/// is announced.
#[derive(Clone)]
struct GatedHandler {
    started: mpsc::UnboundedSender<(String, Instant)>,
    gate: watch::Receiver<bool>,
    finished: Arc<AtomicU32>,
}

impl Handler for GatedHandler {
    async fn handle(&self, delivery: &Delivery) -> Result<(), HandlerError> {
        let _ = self.started.send((delivery.body.clone(), Instant::now()));
        if delivery.body == "slow" {
            let mut gate = self.gate.clone();
            let _ = gate.wait_for(|open| *open).await;
        }
        self.finished.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// A consumer of the stack's Lambda work queue, protected through `agent`.
struct Running {
    started: mpsc::UnboundedReceiver<(String, Instant)>,
    gate: watch::Sender<bool>,
    finished: Arc<AtomicU32>,
    shutdown: CancellationToken,
    stats: tokio::task::JoinHandle<ConsumerStats>,
}

async fn consume(
    stack: &Stack,
    agent: &EcsAgent,
    protection: &[(&str, &str)],
) -> anyhow::Result<Running> {
    let queue = stack.var("YUBA_LAMBDA_QUEUE_URL");
    let mut pairs = vec![
        ("YUBA_QUEUE_URL", queue),
        ("YUBA_RECEIVE_WAIT_SECONDS", "1"),
        ("YUBA_CONCURRENCY", "4"),
        ("YUBA_SHUTDOWN_GRACE_SECONDS", "5"),
        ("ECS_AGENT_URI", agent.uri()),
        ("YUBA_TASK_PROTECTION_MINUTES", "1"),
        ("YUBA_TASK_PROTECTION_RENEW_SECONDS", "1"),
        ("YUBA_TASK_PROTECTION_IDLE_SECONDS", "0"),
    ];
    pairs.extend_from_slice(protection);
    let env = Env::from_pairs(pairs);
    let settings = ConsumerSettings::from_env(&env, "YUBA_QUEUE_URL", 4)?;
    let protection = TaskProtectionSettings::from_env(&env)?;
    anyhow::ensure!(
        protection.is_some(),
        "protection should be on with ECS_AGENT_URI"
    );
    let (started_tx, started) = mpsc::unbounded_channel();
    let (gate, gate_rx) = watch::channel(false);
    let handler = GatedHandler {
        started: started_tx,
        gate: gate_rx,
        finished: Arc::default(),
    };
    let finished = Arc::clone(&handler.finished);
    let shutdown = CancellationToken::new();
    let consumer =
        Consumer::new(stack.sqs().await, settings, handler).with_task_protection(protection);
    let stats = tokio::spawn(consumer.run(shutdown.clone()));
    Ok(Running {
        started,
        gate,
        finished,
        shutdown,
        stats,
    })
}

impl Running {
    async fn next_start(&mut self) -> anyhow::Result<(String, Instant)> {
        tokio::time::timeout(WAIT, self.started.recv())
            .await?
            .ok_or_else(|| anyhow::anyhow!("the consumer stopped"))
    }

    async fn stop(self, within: Duration) -> anyhow::Result<ConsumerStats> {
        self.shutdown.cancel();
        Ok(tokio::time::timeout(within, self.stats).await??)
    }
}

async fn send(stack: &Stack, body: &str) -> anyhow::Result<()> {
    stack
        .sqs()
        .await
        .send_message()
        .queue_url(stack.var("YUBA_LAMBDA_QUEUE_URL"))
        .message_body(body)
        .send()
        .await?;
    Ok(())
}

fn puts(requests: &[Recorded], enabled: bool) -> Vec<&Recorded> {
    requests.iter().filter(|r| r.is_put(enabled)).collect()
}

/// Every request to the agent is one the consumer declares (and so one the task role is granted
/// for): the same method and path.
fn assert_declared(requests: &[Recorded]) {
    let declared: BTreeSet<(&str, &str)> = consumer_permissions::DECLARED
        .iter()
        .filter_map(|permission| match permission.need {
            Need::EcsAgent { method, path } => Some((method, path)),
            _ => None,
        })
        .collect();
    for request in requests {
        let path = request
            .path
            .strip_prefix(&format!("/api/{}", yuba_e2e::ecs_agent::CONTAINER_ID))
            .unwrap_or(&request.path);
        assert!(
            declared.contains(&(request.method.as_str(), path)),
            "{} {} is not declared in yuba-consumer's permissions ({declared:?})",
            request.method,
            request.path
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protection_is_taken_when_a_job_starts_renewed_while_it_runs_and_dropped_when_idle()
-> anyhow::Result<()> {
    let agent = EcsAgent::start().await?;
    let stack = Stack::start("protection", 5)?;
    let mut running = consume(&stack, &agent, &[]).await?;
    // Idle: nothing is asked.
    assert!(agent.requests().is_empty());

    send(&stack, "slow").await?;
    let (_, started_at) = running.next_start().await?;
    // Taken, then renewed twice while the job runs.
    let requests = agent
        .wait_for("protection taken and renewed twice", WAIT, |r| {
            puts(r, true).len() >= 3
        })
        .await?;
    assert!(agent.protected(), "{}", describe(&requests));
    assert!(puts(&requests, false).is_empty(), "{}", describe(&requests));
    let taken = puts(&requests, true);
    assert!(
        taken[0].at >= started_at && taken[0].at - started_at < Duration::from_secs(5),
        "protection should be asked for as the job starts:\n{}",
        describe(&requests)
    );
    for request in &taken {
        assert_eq!(
            request.expires_in_minutes(),
            Some(1),
            "the configured expiry"
        );
    }
    for pair in taken.windows(2) {
        // Renewed on a period, not in a loop.
        assert!(
            pair[1].at - pair[0].at >= Duration::from_millis(500),
            "{}",
            describe(&requests)
        );
    }

    let finishing = Instant::now();
    running.gate.send_replace(true);
    let requests = agent
        .wait_for("protection dropped once idle", WAIT, |r| {
            !puts(r, false).is_empty()
        })
        .await?;
    let dropped = puts(&requests, false)[0];
    assert!(dropped.at >= finishing, "{}", describe(&requests));
    assert!(!agent.protected());
    assert_eq!(running.finished.load(Ordering::SeqCst), 1);

    eventually(WAIT, "the message deleted", || async {
        let depth = queue_depth(&stack.sqs().await, stack.var("YUBA_LAMBDA_QUEUE_URL")).await?;
        Ok((depth == 0).then_some(()))
    })
    .await?;
    let stats = running.stop(Duration::from_secs(15)).await?;
    assert_eq!((stats.succeeded, stats.released), (1, 0));
    let requests = agent.requests();
    let last = requests.last().map(|r| r.protection_enabled());
    assert_eq!(last, Some(Some(false)), "{}", describe(&requests));
    assert_declared(&requests);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_agent_costs_no_job_and_protection_comes_back_when_it_heals() -> anyhow::Result<()>
{
    let agent = EcsAgent::start().await?;
    agent.fail_until_healed(Fault::Error {
        status: 500,
        code: "ServerException",
        message: "Unexpected error occurred",
    });
    let stack = Stack::start("protection-failing", 5)?;
    let mut running = consume(&stack, &agent, &[]).await?;

    // Quick jobs go through while every protection call fails.
    for n in 0..3 {
        send(&stack, &format!("quick {n}")).await?;
    }
    eventually(WAIT, "three quick jobs done", || async {
        Ok((running.finished.load(Ordering::SeqCst) >= 3).then_some(()))
    })
    .await?;

    // A slow one: the failures are retried while it runs...
    send(&stack, "slow").await?;
    loop {
        if running.next_start().await?.0 == "slow" {
            break;
        }
    }
    let seen = agent.requests().len();
    agent
        .wait_for("two more failed attempts", WAIT, |r| {
            r[seen.min(r.len())..]
                .iter()
                .filter(|r| r.status == 500)
                .count()
                >= 2
        })
        .await?;
    // ...and once the agent heals, protection is taken while the job still runs.
    agent.heal();
    agent
        .wait_for("protection taken after the agent healed", WAIT, |r| {
            !puts(r, true).is_empty()
        })
        .await?;
    assert!(agent.protected());
    assert_eq!(
        running.finished.load(Ordering::SeqCst),
        3,
        "the slow job still runs"
    );
    running.gate.send_replace(true);
    agent
        .wait_for("protection dropped", WAIT, |r| !puts(r, false).is_empty())
        .await?;
    let stats = running.stop(Duration::from_secs(15)).await?;
    assert_eq!((stats.succeeded, stats.failed), (4, 0));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_is_tried_again_at_the_next_renewal_and_a_throttle_sooner() -> anyhow::Result<()>
{
    let agent = EcsAgent::start().await?;
    // A missing grant (permanent: 400 AccessDeniedException), then ECS throttling (transient,
    // although also a 400), then the API answers.
    agent.fail(
        Fault::Error {
            status: 400,
            code: "AccessDeniedException",
            message: "User: arn:aws:sts::123456789012:assumed-role/yuba-dev-worker-task/x is not \
                      authorized to perform: ecs:UpdateTaskProtection",
        },
        1,
    );
    agent.fail(
        Fault::Error {
            status: 400,
            code: "ThrottlingException",
            message: "Rate exceeded",
        },
        1,
    );
    let stack = Stack::start("protection-refused", 5)?;
    // Renewals every 4 s: a permanent failure waits that long, a transient one 1 s.
    let mut running = consume(
        &stack,
        &agent,
        &[("YUBA_TASK_PROTECTION_RENEW_SECONDS", "4")],
    )
    .await?;
    send(&stack, "slow").await?;
    running.next_start().await?;
    let requests = agent
        .wait_for("protection taken at the third attempt", WAIT, |r| {
            !puts(r, true).is_empty()
        })
        .await?;
    let codes: Vec<&str> = requests
        .iter()
        .map(|r| r.answer["error"]["Code"].as_str().unwrap_or("ok"))
        .collect();
    assert_eq!(
        codes,
        ["AccessDeniedException", "ThrottlingException", "ok"],
        "{}",
        describe(&requests)
    );
    let after_denial = requests[1].at - requests[0].at;
    let after_throttle = requests[2].at - requests[1].at;
    // Lower bounds only: a loaded machine can make a pause longer, never shorter.
    assert!(
        after_denial >= Duration::from_millis(3500),
        "a permanent refusal waits for the next renewal:\n{}",
        describe(&requests)
    );
    assert!(
        after_throttle >= Duration::from_millis(900) && after_throttle < after_denial,
        "a throttle is retried sooner:\n{}",
        describe(&requests)
    );
    running.gate.send_replace(true);
    let stats = running.stop(Duration::from_secs(15)).await?;
    assert_eq!(stats.succeeded, 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_agent_delays_neither_jobs_nor_the_stop() -> anyhow::Result<()> {
    let agent = EcsAgent::start().await?;
    agent.fail_until_healed(Fault::Hang(Duration::from_secs(120)));
    let stack = Stack::start("protection-hung", 5)?;
    let mut running = consume(&stack, &agent, &[]).await?;
    send(&stack, "slow").await?;
    running.next_start().await?;
    agent
        .wait_for("a protection request held by the agent", WAIT, |r| {
            r.iter().any(|r| r.status == 0)
        })
        .await?;
    running.gate.send_replace(true);
    eventually(WAIT, "the job done while the agent hangs", || async {
        Ok((running.finished.load(Ordering::SeqCst) == 1).then_some(()))
    })
    .await?;
    let stopping = Instant::now();
    let stats = running.stop(Duration::from_secs(15)).await?;
    assert!(
        stopping.elapsed() < Duration::from_secs(10),
        "the stop waited for the agent: {:?}",
        stopping.elapsed()
    );
    assert_eq!(stats.succeeded, 1);
    Ok(())
}

/// The worker binary in its Fargate home: with `ECS_AGENT_URI` set, a replication runs under
/// protection, which is dropped once it is done; SIGTERM with the agent hanging still exits
/// within the grace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_protects_its_task_while_it_replicates() -> anyhow::Result<()> {
    let agent = EcsAgent::start().await?;
    let stack = Stack::start("protection-worker", 5)?;
    let key = "protected/photo.bin";
    stack
        .put(key, &yuba_e2e::pseudo_random_bytes(300_000, 3))
        .await?;
    let queue = stack.var("YUBA_FARGATE_QUEUE_URL").to_owned();
    let mut worker = stack.spawn(
        "yuba-worker",
        "worker-fargate",
        &[
            ("YUBA_QUEUE_URL", queue.as_str()),
            ("ECS_AGENT_URI", agent.uri()),
            ("YUBA_TASK_PROTECTION_MINUTES", "1"),
            ("YUBA_TASK_PROTECTION_RENEW_SECONDS", "1"),
            ("YUBA_TASK_PROTECTION_IDLE_SECONDS", "0"),
        ],
    )?;
    stack.enqueue_replicate(&queue, key).await?;
    let gcs = stack.gcs().await?;
    replica_of(
        std::slice::from_ref(&worker),
        &gcs,
        stack.replica_bucket(),
        key,
        WAIT,
    )
    .await?;
    let requests = agent
        .wait_for("protection taken, then dropped", WAIT, |r| {
            !puts(r, true).is_empty() && !puts(r, false).is_empty()
        })
        .await
        .map_err(|e| anyhow::anyhow!("{e}\n{}", dump_logs(std::slice::from_ref(&worker))))?;
    assert!(puts(&requests, true)[0].at < puts(&requests, false)[0].at);
    assert_declared(&requests);
    let logged = worker.log_lines();
    assert!(
        logged.iter().any(|line| line["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("task scale-in protection on"))),
        "{}",
        worker.raw_log()
    );

    // A stop with the agent hanging: the process exits within its grace (5 s in tests), no
    // protection call holds it.
    agent.fail_until_healed(Fault::Hang(Duration::from_secs(120)));
    let status = tokio::task::spawn_blocking(move || {
        let status = worker.terminate(Duration::from_secs(15));
        (worker, status)
    })
    .await?;
    let (worker, status) = status;
    assert!(status?.success(), "{}", worker.raw_log());
    Ok(())
}
