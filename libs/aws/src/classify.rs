use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{DisplayErrorContext, SdkError};
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use yuba_model::FailureKind;

/// Error codes that AWS services return with a 4xx status but that clear up by themselves.
const TRANSIENT_CODES: &[&str] = &[
    "RequestTimeout",
    "RequestTimeTooSkewed",
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestThrottled",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "KMS.ThrottlingException",
];

/// Transient: the request never got an answer (timeouts, connection failures, a body cut short),
/// the service was throttling or failing (429, 5xx, throttling codes). Permanent: the service
/// understood the request and refused it (403, 404, 400), or it could not be built.
pub fn classify_sdk_error<E>(error: &SdkError<E, HttpResponse>) -> FailureKind
where
    E: ProvideErrorMetadata,
{
    match error {
        SdkError::ConstructionFailure(_) => FailureKind::Permanent,
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            FailureKind::Transient
        }
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            let code = service.err().code().unwrap_or_default();
            if status == 429 || status >= 500 || TRANSIENT_CODES.contains(&code) {
                FailureKind::Transient
            } else {
                FailureKind::Permanent
            }
        }
        _ => FailureKind::Transient,
    }
}

/// An SDK error on one line. A service's answer is its status, code and message (`404
/// NoSuchBucket: The specified bucket does not exist`), with a hint for the codes that mean
/// the configuration is wrong; anything else is the whole error chain (the SDK's own `Display`
/// says only "service error", which helps nobody reading a log).
pub fn describe_sdk_error<E>(error: &SdkError<E, HttpResponse>) -> String
where
    E: std::error::Error + ProvideErrorMetadata + 'static,
{
    let SdkError::ServiceError(service) = error else {
        return DisplayErrorContext(error).to_string();
    };
    let status = service.raw().status().as_u16();
    let code = service.err().code().unwrap_or("no error code");
    let message = service.err().message().unwrap_or_default();
    let hint = match code {
        "NoSuchBucket" => "; check the bucket name (YUBA_SOURCE_BUCKET for the source)",
        "AccessDenied" | "InvalidAccessKeyId" | "SignatureDoesNotMatch" => {
            "; check the credentials and the role's permissions"
        }
        "AWS.SimpleQueueService.NonExistentQueue" | "QueueDoesNotExist" => {
            "; check the queue URL (YUBA_*_QUEUE_URL)"
        }
        _ => "",
    };
    format!("HTTP {status} {code}: {message}{hint}")
}
