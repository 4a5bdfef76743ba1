//! Reply codes and the error type that carries one, with RabbitMQ's texts.
//!
//! RabbitMQ prefixes every close reason with the code's name (`NOT_FOUND - no queue 'x' in
//! vhost '/'`); clients and users grep logs for these exact strings, so they are built here in
//! one place.

pub const REPLY_SUCCESS: u16 = 200;
pub const CONTENT_TOO_LARGE: u16 = 311;
pub const NO_ROUTE: u16 = 312;
pub const NO_CONSUMERS: u16 = 313;
pub const CONNECTION_FORCED: u16 = 320;
pub const INVALID_PATH: u16 = 402;
pub const ACCESS_REFUSED: u16 = 403;
pub const NOT_FOUND: u16 = 404;
pub const RESOURCE_LOCKED: u16 = 405;
pub const PRECONDITION_FAILED: u16 = 406;
pub const FRAME_ERROR: u16 = 501;
pub const SYNTAX_ERROR: u16 = 502;
pub const COMMAND_INVALID: u16 = 503;
pub const CHANNEL_ERROR: u16 = 504;
pub const UNEXPECTED_FRAME: u16 = 505;
pub const RESOURCE_ERROR: u16 = 506;
pub const NOT_ALLOWED: u16 = 530;
pub const NOT_IMPLEMENTED: u16 = 540;
pub const INTERNAL_ERROR: u16 = 541;

/// The symbolic name RabbitMQ puts in front of a reply text.
pub fn code_name(code: u16) -> &'static str {
    match code {
        REPLY_SUCCESS => "OK",
        CONTENT_TOO_LARGE => "CONTENT_TOO_LARGE",
        NO_ROUTE => "NO_ROUTE",
        NO_CONSUMERS => "NO_CONSUMERS",
        CONNECTION_FORCED => "CONNECTION_FORCED",
        INVALID_PATH => "INVALID_PATH",
        ACCESS_REFUSED => "ACCESS_REFUSED",
        NOT_FOUND => "NOT_FOUND",
        RESOURCE_LOCKED => "RESOURCE_LOCKED",
        PRECONDITION_FAILED => "PRECONDITION_FAILED",
        FRAME_ERROR => "FRAME_ERROR",
        SYNTAX_ERROR => "SYNTAX_ERROR",
        COMMAND_INVALID => "COMMAND_INVALID",
        CHANNEL_ERROR => "CHANNEL_ERROR",
        UNEXPECTED_FRAME => "UNEXPECTED_FRAME",
        RESOURCE_ERROR => "RESOURCE_ERROR",
        NOT_ALLOWED => "NOT_ALLOWED",
        NOT_IMPLEMENTED => "NOT_IMPLEMENTED",
        _ => "INTERNAL_ERROR",
    }
}

/// Whether a code closes the whole connection (a "hard" error) rather than one channel.
pub fn is_connection_error(code: u16) -> bool {
    matches!(
        code,
        CONNECTION_FORCED
            | INVALID_PATH
            | FRAME_ERROR
            | SYNTAX_ERROR
            | COMMAND_INVALID
            | CHANNEL_ERROR
            | UNEXPECTED_FRAME
            | RESOURCE_ERROR
            | NOT_ALLOWED
            | NOT_IMPLEMENTED
            | INTERNAL_ERROR
    )
}

/// An AMQP error: the reply code, RabbitMQ's text, and the method that caused it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmqpError {
    pub code: u16,
    /// Full reply text, already prefixed with the code name.
    pub text: String,
    pub class_id: u16,
    pub method_id: u16,
}

impl AmqpError {
    /// `detail` is the part after `NAME - `.
    pub fn new(code: u16, detail: impl AsRef<str>) -> Self {
        AmqpError {
            code,
            text: format!("{} - {}", code_name(code), detail.as_ref()),
            class_id: 0,
            method_id: 0,
        }
    }

    pub fn on(mut self, class_id: u16, method_id: u16) -> Self {
        self.class_id = class_id;
        self.method_id = method_id;
        self
    }

    pub fn is_connection_error(&self) -> bool {
        is_connection_error(self.code)
    }

    pub fn not_found(kind: &str, name: &str, vhost: &str) -> Self {
        Self::new(NOT_FOUND, format!("no {kind} '{name}' in vhost '{vhost}'"))
    }

    pub fn precondition(detail: impl AsRef<str>) -> Self {
        Self::new(PRECONDITION_FAILED, detail)
    }

    pub fn access_refused(detail: impl AsRef<str>) -> Self {
        Self::new(ACCESS_REFUSED, detail)
    }
}

impl std::fmt::Display for AmqpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.code, self.text)
    }
}

impl std::error::Error for AmqpError {}
