//! The run the report's tests start from, and its page.

use super::plots::{LATENCY_SVG, Plots, THROUGHPUT_SVG};
use super::{summarize, to_markdown};
use crate::cost::{self, Prices};
use crate::model::{
    Environment, MixPart, ObjectKind, ObjectResult, ProcessRole, ProcessUsage, QueueSample, Run,
    Scenario,
};

fn object(i: usize, uploaded_s: f64, latency_s: Option<f64>) -> ObjectResult {
    ObjectResult {
        key: format!("loadtest/{i:06}"),
        kind: ObjectKind::SmallBinary,
        bytes: 4096,
        due_s: uploaded_s - 0.01,
        upload_started_s: uploaded_s - 0.01,
        uploaded_s: Some(uploaded_s),
        replica_s: latency_s.map(|l| uploaded_s + l),
        variants_s: None,
        error: None,
    }
}

/// 1000 pass-through copies at 50/s, with latencies 1..=1000 ms in a shuffled order.
pub(super) fn run() -> Run {
    let objects = (1..=1000)
        .map(|i| {
            let uploaded = i as f64 / 50.0;
            let latency_ms = (i * 7919) % 1000 + 1;
            object(i, uploaded, Some(latency_ms as f64 / 1000.0))
        })
        .collect();
    Run {
        scenario: Scenario {
            name: "pass-through".to_owned(),
            rate_per_s: Some(50.0),
            concurrency: 32,
            duration_s: 20.0,
            drain_s: 60.0,
            variant_profiles: Vec::new(),
            mix: vec![MixPart {
                kind: ObjectKind::SmallBinary,
                weight: 1,
                sizes: vec![4096],
            }],
            p99_target_s: Some(1.0),
        },
        started_at: "2025-06-01T12:00:00Z".to_owned(),
        environment: Environment {
            target: "local stack".to_owned(),
            cores: 2,
        },
        objects,
        queue_depth: (0..=21)
            .map(|t| QueueSample {
                t_s: t as f64,
                depths: vec![("events".to_owned(), 3), ("dlq".to_owned(), 0)],
            })
            .collect(),
        processes: vec![
            ProcessUsage {
                name: "worker-lambda".to_owned(),
                role: ProcessRole::Worker,
                cpu_s: 4.0,
                peak_rss_bytes: 60 << 20,
            },
            ProcessUsage {
                name: "moto".to_owned(),
                role: ProcessRole::Server,
                cpu_s: 5.0,
                peak_rss_bytes: 200 << 20,
            },
        ],
    }
}

pub(super) fn markdown(run: &Run) -> String {
    let plots = Plots {
        latency: LATENCY_SVG.to_owned(),
        throughput: THROUGHPUT_SVG.to_owned(),
    };
    let costs = cost::estimate(run, &Prices::default());
    to_markdown(run, &summarize(run), &costs, &plots)
}
