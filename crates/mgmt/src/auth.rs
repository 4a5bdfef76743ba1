//! HTTP basic authentication against the broker's users, the management tags that decide
//! what a user may do (as RabbitMQ: any of `management`, `policymaker`, `monitoring`,
//! `administrator` to log in; `administrator` for users, permissions, vhosts and
//! definitions), and RabbitMQ's error bodies.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use warren_broker::Broker;

/// An authenticated management user.
pub struct User {
    pub name: String,
    pub tags: Vec<String>,
}

/// Tags that let a user into the management API.
const MANAGEMENT_TAGS: [&str; 4] = ["management", "policymaker", "monitoring", "administrator"];

impl User {
    /// RabbitMQ's 401 `not_authorised` / `Not administrator user` for anyone else.
    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.tags.iter().any(|t| t == "administrator") {
            Ok(())
        } else {
            Err(ApiError(
                StatusCode::UNAUTHORIZED,
                "not_authorised",
                "Not administrator user".into(),
            ))
        }
    }
}

/// A RabbitMQ-shaped error response.
pub struct ApiError(pub StatusCode, pub &'static str, pub String);

impl ApiError {
    pub fn bad_request(reason: impl Into<String>) -> Self {
        ApiError(StatusCode::BAD_REQUEST, "bad_request", reason.into())
    }

    pub fn not_found() -> Self {
        ApiError(
            StatusCode::NOT_FOUND,
            "Object Not Found",
            "Not Found".into(),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(serde_json::json!({"error": self.1, "reason": self.2}));
        let mut r = (self.0, body).into_response();
        if self.0 == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Basic realm=\"RabbitMQ Management\""),
            );
        }
        r
    }
}

fn unauthorized() -> ApiError {
    ApiError(
        StatusCode::UNAUTHORIZED,
        "not_authorized",
        "Login failed".into(),
    )
}

impl FromRequestParts<Arc<Broker>> for User {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        broker: &Arc<Broker>,
    ) -> Result<Self, Self::Rejection> {
        authenticate(parts, broker).map_err(|e| {
            let mut r = e.into_response();
            // The web UI asks with `X-Requested-With`: a browser that sees a Basic challenge
            // on its script's request would pop up its own login dialog over the UI's form.
            if parts.headers.contains_key("x-requested-with") {
                r.headers_mut().remove(header::WWW_AUTHENTICATE);
            }
            r
        })
    }
}

fn authenticate(parts: &Parts, broker: &Broker) -> Result<User, ApiError> {
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(std::net::IpAddr::from([127, 0, 0, 1]));
    let value = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .ok_or_else(unauthorized)?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(unauthorized)?;
    let (name, password) = decoded.split_once(':').ok_or_else(unauthorized)?;
    let user = broker
        .auth
        .login(name, password, peer)
        .map_err(|_| unauthorized())?;
    if !user
        .tags
        .iter()
        .any(|t| MANAGEMENT_TAGS.contains(&t.as_str()))
    {
        return Err(ApiError(
            StatusCode::UNAUTHORIZED,
            "not_authorised",
            "Not management user".into(),
        ));
    }
    Ok(User {
        name: user.name,
        tags: user.tags,
    })
}
