//! What a job does about variants, decided before the source is read whole: whether the
//! configuration makes any of it, and the share of the images' memory budget its render
//! reserves.

use yuba_aws::SourceObject;
use yuba_model::VariantsError;
use yuba_transform::{Identified, Limits, MemoryEstimate, TransformError, estimate_memory};
use yuba_variants::Profile;

use super::Replicator;
use crate::error::ReplicateError;
use crate::memory::Reservation;
use crate::variants_error::{too_large_for_memory, transform_failure, unsupported};

/// How much of an image is read ahead for its header, to estimate its render before holding it
/// whole. JPEG's frame header follows the EXIF and ICC segments, which rarely pass this; an image
/// whose header does is admitted on the whole budget until it has been read.
const HEADER_BYTES: usize = 256 * 1024;

/// What a job does about variants, decided before the source is read whole.
pub(super) enum Admission {
    /// None are made; the reason, when there is one to record.
    NoVariants(Option<VariantsError>),
    /// They are made.
    Render(Render),
}

/// A render admitted to the images' memory budget, under a reservation held until the job ends.
pub(super) struct Render {
    profiles: Vec<Profile>,
    reservation: Reservation,
    /// The reservation is the estimate; `false`: it is the whole budget, because the header
    /// was past the bytes read ahead (the estimate is made once the source is read).
    sized: bool,
}

impl Render {
    /// The profiles to render and the reservation they render under, sized to the render's
    /// estimate now that `content` (the whole source) is at hand if it was not before; why no
    /// variants can be made if that estimate is more than the whole budget.
    pub(super) fn settle(
        mut self,
        content: &[u8],
        limits: &Limits,
    ) -> Result<(Vec<Profile>, Reservation), VariantsError> {
        if !self.sized {
            let render = {
                let profiles: Vec<&Profile> = self.profiles.iter().collect();
                estimate_memory(content, true, &profiles, limits)
            };
            let MemoryEstimate::Bytes(render) = render else {
                unreachable!("the whole source always gives an estimate")
            };
            self.reservation
                .keep(render + content.len() as u64)
                .map_err(too_large_for_memory)?;
        }
        Ok((self.profiles, self.reservation))
    }
}

impl Replicator {
    /// Decides what the job does about variants, before the source is read whole: an image the
    /// configuration makes variants of reserves its render's estimated memory (and its source's
    /// size) in the images' budget, waiting while it is taken. One that needs more than the
    /// whole budget gets none ([`TOO_LARGE_FOR_MEMORY`](crate::TOO_LARGE_FOR_MEMORY)); its
    /// original is replicated as always.
    pub(super) async fn admit(
        &self,
        key: &str,
        source: &mut SourceObject,
        identified: Identified,
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
            .cloned()
            .collect();
        if profiles.is_empty() {
            return Ok(Admission::NoVariants(None));
        }
        let limits = &self.settings.image_limits;
        if source.size > limits.max_bytes {
            let error = TransformError::TooLarge {
                bytes: source.size,
                max: limits.max_bytes,
            };
            return Ok(Admission::NoVariants(Some(transform_failure(&error))));
        }
        let head = source.peek(HEADER_BYTES).await?;
        let complete = head.len() as u64 >= source.size;
        let estimate = {
            let profiles: Vec<&Profile> = profiles.iter().collect();
            estimate_memory(&head, complete, &profiles, limits)
        };
        match self.reserve_render(estimate, source.size).await {
            Ok((reservation, sized)) => Ok(Admission::Render(Render {
                profiles,
                reservation,
                sized,
            })),
            Err(error) => Ok(Admission::NoVariants(Some(error))),
        }
    }

    /// Reserves the render's `estimate` and the source's `size` in the images' budget, waiting
    /// while it is taken; the whole budget when the estimate needs more of the source than was
    /// read ahead (`false`: not sized to the estimate).
    async fn reserve_render(
        &self,
        estimate: MemoryEstimate,
        size: u64,
    ) -> Result<(Reservation, bool), VariantsError> {
        let render = match estimate {
            MemoryEstimate::Bytes(render) => render,
            MemoryEstimate::NeedMoreBytes => return Ok((self.images.reserve_all().await, false)),
        };
        let needed = render + size;
        if needed > self.images.available_bytes() {
            tracing::info!(
                needed_mib = needed / (1024 * 1024),
                available_mib = self.images.available_bytes() / (1024 * 1024),
                "waiting for memory to make variants"
            );
        }
        let reservation = self.images.reserve(needed).await;
        reservation
            .map(|reservation| (reservation, true))
            .map_err(too_large_for_memory)
    }
}
