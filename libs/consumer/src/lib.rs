//! Consuming an SQS queue the way a long-running service must: long polls, N messages in
//! flight, visibility extended while a message is worked on, successes deleted in batches,
//! failures made visible again after a backoff (transient) or at once (permanent, so that SQS
//! moves them to the dead-letter queue after the queue's maxReceiveCount), and a clean drain on
//! shutdown. On ECS, the task holds scale-in protection while messages are in flight
//! ([`protection`]).
//!
//! The same [`Handler`] also serves batches that arrive pushed rather than pulled: see
//! [`handle_batch`], and [`lambda`] for a Lambda SQS trigger (the one module that knows Lambda).

mod batch;
mod consumer;
mod handler;
pub mod lambda;
pub mod permissions;
pub mod protection;
mod settings;
mod visibility;

pub use batch::{FailedDelivery, handle_batch};
pub use consumer::{Consumer, ConsumerStats};
pub use handler::{Delivery, Handler, HandlerError};
pub use settings::{ConsumerSettings, MessageBackoff, TaskProtectionSettings};
pub use visibility::change_visibility;
pub use yuba_model::FailureKind;
