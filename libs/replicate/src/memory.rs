//! The memory budget for image work, and the gate every render passes.
//!
//! File size says nothing about decoded size (a 423 KB PNG can declare 7000 × 7000 16-bit
//! pixels), so jobs are admitted by what their render will take, estimated from the header
//! ([`yuba_transform::estimate_memory`]) plus the source held whole. The budget is what the
//! process has ([`MemorySource`]: a setting, the Lambda function's memory, the container's
//! cgroup limit, the machine) minus its own base and the streaming copies' buffers, which are
//! bounded by the configuration whatever is sent ([`Footprint`]). A job waits while the budget
//! is taken; one whose estimate exceeds the whole budget gets no variants
//! (`too_large_for_memory`) and its original is replicated as always.
//!
//! The rule is one function, [`images_budget`]; the CDK sizes its Lambda and Fargate workers
//! with the same numbers (`cdk/lib/generated/memory.json`, written and checked by
//! `tests/tests/e2e/memory.rs`).

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use yuba_startup::{ConfigError, Env};

const MIB: u64 = 1024 * 1024;

/// What the process takes before any job: the binary, the runtime, the AWS and Google clients
/// and their TLS state (measured: about 18 MiB idle; the rest is for the allocator's per-thread
/// arenas and the SDKs' buffers under load).
pub const PROCESS_BASE_MIB: u64 = 64;

/// The share of what is left that is kept back for the allocator: freed image buffers are
/// returned to the system, but smaller allocations made between them fragment the heap.
pub const ALLOCATOR_SLACK_PERCENT: u64 = 10;

/// The least budget that makes variants worth configuring: one 12 MP photo (about 40 MiB
/// decoded and resampled, plus its source).
pub const MIN_IMAGES_BUDGET_MIB: u64 = 48;

/// The setting that overrides where the process's memory is read from.
pub const MEMORY_SETTING: &str = "YUBA_MEMORY_MIB";
/// What Lambda sets to the function's memory, in MB (MiB:
/// <https://docs.aws.amazon.com/lambda/latest/dg/configuration-envvars.html#configuration-envvars-runtime>).
pub const LAMBDA_MEMORY: &str = "AWS_LAMBDA_FUNCTION_MEMORY_SIZE";

/// The buffers a process's copies hold whatever objects they are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Footprint {
    pub upload_chunk_bytes: u64,
    /// Parts of a composite upload in flight at once.
    pub parallel_uploads: u64,
    /// Jobs at once.
    pub concurrency: u64,
}

impl Footprint {
    /// A process with these GCS settings running `concurrency` jobs at once.
    pub fn new(gcs: &yuba_gcs::GcsSettings, concurrency: usize) -> Footprint {
        Footprint {
            upload_chunk_bytes: gcs.upload_chunk_bytes as u64,
            parallel_uploads: gcs.parallel_uploads as u64,
            concurrency: concurrency as u64,
        }
    }

    /// Each job in flight holds at most `parallel_uploads + 1` chunks (README "Memory").
    pub fn streaming_bytes(&self) -> u64 {
        self.upload_chunk_bytes * (self.parallel_uploads + 1) * self.concurrency
    }
}

/// Bytes for image work in a process of `total_mib`: what is left after the base and the
/// streaming buffers, less the allocator's slack. `None` when nothing is left.
pub fn images_budget(total_mib: u64, footprint: &Footprint) -> Option<u64> {
    let left = (total_mib * MIB)
        .checked_sub(PROCESS_BASE_MIB * MIB)?
        .checked_sub(footprint.streaming_bytes())?;
    Some(left - left * ALLOCATOR_SLACK_PERCENT / 100)
}

/// Where the process's memory figure came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemorySource {
    /// `YUBA_MEMORY_MIB`.
    Setting,
    /// `AWS_LAMBDA_FUNCTION_MEMORY_SIZE`.
    Lambda,
    /// The container's cgroup v2 limit (`/sys/fs/cgroup/memory.max`).
    Cgroup,
    /// The machine's memory (`MemTotal` of `/proc/meminfo`): nothing narrower was found.
    Machine,
}

impl std::fmt::Display for MemorySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            MemorySource::Setting => MEMORY_SETTING,
            MemorySource::Lambda => LAMBDA_MEMORY,
            MemorySource::Cgroup => "the cgroup limit",
            MemorySource::Machine => "the machine's memory",
        })
    }
}

/// The process's memory and what of it image work may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryBudget {
    pub total_mib: u64,
    pub source: MemorySource,
    /// Bytes for image work ([`images_budget`]).
    pub images_bytes: u64,
}

