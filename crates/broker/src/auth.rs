//! Users, their tags and per-vhost permissions, and SASL credential parsing.
//!
//! Permissions are RabbitMQ's three regular expressions (configure, write, read) per user
//! and vhost, matched unanchored as RabbitMQ does; the empty string matches nothing.
//! `loopback_users` (default: guest) may only log in from a loopback address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::RwLock;

use regex::Regex;

/// A user. Passwords are kept only as RabbitMQ's `rabbit_password_hashing_sha256` hash
/// (base64 of a 4-byte salt followed by SHA-256(salt ++ password)), so definitions exported
/// from RabbitMQ import unchanged and ours never hold a clear-text password.
#[derive(Clone)]
pub struct User {
    pub name: String,
    pub password_hash: String,
    pub tags: Vec<String>,
}

pub const HASHING_ALGORITHM: &str = "rabbit_password_hashing_sha256";

/// RabbitMQ's salted SHA-256 password hash.
pub fn hash_password(password: &str) -> String {
    let salt: [u8; 4] = rand::random();
    hash_with_salt(&salt, password)
}

fn hash_with_salt(salt: &[u8], password: &str) -> String {
    use base64::Engine;
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(salt);
    h.update(password.as_bytes());
    let mut out = salt.to_vec();
    out.extend_from_slice(&h.finalize());
    base64::engine::general_purpose::STANDARD.encode(out)
}

fn password_matches(stored: &str, password: &str) -> bool {
    use base64::Engine;
    match base64::engine::general_purpose::STANDARD.decode(stored) {
        Ok(raw) if raw.len() == 36 => hash_with_salt(&raw[..4], password) == stored,
        _ => false,
    }
}

#[derive(Clone)]
pub struct Permission {
    pub configure: Regex,
    pub write: Regex,
    pub read: Regex,
    /// The patterns as given (for listing and export).
    pub patterns: [String; 3],
}

impl Permission {
    pub fn new(configure: &str, write: &str, read: &str) -> Result<Self, regex::Error> {
        let compile = |p: &str| Regex::new(if p.is_empty() { "^$" } else { p });
        Ok(Permission {
            configure: compile(configure)?,
            write: compile(write)?,
            read: compile(read)?,
            patterns: [configure.into(), write.into(), read.into()],
        })
    }
}

/// What an operation needs on a resource.
#[derive(Clone, Copy, Debug)]
pub enum Access {
    Configure,
    Write,
    Read,
}

/// Why a login failed (logged, never told to the client beyond ACCESS_REFUSED).
#[derive(Debug)]
pub enum LoginError {
    UnknownUser,
    BadPassword,
    LoopbackOnly,
}

#[derive(Default)]
pub struct Auth {
    users: RwLock<HashMap<String, User>>,
    permissions: RwLock<HashMap<(String, String), Permission>>,
    loopback_users: RwLock<Vec<String>>,
    /// The password of `INTERNAL_USER`, when this node is in a cluster.
    internal: RwLock<Option<String>>,
}

