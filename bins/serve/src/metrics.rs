//! The origin's reports as EMF metrics (`yuba_startup::metrics`): requests and their latency
//! by how they were served, and renders on demand.

use std::time::Duration;

use yuba_origin::{Observer, Served};
use yuba_startup::metrics::{self, Dimension, Metric};

#[derive(Debug)]
pub struct Metrics;

impl Observer for Metrics {
    fn answered(&self, served: Served, latency: Duration) {
        metrics::emit(
            &[(Dimension::Served, served.as_str())],
            &[
                (Metric::OriginRequests, 1.0),
                (Metric::OriginLatency, latency.as_secs_f64() * 1000.0),
            ],
        );
    }

    fn rendered(&self) {
        metrics::emit(&[], &[(Metric::OriginRenders, 1.0)]);
    }
}
