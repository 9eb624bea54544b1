//! What a Lambda home needs from IAM, declared beside the glue (see
//! [`yuba_aws::permissions`]). Every permission here is on the trigger queue.

use yuba_aws::permissions::{Need, Permission, Resource, Sdk};

const CRATE: &str = env!("CARGO_PKG_NAME");

/// Not a call of ours: the event source mapping polls the trigger queue, and deletes what a
/// batch response does not report failed, with the function's role.
pub const EVENT_SOURCE_MAPPING: Permission = Permission {
    need: Need::Other("the Lambda SQS event source mapping, which polls with the function's role"),
    actions: &[
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:GetQueueAttributes",
    ],
    resource: Resource::Queue,
    condition: None,
    why: "Lambda reads, deletes and inspects the trigger queue as the function",
    doc: "https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-configure.html",
    declared_in: CRATE,
};

/// `SqsBatches::queue_url`: an SQS event names its queue by ARN, the visibility calls need
/// its URL.
pub const GET_QUEUE_URL: Permission = Permission {
    need: Need::Call(Sdk::Sqs, "GetQueueUrl"),
    actions: &["sqs:GetQueueUrl"],
    resource: Resource::Queue,
    condition: None,
    why: "finds the URL of the trigger queue, to set its failed messages' visibility",
    doc: "https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_GetQueueUrl.html",
    declared_in: CRATE,
};

/// Served from an SQS trigger: [`SqsBatches`](crate::SqsBatches) (and
/// [`serve_sqs_batches`](crate::serve_sqs_batches)), which makes failed messages visible again
/// after their backoff through [`yuba_consumer::change_visibility`].
pub const SQS_TRIGGER: &[&Permission] = &[
    &EVENT_SOURCE_MAPPING,
    &GET_QUEUE_URL,
    &yuba_consumer::permissions::CHANGE_MESSAGE_VISIBILITY_BATCH,
];

/// Everything this crate declares.
pub const DECLARED: &[&Permission] = &[&EVENT_SOURCE_MAPPING, &GET_QUEUE_URL];
