/// Whether trying the same operation again can succeed. Every error that crosses a component
/// boundary says which it is, because the two are handled differently: transient failures are
/// retried with backoff, permanent ones are reported and sent to a dead-letter queue at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureKind {
    /// Throttling, 5xx, timeouts, connection resets: the same request may succeed later.
    Transient,
    /// Access denied, missing bucket, malformed input, bad config: retrying cannot help.
    Permanent,
}

impl FailureKind {
    /// Every kind, for what iterates over them (the metric catalog's `Failure` values).
    pub const ALL: [FailureKind; 2] = [FailureKind::Transient, FailureKind::Permanent];

    pub fn is_transient(self) -> bool {
        self == FailureKind::Transient
    }

    /// For logs and metric dimensions.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Transient => "transient",
            FailureKind::Permanent => "permanent",
        }
    }
}
