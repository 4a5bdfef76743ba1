//! RabbitMQ's definitions document (users, vhosts, permissions, policies, queues, exchanges,
//! bindings): exported to persist a node's durable metadata and for `export_definitions`,
//! imported at start-up and by `import_definitions`, so a RabbitMQ export loads unchanged.
//!
//! Only durable objects are exported, as RabbitMQ does: non-durable and exclusive queues,
//! and bindings that involve one, disappear with a restart.

use std::sync::Arc;

use serde_json::{json, Value};

use crate::auth::{Permission, User, HASHING_ALGORITHM};
use crate::broker::Broker;
use crate::json;
use crate::policy::Policy;
use crate::vhost::{Binding, ExchangeSpec, QueueSpec};

pub fn export(b: &Broker) -> Value {
    export_scope(b, false)
}

/// Everything a cluster member must agree on, transient objects included, with each queue's
/// home node and exclusive owner: the metadata group's snapshot.
pub fn export_cluster(b: &Broker) -> Value {
    export_scope(b, true)
}

fn export_scope(b: &Broker, cluster: bool) -> Value {
    let mut vhosts = Vec::new();
    let (mut queues, mut exchanges, mut bindings, mut policies) = (vec![], vec![], vec![], vec![]);
    for name in b.vhost_names() {
        let Some(v) = b.vhost(&name) else { continue };
        vhosts
            .push(json!({"name": name, "limits": [], "metadata": {"description": "", "tags": []}}));
        let st = v.read();
        let mut qs: Vec<_> = st
            .queues
            .values()
            .filter(|q| cluster || (q.durable && q.exclusive_owner.is_none()))
            .collect();
        qs.sort_by(|a, b| a.name.cmp(&b.name));
        for q in &qs {
            let mut item = json!({
                "name": q.name, "vhost": name, "durable": q.durable,
                "auto_delete": q.auto_delete, "arguments": json::table(&q.arguments),
            });
            if cluster {
                item["node"] = json!(q.home_node(b));
                item["exclusive_owner"] = json!(q.exclusive_owner);
                let p = q.placement();
                if p != crate::replication::Placement::default() {
                    item["placement"] = json!(p);
                }
            }
            queues.push(item);
        }
        let mut xs: Vec<_> = st
            .exchanges
            .values()
            .filter(|x| (cluster || x.durable) && !x.name.is_empty() && !x.name.starts_with("amq."))
            .collect();
        xs.sort_by(|a, b| a.name.cmp(&b.name));
        for x in &xs {
            exchanges.push(json!({
                "name": x.name, "vhost": name, "type": x.type_name(), "durable": x.durable,
                "auto_delete": x.auto_delete, "internal": x.internal,
                "arguments": json::table(&x.arguments),
            }));
        }
        let durable_queue = |n: &str| qs.iter().any(|q| q.name == n);
        let durable_exchange = |n: &str| st.exchanges.get(n).is_some_and(|x| x.durable);
        for bd in &st.bindings {
            let dest_ok = if bd.destination_is_queue {
                durable_queue(&bd.destination)
            } else {
                durable_exchange(&bd.destination)
            };
            if cluster || (durable_exchange(&bd.source) && dest_ok) {
                bindings.push(json!({
                    "source": bd.source, "vhost": name, "destination": bd.destination,
                    "destination_type": if bd.destination_is_queue { "queue" } else { "exchange" },
                    "routing_key": bd.routing_key, "arguments": json::table(&bd.arguments),
                }));
            }
        }
        drop(st);
        for p in v.policies() {
            policies.push(json!({
                "vhost": p.vhost, "name": p.name, "pattern": p.pattern,
                "apply-to": p.apply_to.as_str(), "definition": p.definition, "priority": p.priority,
            }));
        }
    }
    let users: Vec<Value> = b
        .auth
        .users()
        .iter()
        .map(|u| {
            json!({"name": u.name, "password_hash": u.password_hash,
                   "hashing_algorithm": HASHING_ALGORITHM, "tags": u.tags, "limits": {}})
        })
        .collect();
    let permissions: Vec<Value> = b
        .auth
        .permissions()
        .iter()
        .map(|(u, vh, p)| {
            json!({"user": u, "vhost": vh, "configure": p.patterns[0], "write": p.patterns[1], "read": p.patterns[2]})
        })
        .collect();
    json!({
        "rabbit_version": "3.10.8",
        "rabbitmq_version": "3.10.8",
        "product_name": "Warren",
        "product_version": env!("CARGO_PKG_VERSION"),
        "users": users,
        "vhosts": vhosts,
        "permissions": permissions,
        "topic_permissions": [],
        "parameters": [],
        "global_parameters": [],
        "policies": policies,
        "queues": queues,
        "exchanges": exchanges,
        "bindings": bindings,
    })
}

