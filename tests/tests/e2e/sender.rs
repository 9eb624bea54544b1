//! `JobSender` against a real SQS: batches of at most ten, every body delivered once, and a
//! message SQS cannot take refused on its own, without failing its neighbours.

use std::collections::HashSet;
use std::time::Duration;

use yuba_aws::{JobSender, MAX_BATCH_BYTES};
use yuba_e2e::{Stack, eventually, queue_depth};
use yuba_model::FailureKind;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_job_arrives_and_an_oversized_one_fails_alone() -> anyhow::Result<()> {
    let stack = Stack::start("sender", 3)?;
    let sqs = stack.sqs().await;
    let queue = stack.var("YUBA_FARGATE_QUEUE_URL");
    let mut bodies: Vec<String> = (0..25).map(|n| format!("job {n}")).collect();
    bodies.insert(12, "x".repeat(MAX_BATCH_BYTES + 1));

    let results = JobSender::new(sqs.clone()).send(queue, &bodies).await;
    assert_eq!(results.len(), bodies.len());
    for (index, result) in results.iter().enumerate() {
        if index == 12 {
            let error = result.as_ref().expect_err("too large for SQS");
            assert_eq!(error.kind, FailureKind::Permanent);
            assert!(error.message.contains("262144"), "{}", error.message);
        } else {
            assert!(result.is_ok(), "body {index}: {result:?}");
        }
    }

    eventually(
        Duration::from_secs(10),
        "25 messages on the queue",
        || async { Ok((queue_depth(&sqs, queue).await? == 25).then_some(())) },
    )
    .await?;
    let mut received = HashSet::new();
    while received.len() < 25 {
        let batch = sqs
            .receive_message()
            .queue_url(queue)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await?;
        anyhow::ensure!(
            !batch.messages().is_empty(),
            "only {} of 25 arrived",
            received.len()
        );
        for message in batch.messages() {
            received.insert(message.body().unwrap_or_default().to_owned());
        }
    }
    let expected: HashSet<String> = (0..25).map(|n| format!("job {n}")).collect();
    assert_eq!(received, expected);
    Ok(())
}
