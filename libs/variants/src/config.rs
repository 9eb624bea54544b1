use std::collections::HashSet;

use serde::Deserialize;
use thiserror::Error;
use yuba_model::{MadeVariant, ReplicaRecord};
use yuba_startup::{ConfigError, Env};

use crate::naming::KeyTemplate;

/// The largest box side accepted: far beyond any delivery size, and a guard against typos.
const MAX_SIDE: u32 = 16_384;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Fit {
    /// Keep the aspect ratio; the variant fits inside the box.
    Inside,
    /// Keep the aspect ratio; the variant fills the box and the overflow is cropped, centred.
    Cover,
    /// Stretch to the box.
    Fill,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Jpeg,
    /// Lossy WebP.
    Webp,
    Png,
    /// The source's format when it is JPEG, PNG or WebP; PNG for any other (lossless, and it
    /// keeps alpha).
    Same,
}

/// One validated profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub name: String,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub fit: Fit,
    pub upscale: bool,
    pub format: Format,
    /// 1–100, for JPEG and WebP.
    pub quality: u8,
    /// Key prefixes the profile applies to; none means every key.
    pub prefixes: Vec<String>,
    /// Content types (`image/png`, or `image/*`) it applies to; none means every image.
    pub content_types: Vec<String>,
}

impl Profile {
    /// Whether a source with this key and content type gets this variant.
    pub fn applies_to(&self, key: &str, content_type: &str) -> bool {
        let content_type = content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        let type_ok = self.content_types.is_empty()
            || self.content_types.iter().any(|wanted| {
                wanted == &content_type
                    || wanted
                        .strip_suffix("/*")
                        .is_some_and(|family| content_type.split('/').next() == Some(family))
            });
        self.covers_key(key) && type_ok
    }

    /// Whether the profile's prefixes admit this key (what can be known before the bytes are).
    pub fn covers_key(&self, key: &str) -> bool {
        self.prefixes.is_empty() || self.prefixes.iter().any(|p| key.starts_with(p.as_str()))
    }

    /// The largest side the variant can have, for ordering (largest first).
    fn largest_side(&self) -> u32 {
        self.width.unwrap_or(0).max(self.height.unwrap_or(0))
    }
}

