//! The SQS consumer's promises, against a real SQS (moto): a message worked on for longer than
//! its visibility timeout is not handed out twice; a stop drains in-flight work, and what cannot
//! finish within the grace period is released at once rather than stranded.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use aws_sdk_sqs::config::interceptors::FinalizerInterceptorContextRef;
use aws_sdk_sqs::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_sqs::operation::change_message_visibility::ChangeMessageVisibilityOutput;
use tokio_util::sync::CancellationToken;
use yuba_consumer::{Consumer, ConsumerSettings, ConsumerStats, Delivery, Handler, HandlerError};
use yuba_e2e::{Stack, eventually};
use yuba_startup::Env;

/// Takes `work` per message, or until `done` is cancelled, and counts how often each was
/// handled.
#[derive(Clone)]
struct SlowHandler {
    work: Duration,
    done: CancellationToken,
    calls: Arc<AtomicU32>,
}

impl Handler for SlowHandler {
    async fn handle(&self, _delivery: &Delivery) -> Result<(), HandlerError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        tokio::select! {
            () = tokio::time::sleep(self.work) => {}
            () = self.done.cancelled() => {}
        }
        Ok(())
    }
}

/// Counts the ChangeMessageVisibility calls that succeeded, as a client's
/// interceptor: the renewals of a message being worked on, seen as they happen.
#[derive(Debug, Default, Clone)]
struct Renewals(Arc<AtomicU32>);

impl Intercept for Renewals {
    fn name(&self) -> &'static str {
        "Renewals"
    }

    fn read_after_execution(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let renewed = context.output_or_error().is_some_and(|outcome| {
            outcome.is_ok_and(|output| {
                output
                    .downcast_ref::<ChangeMessageVisibilityOutput>()
                    .is_some()
            })
        });
        if renewed {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    }
}

/// A consumer of the stack's Lambda work queue with one message on it, whose handler takes
/// `work` per message; running until the returned token is cancelled.
struct Running {
    calls: Arc<AtomicU32>,
    /// Ends the handler's work early.
    done: CancellationToken,
    renewals: Renewals,
    shutdown: CancellationToken,
    stats: tokio::task::JoinHandle<ConsumerStats>,
}

async fn consume_one(
    stack: &Stack,
    body: &str,
    work: Duration,
    pairs: &[(&str, &str)],
) -> anyhow::Result<Running> {
    let queue = stack.var("YUBA_LAMBDA_QUEUE_URL");
    let sqs = stack.sqs().await;
    sqs.send_message()
        .queue_url(queue)
        .message_body(body)
        .send()
        .await?;
    let mut all = vec![
        ("YUBA_QUEUE_URL", queue),
        ("YUBA_RECEIVE_WAIT_SECONDS", "1"),
    ];
    all.extend_from_slice(pairs);
    let settings = ConsumerSettings::from_env(&Env::from_pairs(all), "YUBA_QUEUE_URL", 2)?;
    let handler = SlowHandler {
        work,
        done: CancellationToken::new(),
        calls: Arc::default(),
    };
    let (calls, done) = (Arc::clone(&handler.calls), handler.done.clone());
    let renewals = Renewals::default();
    let config = sqs
        .config()
        .to_builder()
        .interceptor(renewals.clone())
        .build();
    let sqs = aws_sdk_sqs::Client::from_conf(config);
    let shutdown = CancellationToken::new();
    let stats = tokio::spawn(Consumer::new(sqs, settings, handler).run(shutdown.clone()));
    Ok(Running {
        calls,
        done,
        renewals,
        shutdown,
        stats,
    })
}

impl Running {
    async fn started(&self) -> anyhow::Result<()> {
        eventually(Duration::from_secs(30), "the work to start", || async {
            Ok((self.calls.load(Ordering::SeqCst) >= 1).then_some(()))
        })
        .await
    }

    async fn stop(self, within: Duration) -> anyhow::Result<ConsumerStats> {
        self.shutdown.cancel();
        Ok(tokio::time::timeout(within, self.stats).await??)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_worked_on_past_its_visibility_timeout_is_not_redelivered() -> anyhow::Result<()>
{
    let stack = Stack::start("visibility", 5)?;
    // Two slots, so a redelivered message would be picked up while the first run goes on. The
    // work lasts until the message has been renewed three times, each renewal for another
    // timeout: past its first timeout (4 s) and past the end the first renewal gave it.
    let running = consume_one(
        &stack,
        "slow",
        Duration::from_secs(120),
        &[
            ("YUBA_VISIBILITY_TIMEOUT_SECONDS", "4"),
            ("YUBA_CONCURRENCY", "2"),
        ],
    )
    .await?;
    running.started().await?;
    eventually(
        Duration::from_secs(60),
        "three renewals of the message's visibility",
        || async { Ok((running.renewals.0.load(Ordering::SeqCst) >= 3).then_some(())) },
    )
    .await?;
    assert_eq!(
        running.calls.load(Ordering::SeqCst),
        1,
        "not handed out again while it was worked on"
    );
    running.done.cancel();
    eventually(
        Duration::from_secs(30),
        "the finished message to be deleted",
        || async { Ok((queue_depth(&stack).await? == 0).then_some(())) },
    )
    .await?;
    let calls = Arc::clone(&running.calls);
    let stats = running.stop(Duration::from_secs(15)).await?;
    assert_eq!(calls.load(Ordering::SeqCst), 1, "handled once, not twice");
    assert_eq!((stats.received, stats.succeeded), (1, 1));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_lets_in_flight_work_finish_within_the_grace_period() -> anyhow::Result<()> {
    let stack = Stack::start("drain", 5)?;
    let running = consume_one(
        &stack,
        "one second of work",
        Duration::from_secs(1),
        &[("YUBA_SHUTDOWN_GRACE_SECONDS", "20")],
    )
    .await?;
    running.started().await?;
    let stats = running.stop(Duration::from_secs(25)).await?;
    assert_eq!((stats.succeeded, stats.released), (1, 0));
    assert_eq!(
        queue_depth(&stack).await?,
        0,
        "finished work was deleted before exit"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_that_outlasts_the_grace_period_is_released_at_once() -> anyhow::Result<()> {
    let stack = Stack::start("release", 5)?;
    let running = consume_one(
        &stack,
        "a minute of work",
        Duration::from_secs(60),
        &[
            ("YUBA_SHUTDOWN_GRACE_SECONDS", "1"),
            ("YUBA_VISIBILITY_TIMEOUT_SECONDS", "600"),
        ],
    )
    .await?;
    running.started().await?;
    let stats = running.stop(Duration::from_secs(15)).await?;
    assert_eq!((stats.succeeded, stats.released), (0, 1));
    // Released, not left invisible for its 600 s timeout: another consumer gets it now.
    let received = stack
        .sqs()
        .await
        .receive_message()
        .queue_url(stack.var("YUBA_LAMBDA_QUEUE_URL"))
        .wait_time_seconds(5)
        .send()
        .await?;
    assert_eq!(received.messages().len(), 1);
    assert_eq!(received.messages()[0].body(), Some("a minute of work"));
    Ok(())
}

async fn queue_depth(stack: &Stack) -> anyhow::Result<u64> {
    yuba_e2e::queue_depth(&stack.sqs().await, stack.var("YUBA_LAMBDA_QUEUE_URL")).await
}
