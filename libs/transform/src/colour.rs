//! Embedded ICC profiles, converted to sRGB with qcms (Firefox's colour management, pure Rust).
//!
//! Variants carry no profile, so their pixels must be sRGB: a Display P3 photo from a phone
//! shown without its profile looks dull, and one "converted" by ignoring the profile looks just
//! as dull. Only RGB profiles are applied; CMYK sources use the naive ink conversion and grey
//! sources are left as they are (a grey tone curve barely differs from sRGB's).
//!
//! The transform runs on each resized variant rather than on the decoded source: a 1600 px
//! variant has a fraction of the pixels, and resampling before or after a per-pixel colour map
//! differs far less than the JPEG quantisation that follows.

/// What happened to the source's embedded colour profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IccHandling {
    /// No profile: the pixels are taken as sRGB, as browsers do.
    Absent,
    /// The profile is sRGB already; nothing to do.
    Srgb,
    /// The pixels were converted from the profile to sRGB.
    Converted,
    /// The profile was not applied (CMYK or grey, or one qcms cannot read); pixels taken as is.
    Ignored,
}

/// The transform from the source's profile to sRGB, if one applies.
pub(crate) fn to_srgb(
    icc: Option<&[u8]>,
    cmyk: bool,
    channels: usize,
) -> (IccHandling, Option<qcms::Transform>) {
    let Some(icc) = icc else {
        return (IccHandling::Absent, None);
    };
    // The data colour space sits at bytes 16..20 of the header; qcms would happily build a grey
    // transform and run it over RGB data, so anything but RGB stops here.
    if cmyk || icc.get(16..20) != Some(b"RGB ") {
        return (IccHandling::Ignored, None);
    }
    let Some(profile) = qcms::Profile::new_from_slice(icc, false) else {
        return (IccHandling::Ignored, None);
    };
    if profile.is_sRGB() {
        return (IccHandling::Srgb, None);
    }
    let mut srgb = qcms::Profile::new_sRGB();
    srgb.precache_output_transform();
    let data_type = if channels == 4 {
        qcms::DataType::RGBA8
    } else {
        qcms::DataType::RGB8
    };
    match qcms::Transform::new(&profile, &srgb, data_type, qcms::Intent::Perceptual) {
        Some(transform) => (IccHandling::Converted, Some(transform)),
        None => (IccHandling::Ignored, None),
    }
}