/// All variant profiles and where their output goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VariantConfig {
    pub key_template: KeyTemplate,
    /// Largest first, the order the transform produces them in.
    pub profiles: Vec<Profile>,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum VariantConfigError {
    #[error(
        "the variant configuration is not valid JSON of the expected shape at `{field}`: {problem}"
    )]
    Shape { field: String, problem: String },
    #[error("{field}: {problem}")]
    Invalid { field: String, problem: String },
    #[error(transparent)]
    Env(#[from] ConfigError),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    #[serde(default)]
    key_template: Option<String>,
    profiles: Vec<ProfileDocument>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileDocument {
    name: String,
    #[serde(default)]
    width: Option<u32>,
    #[serde(default)]
    height: Option<u32>,
    #[serde(default = "default_fit")]
    fit: Fit,
    #[serde(default)]
    upscale: bool,
    #[serde(default = "default_format")]
    format: Format,
    #[serde(default = "default_quality")]
    quality: u32,
    #[serde(default)]
    prefixes: Vec<String>,
    #[serde(default)]
    content_types: Vec<String>,
}

impl ProfileDocument {
    /// The profile this document describes, or the first field that keeps it from being one
    /// (`profiles[index].field`).
    fn validate(self, index: usize) -> Result<Profile, VariantConfigError> {
        let invalid = |name: &str, problem: String| VariantConfigError::Invalid {
            field: format!("profiles[{index}].{name}"),
            problem,
        };
        self.check_name()
            .map_err(|problem| invalid("name", problem))?;
        self.check_box()
            .map_err(|(field, problem)| invalid(field, problem))?;
        let quality = u8::try_from(self.quality)
            .ok()
            .filter(|q| (1..=100).contains(q))
            .ok_or_else(|| {
                invalid(
                    "quality",
                    format!("{}: must be between 1 and 100", self.quality),
                )
            })?;
        self.check_content_types().map_err(|(position, problem)| {
            invalid(&format!("content_types[{position}]"), problem)
        })?;
        Ok(Profile {
            name: self.name,
            width: self.width,
            height: self.height,
            fit: self.fit,
            upscale: self.upscale,
            format: self.format,
            quality,
            prefixes: self.prefixes,
            content_types: self
                .content_types
                .into_iter()
                .map(|t| t.to_ascii_lowercase())
                .collect(),
        })
    }

    /// The name becomes part of object names.
    fn check_name(&self) -> Result<(), String> {
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 64
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if name_ok {
            Ok(())
        } else {
            Err(format!(
                "{:?}: use 1–64 of a-z, 0-9, - and _ (it becomes part of object names)",
                self.name
            ))
        }
    }

    /// The box: each side within bounds, at least one given, both for the fits that fill it.
    fn check_box(&self) -> Result<(), (&'static str, String)> {
        for (side, value) in [("width", self.width), ("height", self.height)] {
            if let Some(value) = value
                && !(1..=MAX_SIDE).contains(&value)
            {
                return Err((
                    side,
                    format!("{value}: must be between 1 and {MAX_SIDE} pixels"),
                ));
            }
        }
        match (self.fit, self.width, self.height) {
            (_, None, None) => Err((
                "width",
                "give a width, a height or both: the box is empty".to_owned(),
            )),
            (Fit::Cover | Fit::Fill, None, _) | (Fit::Cover | Fit::Fill, _, None) => {
                let missing = if self.width.is_none() {
                    "width"
                } else {
                    "height"
                };
                Err((
                    missing,
                    "cover and fill need both a width and a height".to_owned(),
                ))
            }
            _ => Ok(()),
        }
    }

    /// Each content type is `image/<subtype>` or `image/*`.
    fn check_content_types(&self) -> Result<(), (usize, String)> {
        for (position, content_type) in self.content_types.iter().enumerate() {
            let valid = content_type.split_once('/').is_some_and(|(family, sub)| {
                family == "image" && !sub.is_empty() && !sub.contains('/')
            });
            if !valid {
                return Err((
                    position,
                    format!(
                        "{content_type:?}: expected an image type such as image/jpeg, or image/*"
                    ),
                ));
            }
        }
        Ok(())
    }
}

fn default_fit() -> Fit {
    Fit::Inside
}

fn default_format() -> Format {
    Format::Same
}

fn default_quality() -> u32 {
    80
}

impl VariantConfig {
    /// No variants: what a deployment without a variant configuration gets.
    pub fn none() -> VariantConfig {
        VariantConfig {
            key_template: KeyTemplate(KeyTemplate::DEFAULT.to_owned()),
            profiles: Vec::new(),
        }
    }

    /// Reads `YUBA_VARIANTS` (the JSON document itself) or `YUBA_VARIANTS_FILE` (a path to it);
    /// neither set means no variants.
    pub fn from_env(env: &Env) -> Result<VariantConfig, VariantConfigError> {
        match (
            env.optional("YUBA_VARIANTS"),
            env.optional("YUBA_VARIANTS_FILE"),
        ) {
            (Some(_), Some(_)) => Err(env
                .invalid(
                    "YUBA_VARIANTS_FILE",
                    "set either YUBA_VARIANTS or YUBA_VARIANTS_FILE, not both",
                )
                .into()),
            (Some(document), None) => VariantConfig::from_json(&document),
            (None, Some(path)) => {
                let document = std::fs::read_to_string(&path).map_err(|error| {
                    env.invalid("YUBA_VARIANTS_FILE", format!("cannot read it: {error}"))
                })?;
                VariantConfig::from_json(&document)
            }
            (None, None) => Ok(VariantConfig::none()),
        }
    }

    pub fn from_json(document: &str) -> Result<VariantConfig, VariantConfigError> {
        let deserializer = &mut serde_json::Deserializer::from_str(document);
        let parsed: Document = serde_path_to_error::deserialize(deserializer).map_err(|error| {
            VariantConfigError::Shape {
                field: error.path().to_string(),
                problem: error.inner().to_string(),
            }
        })?;
        let key_template = KeyTemplate::new(
            parsed
                .key_template
                .as_deref()
                .unwrap_or(KeyTemplate::DEFAULT),
        )?;
        let mut names = HashSet::new();
        let mut profiles = Vec::with_capacity(parsed.profiles.len());
        for (index, document) in parsed.profiles.into_iter().enumerate() {
            let profile = document.validate(index)?;
            if !names.insert(profile.name.clone()) {
                return Err(VariantConfigError::Invalid {
                    field: format!("profiles[{index}].name"),
                    problem: format!("{:?} is used by an earlier profile", profile.name),
                });
            }
            profiles.push(profile);
        }
        profiles.sort_by_key(|profile| std::cmp::Reverse(profile.largest_side()));
        Ok(VariantConfig {
            key_template,
            profiles,
        })
    }

    /// The variant names prefix `key` falls under, if any: the replica of such a key and a
    /// variant of another key would share one GCS name (`_variants/thumb/a.jpg` is also the
    /// `thumb` variant of `a.jpg`), so such keys are not replicated.
    pub fn reserved_prefix_of(&self, key: &str) -> Option<String> {
        self.profiles
            .iter()
            .map(|profile| self.key_template.names_prefix(&profile.name))
            .find(|prefix| key.starts_with(prefix.as_str()))
    }

    /// The name of `key`'s variant that a record lists as `made`: where the worker wrote it,
    /// and where a delete, a reconciler check or a clean-up looks for it.
    pub fn name_of(&self, key: &str, made: &MadeVariant) -> String {
        self.key_template
            .render(&made.profile, key, &made.extension)
    }

    /// The profiles this configuration calls for that `record`'s replica lacks: what a
    /// configuration change (or a lost update) left undone. Read from the record alone, so a
    /// listing tells it: images are matched by the format their bytes were identified as, and
    /// a source recorded as impossible to transform (`variants_error`) expects none.
    pub fn missing_for<'a>(&'a self, record: &ReplicaRecord) -> Vec<&'a str> {
        let Some(format) = record
            .image_format
            .as_deref()
            .filter(|_| record.variants_error.is_none())
        else {
            return Vec::new();
        };
        let made = |profile: &str| record.variants.iter().any(|v| v.profile == profile);
        self.profiles_for(&record.source.key, format)
            .filter(|profile| !made(&profile.name))
            .map(|profile| profile.name.as_str())
            .collect()
    }

    /// The variants `record` lists whose profile this configuration still makes for its key and
    /// format: what a repair that adds the missing ones keeps. A removed profile's variant
    /// drops out of the record (its object is then an orphan variant), as it would in a copy.
    pub fn kept_for(&self, record: &ReplicaRecord) -> Vec<MadeVariant> {
        let Some(format) = record.image_format.as_deref() else {
            return Vec::new();
        };
        let applies = |made: &&MadeVariant| {
            self.profiles_for(&record.source.key, format)
                .any(|profile| profile.name == made.profile)
        };
        record.variants.iter().filter(applies).cloned().collect()
    }

    /// The profiles that apply to a source, largest first.
    pub fn profiles_for<'s, 'k>(
        &'s self,
        key: &'k str,
        content_type: &'k str,
    ) -> impl Iterator<Item = &'s Profile> + use<'s, 'k> {
        self.profiles
            .iter()
            .filter(move |profile| profile.applies_to(key, content_type))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"{
        "key_template": "_variants/{variant}/{key}",
        "profiles": [
            {"name": "thumb", "width": 200, "height": 200, "fit": "cover", "format": "webp",
             "prefixes": ["photos/"], "content_types": ["image/jpeg", "image/png"]},
            {"name": "large", "width": 1600, "format": "jpeg", "quality": 80},
            {"name": "medium", "width": 800, "height": 800, "content_types": ["image/*"]}
        ]
    }"#;

    fn error_of(document: &str) -> String {
        VariantConfig::from_json(document).unwrap_err().to_string()
    }

    #[test]
    fn a_document_becomes_profiles_largest_first() {
        let config = VariantConfig::from_json(EXAMPLE).unwrap();
        let names: Vec<_> = config.profiles.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["large", "medium", "thumb"]);
        let medium = &config.profiles[1];
        assert_eq!(
            (medium.fit, medium.format, medium.quality, medium.upscale),
            (Fit::Inside, Format::Same, 80, false)
        );
    }

    #[test]
    fn keys_under_a_profiles_names_are_reserved() {
        let config = VariantConfig::from_json(
            r#"{"profiles": [{"name": "thumb", "width": 10}, {"name": "large", "width": 99}]}"#,
        )
        .unwrap();
        let reserved = |key| config.reserved_prefix_of(key);
        assert_eq!(
            reserved("_variants/thumb/a.jpg").as_deref(),
            Some("_variants/thumb/")
        );
        assert_eq!(
            reserved("_variants/large/x").as_deref(),
            Some("_variants/large/")
        );
        assert_eq!(reserved("_variants/other/a.jpg"), None, "no such profile");
        assert_eq!(reserved("photos/_variants/thumb/a.jpg"), None);
        assert_eq!(
            VariantConfig::none().reserved_prefix_of("_variants/thumb/a"),
            None
        );
    }

    #[test]
    fn profiles_apply_by_prefix_and_content_type() {
        let config = VariantConfig::from_json(EXAMPLE).unwrap();
        let names = |key, content_type| -> Vec<String> {
            config
                .profiles_for(key, content_type)
                .map(|p| p.name.clone())
                .collect()
        };
        assert_eq!(
            names("photos/a.jpg", "image/jpeg"),
            ["large", "medium", "thumb"]
        );
        assert_eq!(names("photos/a.gif", "image/gif"), ["large", "medium"]);
        assert_eq!(
            names("docs/a.png", "IMAGE/PNG; charset=binary"),
            ["large", "medium"]
        );
        assert_eq!(names("photos/a.txt", "text/plain"), ["large"]);
    }

    #[test]
    fn invalid_documents_name_the_field() {
        let cases = [
            (
                r#"{"profiles": [{"name": "a", "width": 10, "fit": "contain"}]}"#,
                "profiles[0].fit",
            ),
            (
                r#"{"profiles": [{"name": "a", "width": 0}]}"#,
                "profiles[0].width",
            ),
            (r#"{"profiles": [{"name": "a"}]}"#, "profiles[0].width"),
            (
                r#"{"profiles": [{"name": "a", "width": 10, "fit": "cover"}]}"#,
                "profiles[0].height",
            ),
            (
                r#"{"profiles": [{"name": "a", "width": 10, "quality": 101}]}"#,
                "profiles[0].quality",
            ),
            (
                r#"{"profiles": [{"name": "a", "width": 10, "quality": 0}]}"#,
                "profiles[0].quality",
            ),
            (
                r#"{"profiles": [{"name": "Big One", "width": 10}]}"#,
                "profiles[0].name",
            ),
            (
                r#"{"profiles": [{"name": "a", "width": 10}, {"name": "a", "height": 5}]}"#,
                "profiles[1].name",
            ),
            (
                r#"{"profiles": [{"name": "a", "width": 10, "format": "gif"}]}"#,
                "profiles[0].format",
            ),
            (
                r#"{"profiles": [{"name": "a", "width": 10, "content_types": ["text/plain"]}]}"#,
                "profiles[0].content_types[0]",
            ),
            (
                r#"{"profiles": [{"name": "a", "width": 10, "colour": "red"}]}"#,
                "profiles[0]",
            ),
            (
                r#"{"key_template": "{variant}/static", "profiles": []}"#,
                "key_template",
            ),
            (r#"{"profile": []}"#, "profile"),
        ];
        for (document, field) in cases {
            let error = error_of(document);
            assert!(error.contains(field), "{document}: {error}");
        }
        let unknown_fit =
            error_of(r#"{"profiles": [{"name": "a", "width": 10, "fit": "contain"}]}"#);
        assert!(
            unknown_fit.contains("inside") && unknown_fit.contains("cover"),
            "{unknown_fit}"
        );
    }

    #[test]
    fn the_environment_selects_the_document() {
        let inline = Env::from_pairs([("YUBA_VARIANTS", EXAMPLE)]);
        assert_eq!(VariantConfig::from_env(&inline).unwrap().profiles.len(), 3);
        assert_eq!(
            VariantConfig::from_env(&Env::default()).unwrap(),
            VariantConfig::none()
        );
        let both = Env::from_pairs([("YUBA_VARIANTS", EXAMPLE), ("YUBA_VARIANTS_FILE", "/x")]);
        assert!(
            VariantConfig::from_env(&both)
                .unwrap_err()
                .to_string()
                .contains("not both")
        );
        let missing = Env::from_pairs([("YUBA_VARIANTS_FILE", "/nonexistent/variants.json")]);
        let error = VariantConfig::from_env(&missing).unwrap_err().to_string();
        assert!(
            error.starts_with("YUBA_VARIANTS_FILE=") && error.contains("cannot read"),
            "{error}"
        );
    }
    #[test]
    fn missing_variants_are_read_from_the_record() {
        let config = VariantConfig::from_json(EXAMPLE).unwrap();
        let record = |key: &str,
                      format: Option<&str>,
                      made: &[(&str, &str)],
                      error: Option<&str>| {
            yuba_model::ReplicaRecord {
                source: yuba_model::SourceFacts {
                    bucket: "src".into(),
                    key: key.into(),
                    version_id: None,
                    etag: "e".into(),
                    size: 1,
                    last_modified: None,
                    sequencer: None,
                    attributes: None,
                },
                sha256: None,
                crc32c: None,
                replicated_at: "2026-11-22T10:00:00Z".parse().unwrap(),
                variants: made
                    .iter()
                    .map(|(profile, extension)| yuba_model::MadeVariant::new(*profile, *extension))
                    .collect(),
                variants_error: error.map(|kind| yuba_model::VariantsError::new(kind, "x")),
                image_format: format.map(str::to_owned),
            }
        };
        let all = [("large", "jpg"), ("medium", "png"), ("thumb", "webp")];
        assert!(
            config
                .missing_for(&record("photos/a.png", Some("image/png"), &all, None))
                .is_empty()
        );
        assert_eq!(
            config.missing_for(&record(
                "photos/a.png",
                Some("image/png"),
                &[("large", "jpg")],
                None
            )),
            ["medium", "thumb"]
        );
        assert_eq!(
            config.missing_for(&record("other/a.gif", Some("image/gif"), &[], None)),
            ["large", "medium"],
            "thumb applies to photos/ jpeg and png only"
        );
        assert!(
            config
                .missing_for(&record("photos/a.png", None, &[], None))
                .is_empty(),
            "not an image"
        );
        assert!(
            config
                .missing_for(&record(
                    "photos/a.png",
                    Some("image/png"),
                    &[],
                    Some("corrupt")
                ))
                .is_empty(),
            "an image that cannot be transformed expects no variants"
        );
        let removed = [("large", "jpg"), ("gone", "jpg"), ("thumb", "webp")];
        let kept = config.kept_for(&record("photos/a.png", Some("image/png"), &removed, None));
        assert_eq!(
            kept,
            [
                yuba_model::MadeVariant::new("large", "jpg"),
                yuba_model::MadeVariant::new("thumb", "webp")
            ],
            "a profile no longer configured is not kept"
        );
        let elsewhere = config.kept_for(&record("other/a.png", Some("image/png"), &all, None));
        assert_eq!(elsewhere.len(), 2, "thumb applies to photos/ only");
    }
}
