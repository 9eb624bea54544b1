//! Variant profiles: what resized versions of an image yuba writes next to its replica.
//!
//! One JSON document configures them (`YUBA_VARIANTS`, or a file named by `YUBA_VARIANTS_FILE`):
//!
//! ```json
//! {
//!   "key_template": "_variants/{variant}/{key}",
//!   "profiles": [
//!     {"name": "large", "width": 1600, "format": "jpeg", "quality": 80},
//!     {"name": "thumb", "width": 200, "height": 200, "fit": "cover", "format": "webp",
//!      "prefixes": ["photos/"], "content_types": ["image/jpeg", "image/png"]}
//!   ]
//! }
//! ```
//!
//! The document is validated whole at start-up; an error names the field (`profiles[1].fit`)
//! and what it takes. Everything here is pure: which profiles apply to a source, the geometry of
//! each fit, and the object name of each variant.

mod config;
mod geometry;
mod naming;

pub use config::{Fit, Format, Profile, VariantConfig, VariantConfigError};
pub use geometry::Plan;
pub use naming::KeyTemplate;
