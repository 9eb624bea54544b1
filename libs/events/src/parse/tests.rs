use serde_json::{Value, json};

use super::*;

/// AWS's documented example (AmazonS3 userguide, notification-content-structure).
const S3_PUT: &str = r#"{
  "Records": [
    {
      "eventVersion": "2.1",
      "eventSource": "aws:s3",
      "awsRegion": "us-west-2",
      "eventTime": "1970-01-01T00:00:00.000Z",
      "eventName": "ObjectCreated:Put",
      "userIdentity": { "principalId": "AIDAJDPLRKLG7UEXAMPLE" },
      "requestParameters": { "sourceIPAddress": "172.16.0.1" },
      "responseElements": {
        "x-amz-request-id": "C3D13FE58DE4C810",
        "x-amz-id-2": "FMyUVURIY8/IgAtTv8xRjskZQpcIZ9KG4V5Wp6S7S/JRWeUWerMUE5JgHvANOjpD"
      },
      "s3": {
        "s3SchemaVersion": "1.0",
        "configurationId": "testConfigRule",
        "bucket": {
          "name": "amzn-s3-demo-bucket",
          "ownerIdentity": { "principalId": "A3NL1KOZZKExample" },
          "arn": "arn:aws:s3:::amzn-s3-demo-bucket"
        },
        "object": {
          "key": "HappyFace.jpg",
          "size": 1024,
          "eTag": "d41d8cd98f00b204e9800998ecf8427e",
          "versionId": "096fKKXTRTtl3on89fVO.nfljtsv6qko",
          "sequencer": "0055AED6DCD90281E5"
        }
      }
    }
  ]
}"#;

/// The same structure for a delete in a versioned bucket: no size or ETag, the version is the
/// delete marker's.
const S3_DELETE_MARKER: &str = r#"{
  "Records": [
    {
      "eventVersion": "2.1",
      "eventSource": "aws:s3",
      "awsRegion": "us-west-2",
      "eventTime": "2026-11-22T10:00:00.000Z",
      "eventName": "ObjectRemoved:DeleteMarkerCreated",
      "userIdentity": { "principalId": "AWS:AIDAJDPLRKLG7UEXAMPLE" },
      "requestParameters": { "sourceIPAddress": "172.16.0.1" },
      "responseElements": {
        "x-amz-request-id": "C3D13FE58DE4C810",
        "x-amz-id-2": "FMyUVURIY8/IgAtTv8xRjskZQpcIZ9KG4V5Wp6S7S/JRWeUWerMUE5JgHvANOjpD"
      },
      "s3": {
        "s3SchemaVersion": "1.0",
        "configurationId": "yuba",
        "bucket": {
          "name": "amzn-s3-demo-bucket",
          "ownerIdentity": { "principalId": "A3NL1KOZZKExample" },
          "arn": "arn:aws:s3:::amzn-s3-demo-bucket"
        },
        "object": {
          "key": "photos/red+flower.jpg",
          "versionId": "1QW9g1Z99LUNbvaaYVpW9xDlOLU.qxgF",
          "sequencer": "0055AED6DCD90281E6"
        }
      }
    }
  ]
}"#;

/// What the local emulator (moto) puts on its SQS queue: `versionId` null, no sequencer.
const MOTO_PUT: &str = r#"{"Records":[{"eventVersion":"2.1","eventSource":"aws:s3","awsRegion":"us-east-1","eventTime":"2026-11-22T17:40:00.000Z","eventName":"ObjectCreated:Put","s3":{"s3SchemaVersion":"1.0","configurationId":"yuba-ingest","bucket":{"name":"yuba-source","arn":"arn:aws:s3:::yuba-source"},"object":{"key":"a+b%2Bc.jpg","size":3,"eTag":"acbd18db4cc2f85cedef654fccc4a4d8","versionId":null}}}]}"#;

/// AWS's documented example.
const TEST_EVENT: &str = r#"{
  "Service": "Amazon S3",
  "Event": "s3:TestEvent",
  "Time": "2014-10-13T15:57:02.089Z",
  "Bucket": "amzn-s3-demo-bucket",
  "RequestId": "5582815E1AEA5ADF",
  "HostId": "8cLeGAmw098X5cv4Zkwcmo8vvZa3eH3eKxsPzbB9wrR+YstdA6Knx4Ip8EXAMPLE"
}"#;

/// An SQS body when an SNS topic fans out to the queue without raw message delivery.
const SNS_WRAPPED: &str = r#"{
  "Type" : "Notification",
  "MessageId" : "b5ab9a2e-7f12-5d2e-9f3b-6d5f4f3a2c1e",
  "TopicArn" : "arn:aws:sns:us-east-1:111122223333:yuba-uploads",
  "Subject" : "Amazon S3 Notification",
  "Message" : "{\"Records\":[{\"eventVersion\":\"2.1\",\"eventSource\":\"aws:s3\",\"awsRegion\":\"us-east-1\",\"eventTime\":\"2026-11-22T17:40:00.123Z\",\"eventName\":\"ObjectCreated:CompleteMultipartUpload\",\"userIdentity\":{\"principalId\":\"AWS:AIDAEXAMPLE\"},\"requestParameters\":{\"sourceIPAddress\":\"203.0.113.9\"},\"responseElements\":{\"x-amz-request-id\":\"N4N7GDK58NMKJ12R\",\"x-amz-id-2\":\"Example\"},\"s3\":{\"s3SchemaVersion\":\"1.0\",\"configurationId\":\"yuba\",\"bucket\":{\"name\":\"images\",\"ownerIdentity\":{\"principalId\":\"A3NL1KOZZKExample\"},\"arn\":\"arn:aws:s3:::images\"},\"object\":{\"key\":\"uploads/%E6%97%A5%E6%9C%AC+1.jpg\",\"size\":73400320,\"eTag\":\"4af981f98d22a0b9979da24b259e5e42-12\",\"sequencer\":\"0064D3901D00059242\"}}}]}",
  "Timestamp" : "2026-11-22T17:40:00.456Z",
  "SignatureVersion" : "1",
  "Signature" : "EXAMPLEpH+..",
  "SigningCertURL" : "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0000000000000000000000.pem",
  "UnsubscribeURL" : "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=arn:aws:sns:us-east-1:111122223333:yuba-uploads:0000"
}"#;

