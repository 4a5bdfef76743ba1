//! Node identity and the authenticated control channel: the shared cookie, the per-host
//! node registry (Warren's epmd), and the challenge–response handshake on the cluster port
//! that `warren ctl` (and, with clustering, peer nodes) must pass.
//!
//! The cookie never crosses the wire: the node sends a random challenge and the peer proves
//! it knows the cookie with HMAC-SHA256(cookie, challenge).

pub mod cookie;
pub mod group;
pub mod handshake;
pub mod raft;
pub mod registry;

/// `name@host` split into its parts, with an optional explicit `:port`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeName {
    pub name: String,
    pub host: String,
    pub port: Option<u16>,
}

impl NodeName {
    pub fn parse(s: &str) -> Result<NodeName, String> {
        let (name, rest) = s
            .split_once('@')
            .ok_or_else(|| format!("invalid node name '{s}': expected name@host"))?;
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) if !h.is_empty() => (
                h.to_string(),
                Some(
                    p.parse()
                        .map_err(|_| format!("invalid port in node name '{s}'"))?,
                ),
            ),
            _ => (rest.to_string(), None),
        };
        if name.is_empty() || host.is_empty() {
            return Err(format!("invalid node name '{s}': expected name@host"));
        }
        Ok(NodeName {
            name: name.to_string(),
            host,
            port,
        })
    }

    /// `name@host` without the port.
    pub fn full(&self) -> String {
        format!("{}@{}", self.name, self.host)
    }
}

/// The short host name, as Erlang/RabbitMQ node names use it.
pub fn short_hostname() -> String {
    hostname::get()
        .ok()
        .and_then(|h| h.into_string().ok())
        .map(|h| h.split('.').next().unwrap_or("localhost").to_string())
        .unwrap_or_else(|| "localhost".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names() {
        let n = NodeName::parse("warren@hadoop100").unwrap();
        assert_eq!(
            (n.name.as_str(), n.host.as_str(), n.port),
            ("warren", "hadoop100", None)
        );
        let n = NodeName::parse("warren2@localhost:25673").unwrap();
        assert_eq!(n.port, Some(25673));
        assert!(NodeName::parse("nohost").is_err());
    }
}
