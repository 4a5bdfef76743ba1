//! `warren ctl` commands about client activity: `list_connections`, `list_channels`,
//! `list_consumers` (with rabbitmqctl's info items and default columns) and
//! `close_connection`. Objects are named as the management API names them, so a name
//! copied from the UI or from `list_connections name` works here.

use std::time::UNIX_EPOCH;

use serde_json::{json, Value};
use warren_broker::activity::host;

use super::commands::{
    arg, need_vhost, running, table, text, vhost_of, Failure, Outcome, EX_DATAERR, EX_USAGE,
};
use crate::app::App;

/// The requested columns, or rabbitmqctl's defaults when none are given.
fn columns(args: &[String], defaults: &[&str]) -> Vec<String> {
    if args.is_empty() {
        defaults.iter().map(|c| c.to_string()).collect()
    } else {
        args.to_vec()
    }
}

/// One row per item; an unknown column is rabbitmqctl's usage error.
fn rows<T>(
    items: &[T],
    cols: &[String],
    kind: &str,
    item: impl Fn(&T, &str) -> Option<Value>,
) -> Result<Vec<Vec<Value>>, Failure> {
    items
        .iter()
        .map(|it| {
            cols.iter()
                .map(|c| {
                    item(it, c).ok_or_else(|| {
                        Failure(EX_USAGE, format!("Error: Invalid {kind} info item: {c}"))
                    })
                })
                .collect()
        })
        .collect()
}

fn as_table(cols: &[String], rows: Vec<Vec<Value>>) -> Value {
    let cols: Vec<&str> = cols.iter().map(String::as_str).collect();
    table(&cols, rows)
}

pub fn list_connections(app: &App, args: &[String]) -> Outcome {
    let b = running(app)?;
    let node = &app.node;
    let cols = columns(args, &["user", "peer_host", "peer_port", "state"]);
    let conns = b.connections();
    let rows = rows(&conns, &cols, "connection", |c, col| {
        Some(match col {
            "pid" => json!(c.pid(node)),
            "name" => json!(c.name()),
            "user" => json!(c.user),
            "vhost" => json!(c.vhost),
            "peer_host" => json!(host(&c.peer).to_string()),
            "peer_port" => json!(c.peer.port()),
            "host" => json!(host(&c.local).to_string()),
            "port" => json!(c.local.port()),
            "state" => json!("running"),
            "ssl" => json!(false),
            "protocol" => json!("{0,9,1}"),
            "type" => json!("network"),
            "node" => json!(node),
            "channels" => json!(c.live.channels().len()),
            "channel_max" => json!(c.channel_max),
            "frame_max" => json!(c.frame_max),
            "timeout" => json!(c.heartbeat),
            "client_properties" => warren_broker::json::table(&c.client_properties),
            "connected_at" => json!(c
                .connected_at
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64)),
            _ => return None,
        })
    })?;
    Ok(("Listing connections ...".into(), as_table(&cols, rows)))
}

pub fn list_channels(app: &App, args: &[String]) -> Outcome {
    let b = running(app)?;
    let node = &app.node;
    let cols = columns(
        args,
        &["pid", "user", "consumer_count", "messages_unacknowledged"],
    );
    let channels = b.channels();
    let rows = rows(&channels, &cols, "channel", |ch, col| {
        Some(match col {
            "pid" => json!(ch.pid(node)),
            "connection" => json!(ch.connection.pid(node)),
            "name" => json!(ch.name()),
            "number" => json!(ch.number),
            "user" => json!(ch.connection.user),
            "vhost" => json!(ch.connection.vhost),
            "node" => json!(node),
            "state" => json!("running"),
            "transactional" => json!(ch.transactional),
            "confirm" => json!(ch.confirm),
            "consumer_count" => json!(ch.consumer_count),
            "messages_unacknowledged" => json!(ch.messages_unacknowledged),
            "prefetch_count" => json!(ch.prefetch_count),
            "global_prefetch_count" => json!(ch.global_prefetch_count),
            _ => return None,
        })
    })?;
    Ok(("Listing channels ...".into(), as_table(&cols, rows)))
}

pub fn list_consumers(app: &App, args: &[String], opts: &Value) -> Outcome {
    let b = running(app)?;
    let node = &app.node;
    let vh = vhost_of(opts);
    need_vhost(&b, &vh)?;
    let cols = columns(
        args,
        &[
            "queue_name",
            "channel_pid",
            "consumer_tag",
            "ack_required",
            "prefetch_count",
            "active",
            "arguments",
        ],
    );
    let consumers: Vec<_> = b
        .consumers()
        .into_iter()
        .filter(|c| c.vhost == vh)
        .collect();
    let rows = rows(&consumers, &cols, "consumer", |c, col| {
        Some(match col {
            "queue_name" => json!(c.queue),
            "channel_pid" => json!(c.channel_pid(node)),
            "channel_name" => json!(c.channel_name()),
            "consumer_tag" => json!(c.tag),
            "ack_required" => json!(c.ack_required),
            "exclusive" => json!(c.exclusive),
            "prefetch_count" => json!(c.prefetch_count),
            "active" => json!(true),
            "activity_status" => json!("up"),
            "arguments" => {
                if c.priority != 0 {
                    json!([["x-priority", "signedint", c.priority]])
                } else {
                    json!([])
                }
            }
            _ => return None,
        })
    })?;
    Ok((
        format!("Listing consumers in vhost {vh} ..."),
        as_table(&cols, rows),
    ))
}

/// `close_connection <name or pid> <reason>`: the client gets 320 CONNECTION_FORCED with
/// the reason as text.
pub fn close_connection(app: &App, args: &[String]) -> Outcome {
    let b = running(app)?;
    let usage = "close_connection <connection name or pid> <explanation>";
    let (name, reason) = (arg(args, 0, usage)?, arg(args, 1, usage)?);
    let c = b.connection_named(name).ok_or_else(|| {
        Failure(
            EX_DATAERR,
            format!(
                "Error: no connection '{name}' on node {}; see 'warren ctl list_connections name pid'",
                app.node
            ),
        )
    })?;
    c.live.close(reason);
    Ok((
        format!(
            "Closing connection {}, reason: {reason}...",
            c.pid(&app.node)
        ),
        text(""),
    ))
}
