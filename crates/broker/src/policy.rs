//! Policies: operator-defined settings applied to queues and exchanges by name pattern.
//!
//! As RabbitMQ: a policy has a vhost, name, regular-expression pattern, apply-to (`all`,
//! `queues`, `exchanges`), priority (highest wins; one policy per object) and a JSON
//! definition. Definitions are validated with RabbitMQ's messages; the caller reports them
//! as `Validation failed\n\n<message>`.

use regex::Regex;
use serde_json::Value;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApplyTo {
    All,
    Queues,
    Exchanges,
}

impl ApplyTo {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "all" => ApplyTo::All,
            "queues" | "classic_queues" => ApplyTo::Queues,
            "exchanges" => ApplyTo::Exchanges,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ApplyTo::All => "all",
            ApplyTo::Queues => "queues",
            ApplyTo::Exchanges => "exchanges",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Policy {
    pub vhost: String,
    pub name: String,
    pub pattern: String,
    regex: Regex,
    pub apply_to: ApplyTo,
    pub priority: i64,
    pub definition: Value,
}

impl Policy {
    /// Builds and validates a policy; `Err` carries RabbitMQ's validation message.
    pub fn new(
        vhost: &str,
        name: &str,
        pattern: &str,
        apply_to: &str,
        priority: i64,
        definition: Value,
    ) -> Result<Policy, String> {
        let regex = Regex::new(pattern)
            .map_err(|e| format!("<<\"{pattern}\">> is not a valid regular expression: {e}"))?;
        let apply_to = ApplyTo::parse(apply_to)
            .ok_or_else(|| format!("\"{apply_to}\" is not a valid apply-to value"))?;
        validate_definition(&definition)?;
        Ok(Policy {
            vhost: vhost.to_string(),
            name: name.to_string(),
            pattern: pattern.to_string(),
            regex,
            apply_to,
            priority,
            definition,
        })
    }

    pub fn matches(&self, name: &str, is_queue: bool) -> bool {
        let kind_ok = match self.apply_to {
            ApplyTo::All => true,
            ApplyTo::Queues => is_queue,
            ApplyTo::Exchanges => !is_queue,
        };
        // Server-named and exclusive-looking names are not special: RabbitMQ matches them too.
        kind_ok && self.regex.is_match(name)
    }
}

/// The policy that applies to an object: highest priority, ties by name for determinism.
pub fn select<'a>(policies: &'a [Policy], name: &str, is_queue: bool) -> Option<&'a Policy> {
    policies
        .iter()
        .filter(|p| p.matches(name, is_queue))
        .max_by(|a, b| a.priority.cmp(&b.priority).then(b.name.cmp(&a.name)))
}

fn show(v: &Value) -> String {
    match v {
        Value::String(s) => format!("<<\"{s}\">>"),
        other => other.to_string(),
    }
}

/// Validates a definition against the keys Warren knows, with RabbitMQ's messages.
pub fn validate_definition(def: &Value) -> Result<(), String> {
    let Some(obj) = def.as_object() else {
        return Err("definition must be a JSON object".into());
    };
    if obj.is_empty() {
        return Err("no policy definition given".into());
    }
    let mut unknown = Vec::new();
    for (k, v) in obj {
        let non_neg = v.as_i64().is_some_and(|n| n >= 0);
        let positive = v.as_i64().is_some_and(|n| n >= 1);
        let ok = match k.as_str() {
            "message-ttl" => non_neg
                .then_some(())
                .ok_or(format!("{} is not a valid message TTL", show(v))),
            "expires" => positive
                .then_some(())
                .ok_or(format!("{} is not a valid queue expiry", show(v))),
            "max-length" => non_neg
                .then_some(())
                .ok_or(format!("{} is not a valid maximum length", show(v))),
            "max-length-bytes" => non_neg.then_some(()).ok_or(format!(
                "{} is not a valid maximum length in bytes",
                show(v)
            )),
            "dead-letter-exchange" => v
                .is_string()
                .then_some(())
                .ok_or(format!("{} is not a valid dead letter exchange", show(v))),
            "dead-letter-routing-key" => v.is_string().then_some(()).ok_or(format!(
                "{} is not a valid dead letter routing key",
                show(v)
            )),
            "overflow" => matches!(
                v.as_str(),
                Some("drop-head" | "reject-publish" | "reject-publish-dlx")
            )
            .then_some(())
            .ok_or(format!("{} is not a valid overflow value", show(v))),
            "queue-mode" => matches!(v.as_str(), Some("default" | "lazy"))
                .then_some(())
                .ok_or(format!("{} is not a valid queue-mode value", show(v))),
            "alternate-exchange" => v.is_string().then_some(()).ok_or(format!(
                "{} is not a valid alternate exchange name",
                show(v)
            )),
            k if k.starts_with("ha-") || k == "queue-master-locator" => Ok(()),
            "federation-upstream"
            | "federation-upstream-set"
            | "queue-version"
            | "delivery-limit" => Ok(()),
            _ => {
                unknown.push(k.clone());
                Ok(())
            }
        };
        ok?;
    }
    validate_ha(obj)?;
    if !unknown.is_empty() {
        let terms: Vec<String> = unknown
            .iter()
            .map(|k| format!("{{<<\"{k}\">>,{}}}", show(&obj[k])))
            .collect();
        return Err(format!(
            "[{}] are not recognised policy settings",
            terms.join(",")
        ));
    }
    Ok(())
}

