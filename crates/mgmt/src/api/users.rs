//! `/api/users` and `/api/permissions`: users (created with `password` or RabbitMQ's
//! `password_hash`, with tags), and per-vhost permissions. Administrator-only, as in
//! RabbitMQ. Every change is written to the node's definitions file.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};
use warren_broker::auth::{hash_password, Permission, User as BrokerUser, HASHING_ALGORITHM};
use warren_broker::metadata::MetaOp;
use warren_broker::Broker;

use super::vhost;
use crate::auth::{ApiError, User};

fn user_json(u: &BrokerUser) -> Value {
    json!({
        "name": u.name,
        "password_hash": u.password_hash,
        "hashing_algorithm": HASHING_ALGORITHM,
        "tags": u.tags,
        "limits": {},
    })
}

fn permission_json(user: &str, vhost: &str, p: &Permission) -> Value {
    json!({
        "user": user, "vhost": vhost,
        "configure": p.patterns[0], "write": p.patterns[1], "read": p.patterns[2],
    })
}

/// Tags as the UI sends them (`"administrator,monitoring"`) or as newer clients do (a list).
fn tags(v: Option<&Value>) -> Option<Vec<String>> {
    let list: Vec<String> = match v? {
        Value::Array(a) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        Value::String(s) => s.split(',').map(str::to_string).collect(),
        _ => return None,
    };
    Some(
        list.into_iter()
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .collect(),
    )
}

pub async fn list_users(
    State(b): State<Arc<Broker>>,
    u: User,
) -> Result<Json<Vec<Value>>, ApiError> {
    u.require_admin()?;
    Ok(Json(b.auth.users().iter().map(user_json).collect()))
}

pub async fn show_user(
    State(b): State<Arc<Broker>>,
    u: User,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    u.require_admin()?;
    let user = b.auth.user(&name).ok_or_else(ApiError::not_found)?;
    Ok(Json(user_json(&user)))
}

/// Creates (201) or updates (204) a user. A new user needs `password` or `password_hash`;
/// an update without either keeps the password and changes only the tags.
pub async fn put_user(
    State(b): State<Arc<Broker>>,
    u: User,
    Path(name): Path<String>,
    body: String,
) -> Result<StatusCode, ApiError> {
    u.require_admin()?;
    let req = super::json_body(&body)?;
    let existing = b.auth.user(&name);
    let password_hash = match (
        req.get("password").and_then(Value::as_str),
        req.get("password_hash").and_then(Value::as_str),
    ) {
        (Some(p), _) => hash_password(p),
        (None, Some(h)) => {
            let alg = req
                .get("hashing_algorithm")
                .and_then(Value::as_str)
                .unwrap_or(HASHING_ALGORITHM);
            if alg != HASHING_ALGORITHM {
                return Err(ApiError::bad_request(format!(
                    "hashing algorithm {alg} is not supported; use {HASHING_ALGORITHM}"
                )));
            }
            h.to_string()
        }
        (None, None) => match &existing {
            Some(e) => e.password_hash.clone(),
            None => {
                return Err(ApiError::bad_request(
                    "Must specify either password or password_hash",
                ))
            }
        },
    };
    let tags = tags(req.get("tags"))
        .or_else(|| existing.as_ref().map(|e| e.tags.clone()))
        .unwrap_or_default();
    super::submit(
        &b,
        MetaOp::PutUser {
            name,
            password_hash,
            tags,
        },
    )
    .await?;
    Ok(if existing.is_some() {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::CREATED
    })
}

pub async fn delete_user(
    State(b): State<Arc<Broker>>,
    u: User,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    u.require_admin()?;
    b.auth.user(&name).ok_or_else(ApiError::not_found)?;
    super::submit(&b, MetaOp::DeleteUser { name }).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn user_permissions(
    State(b): State<Arc<Broker>>,
    u: User,
    Path(name): Path<String>,
) -> Result<Json<Vec<Value>>, ApiError> {
    u.require_admin()?;
    b.auth.user(&name).ok_or_else(ApiError::not_found)?;
    Ok(Json(
        b.auth
            .permissions()
            .iter()
            .filter(|(user, _, _)| *user == name)
            .map(|(user, vh, p)| permission_json(user, vh, p))
            .collect(),
    ))
}

pub async fn list_permissions(
    State(b): State<Arc<Broker>>,
    u: User,
) -> Result<Json<Vec<Value>>, ApiError> {
    u.require_admin()?;
    Ok(Json(
        b.auth
            .permissions()
            .iter()
            .map(|(user, vh, p)| permission_json(user, vh, p))
            .collect(),
    ))
}

pub async fn show_permission(
    State(b): State<Arc<Broker>>,
    u: User,
    Path((vh, name)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    u.require_admin()?;
    b.auth
        .permissions()
        .iter()
        .find(|(user, v, _)| *user == name && *v == vh)
        .map(|(user, v, p)| Json(permission_json(user, v, p)))
        .ok_or_else(ApiError::not_found)
}

/// Grants `configure`/`write`/`read` (regular expressions) on a vhost: 201 when new, 204
/// when replaced; 404 for an unknown vhost or user, 400 for a bad expression.
pub async fn put_permission(
    State(b): State<Arc<Broker>>,
    u: User,
    Path((vh, name)): Path<(String, String)>,
    body: String,
) -> Result<StatusCode, ApiError> {
    u.require_admin()?;
    vhost(&b, &vh)?;
    b.auth.user(&name).ok_or_else(ApiError::not_found)?;
    let req = super::json_body(&body)?;
    let field = |k: &str| {
        req.get(k)
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::bad_request(format!("[{{{k},not_found}}]")))
    };
    let (configure, write, read) = (field("configure")?, field("write")?, field("read")?);
    Permission::new(configure, write, read)
        .map_err(|e| ApiError::bad_request(format!("invalid regular expression: {e}")))?;
    let existed = b.auth.can_access_vhost(&name, &vh);
    let op = MetaOp::SetPermissions {
        user: name,
        vhost: vh,
        configure: configure.to_string(),
        write: write.to_string(),
        read: read.to_string(),
    };
    super::submit(&b, op).await?;
    Ok(if existed {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::CREATED
    })
}

pub async fn delete_permission(
    State(b): State<Arc<Broker>>,
    u: User,
    Path((vh, name)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    u.require_admin()?;
    let op = MetaOp::ClearPermissions {
        user: name,
        vhost: vh,
    };
    let reply = super::submit(&b, op).await?;
    if !reply.created {
        return Err(ApiError::not_found());
    }
    Ok(StatusCode::NO_CONTENT)
}
