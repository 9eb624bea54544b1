use yuba_gcs::ObjectInfo;
use yuba_model::{Checksums, ReplicaRecord, VariantsError};

/// What a job did. Every variant is a success: the message can be acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The replica was written.
    Replicated {
        bytes: u64,
        checksums: Checksums,
        generation: i64,
        /// Streamed (in a resumable upload, or in parts composed at the end), rather than
        /// written whole.
        streamed: bool,
        /// Variants written beside it.
        variants: usize,
        /// Why no variants could be made of an image that should have had them.
        variants_error: Option<VariantsError>,
    },
    /// The replica already holds this content; nothing was read or written.
    AlreadyReplicated {
        generation: i64,
    },
    /// The replica held the source's content but not its attributes (its HTTP headers or user
    /// metadata, changed alone in S3): they were brought up to date in a metadata update, and
    /// the content was not copied again.
    AttributesUpdated {
        generation: i64,
    },
    /// The replica held the source's content but lacked variants the configuration calls for
    /// (a profile was added since it was written): they were made from the source and written,
    /// and the replica's record updated to name them in a metadata update; the original's
    /// content was not copied again.
    VariantsAdded {
        generation: i64,
        /// Variants written.
        variants: usize,
        /// Why none could be made after all.
        variants_error: Option<VariantsError>,
    },
    /// The replica was made from a later change of the key than the job's event (by S3's
    /// sequencer): the event is stale, nothing was read or written.
    Superseded {
        generation: i64,
    },
    /// The source object no longer exists; its delete event takes care of the replica.
    SourceGone,
    Deleted,
    /// Asked to delete a replica that was not there.
    AlreadyAbsent,
    /// A delete was not mirrored, by configuration.
    DeleteNotMirrored,
    /// A delete was not mirrored because the key exists in S3: a newer create won, or (in a
    /// versioned bucket) another version is current; the replica holds the current version.
    SourceRecreated,
}

impl Outcome {
    /// Every name [`Outcome::as_str`] gives, in declaration order, for what iterates over them
    /// (the metric catalog's `Outcome` values); `names_are_exactly_what_as_str_gives` holds the
    /// two together.
    pub const NAMES: [&'static str; 10] = [
        "replicated",
        "already-replicated",
        "attributes-updated",
        "variants-added",
        "superseded",
        "source-gone",
        "deleted",
        "already-absent",
        "delete-not-mirrored",
        "source-recreated",
    ];

    /// For logs and metric dimensions.
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Replicated { .. } => "replicated",
            Outcome::AlreadyReplicated { .. } => "already-replicated",
            Outcome::AttributesUpdated { .. } => "attributes-updated",
            Outcome::VariantsAdded { .. } => "variants-added",
            Outcome::Superseded { .. } => "superseded",
            Outcome::SourceGone => "source-gone",
            Outcome::Deleted => "deleted",
            Outcome::AlreadyAbsent => "already-absent",
            Outcome::DeleteNotMirrored => "delete-not-mirrored",
            Outcome::SourceRecreated => "source-recreated",
        }
    }

    /// The outcome of a write of the replica: built here only, from the record the replica was
    /// written with, so that what a job reports is what it recorded. `streamed`: in a resumable
    /// upload or in parts composed at the end, rather than whole.
    pub(crate) fn replicated(
        stored: &ObjectInfo,
        checksums: Checksums,
        record: &ReplicaRecord,
        streamed: bool,
    ) -> Outcome {
        Outcome::Replicated {
            bytes: stored.size,
            checksums,
            generation: stored.generation,
            streamed,
            variants: record.variants.len(),
            variants_error: record.variants_error.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One outcome of each variant (the match is exhaustive, so a new variant must be added
    /// here before this compiles) against the hand-written list.
    #[test]
    fn names_are_exactly_what_as_str_gives() {
        let every = |outcome: &Outcome| match outcome {
            Outcome::Replicated { .. }
            | Outcome::AlreadyReplicated { .. }
            | Outcome::AttributesUpdated { .. }
            | Outcome::VariantsAdded { .. }
            | Outcome::Superseded { .. }
            | Outcome::SourceGone
            | Outcome::Deleted
            | Outcome::AlreadyAbsent
            | Outcome::DeleteNotMirrored
            | Outcome::SourceRecreated => outcome.as_str(),
        };
        let outcomes = [
            Outcome::Replicated {
                bytes: 0,
                checksums: Checksums {
                    sha256: [0; 32],
                    crc32c: 0,
                    md5: [0; 16],
                },
                generation: 1,
                streamed: false,
                variants: 0,
                variants_error: None,
            },
            Outcome::AlreadyReplicated { generation: 1 },
            Outcome::AttributesUpdated { generation: 1 },
            Outcome::VariantsAdded {
                generation: 1,
                variants: 2,
                variants_error: None,
            },
            Outcome::Superseded { generation: 1 },
            Outcome::SourceGone,
            Outcome::Deleted,
            Outcome::AlreadyAbsent,
            Outcome::DeleteNotMirrored,
            Outcome::SourceRecreated,
        ];
        let names: Vec<&str> = outcomes.iter().map(every).collect();
        assert_eq!(names, Outcome::NAMES);
    }
}