/// The user cluster peers log in as (to forward publishes and pull deliveries); it has
/// every permission in every vhost and is not listed or stored.
pub const INTERNAL_USER: &str = "warren-internal-node-link";

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Auth {
    pub fn add_user(&self, name: &str, password: &str, tags: &[&str]) {
        self.put_user(User {
            name: name.to_string(),
            password_hash: hash_password(password),
            tags: tags.iter().map(|t| t.to_string()).collect(),
        });
    }

    /// Adds or replaces a user as given (e.g. from imported definitions).
    pub fn put_user(&self, user: User) {
        self.users
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(user.name.clone(), user);
    }

    pub fn users(&self) -> Vec<User> {
        let mut v: Vec<User> = self
            .users
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// (user, vhost, permission) for every grant.
    pub fn permissions(&self) -> Vec<(String, String, Permission)> {
        let mut v: Vec<(String, String, Permission)> = self
            .permissions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|((u, vh), p)| (u.clone(), vh.clone(), p.clone()))
            .collect();
        v.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        v
    }

    pub fn delete_user(&self, name: &str) -> bool {
        self.permissions
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(u, _), _| u != name);
        self.users
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name)
            .is_some()
    }

    pub fn user(&self, name: &str) -> Option<User> {
        self.users
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    pub fn clear_permissions(&self, user: &str, vhost: &str) -> bool {
        self.permissions
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(user.to_string(), vhost.to_string()))
            .is_some()
    }

    pub fn set_permissions(&self, user: &str, vhost: &str, perm: Permission) {
        self.permissions
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert((user.to_string(), vhost.to_string()), perm);
    }

    pub fn set_loopback_users(&self, users: Vec<String>) {
        *self
            .loopback_users
            .write()
            .unwrap_or_else(|e| e.into_inner()) = users;
    }

    pub fn login(&self, user: &str, password: &str, peer: IpAddr) -> Result<User, LoginError> {
        if user == INTERNAL_USER {
            return match self.internal_secret() {
                Some(s) if constant_time_eq(s.as_bytes(), password.as_bytes()) => Ok(User {
                    name: INTERNAL_USER.into(),
                    password_hash: String::new(),
                    tags: vec!["administrator".into()],
                }),
                _ => Err(LoginError::BadPassword),
            };
        }
        let users = self.users.read().unwrap_or_else(|e| e.into_inner());
        let u = users.get(user).ok_or(LoginError::UnknownUser)?;
        if !password_matches(&u.password_hash, password) {
            return Err(LoginError::BadPassword);
        }
        let loopback = match peer {
            IpAddr::V4(a) => a.is_loopback(),
            IpAddr::V6(a) => {
                a.is_loopback() || a.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
            }
        };
        if !loopback
            && self
                .loopback_users
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .any(|l| l == user)
        {
            return Err(LoginError::LoopbackOnly);
        }
        Ok(u.clone())
    }

    /// Lets cluster peers in as `INTERNAL_USER` with `secret` (derived from the cookie).
    pub fn set_internal_secret(&self, secret: String) {
        *self.internal.write().unwrap_or_else(|e| e.into_inner()) = Some(secret);
    }

    pub fn internal_secret(&self) -> Option<String> {
        self.internal
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn can_access_vhost(&self, user: &str, vhost: &str) -> bool {
        if user == INTERNAL_USER {
            return true;
        }
        self.permissions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(&(user.to_string(), vhost.to_string()))
    }

    pub fn check(&self, user: &str, vhost: &str, access: Access, resource: &str) -> bool {
        if user == INTERNAL_USER {
            return true;
        }
        let perms = self.permissions.read().unwrap_or_else(|e| e.into_inner());
        let Some(p) = perms.get(&(user.to_string(), vhost.to_string())) else {
            return false;
        };
        match access {
            Access::Configure => p.configure.is_match(resource),
            Access::Write => p.write.is_match(resource),
            Access::Read => p.read.is_match(resource),
        }
    }
}

/// Extracts (user, password) from a `connection.start-ok` response.
pub fn parse_credentials(mechanism: &str, response: &[u8]) -> Option<(String, String)> {
    match mechanism {
        // PLAIN: authzid NUL authcid NUL password
        "PLAIN" => {
            let mut parts = response.split(|b| *b == 0);
            let _authzid = parts.next()?;
            let user = parts.next()?;
            let pass = parts.next()?;
            Some((
                String::from_utf8(user.to_vec()).ok()?,
                String::from_utf8(pass.to_vec()).ok()?,
            ))
        }
        // AMQPLAIN: a field table without its length prefix, keys LOGIN and PASSWORD.
        "AMQPLAIN" => {
            let mut framed = (response.len() as u32).to_be_bytes().to_vec();
            framed.extend_from_slice(response);
            let table = warren_amqp::decode_field_table(&framed)?;
            let get = |k: &str| table.inner().get(k).and_then(crate::args::as_str);
            Some((get("LOGIN")?, get("PASSWORD")?))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_credentials() {
        assert_eq!(
            parse_credentials("PLAIN", b"\0guest\0secret"),
            Some(("guest".into(), "secret".into()))
        );
        assert_eq!(parse_credentials("PLAIN", b"guest"), None);
    }

    #[test]
    fn rabbitmq_password_hashes_verify() {
        // A hash as RabbitMQ 3.x exports it for password "guest".
        let h = hash_with_salt(&[0x90, 0x31, 0x5d, 0x0c], "guest");
        assert!(password_matches(&h, "guest"));
        assert!(!password_matches(&h, "Guest"));
        assert!(password_matches(&hash_password("s3cret"), "s3cret"));
    }

    #[test]
    fn empty_permission_matches_nothing() {
        let p = Permission::new("", ".*", "^amq\\.").unwrap();
        assert!(!p.configure.is_match("q"));
        assert!(p.write.is_match("q"));
        assert!(p.read.is_match("amq.gen-1"));
        assert!(!p.read.is_match("q"));
    }

    #[test]
    fn guest_is_loopback_only() {
        let a = Auth::default();
        a.add_user("guest", "guest", &["administrator"]);
        a.set_loopback_users(vec!["guest".into()]);
        assert!(a
            .login("guest", "guest", "127.0.0.1".parse().unwrap())
            .is_ok());
        assert!(a.login("guest", "guest", "::1".parse().unwrap()).is_ok());
        assert!(matches!(
            a.login("guest", "guest", "198.18.0.5".parse().unwrap()),
            Err(LoginError::LoopbackOnly)
        ));
        assert!(matches!(
            a.login("guest", "nope", "127.0.0.1".parse().unwrap()),
            Err(LoginError::BadPassword)
        ));
    }
}
