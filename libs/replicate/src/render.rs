//! Image work under the process's memory budget, for every program that renders: the worker's
//! jobs and the delivery origin's variants made on demand. A render is admitted by its estimate
//! from the source's first bytes, before the source is held whole, and passes the process's
//! [`ImageGate`] (module `memory`).

use bytes::Bytes;
use yuba_model::{ErrorChain, VariantsError};
use yuba_transform::{Limits, MemoryEstimate, TransformError, Variant, estimate_memory};
use yuba_variants::Profile;

use crate::memory::{ImageGate, Reservation};
use crate::variants_error::{too_large_for_memory, transform_failure, transform_lost};

/// How much of an image is read ahead for its header, to estimate its render before holding it
/// whole. JPEG's frame header follows the EXIF and ICC segments, which rarely pass this; an image
/// whose header does is admitted on the whole budget until it has been read.
pub const HEADER_BYTES: usize = 256 * 1024;

/// Renders within the images' budget and the transform's limits. Clones share the budget.
#[derive(Debug, Clone)]
pub struct Renderer {
    gate: ImageGate,
    limits: Limits,
}

/// A render admitted to the images' budget, under a reservation held until it is rendered.
#[derive(Debug)]
pub struct Admitted {
    profiles: Vec<Profile>,
    reservation: Reservation,
    /// The reservation is the estimate; `false`: it is the whole budget, because the header
    /// was past the bytes read ahead (the estimate is made once the source is read).
    sized: bool,
}

impl Renderer {
    /// A renderer with `images_bytes` for image work ([`crate::MemoryBudget`]).
    pub fn new(images_bytes: u64, limits: Limits) -> Renderer {
        Renderer {
            gate: ImageGate::new(images_bytes),
            limits,
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Admits a render of `profiles` from a source of `size` bytes that starts with `head`
    /// ([`HEADER_BYTES`] of it, or all of it): reserves its estimated memory and the source's
    /// size, waiting while the budget is taken. Why none can be made: a source over the byte
    /// limit, or one whose render needs more than the whole budget.
    pub async fn admit(
        &self,
        profiles: Vec<Profile>,
        head: &[u8],
        size: u64,
    ) -> Result<Admitted, VariantsError> {
        if size > self.limits.max_bytes {
            let error = TransformError::TooLarge {
                bytes: size,
                max: self.limits.max_bytes,
            };
            return Err(transform_failure(&error));
        }
        let complete = head.len() as u64 >= size;
        let estimate = {
            let profiles: Vec<&Profile> = profiles.iter().collect();
            estimate_memory(head, complete, &profiles, &self.limits)
        };
        let (reservation, sized) = self.reserve(estimate, size).await?;
        Ok(Admitted {
            profiles,
            reservation,
            sized,
        })
    }

    /// Reserves the render's `estimate` and the source's `size` in the images' budget, waiting
    /// while it is taken; the whole budget when the estimate needs more of the source than was
    /// read ahead (`false`: not sized to the estimate).
    async fn reserve(
        &self,
        estimate: MemoryEstimate,
        size: u64,
    ) -> Result<(Reservation, bool), VariantsError> {
        let render = match estimate {
            MemoryEstimate::Bytes(render) => render,
            MemoryEstimate::NeedMoreBytes => return Ok((self.gate.reserve_all().await, false)),
        };
        let needed = render + size;
        if needed > self.gate.available_bytes() {
            tracing::info!(
                needed_mib = needed / (1024 * 1024),
                available_mib = self.gate.available_bytes() / (1024 * 1024),
                "waiting for memory to make variants"
            );
        }
        let reservation = self.gate.reserve(needed).await;
        reservation
            .map(|reservation| (reservation, true))
            .map_err(too_large_for_memory)
    }

    /// Renders the image `content` (the whole source) holds on a blocking thread, under the
    /// reservation `admitted` holds, or says why it cannot be.
    pub async fn render(
        &self,
        content: &Bytes,
        admitted: Admitted,
    ) -> Result<Vec<Variant>, VariantsError> {
        let (profiles, reservation) = admitted.settle(content, &self.limits)?;
        let limits = self.limits;
        let image = content.clone();
        let rendered = tokio::task::spawn_blocking(move || {
            let profiles: Vec<&Profile> = profiles.iter().collect();
            yuba_transform::render(&image, &profiles, &limits)
        })
        .await;
        // What the render allocated is freed; the source (part of the reservation) is held by
        // the caller until it is written, a smaller share not worth splitting off.
        drop(reservation);
        match rendered {
            Ok(Ok(rendered)) => Ok(rendered.variants),
            Ok(Err(error)) => {
                tracing::warn!(kind = error.kind(), error = %ErrorChain(&error), "no variants: the image cannot be transformed");
                Err(transform_failure(&error))
            }
            Err(join) => {
                tracing::error!(error = %ErrorChain(&join), "the transform did not finish");
                Err(transform_lost(&join))
            }
        }
    }
}

impl Admitted {
    /// The profiles to render and the reservation they render under, sized to the render's
    /// estimate now that `content` (the whole source) is at hand if it was not before; why no
    /// variants can be made if that estimate is more than the whole budget.
    fn settle(
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
