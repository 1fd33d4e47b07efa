//! One request on its way from hyper to the router: size limits of its head, the peer address
//! handlers read (`ConnectInfo`), a deadline on its body, and the connection's phase.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, HeaderValue, Request, StatusCode, Uri, header};
use axum::response::Response;
use hyper::body::{Frame, Incoming, SizeHint};
use tokio::time::{Instant, Sleep};
use tower::ServiceExt;

use super::answers;
use super::metrics::HttpMetrics;
use super::watch::Watch;

/// Longest request target (path and query) answered by the router; longer is 414 in JSON.
/// 8 KiB is what common proxies accept (nginx's default large header buffer).
pub const MAX_URI_BYTES: usize = 8 * 1024;

/// Largest header section (request line and headers) answered by the router; larger is 431 in
/// JSON.
pub const MAX_HEAD_BYTES: usize = 32 * 1024;

/// hyper's hard cap on a header section and on its read buffer: past it hyper answers 431
/// itself, with an empty body (see `http::answers`). It also bounds what a connection that
/// sends headers slowly can make us buffer: 4096 connections (`http.max_connections`) at most
/// 256 MiB, for at most `http.header_read_timeout`. Twice [`MAX_HEAD_BYTES`], so that the
/// JSON answer covers every header section between the two.
pub const HARD_HEAD_BYTES: usize = 64 * 1024;

/// What every request of one connection shares.
#[derive(Debug)]
pub struct RequestContext {
    /// The routes.
    pub router: Router,
    /// The peer.
    pub peer: SocketAddr,
    /// The connection's phase.
    pub watch: Arc<Watch>,
    /// `http.body_read_timeout`.
    pub body_timeout: Duration,
    /// Where timeouts are counted.
    pub metrics: Arc<HttpMetrics>,
}

/// Serve one request.
pub async fn handle(mut req: Request<Incoming>, ctx: Arc<RequestContext>) -> Response {
    ctx.watch.request_started();
    let response = match head_refusal(req.uri(), req.headers()) {
        Some(refusal) => refusal,
        None => {
            req.extensions_mut().insert(ConnectInfo(ctx.peer));
            let expired = Arc::new(AtomicBool::new(false));
            let req = req.map(|body| {
                Body::new(DeadlineBody::new(
                    body,
                    Instant::now() + ctx.body_timeout,
                    expired.clone(),
                ))
            });
            let response = match ctx.router.clone().oneshot(req).await {
                Ok(response) => response,
                Err(never) => match never {},
            };
            if expired.load(Ordering::Acquire) {
                ctx.metrics.timeout("body");
                body_timed_out(ctx.body_timeout)
            } else {
                response
            }
        }
    };
    ctx.watch.response_sent();
    response
}

/// The 408 for a body that did not arrive in time; the connection is closed after it (the rest
/// of the body is never read).
fn body_timed_out(timeout: Duration) -> Response {
    let mut res = answers::error(
        StatusCode::REQUEST_TIMEOUT,
        format!(
            "request body not received within {} (http.body_read_timeout)",
            humantime_serde::re::humantime::format_duration(timeout)
        ),
    );
    res.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    res
}

/// 414 for a request target over [`MAX_URI_BYTES`], 431 for a header section over
/// [`MAX_HEAD_BYTES`], `None` when the head is within both.
fn head_refusal(uri: &Uri, headers: &HeaderMap) -> Option<Response> {
    let target = uri.path_and_query().map_or(0, |p| p.as_str().len())
        + uri.authority().map_or(0, |a| a.as_str().len())
        + uri.scheme_str().map_or(0, str::len);
    if target > MAX_URI_BYTES {
        return Some(answers::error(
            StatusCode::URI_TOO_LONG,
            format!("request target of {target} bytes, over the limit of {MAX_URI_BYTES}"),
        ));
    }
    // Request line (method, target, version and separators) plus `name: value\r\n` per header.
    let head = target
        + 16
        + headers
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + 4)
            .sum::<usize>();
    (head > MAX_HEAD_BYTES).then(|| {
        answers::error(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!("header section of {head} bytes, over the limit of {MAX_HEAD_BYTES}"),
        )
    })
}

/// A request body read past its deadline fails with this error.
#[derive(Debug, thiserror::Error)]
#[error("request body not received in time (http.body_read_timeout)")]
pub struct BodyTimeout;

/// A request body that must be read completely before a deadline: the sender of a slow body
/// holds a connection and a handler, so the whole body gets one deadline, not one per chunk
/// (a chunk a minute would pass a per-chunk timeout forever). The timer is only created when
/// the body is actually waited for.
struct DeadlineBody {
    inner: Incoming,
    deadline: Instant,
    sleep: Option<Pin<Box<Sleep>>>,
    expired: Arc<AtomicBool>,
}

impl DeadlineBody {
    fn new(inner: Incoming, deadline: Instant, expired: Arc<AtomicBool>) -> Self {
        Self {
            inner,
            deadline,
            sleep: None,
            expired,
        }
    }
}

impl hyper::body::Body for DeadlineBody {
    type Data = bytes::Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => Poll::Ready(frame.map(|f| f.map_err(Into::into))),
            Poll::Pending => {
                let deadline = this.deadline;
                let sleep = this
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                match sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        this.expired.store(true, Ordering::Release);
                        Poll::Ready(Some(Err(BodyTimeout.into())))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_targets_are_414_and_big_heads_431() {
        let ok: Uri = "/healthz?x=1".parse().expect("uri");
        assert!(head_refusal(&ok, &HeaderMap::new()).is_none());

        let long: Uri = format!("/healthz?x={}", "a".repeat(MAX_URI_BYTES))
            .parse()
            .expect("uri");
        let res = head_refusal(&long, &HeaderMap::new()).expect("too long");
        assert_eq!(res.status(), StatusCode::URI_TOO_LONG);

        let mut headers = HeaderMap::new();
        for i in 0..8 {
            headers.insert(
                axum::http::HeaderName::try_from(format!("x-big-{i}")).expect("name"),
                HeaderValue::try_from("v".repeat(MAX_HEAD_BYTES / 8)).expect("value"),
            );
        }
        let res = head_refusal(&ok, &headers).expect("too big");
        assert_eq!(res.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    }
}
