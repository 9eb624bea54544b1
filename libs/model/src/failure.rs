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

/// The boxed cause an edge error keeps as its `#[source]`: the SDK's or the transport's own
/// error, so that a log shows what went wrong underneath and not only our summary of it.
pub type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Displays an error followed by its chain of sources, `outer: cause: root cause`, for log lines
/// and reports, which otherwise show only the outermost message. A source whose text is already
/// in what is shown (an error that repeats its cause's words) is not shown twice.
#[derive(Debug)]
pub struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut shown = self.0.to_string();
        let mut next = self.0.source();
        while let Some(cause) = next {
            let text = cause.to_string();
            if !text.is_empty() && !shown.contains(&text) {
                shown.push_str(": ");
                shown.push_str(&text);
            }
            next = cause.source();
        }
        f.write_str(&shown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("{message}")]
    struct Outer {
        message: String,
        #[source]
        source: Option<Cause>,
    }

    #[test]
    fn a_chain_shows_every_cause_once() {
        let root = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "connection reset");
        let middle = Outer {
            message: "reading the body".into(),
            source: Some(Box::new(root)),
        };
        let outer = Outer {
            message: "GET s3://b/k".into(),
            source: Some(Box::new(middle)),
        };
        assert_eq!(
            ErrorChain(&outer).to_string(),
            "GET s3://b/k: reading the body: connection reset"
        );

        let repeating = Outer {
            message: "upload failed: connection reset (os error 104)".into(),
            source: Some(Box::new(std::io::Error::other("connection reset"))),
        };
        assert_eq!(
            ErrorChain(&repeating).to_string(),
            "upload failed: connection reset (os error 104)"
        );
    }
}
