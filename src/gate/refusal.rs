//! The gate's answers table (SPEC §2): why a connect request is refused, one variant per row,
//! and the one function that turns a refusal into its status line and body — for a direct
//! answer and for the rejection a relayed connection gets alike — and into its audit words.

use bytes::Bytes;
use http_body_util::Full;
use hyper::http::{HeaderValue, Response, StatusCode, header};

use crate::gate::admit::LocalDialError;
use crate::gate::sessions::Limit;
use crate::hc::answer::{NOT_ALLOWED, not_allowed_body, refusal};
use crate::hc::request::RequestError;
use crate::policy::Denied;
use crate::token::TokenError;

/// Why a connect request is refused: one variant per row of SPEC §2's table.
#[derive(Debug)]
pub(crate) enum Refusal {
    BadRequest(RequestError),
    UnknownName(String),
    Unauthorized(TokenError),
    Forbidden(Denied, u16),
    Unavailable(String),
    DialFailed(u16, LocalDialError),
    OverLimit(Limit),
    /// Too many sessions already wait for the administrator's approval.
    TooManyWaiting,
}

impl Refusal {
    /// The HTTP answer: the one place a refusal becomes a status line and body.
    pub(crate) fn response(&self) -> Response<Full<Bytes>> {
        let (status, reason, body, content_type) = self.parts();
        let mut response = refusal(status, &reason, body, content_type);
        if matches!(
            self,
            Refusal::OverLimit(_) | Refusal::Unavailable(_) | Refusal::TooManyWaiting
        ) {
            // Long enough for sessions to end or an administrator to fix a file.
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        response
    }

    /// The status line: what a relayed connection is rejected with too.
    pub(crate) fn status_line(&self) -> (StatusCode, String) {
        let (status, reason, _, _) = self.parts();
        (status, reason)
    }

    fn parts(&self) -> (StatusCode, String, String, &'static str) {
        match self {
            Refusal::BadRequest(e) => (
                StatusCode::BAD_REQUEST,
                "Bad Request".into(),
                format!("{e}\n"),
                "text/plain",
            ),
            Refusal::UnknownName(_) => (
                StatusCode::NOT_FOUND,
                "Endpoint does not exist".into(),
                "Endpoint does not exist\n".into(),
                "text/plain",
            ),
            // No detail: nothing here should help someone guessing keys or resources.
            Refusal::Unauthorized(_) => (
                StatusCode::UNAUTHORIZED,
                "Unauthorized".into(),
                "Unauthorized\n".into(),
                "text/plain",
            ),
            Refusal::Forbidden(denied, port) => (
                StatusCode::FORBIDDEN,
                NOT_ALLOWED.into(),
                not_allowed_body(denied.wire_reason(), *port, &denied.explain(*port)),
                "application/json",
            ),
            Refusal::DialFailed(port, error) => {
                let reason = format!("connection to localhost:{port} failed: {error}.");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    reason.clone(),
                    format!("{reason}\n"),
                    "text/plain",
                )
            }
            Refusal::Unavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "Service Unavailable".into(),
                "the gate's configuration is invalid; the host's administrator must fix it\n"
                    .into(),
                "text/plain",
            ),
            Refusal::OverLimit(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "Service Unavailable".into(),
                "too many sessions; retry later\n".into(),
                "text/plain",
            ),
            Refusal::TooManyWaiting => (
                StatusCode::SERVICE_UNAVAILABLE,
                "Service Unavailable".into(),
                "too many sessions already wait for the host's administrator; retry later\n".into(),
                "text/plain",
            ),
        }
    }

    /// `(decision, reason in words, bounded reason code for metrics)`.
    pub(crate) fn describe(&self) -> (&'static str, String, &'static str) {
        match self {
            Refusal::BadRequest(e) => ("bad_request", e.to_string(), "malformed_request"),
            Refusal::UnknownName(n) => ("not_found", format!("unknown name '{n}'"), "unknown_name"),
            Refusal::Unauthorized(e) => ("unauthorized", e.to_string(), e.kind()),
            Refusal::Forbidden(d, _) => ("deny", d.audit_reason().to_string(), d.audit_reason()),
            Refusal::Unavailable(e) => ("unavailable", e.clone(), "config_invalid"),
            Refusal::DialFailed(_, e) => ("dial_failed", e.to_string(), "dial_failed"),
            Refusal::OverLimit(Limit::Total) => {
                ("over_limit", "max sessions reached".into(), "max_sessions")
            }
            Refusal::OverLimit(Limit::PerIp) => (
                "over_limit",
                "max sessions per IP reached".into(),
                "max_sessions_per_ip",
            ),
            Refusal::TooManyWaiting => (
                "over_limit",
                "too many sessions wait for approval".into(),
                "max_waiting_approvals",
            ),
        }
    }
}
