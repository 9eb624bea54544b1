//! Resumable runs: after each finished page, where the run is and what it has counted so far.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::report::Counts;

const FORMAT_VERSION: u32 = 1;

/// Where a run is: every key up to and including `after_key` (a listing run), or the first
/// `lines` lines of the manifest, are finished.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Position {
    AfterKey(String),
    Lines(u64),
}

impl Position {
    /// The key a listing run resumes after, if this is a listing run's position.
    pub fn after_key(position: Option<Self>) -> Option<String> {
        match position {
            Some(Self::AfterKey(key)) => Some(key),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub version: u32,
    /// What the run does (command, buckets, selection): a checkpoint continues only the same
    /// run.
    pub run: String,
    pub position: Position,
    pub counts: Counts,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Error)]
pub enum CheckpointError {
    #[error("cannot read the checkpoint {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the checkpoint {path} is not one this build wrote ({source}); remove it to start over"
    )]
    Unreadable {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error(
        "the checkpoint {path} is not one this build wrote (format version {version}); remove \
         it to start over"
    )]
    OtherVersion { path: PathBuf, version: u32 },
    #[error(
        "the checkpoint {path} belongs to another run ({found}), not this one ({wanted}); run \
         the same command again with --resume, or remove the checkpoint to start over"
    )]
    OtherRun {
        path: PathBuf,
        found: String,
        wanted: String,
    },
    #[error("cannot write the checkpoint {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The checkpoint file of one run.
#[derive(Debug, Clone)]
pub struct CheckpointFile {
    path: PathBuf,
    run: String,
}

impl CheckpointFile {
    pub fn new(path: PathBuf, run: String) -> CheckpointFile {
        CheckpointFile { path, run }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The saved state of this run; `Ok(None)` when there is none to resume.
    pub fn load(&self) -> Result<Option<Checkpoint>, CheckpointError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(CheckpointError::Read {
                    path: self.path.clone(),
                    source,
                });
            }
        };
        let checkpoint: Checkpoint =
            serde_json::from_str(&text).map_err(|source| CheckpointError::Unreadable {
                path: self.path.clone(),
                source,
            })?;
        if checkpoint.version != FORMAT_VERSION {
            return Err(CheckpointError::OtherVersion {
                path: self.path.clone(),
                version: checkpoint.version,
            });
        }
        if checkpoint.run != self.run {
            return Err(CheckpointError::OtherRun {
                path: self.path.clone(),
                found: checkpoint.run,
                wanted: self.run.clone(),
            });
        }
        Ok(Some(checkpoint))
    }

    /// Replaces the file atomically (write aside, then rename), so a crash mid-write leaves
    /// the previous checkpoint.
    pub fn save(&self, position: Position, counts: &Counts) -> Result<(), CheckpointError> {
        let checkpoint = Checkpoint {
            version: FORMAT_VERSION,
            run: self.run.clone(),
            position,
            counts: counts.clone(),
            updated_at: Utc::now(),
        };
        let write_error = |source| CheckpointError::Write {
            path: self.path.clone(),
            source,
        };
        let mut aside = self.path.clone().into_os_string();
        aside.push(".partial");
        let aside = PathBuf::from(aside);
        let text = serde_json::to_string_pretty(&checkpoint)
            .unwrap_or_else(|error| unreachable!("a checkpoint is plain data: {error}"));
        std::fs::write(&aside, text).map_err(write_error)?;
        std::fs::rename(&aside, &self.path).map_err(write_error)
    }

    /// A finished run leaves no checkpoint behind.
    pub fn remove(&self) -> Result<(), CheckpointError> {
        match std::fs::remove_file(&self.path) {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(CheckpointError::Write {
                path: self.path.clone(),
                source,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "yuba-checkpoint-test-{}-{name}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("run.json")
    }

    #[test]
    fn a_checkpoint_round_trips_and_is_removed_at_the_end() {
        let file = CheckpointFile::new(scratch("round-trip"), "diff s3://a gs://b".into());
        assert_eq!(file.load().unwrap(), None);
        let counts = Counts {
            missing: 3,
            ..Counts::default()
        };
        file.save(Position::AfterKey("k/9".into()), &counts)
            .unwrap();
        let loaded = file.load().unwrap().unwrap();
        assert_eq!(loaded.position, Position::AfterKey("k/9".into()));
        assert_eq!(loaded.counts, counts);
        file.remove().unwrap();
        assert_eq!(file.load().unwrap(), None);
    }

    #[test]
    fn another_runs_checkpoint_is_refused_with_both_names() {
        let path = scratch("other-run");
        CheckpointFile::new(path.clone(), "diff --prefix a/".into())
            .save(Position::Lines(5), &Counts::default())
            .unwrap();
        let error = CheckpointFile::new(path.clone(), "diff --prefix b/".into())
            .load()
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("--prefix a/") && error.contains("--prefix b/"),
            "{error}"
        );
        std::fs::write(&path, "{not json").unwrap();
        let error = CheckpointFile::new(path, "x".into())
            .load()
            .unwrap_err()
            .to_string();
        assert!(error.contains("remove it to start over"), "{error}");
    }

    #[test]
    fn an_unreadable_checkpoint_keeps_the_parse_error_as_its_source() {
        let path = scratch("unreadable");
        std::fs::write(&path, "{not json").unwrap();
        let error = CheckpointFile::new(path, "x".into()).load().unwrap_err();
        assert!(
            matches!(error, CheckpointError::Unreadable { .. }),
            "{error:?}"
        );
        let source = std::error::Error::source(&error).expect("a source");
        assert!(source.is::<serde_json::Error>(), "{source:?}");
    }

    #[test]
    fn a_checkpoint_of_another_format_version_names_it() {
        let path = scratch("other-version");
        let file = CheckpointFile::new(path.clone(), "x".into());
        file.save(Position::Lines(1), &Counts::default()).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let mut checkpoint: Checkpoint = serde_json::from_str(&text).unwrap();
        checkpoint.version = FORMAT_VERSION + 1;
        std::fs::write(&path, serde_json::to_string(&checkpoint).unwrap()).unwrap();
        let error = file.load().unwrap_err();
        assert!(
            matches!(error, CheckpointError::OtherVersion { version, .. } if version == FORMAT_VERSION + 1),
            "{error:?}"
        );
        assert!(
            error.to_string().contains("remove it to start over"),
            "{error}"
        );
    }
}
