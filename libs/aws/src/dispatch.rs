//! The one path by which jobs reach the work queues, for ingest and the reconciler alike: each
//! job is routed by [`Router`] (by object size) and sent, in batches, to its pool's queue.

use yuba_events::{Route, Router, WorkQueues};
use yuba_model::Job;

use crate::{JobSender, SendError};

/// Routes jobs to their worker pool's queue and puts them there.
#[derive(Debug, Clone)]
pub struct Dispatcher {
    sender: JobSender,
    queues: WorkQueues,
    router: Router,
}

/// What became of one job: the pool it was routed to, and whether it is on that pool's queue.
pub type Dispatched = (Route, Result<(), SendError>);

impl Dispatcher {
    pub fn new(sender: JobSender, queues: WorkQueues, router: Router) -> Self {
        Dispatcher {
            sender,
            queues,
            router,
        }
    }

    /// Sends every job to the queue of the pool it routes to. One result per job, in order,
    /// so the caller can account for exactly the jobs that did not make it.
    pub async fn dispatch(&self, jobs: &[&Job]) -> Vec<Dispatched> {
        let mut dispatched: Vec<(usize, Dispatched)> = Vec::with_capacity(jobs.len());
        for route in [Route::Lambda, Route::Fargate] {
            let (indices, bodies): (Vec<usize>, Vec<String>) = jobs
                .iter()
                .enumerate()
                .filter(|(_, job)| self.router.route(job) == route)
                .map(|(index, job)| (index, job.to_message()))
                .unzip();
            if bodies.is_empty() {
                continue;
            }
            let sent = self.sender.send(self.queues.url(route), &bodies).await;
            dispatched.extend(
                indices
                    .into_iter()
                    .zip(sent.into_iter().map(|r| (route, r))),
            );
        }
        dispatched.sort_by_key(|(index, _)| *index);
        dispatched.into_iter().map(|(_, job)| job).collect()
    }
}