impl MemoryBudget {
    /// Reads the process's memory (the setting, else Lambda's variable, else the cgroup limit,
    /// else the machine's) and derives the images' budget. `needed` is false when no variants
    /// are configured: then a budget too small for images is no error.
    pub fn from_env(env: &Env, footprint: &Footprint, needed: bool) -> Result<Self, ConfigError> {
        let (total_mib, source) = if env.is_set(MEMORY_SETTING) {
            (
                env.number_in(MEMORY_SETTING, 0, 64..=1024 * 1024)?,
                MemorySource::Setting,
            )
        } else if env.is_set(LAMBDA_MEMORY) {
            (
                env.number_in(LAMBDA_MEMORY, 0, 128..=10_240)?,
                MemorySource::Lambda,
            )
        } else if let Some(mib) = cgroup_limit_mib() {
            (mib, MemorySource::Cgroup)
        } else {
            let mib = machine_mib().ok_or_else(|| ConfigError::Missing {
                name: MEMORY_SETTING.to_owned(),
                hint: "the machine's memory could not be read from /proc/meminfo: set it to the \
                       process's memory in MiB"
                    .to_owned(),
            })?;
            (mib, MemorySource::Machine)
        };
        let images_bytes = images_budget(total_mib, footprint).unwrap_or(0);
        if needed && images_bytes < MIN_IMAGES_BUDGET_MIB * MIB {
            let name = match source {
                MemorySource::Lambda => LAMBDA_MEMORY,
                _ => MEMORY_SETTING,
            };
            return Err(ConfigError::Invalid {
                name: name.to_owned(),
                value: total_mib.to_string(),
                problem: format!(
                    "{total_mib} MiB (from {source}) leaves {} MiB for making variants, less \
                     than the {MIN_IMAGES_BUDGET_MIB} MiB one photo needs: the process takes \
                     {PROCESS_BASE_MIB} MiB and its uploads {} MiB (YUBA_UPLOAD_CHUNK_BYTES × \
                     (YUBA_GCS_PARALLEL_UPLOADS + 1) × YUBA_CONCURRENCY). Give the process more \
                     memory, or lower one of those",
                    images_bytes / MIB,
                    footprint.streaming_bytes().div_ceil(MIB),
                ),
            });
        }
        Ok(MemoryBudget {
            total_mib,
            source,
            images_bytes,
        })
    }
}

/// The container's memory limit, if it has one (cgroup v2; `max` is none).
fn cgroup_limit_mib() -> Option<u64> {
    let limit = std::fs::read_to_string("/sys/fs/cgroup/memory.max").ok()?;
    limit.trim().parse::<u64>().ok().map(|bytes| bytes / MIB)
}

fn machine_mib() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

/// The gate image work passes: a semaphore over the images' budget, counted in KiB (a
/// semaphore counts in `u32`).
#[derive(Debug, Clone)]
pub struct ImageGate {
    permits: Arc<Semaphore>,
    capacity_kib: u32,
}

/// Memory held by one job until it is dropped.
#[derive(Debug)]
pub struct Reservation {
    permit: OwnedSemaphorePermit,
}

/// What a job asked for, against the whole budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverBudget {
    pub needed: u64,
    pub budget: u64,
}

impl ImageGate {
    pub fn new(budget_bytes: u64) -> ImageGate {
        let capacity_kib = u32::try_from(budget_bytes / 1024).unwrap_or(u32::MAX);
        ImageGate {
            permits: Arc::new(Semaphore::new(capacity_kib as usize)),
            capacity_kib,
        }
    }

    pub fn budget_bytes(&self) -> u64 {
        u64::from(self.capacity_kib) * 1024
    }

    /// Reserves `bytes`, waiting (in arrival order) while the budget is taken; refused at once
    /// if `bytes` is more than the whole budget.
    pub async fn reserve(&self, bytes: u64) -> Result<Reservation, OverBudget> {
        let kib = u32::try_from(bytes.div_ceil(1024))
            .ok()
            .filter(|&kib| kib <= self.capacity_kib)
            .ok_or(OverBudget {
                needed: bytes,
                budget: self.budget_bytes(),
            })?;
        Ok(self.acquire(kib).await)
    }

    /// The whole budget: for a job that cannot know its cost before it has read the source
    /// (a header past the first bytes), which then keeps only what it needs
    /// ([`Reservation::keep`]).
    pub async fn reserve_all(&self) -> Reservation {
        self.acquire(self.capacity_kib).await
    }

