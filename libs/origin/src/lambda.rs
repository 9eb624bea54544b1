//! The Lambda home: a function URL's invocations (`AuthType: AWS_IAM`, reached only through
//! CloudFront's origin access control), answered with response streaming (`InvokeMode:
//! RESPONSE_STREAM`): the status and headers go first, as the stream's metadata prelude, then
//! the body as it is read from GCS. A streamed response may be up to 200 MB; past its first
//! 6 MB Lambda sends at most 2 MB/s
//! (<https://docs.aws.amazon.com/lambda/latest/dg/configuration-response-streaming.html>).

use aws_lambda_events::event::lambda_function_urls::LambdaFunctionUrlRequest;
use std::convert::Infallible;

use bytes::Bytes;
use futures::FutureExt;
use futures::stream::BoxStream;
use http::StatusCode;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use lambda_runtime::{LambdaEvent, MetadataPrelude, StreamResponse, service_fn};
use yuba_delivery::conditional::Conditions;
use yuba_delivery::respond::Asked;
use yuba_gcs::GcsError;

use crate::http::SERVED_HEADER;
use crate::origin::{Answer, Origin, Request};

/// A response body as the runtime streams it.
pub type BodyStream = BoxStream<'static, Result<Bytes, GcsError>>;

/// Answers the function URL's invocations until the runtime stops.
pub async fn serve(origin: Origin) -> Result<(), lambda_runtime::Error> {
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<LambdaFunctionUrlRequest>| {
            let origin = origin.clone();
            // Boxed as a trait object: the answer's future is too deep a type for the runtime's
            // own futures to lay out around it.
            async move { Ok::<_, Infallible>(invocation(&origin, event.payload).await) }.boxed()
        },
    ))
    .await
}

/// The streamed answer to one invocation.
pub async fn invocation(
    origin: &Origin,
    request: LambdaFunctionUrlRequest,
) -> StreamResponse<BodyStream> {
    let headers = &request.headers;
    let text = |name: HeaderName| headers.get(name).and_then(|value| value.to_str().ok());
    // The function URL passes the path as the client sent it, still percent-encoded, which is
    // what `yuba_delivery::path::parse` reads (docs/design/delivery-research.md).
    let ours = Request {
        method: request
            .request_context
            .http
            .method
            .as_deref()
            .unwrap_or("GET"),
        path: request.raw_path.as_deref().unwrap_or("/"),
        asked: Asked {
            conditions: Conditions {
                if_none_match: text(http::header::IF_NONE_MATCH),
                if_modified_since: text(http::header::IF_MODIFIED_SINCE),
            },
            range: text(http::header::RANGE),
            if_range: text(http::header::IF_RANGE),
        },
    };
    streamed(origin.answer(&ours).await)
}

fn streamed(answer: Answer) -> StreamResponse<BodyStream> {
    let mut headers = HeaderMap::new();
    for (name, value) in answer.headers {
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(name), HeaderValue::from_str(&value)) {
            headers.insert(name, value);
        }
    }
    headers.insert(
        HeaderName::from_static(SERVED_HEADER),
        HeaderValue::from_static(answer.served.as_str()),
    );
    let stream = answer.body.into_stream();
    StreamResponse {
        metadata_prelude: MetadataPrelude {
            status_code: StatusCode::from_u16(answer.status)
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            headers,
            cookies: Vec::new(),
        },
        stream,
    }
}
