//! Ordering: whatever order a key's events are worked on in, the replica ends equal to the key's
//! latest state in S3 and never holds older content on the way (ARCHITECTURE.md, "Ordering and
//! convergence").
//!
//! The events are recorded from moto, then replayed through the real parser and the worker's
//! `Replicator` in every permutation, against the real servers.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use yuba_e2e::{Stack, THUMBNAIL_VARIANTS, gcs_sha256, gradient_jpeg, sha256_hex};
use yuba_events::{RecordOutcome, parse_notification};
use yuba_gcs::Gcs;
use yuba_model::{Job, keys};

/// What happened to one key, in order: `Some(content)` for a put, `None` for a delete.
type History = Vec<Option<Vec<u8>>>;

/// Applies each key's history to S3 and returns the jobs its notifications make, in the order
/// of the history. (Unversioned: moto sends no event for a delete marker.)
async fn record_events(
    stack: &Stack,
    histories: &BTreeMap<&str, History>,
) -> anyhow::Result<BTreeMap<String, Vec<Job>>> {
    let s3 = stack.s3().await;
    let sqs = stack.sqs().await;
    let bucket = stack.source_bucket();
    // Which history step each event is, told by the ETag a put gave (deletes by position).
    let mut steps: BTreeMap<String, Vec<Option<String>>> = BTreeMap::new();
    for (key, history) in histories {
        for step in history {
            let etag = match step {
                Some(content) => {
                    let put = s3
                        .put_object()
                        .bucket(bucket)
                        .key(*key)
                        .content_type("image/jpeg")
                        .body(ByteStream::from(content.clone()))
                        .send()
                        .await?;
                    Some(yuba_model::normalize_etag(put.e_tag().unwrap_or_default()))
                }
                None => {
                    s3.delete_object().bucket(bucket).key(*key).send().await?;
                    None
                }
            };
            steps.entry((*key).to_owned()).or_default().push(etag);
        }
    }
    let expected: usize = histories.values().map(Vec::len).sum();
    let mut jobs: BTreeMap<String, Vec<Job>> = BTreeMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while jobs.values().map(Vec::len).sum::<usize>() < expected {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "only {jobs:?} of {expected} events arrived"
        );
        let received = sqs
            .receive_message()
            .queue_url(stack.var("YUBA_EVENTS_QUEUE_URL"))
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await?;
        for message in received.messages() {
            for outcome in parse_notification(message.body().unwrap_or_default())? {
                if let RecordOutcome::Job(job) = outcome {
                    jobs.entry(job.key().to_owned()).or_default().push(job);
                }
            }
        }
    }
    // Back into history order: puts by ETag, the deletes in the order they came.
    for (key, key_jobs) in &mut jobs {
        let order = &steps[key];
        let mut deletes = order
            .iter()
            .enumerate()
            .filter(|(_, etag)| etag.is_none())
            .map(|(at, _)| at);
        let mut placed: Vec<(usize, Job)> = Vec::new();
        for job in key_jobs.drain(..) {
            let at = match &job {
                Job::Replicate(put) => order
                    .iter()
                    .position(|etag| etag.is_some() && etag.as_deref() == put.etag.as_deref()),
                Job::Delete(_) => deletes.next(),
            };
            placed.push((
                at.ok_or_else(|| anyhow::anyhow!("unmatched event {job:?}"))?,
                job,
            ));
        }
        placed.sort_by_key(|(at, _)| *at);
        *key_jobs = placed.into_iter().map(|(_, job)| job).collect();
    }
    Ok(jobs)
}

/// Gives the jobs increasing sequencers in history order, as S3 does (moto sends one constant).
fn with_s3_sequencers(jobs: &[Job]) -> Vec<Job> {
    jobs.iter()
        .enumerate()
        .map(|(at, job)| {
            let sequencer = Some(format!("0055AED6DCD9{:06X}", 0x0281E5 + at));
            match job.clone() {
                Job::Replicate(mut job) => {
                    job.sequencer = sequencer;
                    Job::Replicate(job)
                }
                Job::Delete(mut job) => {
                    job.sequencer = sequencer;
                    Job::Delete(job)
                }
            }
        })
        .collect()
}

