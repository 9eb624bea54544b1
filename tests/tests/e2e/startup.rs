//! A bad setting stops a binary at start-up with a message that names the variable, before it
//! touches any queue.

use std::process::Command;

fn start(binary: &str, env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut command = Command::new(yuba_e2e::binary(binary).expect("the binaries are built"));
    command.env_clear().env("YUBA_LOG_FORMAT", "pretty");
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command.output().expect("the binary runs");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A well-formed queue URL, for the cases about other settings (the worker reads its home, and
/// so the queue, before the replicator's settings: their memory budget depends on its concurrency).
const QUEUE_URL: &str = "https://sqs.eu-west-1.amazonaws.com/123456789012/work";

#[test]
fn the_worker_names_what_is_missing_or_wrong() {
    let (code, stderr) = start("yuba-worker", &[]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("YUBA_QUEUE_URL is not set"), "{stderr}");

    let (code, stderr) = start("yuba-worker", &[("YUBA_QUEUE_URL", QUEUE_URL)]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("YUBA_SOURCE_BUCKET is not set"), "{stderr}");

    let (code, stderr) = start(
        "yuba-worker",
        &[
            ("YUBA_QUEUE_URL", QUEUE_URL),
            ("YUBA_SOURCE_BUCKET", "photos"),
        ],
    );
    assert_eq!(code, Some(1));
    assert!(stderr.contains("YUBA_GCS_BUCKET is not set"), "{stderr}");

    let (code, stderr) = start(
        "yuba-worker",
        &[
            ("YUBA_GCS_BUCKET", "replica"),
            ("YUBA_UPLOAD_CHUNK_BYTES", "1000000"),
        ],
    );
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("YUBA_UPLOAD_CHUNK_BYTES=\"1000000\"") && stderr.contains("262144"),
        "{stderr}"
    );

    let (code, stderr) = start(
        "yuba-worker",
        &[
            ("YUBA_GCS_BUCKET", "replica"),
            ("YUBA_QUEUE_URL", QUEUE_URL),
            (
                "YUBA_VARIANTS",
                r#"{"profiles": [{"name": "t", "width": 90, "fit": "contain"}]}"#,
            ),
        ],
    );
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("profiles[0].fit") && stderr.contains("contain"),
        "{stderr}"
    );

    let (code, stderr) = start(
        "yuba-worker",
        &[
            ("YUBA_GCS_BUCKET", "replica"),
            ("YUBA_QUEUE_URL", "work-queue"),
        ],
    );
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("YUBA_QUEUE_URL") && stderr.contains("queue URL"),
        "{stderr}"
    );
}

#[test]
fn ingest_names_what_is_missing_or_wrong() {
    let (code, stderr) = start("yuba-ingest", &[("YUBA_FARGATE_QUEUE_URL", "https://q")]);
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("YUBA_LAMBDA_QUEUE_URL is not set"),
        "{stderr}"
    );

    let (code, stderr) = start(
        "yuba-ingest",
        &[
            ("YUBA_LAMBDA_QUEUE_URL", "https://q1"),
            ("YUBA_FARGATE_QUEUE_URL", "https://q2"),
            ("YUBA_ROUTE_THRESHOLD_BYTES", "a lot"),
        ],
    );
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("YUBA_ROUTE_THRESHOLD_BYTES=\"a lot\""),
        "{stderr}"
    );

    let (code, stderr) = start("yuba-ingest", &[("YUBA_LOG_FORMAT", "xml")]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("YUBA_LOG_FORMAT"), "{stderr}");
}
