use std::time::Duration;

use yuba_replicate::{Footprint, MemoryBudget, image_limits_from_env};
use yuba_startup::Env;
use yuba_transform::Limits;
use yuba_variants::{VariantConfig, VariantConfigError};

/// One second of staleness, at most, for a hit that costs one request to GCS instead of two.
const DEFAULT_METADATA_LIFETIME: Duration = Duration::from_secs(1);

/// What the origin serves from, and what it may render.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginSettings {
    /// The GCS bucket that holds the replicas (`YUBA_GCS_BUCKET`).
    pub replica_bucket: String,
    /// The profiles that exist (`YUBA_VARIANTS`): the worker's, so that a variant made on
    /// demand is the one the worker would have made.
    pub variants: VariantConfig,
    /// The worker's limits (`YUBA_MAX_SOURCE_*`).
    pub image_limits: Limits,
    /// The process's memory and what of it renders may take at once.
    pub memory: MemoryBudget,
    /// How long metadata read from GCS answers again (`YUBA_SERVE_METADATA_SECONDS`; zero:
    /// every request reads it).
    pub metadata_lifetime: Duration,
}

impl OriginSettings {
    pub fn from_env(env: &Env) -> Result<OriginSettings, VariantConfigError> {
        let variants = VariantConfig::from_env(env)?;
        // The origin uploads only variants, whole, whose bytes the render's estimate already
        // counts; reads stream through buffers of the HTTP client's own, bounded per request.
        let footprint = Footprint {
            upload_chunk_bytes: 0,
            parallel_uploads: 0,
            concurrency: 0,
        };
        let memory = MemoryBudget::from_env(env, &footprint, !variants.profiles.is_empty())?;
        Ok(OriginSettings {
            replica_bucket: env.required(
                "YUBA_GCS_BUCKET",
                "set it to the name of the GCS bucket that holds the replicas",
            )?,
            variants,
            image_limits: image_limits_from_env(env)?,
            memory,
            metadata_lifetime: env.seconds_in(
                "YUBA_SERVE_METADATA_SECONDS",
                DEFAULT_METADATA_LIFETIME,
                0.0..=60.0,
            )?,
        })
    }
}
