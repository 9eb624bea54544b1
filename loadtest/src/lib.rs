//! yuba's load test: what users ask first. How fast does an upload show up in GCS, how much can
//! it take, and what does it cost? The binary drives a run (uploads at a rate, watches the
//! replica bucket, samples queues and processes); this library holds what is pure about it: the
//! run's record ([`model`]), the cost model ([`cost`]) and the report ([`report`]).

pub mod cost;
pub mod model;
pub mod report;
