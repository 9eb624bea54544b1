use yuba_model::Job;
use yuba_startup::{ConfigError, Env};

/// Objects up to this size are copied by the Lambda worker, larger ones by Fargate.
const DEFAULT_ROUTE_THRESHOLD_BYTES: u64 = 256 * 1024 * 1024;

/// Which worker pool a job goes to (each has its own work queue).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Route {
    /// Quick to start, but a run is cut off at 15 minutes.
    Lambda,
    /// Long-running tasks with no time limit, for objects that may take longer to copy.
    Fargate,
}

impl Route {
    /// A stable lower-case name, for logs and metric dimensions.
    pub fn as_str(self) -> &'static str {
        match self {
            Route::Lambda => "lambda",
            Route::Fargate => "fargate",
        }
    }
}

/// The work queue of each worker pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkQueues {
    pub lambda: String,
    pub fargate: String,
}

impl WorkQueues {
    pub fn from_env(env: &Env) -> Result<WorkQueues, ConfigError> {
        Ok(WorkQueues {
            lambda: env.required(
                "YUBA_LAMBDA_QUEUE_URL",
                "set it to the URL of the work queue the Lambda worker consumes",
            )?,
            fargate: env.required(
                "YUBA_FARGATE_QUEUE_URL",
                "set it to the URL of the work queue the Fargate worker consumes",
            )?,
        })
    }

    pub fn url(&self, route: Route) -> &str {
        match route {
            Route::Lambda => &self.lambda,
            Route::Fargate => &self.fargate,
        }
    }
}

/// Sends each job to the worker pool that can finish it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Router {
    threshold_bytes: u64,
}

impl Router {
    /// Objects of at most `threshold_bytes` go to Lambda; pick it so that the slowest expected
    /// copy of an object that size (and its variants) ends well inside Lambda's 15 minutes.
    pub fn new(threshold_bytes: u64) -> Router {
        Router { threshold_bytes }
    }

    /// `YUBA_ROUTE_THRESHOLD_BYTES`, 256 MiB by default.
    pub fn from_env(env: &Env) -> Result<Router, ConfigError> {
        env.number_in(
            "YUBA_ROUTE_THRESHOLD_BYTES",
            DEFAULT_ROUTE_THRESHOLD_BYTES,
            0..=5 * 1024 * 1024 * 1024 * 1024,
        )
        .map(Router::new)
    }

    pub fn threshold_bytes(&self) -> u64 {
        self.threshold_bytes
    }

    pub fn route(&self, job: &Job) -> Route {
        match job {
            // A delete moves no bytes.
            Job::Delete(_) => Route::Lambda,
            Job::Replicate(job) => match job.size {
                Some(size) if size <= self.threshold_bytes => Route::Lambda,
                // An unknown size may be any size, and a large object on Lambda would be cut off
                // at 15 minutes and retried forever; Fargate finishes it either way.
                _ => Route::Fargate,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use yuba_model::{DeleteJob, ReplicateJob};

    fn replicate(size: Option<u64>) -> Job {
        Job::Replicate(ReplicateJob {
            bucket: "src".into(),
            key: "k".into(),
            version_id: None,
            etag: None,
            size,
            sequencer: None,
            event_time: None,
            force: false,
        })
    }

    #[test]
    fn small_objects_go_to_lambda_and_large_ones_to_fargate() {
        let router = Router::new(100 * 1024 * 1024);
        assert_eq!(router.route(&replicate(Some(0))), Route::Lambda);
        assert_eq!(
            router.route(&replicate(Some(100 * 1024 * 1024))),
            Route::Lambda
        );
        assert_eq!(
            router.route(&replicate(Some(100 * 1024 * 1024 + 1))),
            Route::Fargate
        );
        assert_eq!(router.route(&replicate(Some(u64::MAX))), Route::Fargate);
    }

    #[test]
    fn objects_of_unknown_size_go_to_fargate() {
        assert_eq!(
            Router::new(u64::MAX).route(&replicate(None)),
            Route::Fargate
        );
    }

    #[test]
    fn deletes_go_to_lambda() {
        let delete = Job::Delete(DeleteJob {
            bucket: "src".into(),
            key: "k".into(),
            version_id: None,
            sequencer: None,
            event_time: None,
        });
        assert_eq!(Router::new(0).route(&delete), Route::Lambda);
        assert_eq!(Route::Lambda.as_str(), "lambda");
        assert_eq!(Route::Fargate.as_str(), "fargate");
    }
}