/// The `ha-*` keys (mirrored queues, issue 7) are validated now so that definitions written
/// for RabbitMQ are accepted or refused exactly as RabbitMQ would.
fn validate_ha(obj: &serde_json::Map<String, Value>) -> Result<(), String> {
    let mode = obj.get("ha-mode");
    let others = ["ha-params", "ha-sync-mode", "ha-promote-on-shutdown"];
    if mode.is_none() && others.iter().any(|k| obj.contains_key(*k)) {
        return Err("ha-mode must be specified to specify ha-params, ha-sync-mode or ha-promote-on-shutdown".into());
    }
    if let Some(mode) = mode {
        let params = obj.get("ha-params");
        match mode.as_str() {
            Some("all") => {
                if params.is_some() {
                    return Err("ha-mode=\"all\" does not take parameters".into());
                }
            }
            Some("exactly") => match params.and_then(Value::as_i64) {
                Some(n) if n > 0 => {}
                _ => {
                    return Err(format!(
                        "ha-mode=\"exactly\" takes an integer, {} given",
                        params.map_or("undefined".to_string(), show)
                    ))
                }
            },
            Some("nodes") => match params.and_then(Value::as_array) {
                Some(a) if a.is_empty() => {
                    return Err("ha-mode=\"nodes\" list must be non-empty".into())
                }
                Some(a) if a.iter().all(Value::is_string) => {}
                _ => return Err("ha-mode=\"nodes\" takes a list of strings".into()),
            },
            _ => return Err(format!("{} is not a valid ha-mode value", show(mode))),
        }
    }
    if let Some(s) = obj.get("ha-sync-mode") {
        if !matches!(s.as_str(), Some("manual" | "automatic")) {
            return Err(format!(
                "ha-sync-mode must be \"manual\" or \"automatic\", got {}",
                show(s)
            ));
        }
    }
    for key in ["ha-promote-on-shutdown", "ha-promote-on-failure"] {
        if let Some(s) = obj.get(key) {
            if !matches!(s.as_str(), Some("always" | "when-synced")) {
                return Err(format!(
                    "{key} must be \"always\" or \"when-synced\", got {}",
                    show(s)
                ));
            }
        }
    }
    if let Some(n) = obj.get("ha-sync-batch-size") {
        if n.as_i64().is_none_or(|n| n <= 0) {
            return Err(format!(
                "ha-sync-batch-size takes an integer greater than 0, {} given",
                show(n)
            ));
        }
    }
    if let Some(l) = obj.get("queue-master-locator") {
        if !matches!(
            l.as_str(),
            Some("min-masters" | "client-local" | "random" | "balanced")
        ) {
            return Err(format!("{} invalid queue-master-locator value", show(l)));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn validation_messages_match_rabbitmq() {
        assert!(validate_definition(
            &json!({"ha-mode":"exactly","ha-params":2,"ha-sync-mode":"automatic"})
        )
        .is_ok());
        assert_eq!(
            validate_definition(&json!({"ha-params": 2})).unwrap_err(),
            "ha-mode must be specified to specify ha-params, ha-sync-mode or ha-promote-on-shutdown"
        );
        assert_eq!(
            validate_definition(&json!({"ha-mode":"exactly","ha-params":"two"})).unwrap_err(),
            "ha-mode=\"exactly\" takes an integer, <<\"two\">> given"
        );
        assert_eq!(
            validate_definition(&json!({"ha-mode":"some"})).unwrap_err(),
            "<<\"some\">> is not a valid ha-mode value"
        );
        assert_eq!(
            validate_definition(&json!({"message-ttl": -1})).unwrap_err(),
            "-1 is not a valid message TTL"
        );
        assert_eq!(
            validate_definition(&json!({"foo": "bar"})).unwrap_err(),
            "[{<<\"foo\">>,<<\"bar\">>}] are not recognised policy settings"
        );
    }

    #[test]
    fn highest_priority_wins() {
        let a = Policy::new("/", "a", "^q", "queues", 1, json!({"max-length": 1})).unwrap();
        let b = Policy::new("/", "b", "^q", "all", 5, json!({"max-length": 2})).unwrap();
        let c = Policy::new(
            "/",
            "c",
            "^q",
            "exchanges",
            9,
            json!({"alternate-exchange": "x"}),
        )
        .unwrap();
        let all = vec![a, b, c];
        assert_eq!(select(&all, "q1", true).unwrap().name, "b");
        assert_eq!(select(&all, "q1", false).unwrap().name, "c");
        assert!(select(&all, "other", true).is_none());
    }
}
