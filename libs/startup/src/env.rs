//! Settings come from the environment (12-factor) and are validated once, at start-up, so that a
//! bad deployment fails at once with a message that names the variable and says what it takes,
//! rather than at the first job.

use std::collections::HashMap;
use std::fmt::Display;
use std::str::FromStr;
use std::time::Duration;

use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConfigError {
    #[error("{name} is not set; {hint}")]
    Missing { name: String, hint: String },
    #[error("{name}={value:?} is not valid: {problem}")]
    Invalid {
        name: String,
        value: String,
        problem: String,
    },
}

/// A view of the environment. Tests build one from pairs; programs from the process.
#[derive(Debug, Clone, Default)]
pub struct Env {
    vars: HashMap<String, String>,
}

impl Env {
    pub fn from_process() -> Env {
        Env {
            vars: std::env::vars().collect(),
        }
    }

    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Env {
        Env {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        }
    }

    /// The value, trimmed; an empty value counts as unset.
    pub fn optional(&self, name: &str) -> Option<String> {
        self.vars
            .get(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    pub fn is_set(&self, name: &str) -> bool {
        self.optional(name).is_some()
    }

    /// `hint` says what to set it to, for the error message.
    pub fn required(&self, name: &str, hint: &str) -> Result<String, ConfigError> {
        self.optional(name).ok_or_else(|| ConfigError::Missing {
            name: name.to_owned(),
            hint: hint.to_owned(),
        })
    }

    pub fn parsed<T>(&self, name: &str, default: T) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: Display,
    {
        match self.optional(name) {
            None => Ok(default),
            Some(value) => value.parse().map_err(|error: T::Err| ConfigError::Invalid {
                name: name.to_owned(),
                value,
                problem: error.to_string(),
            }),
        }
    }

    /// `true`/`false` (also `1`/`0`, `yes`/`no`).
    pub fn flag(&self, name: &str, default: bool) -> Result<bool, ConfigError> {
        match self.optional(name).map(|v| v.to_ascii_lowercase()) {
            None => Ok(default),
            Some(v) if ["true", "1", "yes"].contains(&v.as_str()) => Ok(true),
            Some(v) if ["false", "0", "no"].contains(&v.as_str()) => Ok(false),
            Some(value) => Err(ConfigError::Invalid {
                name: name.to_owned(),
                value,
                problem: "expected true or false".to_owned(),
            }),
        }
    }

    /// A whole number within `range`, or `default`.
    pub fn number_in(
        &self,
        name: &str,
        default: u64,
        range: std::ops::RangeInclusive<u64>,
    ) -> Result<u64, ConfigError> {
        let value = self.parsed(name, default)?;
        if range.contains(&value) {
            Ok(value)
        } else {
            Err(self.invalid(
                name,
                format!("must be between {} and {}", range.start(), range.end()),
            ))
        }
    }

    /// Seconds, fractions allowed (`0.5`), within `range`.
    pub fn seconds_in(
        &self,
        name: &str,
        default: Duration,
        range: std::ops::RangeInclusive<f64>,
    ) -> Result<Duration, ConfigError> {
        let seconds = self.parsed(name, default.as_secs_f64())?;
        if range.contains(&seconds) {
            Ok(Duration::from_secs_f64(seconds))
        } else {
            Err(self.invalid(
                name,
                format!(
                    "must be between {} and {} seconds",
                    range.start(),
                    range.end()
                ),
            ))
        }
    }

    /// A comma-separated list, items trimmed, empty items dropped.
    pub fn list(&self, name: &str) -> Vec<String> {
        self.optional(name)
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|item| !item.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// An error about variable `name` (whose current value is quoted in it).
    pub fn invalid(&self, name: &str, problem: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            name: name.to_owned(),
            value: self.optional(name).unwrap_or_default(),
            problem: problem.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_trimmed_and_empty_means_unset() {
        let env = Env::from_pairs([("A", "  x "), ("B", "")]);
        assert_eq!(env.optional("A").as_deref(), Some("x"));
        assert_eq!(env.optional("B"), None);
        assert!(!env.is_set("C"));
    }

    #[test]
    fn errors_name_the_variable_and_the_remedy() {
        let env = Env::from_pairs([("N", "ten"), ("F", "maybe"), ("R", "99")]);
        let missing = env.required("Q", "set it to the queue URL").unwrap_err();
        assert_eq!(missing.to_string(), "Q is not set; set it to the queue URL");
        let bad = env.parsed::<u64>("N", 1).unwrap_err().to_string();
        assert!(bad.starts_with("N=\"ten\" is not valid"), "{bad}");
        assert!(
            env.flag("F", true)
                .unwrap_err()
                .to_string()
                .contains("true or false")
        );
        let out_of_range = env.number_in("R", 1, 1..=64).unwrap_err().to_string();
        assert!(out_of_range.contains("between 1 and 64"), "{out_of_range}");
    }

    #[test]
    fn typed_values_parse() {
        let env = Env::from_pairs([("N", "8"), ("F", "YES"), ("S", "0.5"), ("L", " a, ,b ,")]);
        assert_eq!(env.number_in("N", 1, 1..=64), Ok(8));
        assert_eq!(env.flag("F", false), Ok(true));
        assert_eq!(env.flag("unset", false), Ok(false));
        assert_eq!(
            env.seconds_in("S", Duration::ZERO, 0.0..=10.0),
            Ok(Duration::from_millis(500))
        );
        assert_eq!(env.list("L"), vec!["a", "b"]);
        assert_eq!(env.list("unset"), Vec::<String>::new());
    }
}
