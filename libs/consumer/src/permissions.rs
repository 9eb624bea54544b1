//! What consuming a queue needs from IAM, declared beside the calls (see
//! [`yuba_aws::permissions`]): the queue consumed, and, on ECS, the task's own scale-in
//! protection.

use yuba_aws::permissions::{Need, Permission, Resource, Sdk};

const CRATE: &str = env!("CARGO_PKG_NAME");
const BATCH_DOC: &str =
    "https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-batch-api.html";

/// `Consumer`'s long poll.
pub const RECEIVE_MESSAGE: Permission = Permission {
    need: Need::Call(Sdk::Sqs, "ReceiveMessage"),
    actions: &["sqs:ReceiveMessage"],
    resource: Resource::Queue,
    condition: None,
    why: "long-polls the queue",
    doc: "https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_ReceiveMessage.html",
    declared_in: CRATE,
};

/// `Consumer`: a message's invisibility renewed while it is worked on, and a failed one's
/// return set by its backoff.
pub const CHANGE_MESSAGE_VISIBILITY: Permission = Permission {
    need: Need::Call(Sdk::Sqs, "ChangeMessageVisibility"),
    actions: &["sqs:ChangeMessageVisibility"],
    resource: Resource::Queue,
    condition: None,
    why: "keeps a message invisible while it is worked on, and delays a failed one's return",
    doc: "https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_ChangeMessageVisibility.html",
    declared_in: CRATE,
};

/// `Consumer`'s batched deletes of finished messages.
pub const DELETE_MESSAGE_BATCH: Permission = Permission {
    need: Need::Call(Sdk::Sqs, "DeleteMessageBatch"),
    actions: &["sqs:DeleteMessage"],
    resource: Resource::Queue,
    condition: None,
    why: "DeleteMessageBatch is authorised by sqs:DeleteMessage",
    doc: BATCH_DOC,
    declared_in: CRATE,
};

/// [`change_visibility`](crate::change_visibility): releasing or delaying messages in batches.
pub const CHANGE_MESSAGE_VISIBILITY_BATCH: Permission = Permission {
    need: Need::Call(Sdk::Sqs, "ChangeMessageVisibilityBatch"),
    actions: &["sqs:ChangeMessageVisibility"],
    resource: Resource::Queue,
    condition: None,
    why: "ChangeMessageVisibilityBatch is authorised by sqs:ChangeMessageVisibility",
    doc: BATCH_DOC,
    declared_in: CRATE,
};

/// [`protection`](crate::protection): the ECS agent answers a PUT of the task's protection state
/// by calling UpdateTaskProtection with the task role's credentials, and AWS documents that the
/// role needs it. GET (GetTaskProtection) is never sent, so not needed.
pub const UPDATE_TASK_PROTECTION: Permission = Permission {
    need: Need::EcsAgent {
        method: "PUT",
        path: crate::protection::STATE_PATH,
    },
    actions: &["ecs:UpdateTaskProtection"],
    resource: Resource::ClusterTasks,
    condition: None,
    why: "holds the task's scale-in protection while messages are in flight",
    doc: "https://docs.aws.amazon.com/AmazonECS/latest/developerguide/task-scale-in-protection.html",
    declared_in: CRATE,
};

/// Long-polling a queue: [`Consumer`](crate::Consumer).
pub const CONSUMING: &[&Permission] = &[
    &RECEIVE_MESSAGE,
    &CHANGE_MESSAGE_VISIBILITY,
    &DELETE_MESSAGE_BATCH,
    &CHANGE_MESSAGE_VISIBILITY_BATCH,
];

/// The task's scale-in protection while busy:
/// [`Consumer::with_task_protection`](crate::Consumer::with_task_protection).
pub const TASK_PROTECTION: &[&Permission] = &[&UPDATE_TASK_PROTECTION];

/// Setting messages' visibility alone: [`change_visibility`](crate::change_visibility).
pub const CHANGING_VISIBILITY: &[&Permission] = &[&CHANGE_MESSAGE_VISIBILITY_BATCH];

// The Lambda home (`lambda`): every permission here is on the trigger queue.

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

/// Served from an SQS trigger: [`SqsBatches`](crate::lambda::SqsBatches) (and
/// [`serve_sqs_batches`](crate::lambda::serve_sqs_batches)), which makes failed messages visible
/// again after their backoff through [`change_visibility`](crate::change_visibility).
pub const SQS_TRIGGER: &[&Permission] = &[
    &EVENT_SOURCE_MAPPING,
    &GET_QUEUE_URL,
    &CHANGE_MESSAGE_VISIBILITY_BATCH,
];

/// Everything this crate declares.
pub const DECLARED: &[&Permission] = &[
    &RECEIVE_MESSAGE,
    &CHANGE_MESSAGE_VISIBILITY,
    &DELETE_MESSAGE_BATCH,
    &CHANGE_MESSAGE_VISIBILITY_BATCH,
    &UPDATE_TASK_PROTECTION,
    &EVENT_SOURCE_MAPPING,
    &GET_QUEUE_URL,
];
