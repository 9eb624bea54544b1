use yuba_events::SourceBuckets;
use yuba_startup::{ConfigError, Env};
use yuba_transform::Limits;
use yuba_variants::{VariantConfig, VariantConfigError};

use crate::memory::{Footprint, MemoryBudget};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicatorSettings {
    /// The only buckets whose objects are read (or whose replicas a delete job removes).
    pub sources: SourceBuckets,
    /// The GCS bucket that holds the replicas.
    pub replica_bucket: String,
    /// Whether a delete in S3 removes the replica (the default), or the replica is kept.
    pub mirror_deletes: bool,
    /// Objects up to this size are read whole, hashed, and written in one request with their
    /// complete record; larger ones are streamed. The upload chunk size, so that memory is
    /// bounded by it either way.
    pub whole_object_limit: u64,
    /// The variants made of images, and where they go.
    pub variants: VariantConfig,
    /// What an image may be for variants to be made of it; larger ones are replicated only.
    pub image_limits: Limits,
    /// The process's memory, and what of it renders may take at once.
    pub memory: MemoryBudget,
}

impl ReplicatorSettings {
    /// `footprint` is the process's copies' buffers (chunk size, parallel parts, jobs at once),
    /// which the images' memory budget is what is left after.
    pub fn from_env(env: &Env, footprint: &Footprint) -> Result<Self, VariantConfigError> {
        let variants = VariantConfig::from_env(env)?;
        let memory = MemoryBudget::from_env(env, footprint, !variants.profiles.is_empty())?;
        Ok(ReplicatorSettings {
            sources: SourceBuckets::from_env(env)?,
            replica_bucket: env.required(
                "YUBA_GCS_BUCKET",
                "set it to the name of the GCS bucket that holds the replicas",
            )?,
            mirror_deletes: env.flag("YUBA_MIRROR_DELETES", true)?,
            whole_object_limit: footprint.upload_chunk_bytes,
            variants,
            memory,
            image_limits: image_limits_from_env(env)?,
        })
    }
}

/// What an image may be for variants to be made of it (`YUBA_MAX_SOURCE_*`): the worker's and
/// the delivery origin's renders are held to the same limits.
pub fn image_limits_from_env(env: &Env) -> Result<Limits, ConfigError> {
    let defaults = Limits::default();
    Ok(Limits {
        max_pixels: env.number_in(
            "YUBA_MAX_SOURCE_PIXELS",
            defaults.max_pixels,
            1..=1_000_000_000,
        )?,
        max_bytes: env.number_in(
            "YUBA_MAX_SOURCE_BYTES",
            defaults.max_bytes,
            1..=1024 * 1024 * 1024,
        )?,
        max_frames: u32::try_from(env.number_in(
            "YUBA_MAX_SOURCE_FRAMES",
            u64::from(defaults.max_frames),
            1..=100_000,
        )?)
        .unwrap_or(defaults.max_frames),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FOOTPRINT: Footprint = Footprint {
        upload_chunk_bytes: 256 * 1024,
        parallel_uploads: 1,
        concurrency: 1,
    };

    #[test]
    fn settings_come_from_the_environment() {
        let env = Env::from_pairs([
            ("YUBA_SOURCE_BUCKET", "photos"),
            ("YUBA_GCS_BUCKET", "replica"),
            ("YUBA_MIRROR_DELETES", "false"),
        ]);
        let settings = ReplicatorSettings::from_env(&env, &FOOTPRINT).unwrap();
        assert_eq!(settings.replica_bucket, "replica");
        assert_eq!(settings.sources.source(), "photos");
        assert!(!settings.mirror_deletes);
        let only_source = Env::from_pairs([("YUBA_SOURCE_BUCKET", "photos")]);
        let missing = ReplicatorSettings::from_env(&only_source, &FOOTPRINT).unwrap_err();
        assert!(missing.to_string().contains("YUBA_GCS_BUCKET"));
        let missing = ReplicatorSettings::from_env(&Env::default(), &FOOTPRINT).unwrap_err();
        assert!(
            missing.to_string().contains("YUBA_SOURCE_BUCKET"),
            "{missing}"
        );
    }

    #[test]
    fn variant_settings_are_checked_at_start_up() {
        let with = |name, value| {
            ReplicatorSettings::from_env(
                &Env::from_pairs([
                    ("YUBA_SOURCE_BUCKET", "photos"),
                    ("YUBA_GCS_BUCKET", "replica"),
                    (name, value),
                ]),
                &FOOTPRINT,
            )
        };
        let settings = with("YUBA_MAX_SOURCE_PIXELS", "1000").unwrap();
        assert_eq!(settings.image_limits.max_pixels, 1000);
        assert!(
            settings.variants.profiles.is_empty(),
            "no document, no variants"
        );
        let zero = with("YUBA_MAX_SOURCE_BYTES", "0").unwrap_err().to_string();
        assert!(zero.starts_with("YUBA_MAX_SOURCE_BYTES=\"0\""), "{zero}");
        let bad = with(
            "YUBA_VARIANTS",
            r#"{"profiles": [{"name": "t", "width": 0}]}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(bad.starts_with("profiles[0].width"), "{bad}");
    }
}
