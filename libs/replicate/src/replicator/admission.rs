//! What a job does about variants, decided before the source is read whole: whether the
//! configuration makes any of it, and the share of the images' memory budget its render
//! reserves.

use yuba_aws::SourceObject;
use yuba_model::VariantsError;
use yuba_transform::Identified;
use yuba_variants::Profile;

use super::Replicator;
use crate::error::ReplicateError;
use crate::render::{Admitted, HEADER_BYTES};
use crate::variants_error::unsupported;

/// What a job does about variants, decided before the source is read whole.
pub(super) enum Admission {
    /// None are made; the reason, when there is one to record.
    NoVariants(Option<VariantsError>),
    /// They are made, under this admission to the images' budget.
    Render(Admitted),
}

impl Replicator {
    /// Decides what the job does about variants, before the source is read whole: an image the
    /// configuration makes variants of reserves its render's estimated memory (and its source's
    /// size) in the images' budget, waiting while it is taken. One that needs more than the
    /// whole budget gets none ([`TOO_LARGE_FOR_MEMORY`](crate::TOO_LARGE_FOR_MEMORY)); its
    /// original is replicated as always. `only`: the profiles to make, by name, when the
    /// replica has the others already (all of those that apply otherwise).
    pub(super) async fn admit(
        &self,
        key: &str,
        source: &mut SourceObject,
        identified: Identified,
        only: Option<&[&str]>,
    ) -> Result<Admission, ReplicateError> {
        let config = &self.settings.variants;
        let format = match identified {
            Identified::Decodable(format) => format,
            Identified::UnsupportedImage(format) => {
                let covered = config
                    .profiles
                    .iter()
                    .any(|profile| profile.covers_key(key));
                return Ok(Admission::NoVariants(covered.then(|| unsupported(format))));
            }
            Identified::NotAnImage => return Ok(Admission::NoVariants(None)),
        };
        let profiles: Vec<Profile> = config
            .profiles_for(key, format.content_type())
            .filter(|profile| only.is_none_or(|names| names.contains(&profile.name.as_str())))
            .cloned()
            .collect();
        if profiles.is_empty() {
            return Ok(Admission::NoVariants(None));
        }
        let head = source.peek(HEADER_BYTES).await?;
        match self.renderer.admit(profiles, &head, source.size).await {
            Ok(admitted) => Ok(Admission::Render(admitted)),
            Err(error) => Ok(Admission::NoVariants(Some(error))),
        }
    }
}
