//! The delivery origin: what CloudFront reads when S3 cannot answer (an original S3 lost) and for
//! every variant. It answers GET and HEAD of the paths `yuba_delivery::path` defines from the
//! GCS replica: an original by its replica's record, a variant by its object beside it, and a
//! variant that is not there yet (a profile added later, a race with the worker) rendered on
//! demand with the worker's transform, limits and memory budget, then written back for the
//! next request.
//!
//! [`Origin::answer`] is the whole of it, with no HTTP server of its own: the plain-HTTP home
//! ([`http`]) and the Lambda function URL's home ([`lambda`]) give it requests and send what it
//! answers.
//!
//! Invariant: only objects that are replicas (a complete record) or fresh variants of one (their
//! record names the replica's content) are served; nothing else in the bucket is reachable by a
//! path, whatever its spelling.

pub mod http;
pub mod lambda;
mod made;
mod origin;
mod recent;
mod refusal;
mod settings;

pub use origin::{Answer, Body, Observer, Origin, Request, Served};
pub use refusal::Refusal;
pub use settings::OriginSettings;
