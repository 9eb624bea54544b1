use crate::config::VariantConfigError;

/// Where a variant goes: a template over `{variant}` (the profile name) and `{key}` (the source
/// key), to which the output format's extension is appended unless the key already ends with it.
///
/// Appending rather than replacing keeps names one-to-one: `a/b.png` and `a/b.jpg` get
/// `thumb/a/b.png.webp` and `thumb/a/b.jpg.webp`, never the same object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyTemplate(pub(crate) String);

impl KeyTemplate {
    pub const DEFAULT: &str = "_variants/{variant}/{key}";

    pub fn new(template: &str) -> Result<KeyTemplate, VariantConfigError> {
        let invalid = |problem: &str| VariantConfigError::Invalid {
            field: "key_template".to_owned(),
            problem: format!("{template:?} {problem}"),
        };
        for placeholder in ["{key}", "{variant}"] {
            if template.matches(placeholder).count() != 1 {
                return Err(invalid(&format!(
                    "must contain {placeholder} exactly once, so that every source and every \
                     profile gets a name of its own"
                )));
            }
        }
        let rest = template.replace("{key}", "").replace("{variant}", "");
        if rest.contains(['{', '}']) {
            return Err(invalid("has a placeholder other than {variant} and {key}"));
        }
        if template.starts_with("{key}") {
            return Err(invalid(
                "starts with {key}: variants would land among the source keys; put a prefix first",
            ));
        }
        Ok(KeyTemplate(template.to_owned()))
    }

    /// What every name of `variant`'s variants starts with: the template up to `{key}`. A source
    /// key that starts with it would share its replica's name with some key's variant.
    pub fn names_prefix(&self, variant: &str) -> String {
        let before_key = self.0.split("{key}").next().unwrap_or_default();
        before_key.replace("{variant}", variant)
    }

    /// The object name of variant `variant` of `key`, in a format whose extension is `extension`.
    pub fn render(&self, variant: &str, key: &str, extension: &str) -> String {
        let base = self.0.replace("{variant}", variant).replace("{key}", key);
        if has_extension(key, extension) {
            base
        } else {
            format!("{base}.{extension}")
        }
    }
}

fn has_extension(key: &str, extension: &str) -> bool {
    let name = key.rsplit('/').next().unwrap_or(key);
    let Some((_, current)) = name.rsplit_once('.') else {
        return false;
    };
    let current = current.to_ascii_lowercase();
    current == extension || (extension == "jpg" && current == "jpeg")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_name_starts_with_its_names_prefix() {
        for template in [KeyTemplate::DEFAULT, "v/{key}/{variant}", "{variant}/{key}"] {
            let template = KeyTemplate::new(template).unwrap();
            for key in ["a/b.png", "x", "_variants/thumb/y.jpg"] {
                let name = template.render("thumb", key, "webp");
                assert!(name.starts_with(&template.names_prefix("thumb")), "{name}");
            }
        }
        let default = KeyTemplate::new(KeyTemplate::DEFAULT).unwrap();
        assert_eq!(default.names_prefix("thumb"), "_variants/thumb/");
        let flat = KeyTemplate::new("{variant}/{key}").unwrap();
        assert_eq!(flat.names_prefix("large"), "large/");
    }

    #[test]
    fn the_format_extension_is_appended_unless_present() {
        let template = KeyTemplate::new(KeyTemplate::DEFAULT).unwrap();
        assert_eq!(
            template.render("thumb", "a/b.png", "webp"),
            "_variants/thumb/a/b.png.webp"
        );
        assert_eq!(
            template.render("thumb", "a/b.JPEG", "jpg"),
            "_variants/thumb/a/b.JPEG"
        );
        assert_eq!(
            template.render("thumb", "a/b", "jpg"),
            "_variants/thumb/a/b.jpg"
        );
        assert_eq!(
            template.render("thumb", "a.d/b", "png"),
            "_variants/thumb/a.d/b.png"
        );
    }

    #[test]
    fn sources_that_differ_get_variants_that_differ() {
        let template = KeyTemplate::new("v/{variant}/{key}").unwrap();
        assert_ne!(
            template.render("t", "a/b.png", "webp"),
            template.render("t", "a/b.jpg", "webp")
        );
    }

    #[test]
    fn bad_templates_are_refused_with_the_reason() {
        for (template, reason) in [
            ("{variant}/static", "{key}"),
            ("v/{key}", "{variant}"),
            ("v/{variant}/{key}/{key}", "exactly once"),
            ("v/{variant}/{size}/{key}", "other than"),
            ("{key}/{variant}", "prefix first"),
        ] {
            let error = KeyTemplate::new(template).unwrap_err().to_string();
            assert!(error.starts_with("key_template:"), "{error}");
            assert!(error.contains(reason), "{template}: {error}");
        }
    }
}