fn str_of<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}

fn bool_of(v: &Value, k: &str, default: bool) -> bool {
    v.get(k).and_then(Value::as_bool).unwrap_or(default)
}

fn items<'a>(d: &'a Value, k: &str) -> impl Iterator<Item = &'a Value> {
    d.get(k).and_then(Value::as_array).into_iter().flatten()
}

/// Loads definitions (merging, as RabbitMQ's import does). Objects that conflict with
/// existing ones are reported and skipped; the rest are applied.
pub fn import(b: &Arc<Broker>, d: &Value) -> Result<Vec<String>, String> {
    if !d.is_object() {
        return Err("definitions must be a JSON object".into());
    }
    let mut warnings = Vec::new();
    for v in items(d, "vhosts") {
        b.add_vhost(str_of(v, "name"));
    }
    for u in items(d, "users") {
        let alg = str_of(u, "hashing_algorithm");
        if !alg.is_empty() && alg != HASHING_ALGORITHM {
            warnings.push(format!(
                "user '{}': hashing algorithm {alg} is not supported; skipped",
                str_of(u, "name")
            ));
            continue;
        }
        let tags: Vec<String> = match u.get("tags") {
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect(),
            Some(Value::String(s)) => s
                .split(',')
                .filter(|t| !t.is_empty())
                .map(str::to_string)
                .collect(),
            _ => Vec::new(),
        };
        b.auth.put_user(User {
            name: str_of(u, "name").to_string(),
            password_hash: str_of(u, "password_hash").to_string(),
            tags,
        });
    }
    for p in items(d, "permissions") {
        match Permission::new(
            str_of(p, "configure"),
            str_of(p, "write"),
            str_of(p, "read"),
        ) {
            Ok(perm) => b
                .auth
                .set_permissions(str_of(p, "user"), str_of(p, "vhost"), perm),
            Err(e) => warnings.push(format!("permission for '{}': {e}", str_of(p, "user"))),
        }
    }
    for p in items(d, "policies") {
        let Some(v) = b.vhost(str_of(p, "vhost")) else {
            continue;
        };
        let apply = p.get("apply-to").and_then(Value::as_str).unwrap_or("all");
        let prio = p.get("priority").and_then(Value::as_i64).unwrap_or(0);
        let def = p.get("definition").cloned().unwrap_or(json!({}));
        match Policy::new(
            &v.name,
            str_of(p, "name"),
            str_of(p, "pattern"),
            apply,
            prio,
            def,
        ) {
            Ok(policy) => {
                v.set_policy(policy);
            }
            Err(e) => warnings.push(format!("policy '{}': {e}", str_of(p, "name"))),
        }
    }
    for x in items(d, "exchanges") {
        let Some(v) = b.vhost(str_of(x, "vhost")) else {
            continue;
        };
        let r = v.declare_exchange(ExchangeSpec {
            name: str_of(x, "name"),
            kind: str_of(x, "type"),
            passive: false,
            durable: bool_of(x, "durable", true),
            auto_delete: bool_of(x, "auto_delete", false),
            internal: bool_of(x, "internal", false),
            arguments: json::to_table(x.get("arguments").unwrap_or(&json!({}))),
        });
        if let Err(e) = r {
            warnings.push(format!("exchange '{}': {}", str_of(x, "name"), e.text));
        }
    }
    for q in items(d, "queues") {
        let Some(v) = b.vhost(str_of(q, "vhost")) else {
            continue;
        };
        let r = v.declare_queue(QueueSpec {
            name: str_of(q, "name"),
            passive: false,
            durable: bool_of(q, "durable", true),
            exclusive_owner: q.get("exclusive_owner").and_then(Value::as_u64),
            auto_delete: bool_of(q, "auto_delete", false),
            arguments: json::to_table(q.get("arguments").unwrap_or(&json!({}))),
            connection_id: 0,
            server_named: str_of(q, "name").starts_with("amq."),
            home: q
                .get("node")
                .and_then(Value::as_str)
                .filter(|n| *n != b.config.node_name)
                .map(str::to_string),
        });
        match r {
            Err(e) => warnings.push(format!("queue '{}': {}", str_of(q, "name"), e.text)),
            // A cluster snapshot also says where the queue's copies are (and may move it).
            Ok(queue) => {
                if let (Some(home), Some(p)) = (
                    q.get("node").and_then(Value::as_str),
                    q.get("placement")
                        .and_then(|p| serde_json::from_value(p.clone()).ok()),
                ) {
                    crate::replication::apply(b, &queue, home, p);
                }
            }
        }
    }
    for bd in items(d, "bindings") {
        let Some(v) = b.vhost(str_of(bd, "vhost")) else {
            continue;
        };
        let r = v.bind(Binding {
            source: str_of(bd, "source").to_string(),
            destination: str_of(bd, "destination").to_string(),
            destination_is_queue: str_of(bd, "destination_type") != "exchange",
            routing_key: str_of(bd, "routing_key").to_string(),
            arguments: json::to_table(bd.get("arguments").unwrap_or(&json!({}))),
        });
        if let Err(e) = r {
            warnings.push(format!(
                "binding {} -> {}: {}",
                str_of(bd, "source"),
                str_of(bd, "destination"),
                e.text
            ));
        }
    }
    Ok(warnings)
}

