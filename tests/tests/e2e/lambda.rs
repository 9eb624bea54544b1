//! The binaries under Lambda: a Lambda Runtime API on loopback invokes the real `yuba-worker`
//! and `yuba-ingest` with the payloads AWS sends, and the answers are what Lambda needs
//! (partial batch failures for SQS triggers; success or an error for direct invocations).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use serde_json::{Value, json};
use yuba_e2e::lambda_api::{InvocationResult, RuntimeApi, s3_notification, sqs_record};
use yuba_e2e::{Stack, dump_logs, eventually, queue_depth, replica_of, replicate};

const TIMEOUT: Duration = Duration::from_secs(60);

fn failed_ids(answer: &InvocationResult) -> Vec<String> {
    let InvocationResult::Response(response) = answer else {
        panic!("expected a response, got {answer:?}");
    };
    let mut ids: Vec<String> = response["batchItemFailures"]
        .as_array()
        .map(|failures| {
            failures
                .iter()
                .filter_map(|f| f["itemIdentifier"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids
}

async fn put(stack: &Stack, key: &str, body: &'static [u8]) -> anyhow::Result<String> {
    let output = stack
        .s3()
        .await
        .put_object()
        .bucket(stack.source_bucket())
        .key(key)
        .body(ByteStream::from_static(body))
        .send()
        .await?;
    Ok(output
        .e_tag()
        .unwrap_or_default()
        .trim_matches('"')
        .to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_on_lambda_reports_only_the_failed_messages() -> anyhow::Result<()> {
    let stack = Stack::start("lambda-worker", 3)?;
    let api = RuntimeApi::start().await?;
    let env = api.env();
    let overrides: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let worker = [stack.spawn("yuba-worker", "worker", &overrides)?];

    // a.jpg's job names the object S3 holds; b.jpg's names an older version (its event was
    // overtaken by an overwrite), so the current object is copied without the stale sequencer.
    let mut records = Vec::new();
    for (key, current) in [("lambda/a.jpg", true), ("lambda/b.jpg", false)] {
        let etag = put(&stack, key, b"image bytes").await?;
        let job = yuba_model::Job::Replicate(yuba_model::ReplicateJob {
            bucket: stack.source_bucket().to_owned(),
            key: key.to_owned(),
            version_id: None,
            etag: Some(if current {
                etag
            } else {
                "0123456789abcdef0123456789abcdef".to_owned()
            }),
            size: Some(11),
            sequencer: Some("0055AED6DCD90281E5".to_owned()),
            event_time: None,
            force: false,
        });
        records.push(sqs_record(key, &job.to_message()));
    }
    records.push(sqs_record("garbage", "{\"v\":1,\"op\":\"teleport\"}"));
    let answer = api
        .invoke(&json!({"Records": records}), TIMEOUT)
        .await
        .map_err(|e| e.context(dump_logs(&worker)))?;
    assert_eq!(
        failed_ids(&answer),
        vec!["garbage"],
        "{}",
        dump_logs(&worker)
    );
    let gcs = stack.gcs().await?;
    let mut sequencers = Vec::new();
    for key in ["lambda/a.jpg", "lambda/b.jpg"] {
        let replica = replica_of(
            &worker,
            &gcs,
            stack.replica_bucket(),
            key,
            Duration::from_secs(5),
        )
        .await?;
        sequencers.push(replica.metadata.get("yuba-source-sequencer").cloned());
    }
    assert_eq!(
        sequencers,
        vec![Some("0055AED6DCD90281E5".to_owned()), None]
    );
    Ok(())
}

/// Failed messages come back when their backoff says, not after the visibility timeout the
/// trigger received them with (six times the function's on AWS): a poison job at once, so that
/// it reaches the DLQ after maxReceiveCount, and a transient failure after its retry delay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_messages_on_lambda_come_back_after_their_backoff() -> anyhow::Result<()> {
    use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
    let stack = Stack::start("lambda-backoff", 5)?;
    let api = RuntimeApi::start().await?;
    let env = api.env();
    let mut overrides: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    // GCS refuses connections, which is transient; a retry comes 4 to 8 s later (whole
    // seconds of 8 s jittered down to no less than half).
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let unreachable_gcs = format!("http://{closed}");
    overrides.extend([
        ("YUBA_GCS_ENDPOINT", unreachable_gcs.as_str()),
        ("YUBA_GCS_RETRY_SECONDS", "1"),
        ("YUBA_RETRY_BASE_SECONDS", "8"),
        ("YUBA_RETRY_MAX_SECONDS", "8"),
    ]);
    let worker = [stack.spawn("yuba-worker", "worker", &overrides)?];

    // The trigger's part: messages received from the real queue, for long, then invoked.
    let sqs = stack.sqs().await;
    let queue = stack.var("YUBA_LAMBDA_QUEUE_URL").to_owned();
    let queue_arn = sqs
        .get_queue_attributes()
        .queue_url(&queue)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await?
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
        .expect("the queue's ARN");
    stack.put("backoff/a.bin", b"bytes").await?;
    for body in [
        replicate(stack.source_bucket(), "backoff/a.bin").to_message(),
        "not a job".to_owned(),
    ] {
        sqs.send_message()
            .queue_url(&queue)
            .message_body(body)
            .send()
            .await?;
    }
    let receive = |wait: i32| {
        sqs.receive_message()
            .queue_url(&queue)
            .max_number_of_messages(10)
            .visibility_timeout(120)
            .wait_time_seconds(wait)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
    };
    let mut received = Vec::new();
    while received.len() < 2 {
        received.extend(receive(1).await?.messages.unwrap_or_default());
    }
    let records: Vec<Value> = received
        .iter()
        .map(|m| {
            json!({
                "messageId": m.message_id(), "receiptHandle": m.receipt_handle(), "body": m.body(),
                "attributes": {"ApproximateReceiveCount": "1"}, "messageAttributes": {},
                "md5OfBody": m.md5_of_body(), "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn, "awsRegion": "us-east-1"
            })
        })
        .collect();
    let invoked = Instant::now();
    let answer = api
        .invoke(&json!({"Records": records}), TIMEOUT)
        .await
        .map_err(|e| e.context(dump_logs(&worker)))?;
    assert_eq!(failed_ids(&answer).len(), 2, "{}", dump_logs(&worker));

    // When each is seen again, from the invocation: the bounds below hold however slowly this
    // machine looks, since a message is only ever seen after it is back.
    let back = Mutex::new(HashMap::new());
    eventually(
        Duration::from_secs(30),
        "both failed messages back, long before the 120 s they were received for",
        || async {
            let messages = receive(1).await?.messages.unwrap_or_default();
            let mut back = back.lock().unwrap();
            for message in messages {
                let body = message.body().unwrap_or_default();
                let which = if body.contains("backoff/a.bin") {
                    "transient"
                } else {
                    "poison"
                };
                back.entry(which).or_insert_with(|| invoked.elapsed());
            }
            Ok((back.len() == 2).then_some(()))
        },
    )
    .await
    .map_err(|e| e.context(dump_logs(&worker)))?;
    let back = back.into_inner().unwrap();
    // The poison at once, no later than the transient failure; the transient failure after
    // its retry delay, which began after the invocation.
    assert!(back["poison"] <= back["transient"], "{back:?}");
    assert!(back["transient"] >= Duration::from_secs(4), "{back:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_on_lambda_accepts_every_shape_s3_delivers_in() -> anyhow::Result<()> {
    let stack = Stack::start("lambda-ingest", 3)?;
    let api = RuntimeApi::start().await?;
    let env = api.env();
    let mut overrides: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    overrides.push(("YUBA_FILTER_PREFIXES", "photos/"));
    let ingest = [stack.spawn("yuba-ingest", "ingest", &overrides)?];
    let bucket = stack.source_bucket().to_owned();
    let work_queue = stack.var("YUBA_LAMBDA_QUEUE_URL").to_owned();
    let sqs = stack.sqs().await;

    // An SQS trigger: a plain S3 notification, an SNS-wrapped one, one filtered out, garbage.
    let plain = s3_notification(&bucket, "photos/a+b%2Bc.jpg", 3, "etag-1");
    let wrapped = json!({
        "Type": "Notification", "MessageId": "sns-1", "TopicArn": "arn:aws:sns:us-east-1:123456789012:uploads",
        "Subject": "Amazon S3 Notification", "Timestamp": "2026-11-22T12:00:00.000Z",
        "Message": s3_notification(&bucket, "photos/%E6%97%A5.jpg", 3, "etag-2").to_string()
    });
    let filtered = s3_notification(&bucket, "logs/x.txt", 3, "etag-3");
    let answer = api
        .invoke(
            &json!({"Records": [
                sqs_record("plain", &plain.to_string()),
                sqs_record("wrapped", &wrapped.to_string()),
                sqs_record("filtered", &filtered.to_string()),
                sqs_record("garbage", "<xml/>"),
            ]}),
            TIMEOUT,
        )
        .await
        .map_err(|e| e.context(dump_logs(&ingest)))?;
    assert_eq!(
        failed_ids(&answer),
        vec!["garbage"],
        "{}",
        dump_logs(&ingest)
    );
    assert_eq!(
        queue_depth(&sqs, &work_queue).await?,
        2,
        "two jobs, the filtered key none"
    );

    // A direct S3 invocation and an EventBridge event succeed as a whole.
    let direct = s3_notification(&bucket, "photos/direct.jpg", 3, "etag-4");
    assert_eq!(
        api.invoke(&direct, TIMEOUT).await?,
        InvocationResult::Response(Value::Null)
    );
    let eventbridge = json!({
        "version": "0", "id": "17793124-05d4-b198-2fde-7ededc63b103", "detail-type": "Object Created",
        "source": "aws.s3", "account": "123456789012", "time": "2026-11-22T12:00:00Z", "region": "us-east-1",
        "resources": [format!("arn:aws:s3:::{bucket}")],
        "detail": {"version": "0", "bucket": {"name": bucket},
                   "object": {"key": "photos/from eventbridge.jpg", "size": 5, "etag": "etag-5", "sequencer": "00617F08299329D189"},
                   "request-id": "N4N7GDK58NMKJ12R", "requester": "123456789012", "reason": "PutObject"}
    });
    assert_eq!(
        api.invoke(&eventbridge, TIMEOUT).await?,
        InvocationResult::Response(Value::Null)
    );
    assert_eq!(queue_depth(&sqs, &work_queue).await?, 4);

    let received = sqs
        .receive_message()
        .queue_url(&work_queue)
        .max_number_of_messages(10)
        .send()
        .await?;
    let mut keys: Vec<String> = received
        .messages()
        .iter()
        .filter_map(|m| yuba_model::Job::from_message(m.body().unwrap_or_default()).ok())
        .map(|job| job.key().to_owned())
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        vec![
            "photos/a b+c.jpg",
            "photos/direct.jpg",
            "photos/from eventbridge.jpg",
            "photos/日.jpg"
        ]
    );

    // A direct invocation that is not a notification fails, so Lambda retries it and then
    // hands it to the function's failure destination.
    let InvocationResult::Error(error) = api.invoke(&json!({"hello": "world"}), TIMEOUT).await?
    else {
        panic!("garbage must fail the invocation");
    };
    assert!(
        error.to_string().contains("unusable notification"),
        "{error}"
    );
    Ok(())
}

/// The pre-traffic probe's inputs (cdk/hooks/pre-traffic; cdk/test/pre-traffic.test.ts writes
/// them to its testdata/ from the probe's own builders) pass the real programs: the worker
/// replicates the probe's PNG from its own bucket, under the canary prefix, variants and all, and
/// ingest turns the probe's S3 notification into one job, whatever its key filter. If either refused them, every deploy
/// would be rolled back by its own probe.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pre_traffic_probes_inputs_pass_the_real_programs() -> anyhow::Result<()> {
    let testdata = yuba_e2e::repo_root().join("cdk/hooks/pre-traffic/testdata");
    let read_json = |name: &str| -> anyhow::Result<Value> {
        Ok(serde_json::from_slice(&std::fs::read(
            testdata.join(name),
        )?)?)
    };
    let worker_event = read_json("worker-event.json")?;
    let ingest_event = read_json("ingest-event.json")?;
    let png = std::fs::read(testdata.join("canary.png"))?;
    let job = yuba_model::Job::from_message(
        worker_event["Records"][0]["body"]
            .as_str()
            .expect("the probe's SQS record has a body"),
    )?;
    let (bucket, worker_key) = (job.bucket().to_owned(), job.key().to_owned());
    let ingest_key = ingest_event["Records"][0]["s3"]["object"]["key"]
        .as_str()
        .expect("the probe's notification names a key")
        .to_owned();

    let stack = Stack::start("lambda-probe", 3)?;
    let s3 = stack.s3().await;
    s3.create_bucket().bucket(&bucket).send().await?;
    for key in [&worker_key, &ingest_key] {
        s3.put_object()
            .bucket(&bucket)
            .key(key.as_str())
            .body(ByteStream::from(png.clone()))
            .send()
            .await?;
    }

    let api = RuntimeApi::start().await?;
    let env = api.env();
    let mut overrides: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    overrides.push(("YUBA_VARIANTS", yuba_e2e::THUMBNAIL_VARIANTS));
    // The probes' objects are in the stack's canary bucket, as in the cloud.
    overrides.push(("YUBA_CANARY_BUCKET", &bucket));
    let worker = [stack.spawn("yuba-worker", "worker", &overrides)?];
    let answer = api
        .invoke(&worker_event, TIMEOUT)
        .await
        .map_err(|e| e.context(dump_logs(&worker)))?;
    assert_eq!(
        failed_ids(&answer),
        Vec::<String>::new(),
        "{}",
        dump_logs(&worker)
    );
    let gcs = stack.gcs().await?;
    let replica = replica_of(
        &worker,
        &gcs,
        stack.replica_bucket(),
        &worker_key,
        Duration::from_secs(5),
    )
    .await?;
    assert_eq!(
        replica
            .metadata
            .get(yuba_model::keys::VARIANTS)
            .map(String::as_str),
        Some("thumb.jpg"),
        "the probe's PNG decodes and gets its variants: {:?}",
        replica.metadata
    );
    drop(worker);

    // A filter the probe's key does not match: the probe's notification must still be a job.
    let api = RuntimeApi::start().await?;
    let env = api.env();
    let mut overrides: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    overrides.push(("YUBA_FILTER_PREFIXES", "photos/"));
    overrides.push(("YUBA_CANARY_BUCKET", &bucket));
    let ingest = [stack.spawn("yuba-ingest", "ingest", &overrides)?];
    assert_eq!(
        api.invoke(&ingest_event, TIMEOUT)
            .await
            .map_err(|e| e.context(dump_logs(&ingest)))?,
        InvocationResult::Response(Value::Null),
        "{}",
        dump_logs(&ingest)
    );
    let sqs = stack.sqs().await;
    assert_eq!(
        queue_depth(&sqs, stack.var("YUBA_LAMBDA_QUEUE_URL")).await?,
        1,
        "the probe's object is one job on the Lambda work queue"
    );
    Ok(())
}