/// AWS's documented example (AmazonS3 userguide, ev-events).
const EB_CREATED: &str = r#"{
  "version": "0",
  "id": "17793124-05d4-b198-2fde-7ededc63b103",
  "detail-type": "Object Created",
  "source": "aws.s3",
  "account": "111122223333",
  "time": "2021-11-12T00:00:00Z",
  "region": "ca-central-1",
  "resources": ["arn:aws:s3:::amzn-s3-demo-bucket1"],
  "detail": {
    "version": "0",
    "bucket": { "name": "amzn-s3-demo-bucket1" },
    "object": {
      "key": "example-key",
      "size": 5,
      "etag": "b1946ac92492d2347c6235b4d2611184",
      "version-id": "IYV3p45BT0ac8hjHg1houSdS1a.Mro8e",
      "sequencer": "617f08299329d189"
    },
    "request-id": "N4N7GDK58NMKJ12R",
    "requester": "123456789012",
    "source-ip-address": "1.2.3.4",
    "reason": "PutObject"
  }
}"#;

/// AWS's documented example (AmazonS3 userguide, ev-events).
const EB_DELETED: &str = r#"{
  "version": "0",
  "id": "2ee9cc15-d022-99ea-1fb8-1b1bac4850f9",
  "detail-type": "Object Deleted",
  "source": "aws.s3",
  "account": "111122223333",
  "time": "2021-11-12T00:00:00Z",
  "region": "ca-central-1",
  "resources": ["arn:aws:s3:::amzn-s3-demo-bucket1"],
  "detail": {
    "version": "0",
    "bucket": { "name": "amzn-s3-demo-bucket1" },
    "object": {
      "key": "example-key",
      "etag": "d41d8cd98f00b204e9800998ecf8427e",
      "version-id": "1QW9g1Z99LUNbvaaYVpW9xDlOLU.qxgF",
      "sequencer": "617f0837b476e463"
    },
    "request-id": "0BH729840619AG5K",
    "requester": "123456789012",
    "source-ip-address": "1.2.3.4",
    "reason": "DeleteObject",
    "deletion-type": "Delete Marker Created"
  }
}"#;

fn time(text: &str) -> Option<DateTime<Utc>> {
    Some(text.parse().unwrap())
}

fn parse(body: &str) -> Vec<RecordOutcome> {
    parse_notification(body).unwrap()
}

fn parse_one(body: &str) -> RecordOutcome {
    let mut outcomes = parse(body);
    assert_eq!(outcomes.len(), 1, "{outcomes:?}");
    outcomes.remove(0)
}

fn replicate_job(outcome: RecordOutcome) -> ReplicateJob {
    match outcome {
        RecordOutcome::Job(Job::Replicate(job)) => job,
        other => panic!("expected a replicate job, got {other:?}"),
    }
}

fn delete_job(outcome: RecordOutcome) -> DeleteJob {
    match outcome {
        RecordOutcome::Job(Job::Delete(job)) => job,
        other => panic!("expected a delete job, got {other:?}"),
    }
}

