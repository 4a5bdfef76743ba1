//! HTTP basic authentication against the broker's users, and RabbitMQ's error bodies.

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
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        broker: &Arc<Broker>,
    ) -> Result<Self, Self::Rejection> {
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
        Ok(User {
            name: user.name,
            tags: user.tags,
        })
    }
}
