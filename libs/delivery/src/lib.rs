//! What the delivery origin (`yuba-serve`, behind CloudFront) answers, as pure decisions: which
//! object a URL names ([`path`]), and what HTTP's conditional requests and ranges make of an
//! answer ([`conditional`], [`range`]), put together into the head of an answer ([`respond`]).
//! No I/O: the server reads the replica and applies them.

pub mod conditional;
pub mod path;
pub mod range;
pub mod respond;
