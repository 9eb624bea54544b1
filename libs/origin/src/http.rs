//! The plain-HTTP home: an HTTP/1.1 server for the local stack and containers. It turns each
//! request into a [`Request`], asks the [`Origin`], and sends the answer, streaming an object's
//! bytes from GCS as they arrive.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use yuba_delivery::conditional::Conditions;
use yuba_delivery::respond::Asked;
use yuba_gcs::GcsError;

use crate::origin::{Answer, Body, Origin, Request};

/// The body of a response: in memory, or streamed from GCS.
pub type ResponseBody = UnsyncBoxBody<Bytes, GcsError>;

/// The header that says how an answer was found (`original`, `hit`, `rendered`, or the kind
/// of refusal): for the demo, the tests and whoever debugs a CDN's misses.
pub const SERVED_HEADER: &str = "x-yuba-served";

/// Serves `origin` on `listener` until `shutdown`: then it stops accepting, lets each open
/// connection finish the request it is on, and waits up to `grace` for them.
pub async fn serve(
    listener: TcpListener,
    origin: Origin,
    shutdown: CancellationToken,
    grace: Duration,
) {
    let connections = TaskTracker::new();
    loop {
        let (stream, _) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors, say: pause rather than spin.
                    tracing::warn!(%error, "could not accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        // A head and a body are two writes: without this, Nagle's algorithm holds the second
        // until the client acknowledges the first, which a delayed ACK puts off by ~40 ms.
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "could not set TCP_NODELAY");
        }
        let origin = origin.clone();
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            let service = service_fn(move |request| {
                let origin = origin.clone();
                async move { Ok::<_, Infallible>(handle(&origin, request).await) }
            });
            let connection = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            let mut connection = std::pin::pin!(connection);
            let finished = tokio::select! {
                finished = connection.as_mut() => finished,
                () = shutdown.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(error) = finished {
                tracing::debug!(%error, "a connection ended with an error");
            }
        });
    }
    connections.close();
    if tokio::time::timeout(grace, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            open = connections.len(),
            "connections still open after the grace period are dropped"
        );
    }
}

async fn handle(
    origin: &Origin,
    request: hyper::Request<Incoming>,
) -> hyper::Response<ResponseBody> {
    let headers = request.headers();
    let text = |name: HeaderName| headers.get(name).and_then(|value| value.to_str().ok());
    let asked = Asked {
        conditions: Conditions {
            if_none_match: text(hyper::header::IF_NONE_MATCH),
            if_modified_since: text(hyper::header::IF_MODIFIED_SINCE),
        },
        range: text(hyper::header::RANGE),
        if_range: text(hyper::header::IF_RANGE),
    };
    let ours = Request {
        method: request.method().as_str(),
        path: request.uri().path(),
        asked,
    };
    response(origin.answer(&ours).await)
}

fn response(answer: Answer) -> hyper::Response<ResponseBody> {
    let body = match answer.body {
        Body::Empty => Empty::new().map_err(|never| match never {}).boxed_unsync(),
        Body::Bytes(bytes) => Full::new(bytes)
            .map_err(|never| match never {})
            .boxed_unsync(),
        object => {
            StreamBody::new(object.into_stream().map(|chunk| chunk.map(Frame::data))).boxed_unsync()
        }
    };
    let mut response = hyper::Response::new(body);
    *response.status_mut() = hyper::StatusCode::from_u16(answer.status)
        .unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    let headers: &mut HeaderMap = response.headers_mut();
    for (name, value) in answer.headers {
        // Values are ours or GCS's; one that is not a valid header value is left out.
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(name), HeaderValue::from_str(&value)) {
            headers.insert(name, value);
        }
    }
    headers.insert(
        HeaderName::from_static(SERVED_HEADER),
        HeaderValue::from_static(answer.served.as_str()),
    );
    response
}