fn permutations<T: Clone>(items: &[T]) -> Vec<Vec<T>> {
    if items.len() <= 1 {
        return vec![items.to_vec()];
    }
    let mut all = Vec::new();
    for first in 0..items.len() {
        let mut rest = items.to_vec();
        let head = rest.remove(first);
        for mut tail in permutations(&rest) {
            tail.insert(0, head.clone());
            all.push(tail);
        }
    }
    all
}

/// The sha256 a replica records, if there is one.
async fn recorded_sha256(gcs: &Gcs, bucket: &str, name: &str) -> anyhow::Result<Option<String>> {
    Ok(gcs.objects().get(bucket, name).await?.map(|object| {
        object
            .metadata
            .get(keys::SHA256)
            .cloned()
            .unwrap_or_default()
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_order_of_a_keys_events_converges_to_its_latest_state() -> anyhow::Result<()> {
    let stack = Stack::start("ordering", 3)?;
    let (v1, v2, v3) = (
        gradient_jpeg(64, 48, 10),
        gradient_jpeg(64, 48, 120),
        gradient_jpeg(64, 48, 240),
    );
    let histories = BTreeMap::from([
        // overwrite, overwrite, delete, re-create: the replica must end as v3
        (
            "photos/recreated.jpg",
            vec![Some(v1.clone()), Some(v2.clone()), None, Some(v3.clone())],
        ),
        // overwrite, overwrite, delete: the replica must end absent
        ("photos/deleted.jpg", vec![Some(v1), Some(v2), None]),
    ]);
    let latest: BTreeMap<&str, Option<String>> = histories
        .iter()
        .map(|(key, history)| (*key, history.last().unwrap().as_deref().map(sha256_hex)))
        .collect();
    let recorded = record_events(&stack, &histories).await?;

    let gcs = stack.gcs().await?;
    let replicator = stack
        .replicator(
            stack.var("AWS_ENDPOINT_URL"),
            &[("YUBA_VARIANTS", THUMBNAIL_VARIANTS)],
        )
        .await?;
    let bucket = stack.replica_bucket();
    let mut outcomes: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut orders = 0;
    for (key, jobs) in &recorded {
        let key = key.as_str();
        let variant = format!("_variants/thumb/{key}");
        let want = &latest[key];
        for jobs in [jobs.clone(), with_s3_sequencers(jobs)] {
            for order in permutations(&jobs) {
                orders += 1;
                for name in [key, variant.as_str()] {
                    gcs.objects().delete(bucket, name, None).await?;
                }
                for job in &order {
                    let outcome = replicator.run(job).await?;
                    *outcomes.entry(outcome.as_str()).or_default() += 1;
                    // Never older content, at any step: only the latest version is ever written.
                    let now = recorded_sha256(&gcs, bucket, key).await?;
                    assert!(
                        now.is_none() || now == *want,
                        "{key} after {} in order {order:?}: replica records {now:?}, the latest \
                         content is {want:?}",
                        outcome.as_str()
                    );
                }
                match want {
                    Some(sha256) => {
                        assert_eq!(&gcs_sha256(&gcs, bucket, key).await?, sha256, "{order:?}");
                        let thumb = gcs.objects().get(bucket, &variant).await?;
                        let made_from = thumb
                            .as_ref()
                            .and_then(|thumb| thumb.metadata.get(keys::SOURCE_SHA256));
                        assert_eq!(made_from, Some(sha256), "{key}'s variant, {order:?}");
                    }
                    None => {
                        assert_eq!(gcs.objects().get(bucket, key).await?, None, "{order:?}");
                        assert_eq!(
                            gcs.objects().get(bucket, &variant).await?,
                            None,
                            "{order:?}"
                        );
                    }
                }
            }
        }
    }
    println!("{orders} orders replayed; outcomes: {outcomes:?}");
    assert_eq!(orders, 2 * (24 + 6));
    // With S3's sequencers, stale events are told without reading S3.
    assert!(
        outcomes.get("superseded").is_some_and(|&n| n > 0),
        "{outcomes:?}"
    );
    Ok(())
}