/// Makes this node's metadata exactly `d` (a metadata snapshot from `export_cluster`): merges
/// it in, then removes what it does not list. Queues that stay keep their messages.
pub fn replace(b: &Arc<Broker>, d: &Value) -> Vec<String> {
    let warnings = import(b, d).unwrap_or_else(|e| vec![e]);
    let listed = |k: &str, vhost: &str, name: &str| {
        items(d, k).any(|o| str_of(o, "vhost") == vhost && str_of(o, "name") == name)
    };
    for vh in b.vhost_names() {
        if !items(d, "vhosts").any(|o| str_of(o, "name") == vh) {
            b.delete_vhost(&vh);
            continue;
        }
        let Some(v) = b.vhost(&vh) else { continue };
        let (queues, exchanges, bindings) = {
            let st = v.read();
            (
                st.queues.values().cloned().collect::<Vec<_>>(),
                st.exchanges.keys().cloned().collect::<Vec<_>>(),
                st.bindings.clone(),
            )
        };
        for q in queues {
            if !listed("queues", &vh, &q.name) {
                v.delete_queue(&q);
            }
        }
        for x in exchanges {
            if !x.is_empty() && !x.starts_with("amq.") && !listed("exchanges", &vh, &x) {
                let _ = v.delete_exchange(&x, false);
            }
        }
        for bd in bindings {
            let kept = items(d, "bindings").any(|o| {
                str_of(o, "vhost") == vh
                    && str_of(o, "source") == bd.source
                    && str_of(o, "destination") == bd.destination
                    && str_of(o, "routing_key") == bd.routing_key
                    && (str_of(o, "destination_type") != "exchange") == bd.destination_is_queue
            });
            if !kept {
                let _ = v.unbind(&bd);
            }
        }
        for p in v.policies() {
            if !listed("policies", &vh, &p.name) {
                v.clear_policy(&p.name);
            }
        }
    }
    for u in b.auth.users() {
        if !items(d, "users").any(|o| str_of(o, "name") == u.name) {
            b.auth.delete_user(&u.name);
        }
    }
    for (user, vh, _) in b.auth.permissions() {
        if !items(d, "permissions").any(|o| str_of(o, "user") == user && str_of(o, "vhost") == vh) {
            b.auth.clear_permissions(&user, &vh);
        }
    }
    b.persist_definitions();
    warnings
}