    async fn acquire(&self, kib: u32) -> Reservation {
        // The semaphore is never closed.
        let permit = Arc::clone(&self.permits)
            .acquire_many_owned(kib)
            .await
            .unwrap_or_else(|_| unreachable!("the image gate's semaphore is never closed"));
        Reservation { permit }
    }

    /// Bytes not reserved at this moment (for logs and tests).
    pub fn available_bytes(&self) -> u64 {
        self.permits.available_permits() as u64 * 1024
    }
}

impl Reservation {
    /// Keeps `bytes` of the reservation and gives the rest back; refused (and all kept) if
    /// `bytes` is more than is held.
    pub fn keep(&mut self, bytes: u64) -> Result<(), OverBudget> {
        let held = self.permit.num_permits();
        let kib = usize::try_from(bytes.div_ceil(1024)).unwrap_or(usize::MAX);
        if kib > held {
            return Err(OverBudget {
                needed: bytes,
                budget: held as u64 * 1024,
            });
        }
        drop(self.permit.split(held - kib));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FOOTPRINT: Footprint = Footprint {
        upload_chunk_bytes: 8 * MIB,
        parallel_uploads: 4,
        concurrency: 8,
    };

    #[test]
    fn the_budget_is_what_the_base_and_the_uploads_leave_less_slack() {
        // 2,048 − 64 − 320 = 1,664 MiB, less 10 % (rounded down).
        assert_eq!(
            images_budget(2048, &FOOTPRINT),
            Some(1664 * MIB - 1664 * MIB / 10)
        );
        assert_eq!(images_budget(384, &FOOTPRINT), Some(0));
        assert_eq!(images_budget(383, &FOOTPRINT), None);
    }

    #[test]
    fn memory_comes_from_the_setting_then_lambda_and_too_little_is_refused() {
        let env = Env::from_pairs([(MEMORY_SETTING, "1024"), (LAMBDA_MEMORY, "2048")]);
        let budget = MemoryBudget::from_env(&env, &FOOTPRINT, true).unwrap();
        assert_eq!(
            (budget.total_mib, budget.source),
            (1024, MemorySource::Setting)
        );
        let env = Env::from_pairs([(LAMBDA_MEMORY, "2048")]);
        let budget = MemoryBudget::from_env(&env, &FOOTPRINT, true).unwrap();
        assert_eq!(
            (budget.total_mib, budget.source),
            (2048, MemorySource::Lambda)
        );

        // 420 − 64 − 320 = 36 MiB, less 10 %: under the 48 one photo needs.
        let env = Env::from_pairs([(LAMBDA_MEMORY, "420")]);
        let error = MemoryBudget::from_env(&env, &FOOTPRINT, true).unwrap_err();
        let message = error.to_string();
        assert!(
            message.starts_with("AWS_LAMBDA_FUNCTION_MEMORY_SIZE=\"420\""),
            "{message}"
        );
        assert!(message.contains("leaves 32 MiB"), "{message}");
        assert!(message.contains("uploads 320 MiB"), "{message}");
        // Without variants the same memory is fine.
        assert!(MemoryBudget::from_env(&env, &FOOTPRINT, false).is_ok());
        let env = Env::from_pairs([(MEMORY_SETTING, "lots")]);
        assert!(MemoryBudget::from_env(&env, &FOOTPRINT, false).is_err());
    }

    #[tokio::test]
    async fn jobs_wait_for_the_budget_and_what_exceeds_it_is_refused() {
        let gate = ImageGate::new(10 * MIB);
        assert_eq!(
            gate.reserve(11 * MIB).await.unwrap_err(),
            OverBudget {
                needed: 11 * MIB,
                budget: 10 * MIB
            }
        );
        let first = gate.reserve(6 * MIB).await.unwrap();
        let second = gate.reserve(6 * MIB);
        tokio::pin!(second);
        // The second waits while the first holds the budget.
        assert!(futures::poll!(second.as_mut()).is_pending());
        drop(first);
        let second = second.await.unwrap();
        assert_eq!(gate.available_bytes(), 4 * MIB);
        drop(second);

        let mut all = gate.reserve_all().await;
        assert_eq!(gate.available_bytes(), 0);
        all.keep(3 * MIB).unwrap();
        assert_eq!(gate.available_bytes(), 7 * MIB);
        assert!(all.keep(4 * MIB).is_err());
        drop(all);
        assert_eq!(gate.available_bytes(), 10 * MIB);
    }
}