fn rejection(outcome: RecordOutcome) -> RecordError {
    match outcome {
        RecordOutcome::Rejected { error, .. } => error,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

/// A minimal well-formed S3 record, to vary one field at a time.
fn record(event_name: &str, key: &str) -> Value {
    json!({
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "eventTime": "2026-11-22T17:40:00.000Z",
        "eventName": event_name,
        "s3": {
            "bucket": { "name": "src" },
            "object": { "key": key, "size": 7, "eTag": "abc" }
        }
    })
}

fn notification(records: Vec<Value>) -> String {
    json!({ "Records": records }).to_string()
}

fn eventbridge(detail_type: &str) -> Value {
    let mut event: Value = serde_json::from_str(EB_CREATED).unwrap();
    event["detail-type"] = json!(detail_type);
    event
}

#[test]
fn an_s3_put_becomes_a_replicate_job() {
    let job = replicate_job(parse_one(S3_PUT));
    assert_eq!(
        job,
        ReplicateJob {
            bucket: "amzn-s3-demo-bucket".into(),
            key: "HappyFace.jpg".into(),
            version_id: Some("096fKKXTRTtl3on89fVO.nfljtsv6qko".into()),
            etag: Some("d41d8cd98f00b204e9800998ecf8427e".into()),
            size: Some(1024),
            sequencer: Some("0055AED6DCD90281E5".into()),
            event_time: time("1970-01-01T00:00:00Z"),
            force: false,
        }
    );
}

#[test]
fn a_delete_marker_becomes_a_delete_job() {
    let job = delete_job(parse_one(S3_DELETE_MARKER));
    assert_eq!(
        job,
        DeleteJob {
            bucket: "amzn-s3-demo-bucket".into(),
            key: "photos/red flower.jpg".into(),
            version_id: Some("1QW9g1Z99LUNbvaaYVpW9xDlOLU.qxgF".into()),
            sequencer: Some("0055AED6DCD90281E6".into()),
            event_time: time("2026-11-22T10:00:00Z"),
        }
    );
}

#[test]
fn the_emulators_body_decodes_its_key_and_tolerates_null_and_absent_fields() {
    let job = replicate_job(parse_one(MOTO_PUT));
    assert_eq!(job.bucket, "yuba-source");
    assert_eq!(job.key, "a b+c.jpg");
    assert_eq!(job.version_id, None, "`versionId: null`");
    assert_eq!(job.sequencer, None, "no sequencer");
    assert_eq!(job.size, Some(3));
    assert_eq!(
        job.etag.as_deref(),
        Some("acbd18db4cc2f85cedef654fccc4a4d8")
    );
    assert_eq!(job.event_time, time("2026-11-22T17:40:00Z"));
}

#[test]
fn every_created_and_removed_name_maps_to_its_job() {
    for name in [
        "ObjectCreated:Put",
        "ObjectCreated:Post",
        "ObjectCreated:Copy",
        "ObjectCreated:CompleteMultipartUpload",
        "s3:ObjectCreated:Put",
    ] {
        let outcome = parse_one(&notification(vec![record(name, "k")]));
        assert_eq!(replicate_job(outcome).key, "k", "{name}");
    }
    for name in [
        "ObjectRemoved:Delete",
        "ObjectRemoved:DeleteMarkerCreated",
        "LifecycleExpiration:Delete",
        "LifecycleExpiration:DeleteMarkerCreated",
    ] {
        let outcome = parse_one(&notification(vec![record(name, "k")]));
        assert_eq!(delete_job(outcome).key, "k", "{name}");
    }
}

#[test]
fn events_that_do_not_change_content_are_ignored() {
    for name in [
        "ObjectRestore:Post",
        "ObjectRestore:Completed",
        "ObjectRestore:Delete",
        "ObjectTagging:Put",
        "ObjectTagging:Delete",
        "ObjectAcl:Put",
        "Replication:OperationFailedReplication",
        "Replication:OperationReplicatedAfterThreshold",
        "LifecycleTransition",
        "IntelligentTiering",
        "ReducedRedundancyLostObject",
    ] {
        match parse_one(&notification(vec![record(name, "k")])) {
            RecordOutcome::Ignored { event, reason } => {
                assert_eq!(event, name);
                assert!(!reason.is_empty());
            }
            other => panic!("{name}: {other:?}"),
        }
    }
}

#[test]
fn unknown_event_names_are_rejected_not_guessed() {
    for name in ["ObjectRemoved:Purge", "ObjectCreated", "Teleported:Away"] {
        let error = rejection(parse_one(&notification(vec![record(name, "k")])));
        assert!(
            matches!(&error, RecordError::UnknownEvent { field: "eventName", found, .. } if found == name),
            "{name}: {error:?}"
        );
        assert!(error.to_string().contains("ObjectCreated:*"), "{error}");
    }
}

#[test]
fn the_test_event_is_ignored() {
    let outcomes = parse(TEST_EVENT);
    assert!(
        matches!(&outcomes[..], [RecordOutcome::Ignored { event, .. }] if event == "s3:TestEvent"),
        "{outcomes:?}"
    );
}

#[test]
fn an_sns_envelope_is_unwrapped() {
    let job = replicate_job(parse_one(SNS_WRAPPED));
    assert_eq!(job.bucket, "images");
    assert_eq!(job.key, "uploads/日本 1.jpg");
    assert_eq!(job.size, Some(73_400_320));
    assert_eq!(
        job.etag.as_deref(),
        Some("4af981f98d22a0b9979da24b259e5e42-12")
    );
    assert_eq!(job.version_id, None);
    assert_eq!(job.event_time, time("2026-11-22T17:40:00.123Z"));
}

#[test]
fn a_test_event_inside_sns_is_ignored() {
    let body = json!({ "Type": "Notification", "TopicArn": "arn:aws:sns:us-east-1:1:t", "Message": TEST_EVENT });
    assert!(matches!(
        &parse(&body.to_string())[..],
        [RecordOutcome::Ignored { .. }]
    ));
}

#[test]
fn sns_control_messages_are_ignored() {
    let body = json!({
        "Type": "SubscriptionConfirmation",
        "TopicArn": "arn:aws:sns:us-east-1:111122223333:yuba-uploads",
        "Message": "You have chosen to subscribe to the topic ...",
        "SubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription"
    });
    assert!(matches!(
        &parse(&body.to_string())[..],
        [RecordOutcome::Ignored { event, .. }] if event == "SNS SubscriptionConfirmation"
    ));
}

#[test]
fn broken_sns_envelopes_say_what_is_wrong_inside() {
    let not_json = json!({ "Type": "Notification", "Message": "hello" }).to_string();
    let error = parse_notification(&not_json).unwrap_err();
    assert!(
        matches!(&error, NotificationError::InSnsMessage(inner) if matches!(**inner, NotificationError::NotJson(_))),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .starts_with("in the SNS message: the notification is not JSON")
    );

    let no_message = json!({ "Type": "Notification", "TopicArn": "arn" }).to_string();
    assert!(matches!(
        parse_notification(&no_message),
        Err(NotificationError::SnsMessageMissing)
    ));
}

#[test]
fn envelope_nesting_is_bounded() {
    let mut body = MOTO_PUT.to_owned();
    for _ in 0..MAX_ENVELOPE_DEPTH {
        body = json!({ "Type": "Notification", "Message": body }).to_string();
    }
    assert_eq!(
        parse(&body).len(),
        1,
        "{MAX_ENVELOPE_DEPTH} envelopes are read"
    );
    body = json!({ "Type": "Notification", "Message": body }).to_string();
    let mut error = parse_notification(&body).unwrap_err();
    while let NotificationError::InSnsMessage(inner) = error {
        error = *inner;
    }
    assert!(
        matches!(error, NotificationError::TooDeep { .. }),
        "{error:?}"
    );
}

#[test]
fn an_eventbridge_object_created_becomes_a_replicate_job() {
    let job = replicate_job(parse_one(EB_CREATED));
    assert_eq!(
        job,
        ReplicateJob {
            bucket: "amzn-s3-demo-bucket1".into(),
            key: "example-key".into(),
            version_id: Some("IYV3p45BT0ac8hjHg1houSdS1a.Mro8e".into()),
            etag: Some("b1946ac92492d2347c6235b4d2611184".into()),
            size: Some(5),
            sequencer: Some("617f08299329d189".into()),
            event_time: time("2021-11-12T00:00:00Z"),
            force: false,
        }
    );
}

#[test]
fn eventbridge_keys_are_taken_verbatim() {
    let mut event = eventbridge("Object Created");
    event["detail"]["object"]["key"] = json!("raw/a+b %2B 2023-08-08T14:03:40.zip");
    let job = replicate_job(parse_one(&event.to_string()));
    assert_eq!(job.key, "raw/a+b %2B 2023-08-08T14:03:40.zip");
}

#[test]
fn an_eventbridge_object_deleted_becomes_a_delete_job_for_both_deletion_types() {
    let job = delete_job(parse_one(EB_DELETED));
    assert_eq!(
        job,
        DeleteJob {
            bucket: "amzn-s3-demo-bucket1".into(),
            key: "example-key".into(),
            version_id: Some("1QW9g1Z99LUNbvaaYVpW9xDlOLU.qxgF".into()),
            sequencer: Some("617f0837b476e463".into()),
            event_time: time("2021-11-12T00:00:00Z"),
        }
    );
    let mut permanent: Value = serde_json::from_str(EB_DELETED).unwrap();
    permanent["detail"]["deletion-type"] = json!("Permanently Deleted");
    permanent["detail"]["object"]
        .as_object_mut()
        .unwrap()
        .remove("version-id");
    let job = delete_job(parse_one(&permanent.to_string()));
    assert_eq!(job.version_id, None);
}

#[test]
fn the_emulators_eventbridge_spelling_of_the_etag_is_read() {
    let mut event = eventbridge("Object Created");
    let object = event["detail"]["object"].as_object_mut().unwrap();
    let etag = object.remove("etag").unwrap();
    object.insert("eTag".into(), etag);
    let job = replicate_job(parse_one(&event.to_string()));
    assert_eq!(
        job.etag.as_deref(),
        Some("b1946ac92492d2347c6235b4d2611184")
    );
}

#[test]
fn other_eventbridge_detail_types_are_ignored_or_rejected() {
    for detail_type in [
        "Object Restore Initiated",
        "Object Restore Completed",
        "Object Restore Expired",
        "Object Tags Added",
        "Object Tags Deleted",
        "Object ACL Updated",
        "Object Storage Class Changed",
        "Object Access Tier Changed",
    ] {
        let outcome = parse_one(&eventbridge(detail_type).to_string());
        assert!(
            matches!(&outcome, RecordOutcome::Ignored { event, .. } if event == detail_type),
            "{detail_type}: {outcome:?}"
        );
    }
    let error = rejection(parse_one(&eventbridge("Object Teleported").to_string()));
    assert!(matches!(
        error,
        RecordError::UnknownEvent {
            field: "detail-type",
            ..
        }
    ));
}

#[test]
fn eventbridge_events_from_elsewhere_or_of_other_versions_are_rejected() {
    let mut ec2 = eventbridge("Object Created");
    ec2["source"] = json!("aws.ec2");
    assert_eq!(
        rejection(parse_one(&ec2.to_string())),
        RecordError::UnexpectedSource {
            field: "source",
            found: "aws.ec2".into(),
            expected: "aws.s3"
        }
    );
    let mut v1 = eventbridge("Object Created");
    v1["detail"]["version"] = json!("1");
    assert!(matches!(
        rejection(parse_one(&v1.to_string())),
        RecordError::UnsupportedVersion {
            field: "detail.version",
            ..
        }
    ));
    let mut event_version = eventbridge("Object Created");
    event_version["detail"]["event-version"] = json!("1.0");
    replicate_job(parse_one(&event_version.to_string()));
    event_version["detail"]["event-version"] = json!("2.0");
    assert!(matches!(
        rejection(parse_one(&event_version.to_string())),
        RecordError::UnsupportedVersion {
            field: "detail.event-version",
            ..
        }
    ));
}

#[test]
fn one_bad_record_does_not_take_the_batch_down() {
    let mut future = record("ObjectCreated:Put", "b");
    future["eventVersion"] = json!("3.0");
    let mut no_key = record("ObjectCreated:Put", "c");
    no_key["s3"]["object"]
        .as_object_mut()
        .unwrap()
        .remove("key");
    let body = notification(vec![
        record("ObjectCreated:Put", "a"),
        future,
        no_key,
        json!("not a record"),
        record("ObjectCreated:Put", "bad%ZZ"),
        record("ObjectRemoved:Delete", "d"),
        record("ObjectTagging:Put", "e"),
    ]);
    let outcomes = parse(&body);
    assert_eq!(outcomes.len(), 7);
    let mut outcomes = outcomes.into_iter();
    let mut next = || outcomes.next().unwrap();
    assert_eq!(replicate_job(next()).key, "a");
    let error = rejection(next());
    assert_eq!(
        error,
        RecordError::UnsupportedVersion {
            field: "eventVersion",
            found: "3.0".into(),
            supported: "S3 event records of major version 2 (\"2.0\" to \"2.x\")",
        }
    );
    assert!(error.to_string().contains("upgrade yuba's ingest function"));
    assert_eq!(
        rejection(next()),
        RecordError::Missing {
            field: "s3.object.key"
        }
    );
    assert!(matches!(rejection(next()), RecordError::NotAnObject { .. }));
    assert!(matches!(
        rejection(next()),
        RecordError::InvalidKey {
            source: KeyDecodeError::InvalidEscape { offset: 3, .. },
            ..
        }
    ));
    assert_eq!(delete_job(next()).key, "d");
    assert!(matches!(next(), RecordOutcome::Ignored { .. }));
}

#[test]
fn s3_event_versions_of_major_version_2_are_read() {
    for version in ["2.0", "2.1", "2.2", "2.3", "2.10"] {
        let mut record = record("ObjectCreated:Put", "k");
        record["eventVersion"] = json!(version);
        replicate_job(parse_one(&notification(vec![record])));
    }
    for version in ["3.0", "1.0", "2", "2.", "2.x", "20.1", "02.1", " 2.1"] {
        let mut record = record("ObjectCreated:Put", "k");
        record["eventVersion"] = json!(version);
        let error = rejection(parse_one(&notification(vec![record])));
        assert!(
            matches!(error, RecordError::UnsupportedVersion { .. }),
            "{version}: {error:?}"
        );
    }
}

#[test]
fn missing_and_mistyped_fields_are_named() {
    type Break = fn(&mut Value);
    let cases: [(&str, Break); 8] = [
        ("eventVersion", |r| {
            r.as_object_mut().unwrap().remove("eventVersion");
        }),
        ("eventName", |r| r["eventName"] = json!("")),
        ("s3.bucket.name", |r| r["s3"]["bucket"] = json!({})),
        ("s3.bucket.name", |r| {
            r.as_object_mut().unwrap().remove("s3");
        }),
        ("s3", |r| r["s3"] = json!("s3")),
        ("s3.object.size", |r| r["s3"]["object"]["size"] = json!("7")),
        ("s3.object.size", |r| r["s3"]["object"]["size"] = json!(-1)),
        ("s3.object.versionId", |r| {
            r["s3"]["object"]["versionId"] = json!(3);
        }),
    ];
    for (field, break_it) in cases {
        let mut record = record("ObjectCreated:Put", "k");
        break_it(&mut record);
        let error = rejection(parse_one(&notification(vec![record])));
        match &error {
            RecordError::Missing { field: named } | RecordError::WrongType { field: named, .. } => {
                assert_eq!(*named, field, "{error}");
            }
            other => panic!("{field}: {other:?}"),
        }
        assert!(error.to_string().contains(&format!("`{field}`")), "{error}");
    }
}

#[test]
fn records_from_other_services_are_rejected() {
    let mut dynamo = record("ObjectCreated:Put", "k");
    dynamo["eventSource"] = json!("aws:dynamodb");
    assert!(matches!(
        rejection(parse_one(&notification(vec![dynamo]))),
        RecordError::UnexpectedSource {
            field: "eventSource",
            ..
        }
    ));
}

#[test]
fn keys_that_cannot_be_s3_keys_are_rejected() {
    let not_utf8 = rejection(parse_one(&notification(vec![record(
        "ObjectCreated:Put",
        "%FF",
    )])));
    assert!(matches!(
        not_utf8,
        RecordError::InvalidKey {
            source: KeyDecodeError::NotUtf8 { .. },
            ..
        }
    ));
    let longest = "%C3%A9".repeat(512);
    let job = replicate_job(parse_one(&notification(vec![record(
        "ObjectCreated:Put",
        &longest,
    )])));
    assert_eq!(job.key.len(), 1024);
    let too_long = format!("{longest}x");
    assert_eq!(
        rejection(parse_one(&notification(vec![record(
            "ObjectCreated:Put",
            &too_long
        )]))),
        RecordError::KeyTooLong { bytes: 1025 }
    );
}

#[test]
fn times_are_optional_and_never_fatal() {
    for (value, expected) in [
        (
            json!("2026-11-22T17:40:00.000Z"),
            time("2026-11-22T17:40:00Z"),
        ),
        (
            json!("2026-11-22T18:40:00+01:00"),
            time("2026-11-22T17:40:00Z"),
        ),
        (
            json!("2026-11-22T17:40:00.250000"),
            time("2026-11-22T17:40:00.25Z"),
        ),
        (json!("yesterday"), None),
        (json!(1_700_000_000), None),
        (Value::Null, None),
    ] {
        let mut record = record("ObjectCreated:Put", "k");
        record["eventTime"] = value.clone();
        let job = replicate_job(parse_one(&notification(vec![record])));
        assert_eq!(job.event_time, expected, "{value}");
    }
}

#[test]
fn etags_are_normalised_and_empty_ones_dropped() {
    for (value, expected) in [
        (json!("\"abc-2\""), Some("abc-2")),
        (json!("abc"), Some("abc")),
        (json!(""), None),
        (json!("\"\""), None),
    ] {
        let mut record = record("ObjectCreated:Put", "k");
        record["s3"]["object"]["eTag"] = value.clone();
        let job = replicate_job(parse_one(&notification(vec![record])));
        assert_eq!(job.etag.as_deref(), expected, "{value}");
    }
}

#[test]
fn what_is_not_a_notification_is_refused_with_what_was_expected() {
    let error = parse_notification("{\"Records\": [").unwrap_err();
    assert!(matches!(error, NotificationError::NotJson(_)));
    assert!(
        error
            .to_string()
            .contains("expected an S3 event notification")
    );

    for (body, found) in [
        ("[1, 2]", "an array of 2 elements"),
        ("42", "the number 42"),
        ("\"Records\"", "the string \"Records\""),
        ("{}", "an empty object"),
        (r#"{"hello": "world"}"#, "an object with the fields `hello`"),
    ] {
        let error = parse_notification(body).unwrap_err();
        let message = error.to_string();
        assert!(
            matches!(error, NotificationError::UnrecognisedShape { .. }),
            "{body}: {message}"
        );
        assert!(message.contains(found), "{message}");
        assert!(
            message.contains("expected an S3 event notification"),
            "{message}"
        );
    }

    assert!(matches!(
        parse_notification(r#"{"Records": {"eventName": "ObjectCreated:Put"}}"#),
        Err(NotificationError::RecordsNotAnArray { .. })
    ));
    assert!(parse(r#"{"Records": []}"#).is_empty());
    // `Type` that is not a string is not an SNS envelope.
    let error = parse_notification(r#"{"Type": 3, "Message": "{}"}"#).unwrap_err();
    assert!(matches!(error, NotificationError::UnrecognisedShape { .. }));
    assert!(error.to_string().contains("`Message`") && error.to_string().contains("`Type`"));
}

#[test]
fn lambda_trigger_batches_are_pointed_at_their_message_bodies() {
    let sqs = json!({ "Records": [{
        "messageId": "059f36b4-87a3-44ab-83d2-661975830a7d",
        "body": MOTO_PUT,
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:111122223333:yuba-ingest"
    }]});
    let error = parse_notification(&sqs.to_string()).unwrap_err();
    assert!(matches!(
        error,
        NotificationError::LambdaTriggerEvent { trigger: "SQS" }
    ));
    assert!(error.to_string().contains("Records[].body"));
    let sns = json!({ "Records": [{
        "EventSource": "aws:sns",
        "EventVersion": "1.0",
        "Sns": { "Type": "Notification", "Message": MOTO_PUT }
    }]});
    assert!(matches!(
        parse_notification(&sns.to_string()),
        Err(NotificationError::LambdaTriggerEvent { trigger: "SNS" })
    ));
}

#[test]
fn sizes_and_counts_are_bounded() {
    let records = vec![record("ObjectCreated:Put", "k"); MAX_RECORDS];
    assert_eq!(parse(&notification(records)).len(), MAX_RECORDS);
    let records = vec![json!({}); MAX_RECORDS + 1];
    let error = parse_notification(&notification(records)).unwrap_err();
    assert!(
        matches!(error, NotificationError::TooManyRecords { count, max: MAX_RECORDS } if count == MAX_RECORDS + 1),
        "{error:?}"
    );

    let padding = " ".repeat(MAX_BODY_BYTES);
    let body = format!("{MOTO_PUT}{padding}");
    assert!(matches!(
        parse_notification(&body),
        Err(NotificationError::TooLarge { .. })
    ));

    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    assert!(matches!(
        parse_notification(&deep),
        Err(NotificationError::TooDeeplyNested { .. })
    ));
}

#[test]
fn untrusted_text_copied_into_errors_is_bounded() {
    let huge = "x".repeat(100_000);
    let mut record = record("ObjectCreated:Put", "k");
    record["eventName"] = json!(huge);
    let error = rejection(parse_one(&notification(vec![record])));
    assert!(
        error.to_string().len() < 1_000,
        "{}",
        error.to_string().len()
    );
}

// Hostile input: volume, nesting, size, missing and impossible fields. One outcome per record,
// a reason for each rejection, and the good records of the same notification still count.

/// Breaks record `i` in one of a dozen ways (`None`: leaves it whole), and says which field
/// its rejection must name.
fn break_record(i: usize, record: &mut Value) -> Option<&'static str> {
    if !i.is_multiple_of(97) {
        return None;
    }
    let object = |r: &mut Value| r["s3"]["object"].as_object_mut().unwrap().clone();
    let field = match (i / 97) % 12 {
        0 => {
            let mut o = object(record);
            o.remove("key");
            record["s3"]["object"] = Value::Object(o);
            "s3.object.key"
        }
        1 => {
            record["s3"].as_object_mut().unwrap().remove("bucket");
            "s3.bucket.name"
        }
        2 => {
            record.as_object_mut().unwrap().remove("eventName");
            "eventName"
        }
        3 => {
            record["s3"]["object"]["size"] = json!("7");
            "s3.object.size"
        }
        4 => {
            record["s3"]["object"]["size"] = json!(-7);
            "s3.object.size"
        }
        5 => {
            record["s3"]["object"]["size"] = json!(u64::MAX);
            "s3.object.size"
        }
        6 => {
            record["s3"]["object"]["size"] = json!(7.5);
            "s3.object.size"
        }
        7 => {
            record["s3"]["object"]["key"] = json!("bad%ZZ");
            "s3.object.key"
        }
        8 => {
            record["s3"]["object"]["key"] = json!("bad%C3%28");
            "s3.object.key"
        }
        9 => {
            record["s3"]["object"]["key"] = json!(42);
            "s3.object.key"
        }
        10 => {
            record["s3"]["bucket"]["name"] = json!("no/such bucket");
            "s3.bucket.name"
        }
        _ => {
            record["eventVersion"] = json!(null);
            "eventVersion"
        }
    };
    Some(field)
}

/// The field a rejection names (every rejection a record can get names one, but for the key's
/// own errors, which are about `s3.object.key`).
fn field_of(error: &RecordError) -> &'static str {
    match error {
        RecordError::Missing { field }
        | RecordError::WrongType { field, .. }
        | RecordError::UnsupportedVersion { field, .. }
        | RecordError::UnexpectedSource { field, .. }
        | RecordError::UnknownEvent { field, .. }
        | RecordError::FieldTooLong { field, .. }
        | RecordError::InvalidBucket { field, .. }
        | RecordError::ImpossibleSize { field, .. } => field,
        RecordError::InvalidKey { .. } | RecordError::KeyTooLong { .. } => "s3.object.key",
        RecordError::ForeignBucket(_) => "s3.bucket.name",
        RecordError::NotAnObject { .. } | RecordError::Unreadable { .. } => "",
    }
}

#[test]
fn ten_thousand_records_yield_ten_thousand_outcomes_in_order_and_in_linear_time() {
    let mut broken = Vec::new();
    let records: Vec<Value> = (0..MAX_RECORDS)
        .map(|i| {
            let mut record = record("ObjectCreated:Put", &format!("batch/{i:05}.jpg"));
            broken.push(break_record(i, &mut record));
            record
        })
        .collect();
    let body = notification(records);
    assert!(body.len() < MAX_BODY_BYTES, "{}", body.len());

    let started = std::time::Instant::now();
    let outcomes = parse(&body);
    let elapsed = started.elapsed();
    assert_eq!(outcomes.len(), MAX_RECORDS);
    let mut rejected = 0;
    for (i, (outcome, broken)) in outcomes.into_iter().zip(&broken).enumerate() {
        match broken {
            None => assert_eq!(replicate_job(outcome).key, format!("batch/{i:05}.jpg")),
            Some(field) => {
                let error = rejection(outcome);
                assert_eq!(field_of(&error), *field, "record {i}: {error}");
                let message = error.to_string();
                assert!(message.contains(&format!("`{field}`")) || message.contains("key"));
                rejected += 1;
            }
        }
    }
    assert_eq!(rejected, MAX_RECORDS.div_ceil(97));
    // Linear work: ~10k records of ~200 bytes take milliseconds (tens in a debug build). A
    // quadratic step (10^8 record visits) would take far longer even in release.
    assert!(elapsed < std::time::Duration::from_secs(5), "{elapsed:?}");

    // One more record is refused whole, with what to do.
    let records = vec![record("ObjectCreated:Put", "k"); MAX_RECORDS + 1];
    let error = parse_notification(&notification(records)).unwrap_err();
    assert!(error.to_string().contains("split it"), "{error}");
}

#[test]
fn records_missing_or_misstating_fields_are_rejected_one_by_one() {
    type Break = fn(&mut Value);
    let cases: [(&str, Break); 16] = [
        ("s3.object.key", |r| {
            r["s3"]["object"].as_object_mut().unwrap().remove("key");
        }),
        ("s3.object.key", |r| r["s3"]["object"]["key"] = Value::Null),
        ("s3.object.key", |r| r["s3"]["object"]["key"] = json!("")),
        ("s3.object.key", |r| r["s3"]["object"]["key"] = json!(["a"])),
        ("s3.bucket.name", |r| {
            r["s3"].as_object_mut().unwrap().remove("bucket");
        }),
        ("s3.bucket.name", |r| r["s3"]["bucket"]["name"] = json!(7)),
        ("eventName", |r| {
            r.as_object_mut().unwrap().remove("eventName");
        }),
        ("eventName", |r| r["eventName"] = json!({"name": "Put"})),
        ("s3.object", |r| r["s3"]["object"] = json!("k")),
        ("s3.object.size", |r| r["s3"]["object"]["size"] = json!("7")),
        ("s3.object.size", |r| r["s3"]["object"]["size"] = json!(-1)),
        ("s3.object.size", |r| r["s3"]["object"]["size"] = json!(0.5)),
        ("s3.object.size", |r| {
            r["s3"]["object"]["size"] = json!(1e20)
        }),
        ("s3.object.size", |r| {
            r["s3"]["object"]["size"] = json!(MAX_OBJECT_BYTES + 1);
        }),
        ("s3.object.size", |r| {
            r["s3"]["object"]["size"] = json!(true)
        }),
        ("s3.object.eTag", |r| r["s3"]["object"]["eTag"] = json!(12)),
    ];
    let mut records = vec![record("ObjectCreated:Put", "first")];
    for (_, break_it) in &cases {
        let mut record = record("ObjectCreated:Put", "broken");
        break_it(&mut record);
        records.push(record);
    }
    records.push(record("ObjectRemoved:Delete", "last"));
    let outcomes = parse(&notification(records));
    assert_eq!(outcomes.len(), cases.len() + 2);
    let mut outcomes = outcomes.into_iter();
    assert_eq!(replicate_job(outcomes.next().unwrap()).key, "first");
    for ((field, _), outcome) in cases.iter().zip(outcomes.by_ref()) {
        let error = rejection(outcome);
        assert_eq!(field_of(&error), *field, "{error}");
        assert!(error.to_string().contains(&format!("`{field}`")), "{error}");
    }
    assert_eq!(delete_job(outcomes.next().unwrap()).key, "last");

    // The largest size an S3 object can have is accepted; zero too.
    for size in [0, 1, MAX_OBJECT_BYTES] {
        let mut record = record("ObjectCreated:Put", "k");
        record["s3"]["object"]["size"] = json!(size);
        let job = replicate_job(parse_one(&notification(vec![record])));
        assert_eq!(job.size, Some(size));
    }
    // The same rule for EventBridge.
    let mut event = eventbridge("Object Created");
    event["detail"]["object"]["size"] = json!(u64::MAX);
    let error = rejection(parse_one(&event.to_string()));
    assert_eq!(
        error,
        RecordError::ImpossibleSize {
            field: "detail.object.size",
            bytes: u64::MAX
        }
    );
    assert!(error.to_string().contains("not written by S3"), "{error}");
}

#[test]
fn bucket_names_are_checked() {
    let legacy = "a".repeat(255);
    for bucket in ["src", "a.b-c_d", "Legacy_Bucket", legacy.as_str()] {
        let mut record = record("ObjectCreated:Put", "k");
        record["s3"]["bucket"]["name"] = json!(bucket);
        assert_eq!(
            replicate_job(parse_one(&notification(vec![record]))).bucket,
            bucket
        );
    }
    let huge = "b".repeat(5_000_000);
    for bucket in [
        "ab",
        "a/b",
        "../other",
        "a b",
        "bücket",
        "b\u{0}ucket",
        "a%2Fb",
        &"a".repeat(256),
        &huge,
    ] {
        let mut record = record("ObjectCreated:Put", "k");
        record["s3"]["bucket"]["name"] = json!(bucket);
        let error = rejection(parse_one(&notification(vec![record])));
        assert!(
            matches!(
                error,
                RecordError::InvalidBucket {
                    field: "s3.bucket.name",
                    ..
                }
            ),
            "{bucket:.20}: {error}"
        );
        assert!(error.to_string().len() < 1_000);
    }
    let mut event = eventbridge("Object Created");
    event["detail"]["bucket"]["name"] = json!("x/y");
    assert!(matches!(
        rejection(parse_one(&event.to_string())),
        RecordError::InvalidBucket {
            field: "detail.bucket.name",
            ..
        }
    ));
}

#[test]
fn deep_nesting_is_refused_before_parsing_with_where() {
    // Far past serde_json's own limit (128) and any stack: refused by a flat scan, no panic.
    for depth in [MAX_JSON_DEPTH + 1, 129, 200, 100_000, 1_000_000] {
        for (open, close) in [("[", "]"), ("{\"a\":", "}")] {
            let body = format!("{}1{}", open.repeat(depth), close.repeat(depth));
            if body.len() > MAX_BODY_BYTES {
                continue;
            }
            let error = parse_notification(&body).unwrap_err();
            let NotificationError::TooDeeplyNested { offset, max } = error else {
                panic!("{depth}: {error:?}");
            };
            assert_eq!(max, MAX_JSON_DEPTH);
            assert_eq!(offset, MAX_JSON_DEPTH * open.len());
            assert!(error.to_string().contains("levels deep"));
        }
    }
    // Unclosed: still refused at the same place, whatever follows.
    let error = parse_notification(&"[".repeat(1_000_000)).unwrap_err();
    assert!(matches!(error, NotificationError::TooDeeplyNested { .. }));

    // Inside a real notification: the document as a whole is refused, as no AWS delivery
    // nests like that (and JSON cannot be parsed record by record).
    let mut deep_record = record("ObjectCreated:Put", "k");
    let mut nested = json!(1);
    for _ in 0..MAX_JSON_DEPTH {
        nested = json!([nested]);
    }
    deep_record["userIdentity"] = nested;
    let body = notification(vec![record("ObjectCreated:Put", "a"), deep_record]);
    assert!(matches!(
        parse_notification(&body),
        Err(NotificationError::TooDeeplyNested { .. })
    ));

    // Nesting up to the limit is read (the object and array inside count for two).
    let mut nested = json!({"Records": []});
    for _ in 0..MAX_JSON_DEPTH - 2 {
        nested = json!({"x": nested});
    }
    assert!(matches!(
        parse_notification(&nested.to_string()),
        Err(NotificationError::UnrecognisedShape { .. })
    ));

    // Brackets and escaped quotes inside strings are text, not nesting.
    let key = format!("{}\\\"{}", "[".repeat(200), "{".repeat(200));
    let job = replicate_job(parse_one(&notification(vec![record(
        "ObjectCreated:Put",
        &key,
    )])));
    assert_eq!(job.key, key);

    // The same bound inside an SNS envelope's message.
    let deep_message = format!("{}{}", "[".repeat(500), "]".repeat(500));
    let envelope = json!({"Type": "Notification", "Message": deep_message});
    let error = parse_notification(&envelope.to_string()).unwrap_err();
    assert!(
        matches!(&error, NotificationError::InSnsMessage(inner)
            if matches!(**inner, NotificationError::TooDeeplyNested { .. })),
        "{error:?}"
    );
}

#[test]
fn multi_megabyte_bodies_are_read_or_refused_without_echoing_them() {
    // Over the limit: refused before it is parsed.
    let body = format!("{{\"Records\":[\"{}\"]}}", "x".repeat(MAX_BODY_BYTES));
    let error = parse_notification(&body).unwrap_err();
    assert!(matches!(error, NotificationError::TooLarge { .. }));
    assert!(error.to_string().len() < 1_000);

    // Under it, a few megabytes in one field cost that record only, and no error copies it.
    let megabytes = "m".repeat(3_000_000);
    type Break = fn(&mut Value, &str);
    let cases: [Break; 6] = [
        |r, big| r["s3"]["object"]["key"] = json!(big),
        |r, big| r["s3"]["object"]["key"] = json!(format!("{big}%ZZ")),
        |r, big| r["eventName"] = json!(big),
        |r, big| r["s3"]["object"]["versionId"] = json!(big),
        |r, big| r["s3"]["object"]["eTag"] = json!(big),
        |r, big| r["s3"]["object"]["sequencer"] = json!(big),
    ];
    for break_it in cases {
        let mut bad = record("ObjectCreated:Put", "k");
        break_it(&mut bad, &megabytes);
        let body = notification(vec![bad, record("ObjectCreated:Put", "good")]);
        assert!(body.len() > 3_000_000 && body.len() < MAX_BODY_BYTES);
        let mut outcomes = parse(&body).into_iter();
        let error = rejection(outcomes.next().unwrap());
        assert!(
            error.to_string().len() < 1_000,
            "{}",
            error.to_string().len()
        );
        assert_eq!(replicate_job(outcomes.next().unwrap()).key, "good");
    }
    // A long but plausible value is kept.
    let mut record = record("ObjectCreated:Put", "k");
    record["s3"]["object"]["versionId"] = json!("v".repeat(1024));
    let job = replicate_job(parse_one(&notification(vec![record])));
    assert_eq!(job.version_id.map(|v| v.len()), Some(1024));

    // Not JSON at all, megabytes of it: the parser's position, not the text.
    let error = parse_notification(&"\u{1F600}".repeat(1_000_000)).unwrap_err();
    assert!(matches!(error, NotificationError::NotJson(_)));
    assert!(error.to_string().len() < 1_000);
}

#[test]
fn every_job_fits_in_one_sqs_message() {
    // The longest values a record can carry past the checks still make a job far below SQS's
    // 256 KiB, so a notification never fails to enqueue for the size of one of its jobs.
    let mut record = record("ObjectCreated:Put", &"%C3%A9".repeat(512));
    record["s3"]["bucket"]["name"] = json!("b".repeat(255));
    for field in ["versionId", "eTag", "sequencer"] {
        record["s3"]["object"][field] = json!("v".repeat(1024));
    }
    let RecordOutcome::Job(job) = parse_one(&notification(vec![record])) else {
        panic!("expected a job");
    };
    assert!(
        job.to_message().len() < 16 * 1024,
        "{}",
        job.to_message().len()
    );
}

#[test]
fn keys_are_decoded_exactly_and_left_for_the_worker_to_judge() {
    // Ingest decodes; whether GCS can hold the key is the worker's call (and its reason), so
    // keys S3 can hold and GCS cannot (CR, LF, `..`) still make jobs here.
    for (raw, key) in [
        ("a%09b%00c%1Fd%7F", "a\tb\0c\u{1f}d\u{7f}"),
        ("line%0D%0Abreak", "line\r\nbreak"),
        ("a+b", "a b"),
        ("a%2Bb", "a+b"),
        ("a%2Fb", "a/b"),
        ("a%2fb", "a/b"),
        ("%2Fleading", "/leading"),
        ("a%2F%2Fb", "a//b"),
        ("a//b", "a//b"),
        ("%2E%2E", ".."),
        ("a/../b", "a/../b"),
        ("caf%C3%A9", "caf\u{e9}"),
        ("cafe%CC%81", "cafe\u{301}"),
        ("%F0%9F%98%80", "\u{1F600}"),
        ("+", " "),
    ] {
        let job = replicate_job(parse_one(&notification(vec![record(
            "ObjectCreated:Put",
            raw,
        )])));
        assert_eq!(job.key, key, "{raw}");
    }
    // Bytes that are not UTF-8 are refused, with the raw key and the reason.
    for raw in [
        "%C3%28",
        "%C0%AF",
        "%ED%A0%80",
        "%F4%90%80%80",
        "%80",
        "%F0%9F%98",
        "%FE%FF",
    ] {
        let error = rejection(parse_one(&notification(vec![record(
            "ObjectCreated:Put",
            raw,
        )])));
        assert!(
            matches!(
                &error,
                RecordError::InvalidKey {
                    source: KeyDecodeError::NotUtf8 { .. },
                    raw: quoted,
                } if quoted == raw
            ),
            "{raw}: {error:?}"
        );
        let message = error.to_string();
        assert!(
            message.contains("not UTF-8") && message.contains(raw),
            "{message}"
        );
    }
}

#[test]
fn a_number_out_of_range_rejects_only_its_record() {
    let good = record("ObjectCreated:Put", "good.jpg").to_string();
    let bad = record("ObjectCreated:Put", "bad.jpg")
        .to_string()
        .replace("\"size\":7", "\"size\":1e400");
    assert!(bad.contains("1e400"), "{bad}");
    let outcomes = parse(&format!("{{\"Records\":[{good},{bad}]}}"));
    assert_eq!(replicate_job(outcomes[0].clone()).key, "good.jpg");
    let RecordOutcome::Rejected {
        error,
        notification,
    } = &outcomes[1]
    else {
        panic!("expected a rejection, got {:?}", outcomes[1]);
    };
    assert!(
        matches!(error, RecordError::Unreadable { problem } if problem.contains("out of range")),
        "{error}"
    );
    assert!(
        error.to_string().starts_with("the record cannot be read"),
        "{error}"
    );
    // Set aside as written, a notification of its own.
    assert_eq!(notification, &format!("{{\"Records\":[{bad}]}}"));
}

#[test]
fn a_rejected_record_is_set_aside_as_a_notification_that_reads_again() {
    let bad = record("ObjectCreated:Put", "bad.jpg")
        .to_string()
        .replace("\"2.1\"", "\"3.0\"");
    let body = notification(vec![
        record("ObjectCreated:Put", "a.jpg"),
        serde_json::from_str(&bad).unwrap(),
    ]);
    let RecordOutcome::Rejected { notification, .. } = parse(&body).remove(1) else {
        panic!("the second record is rejected");
    };
    // Read again (after a fix, say), it is that one record.
    let again = parse(&notification);
    assert_eq!(again.len(), 1);
    assert!(matches!(
        rejection(again[0].clone()),
        RecordError::UnsupportedVersion { .. }
    ));
    let event = eventbridge("Object Created")
        .to_string()
        .replace("\"aws.s3\"", "\"aws.ec2\"");
    let RecordOutcome::Rejected { notification, .. } = parse_one(&event) else {
        panic!("a foreign source is rejected");
    };
    assert_eq!(
        notification, event,
        "an EventBridge event is set aside whole"
    );
}

#[test]
fn an_eventbridge_event_with_a_number_out_of_range_is_one_rejected_record() {
    let event = eventbridge("Object Created");
    let text = event.to_string().replace(
        &format!("\"size\":{}", event["detail"]["object"]["size"]),
        "\"size\":1e400",
    );
    assert!(text.contains("1e400"), "{text}");
    assert!(matches!(
        rejection(parse_one(&text)),
        RecordError::Unreadable { .. }
    ));
}

#[test]
fn a_record_of_another_bucket_is_rejected_with_the_bucket_named() {
    let sources = crate::SourceBuckets::new("src".to_owned(), None).unwrap();
    let mut foreign = record("ObjectRemoved:Delete", "a.jpg");
    foreign["s3"]["bucket"]["name"] = json!("payroll");
    let body = notification(vec![record("ObjectCreated:Put", "a.jpg"), foreign]);
    let outcomes = parse_notification_of(&body, &sources).unwrap();
    assert_eq!(replicate_job(outcomes[0].clone()).bucket, "src");
    let error = rejection(outcomes[1].clone());
    assert!(matches!(&error, RecordError::ForeignBucket(refused) if refused.bucket == "payroll"));
    // Unchecked, the same body makes two jobs: the check is ingest's, by its configuration.
    assert_eq!(delete_job(parse(&body).remove(1)).bucket, "payroll");
    // EventBridge and SNS-wrapped deliveries are held to the same rule.
    let event = eventbridge("Object Created").to_string();
    let other = crate::SourceBuckets::new("another".to_owned(), None).unwrap();
    let outcome = parse_notification_of(&event, &other).unwrap().remove(0);
    assert!(matches!(rejection(outcome), RecordError::ForeignBucket(_)));
    let wrapped = json!({"Type": "Notification", "Message": body}).to_string();
    let outcomes = parse_notification_of(&wrapped, &sources).unwrap();
    assert!(matches!(
        rejection(outcomes[1].clone()),
        RecordError::ForeignBucket(_)
    ));
}
