//! What `warren ctl` commands do on the node: each takes the request's positional arguments
//! and options and returns a banner and an output (a table, text or JSON), or an error with
//! rabbitmqctl's exit code.

use std::sync::Arc;

use serde_json::{json, Value};
use warren_broker::auth::Permission;
use warren_broker::metadata::{MetaOp, MetaReply};
use warren_broker::policy::Policy;
use warren_broker::Broker;

use crate::app::App;

pub const EX_USAGE: i64 = 64;
pub const EX_DATAERR: i64 = 65;
pub const EX_UNAVAILABLE: i64 = 69;
pub const EX_SOFTWARE: i64 = 70;

pub struct Failure(pub i64, pub String);

pub type Outcome = Result<(String, Value), Failure>;

pub(super) fn table(columns: &[&str], rows: Vec<Vec<Value>>) -> Value {
    json!({"table": {"columns": columns, "rows": rows}})
}

pub fn text(s: impl Into<String>) -> Value {
    json!({"text": s.into()})
}

pub fn arg<'a>(args: &'a [String], i: usize, usage: &str) -> Result<&'a str, Failure> {
    args.get(i).map(String::as_str).ok_or_else(|| {
        Failure(
            EX_USAGE,
            format!(
                "Error (argument validation): not enough arguments.\nUsage: warren ctl {usage}"
            ),
        )
    })
}

pub(super) fn running(app: &App) -> Result<Arc<Broker>, Failure> {
    app.broker().ok_or_else(|| {
        Failure(
            EX_UNAVAILABLE,
            format!("Error: the application is not running on node {}; start it with 'warren ctl start_app'.", app.node),
        )
    })
}

pub(super) fn vhost_of(opts: &Value) -> String {
    opts.get("vhost")
        .and_then(Value::as_str)
        .unwrap_or("/")
        .to_string()
}

pub(super) fn need_vhost(
    b: &Broker,
    vh: &str,
) -> Result<Arc<warren_broker::vhost::Vhost>, Failure> {
    b.vhost(vh).ok_or_else(|| {
        Failure(
            EX_DATAERR,
            format!("Error:\nVirtual host '{vh}' does not exist"),
        )
    })
}

pub async fn execute(app: &Arc<App>, command: &str, args: &[String], opts: &Value) -> Outcome {
    let node = app.node.clone();
    match command {
        "status" => {
            let b = app.broker();
            let mut lines = vec![
                format!("Status of node {node} ..."),
                String::new(),
                "Runtime".into(),
                String::new(),
                format!("OS PID: {}", std::process::id()),
                format!("Warren version: {}", env!("CARGO_PKG_VERSION")),
                format!("Uptime (seconds): {}", app.started.elapsed().as_secs()),
                format!("Application running: {}", b.is_some()),
            ];
            if let Some(b) = &b {
                lines.push(String::new());
                lines.push("Resource usage".into());
                lines.push(String::new());
                lines.push(format!(
                    "Memory: {:.1} MB",
                    warren_broker::alarm::resident_bytes() as f64 / 1e6
                ));
                lines.push(format!(
                    "Memory high watermark: {:.1} MB",
                    b.config.alarms.memory_limit() as f64 / 1e6
                ));
                let alarms = b.alarms().borrow().clone();
                lines.push(String::new());
                lines.push("Alarms".into());
                lines.push(String::new());
                lines.push(if alarms.is_empty() {
                    "(none)".into()
                } else {
                    alarms.join("\n")
                });
                lines.push(String::new());
                lines.push("Listeners".into());
                lines.push(String::new());
                for l in &b.config.listeners {
                    lines.push(format!(
                        "Interface: [::], port: {}, protocol: amqp, purpose: AMQP 0-9-1",
                        l.port()
                    ));
                }
                lines.push(format!(
                    "Interface: [::], port: {}, protocol: http, purpose: HTTP API",
                    app.mgmt.port()
                ));
                lines.push(format!("Interface: [::], port: {}, protocol: http/prometheus, purpose: Prometheus exporter API over HTTP", app.prometheus.port()));
                lines.push(format!("Interface: [::], port: {}, protocol: clustering, purpose: inter-node and CLI tool communication", app.cluster_port));
                lines.push(String::new());
                lines.push(format!(
                    "Totals\n\nConnection count: {}\nQueue count: {}",
                    b.connection_count(),
                    queue_count(b)
                ));
            }
            Ok((String::new(), text(lines.join("\n"))))
        }
        "await_startup" => {
            for _ in 0..600 {
                if app.broker().is_some() {
                    return Ok((format!("Waiting for node {node} to start..."), text("")));
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Err(Failure(
                75,
                format!("Error: node {node} did not start within 60 seconds"),
            ))
        }
        "stop" => {
            app.request_stop();
            Ok((format!("Stopping and halting node {node} ..."), text("")))
        }
        "stop_app" => {
            app.stop_app().await;
            Ok((
                format!("Stopping warren application on node {node} ..."),
                text(""),
            ))
        }
        "start_app" => {
            app.start_app()
                .await
                .map_err(|e| Failure(EX_SOFTWARE, format!("Error: {e}")))?;
            Ok((format!("Starting node {node} ..."), text("")))
        }
        "reset" | "force_reset" => {
            app.reset().map_err(|e| Failure(EX_USAGE, e))?;
            let verb = if command == "reset" {
                "Resetting"
            } else {
                "Forcefully resetting"
            };
            Ok((format!("{verb} node {node} ..."), text("")))
        }
        "cluster_status" => super::cluster::execute(app, command, args, opts).await,
        "list_queues" => {
            let b = running(app)?;
            let vh = vhost_of(opts);
            let v = need_vhost(&b, &vh)?;
            let cols: Vec<String> = if args.is_empty() {
                vec!["name".into(), "messages".into()]
            } else {
                args.to_vec()
            };
            let mut queues: Vec<_> = v.read().queues.values().cloned().collect();
            queues.sort_by(|a, b| a.name.cmp(&b.name));
            let mut rows = Vec::new();
            for q in queues {
                let r = warren_broker::replication::status(&b, &q);
                let (ready, unacked, consumers) = b.listed_counts(&q);
                let mut row = Vec::new();
                for c in &cols {
                    row.push(match c.as_str() {
                        "name" => json!(q.name),
                        "messages" => json!(ready + unacked),
                        "messages_ready" => json!(ready),
                        "messages_unacknowledged" => json!(unacked),
                        "consumers" => json!(consumers),
                        "durable" => json!(q.durable),
                        "auto_delete" => json!(q.auto_delete),
                        "exclusive" => json!(q.exclusive_owner.is_some()),
                        "arguments" => warren_broker::json::table(&q.arguments),
                        "policy" => json!(q.policy().unwrap_or_default()),
                        "pid" | "node" | "leader" => json!(q.home_node(&b)),
                        "state" => json!(if r.syncing { "syncing" } else { "running" }),
                        "type" => json!(r.queue_type),
                        "slave_pids" | "mirror_pids" => json!(r.mirrors),
                        "synchronised_slave_pids" | "synchronised_mirror_pids" => {
                            json!(r.in_sync)
                        }
                        other => {
                            return Err(Failure(
                                EX_USAGE,
                                format!("Error: Invalid queue info item: {other}"),
                            ))
                        }
                    });
                }
                rows.push(row);
            }
            let cols: Vec<&str> = cols.iter().map(String::as_str).collect();
            Ok((
                format!("Timeout: 60.0 seconds ...\nListing queues for vhost {vh} ..."),
                table(&cols, rows),
            ))
        }
        "list_exchanges" => {
            let b = running(app)?;
            let vh = vhost_of(opts);
            let v = need_vhost(&b, &vh)?;
            let mut xs: Vec<_> = v.read().exchanges.values().cloned().collect();
            xs.sort_by(|a, b| a.name.cmp(&b.name));
            let rows = xs
                .iter()
                .map(|x| vec![json!(x.name), json!(x.type_name())])
                .collect();
            Ok((
                format!("Listing exchanges for vhost {vh} ..."),
                table(&["name", "type"], rows),
            ))
        }
        "list_bindings" => {
            let b = running(app)?;
            let vh = vhost_of(opts);
            let v = need_vhost(&b, &vh)?;
            let st = v.read();
            let mut rows: Vec<Vec<Value>> = st
                .queues
                .keys()
                .map(|q| {
                    vec![
                        json!(""),
                        json!("exchange"),
                        json!(q),
                        json!("queue"),
                        json!(q),
                        json!([]),
                    ]
                })
                .collect();
            rows.sort_by(|a, b| a[2].as_str().cmp(&b[2].as_str()));
            for bd in &st.bindings {
                rows.push(vec![
                    json!(bd.source),
                    json!("exchange"),
                    json!(bd.destination),
                    json!(if bd.destination_is_queue {
                        "queue"
                    } else {
                        "exchange"
                    }),
                    json!(bd.routing_key),
                    warren_broker::json::table(&bd.arguments),
                ]);
            }
            Ok((
                format!("Listing bindings for vhost {vh}..."),
                table(
                    &[
                        "source_name",
                        "source_kind",
                        "destination_name",
                        "destination_kind",
                        "routing_key",
                        "arguments",
                    ],
                    rows,
                ),
            ))
        }
        "list_connections" => super::activity::list_connections(app, args),
        "list_channels" => super::activity::list_channels(app, args),
        "list_consumers" => super::activity::list_consumers(app, args, opts),
        "close_connection" => super::activity::close_connection(app, args),
        "list_users" => {
            let b = running(app)?;
            let rows = b
                .auth
                .users()
                .iter()
                .map(|u| vec![json!(u.name), json!(u.tags)])
                .collect();
            Ok(("Listing users ...".into(), table(&["user", "tags"], rows)))
        }
        "add_user" => {
            let b = running(app)?;
            let (u, p) = (
                arg(args, 0, "add_user <username> <password>")?,
                arg(args, 1, "add_user <username> <password>")?,
            );
            if b.auth.user(u).is_some() {
                return Err(Failure(
                    EX_SOFTWARE,
                    format!("Error:\nUser \"{u}\" already exists"),
                ));
            }
            submit(
                &b,
                MetaOp::PutUser {
                    name: u.to_string(),
                    password_hash: warren_broker::auth::hash_password(p),
                    tags: Vec::new(),
                },
            )
            .await?;
            Ok((format!("Adding user \"{u}\" ..."), text("Done. Don't forget to grant the user permissions to some virtual hosts! See 'warren ctl help set_permissions' to learn more.")))
        }
        "delete_user" => {
            let b = running(app)?;
            let u = arg(args, 0, "delete_user <username>")?;
            if b.auth.user(u).is_none() {
                return Err(Failure(
                    EX_DATAERR,
                    format!("Error:\nUser \"{u}\" does not exist"),
                ));
            }
            submit(
                &b,
                MetaOp::DeleteUser {
                    name: u.to_string(),
                },
            )
            .await?;
            Ok((format!("Deleting user \"{u}\" ..."), text("")))
        }
        "change_password" => {
            let b = running(app)?;
            let (u, p) = (
                arg(args, 0, "change_password <username> <password>")?,
                arg(args, 1, "change_password <username> <password>")?,
            );
            let mut user = b.auth.user(u).ok_or_else(|| {
                Failure(EX_DATAERR, format!("Error:\nUser \"{u}\" does not exist"))
            })?;
            user.password_hash = warren_broker::auth::hash_password(p);
            submit(&b, put_user(user)).await?;
            Ok((format!("Changing password for user \"{u}\" ..."), text("")))
        }
        "set_user_tags" => {
            let b = running(app)?;
            let u = arg(args, 0, "set_user_tags <username> <tag> [...]")?;
            let mut user = b.auth.user(u).ok_or_else(|| {
                Failure(EX_DATAERR, format!("Error:\nUser \"{u}\" does not exist"))
            })?;
            user.tags = args[1..].to_vec();
            submit(&b, put_user(user)).await?;
            Ok((
                format!(
                    "Setting tags for user \"{u}\" to [{}] ...",
                    args[1..].join(", ")
                ),
                text(""),
            ))
        }
        "authenticate_user" => {
            let b = running(app)?;
            let (u, p) = (
                arg(args, 0, "authenticate_user <username> <password>")?,
                arg(args, 1, "authenticate_user <username> <password>")?,
            );
            match b.auth.login(u, p, std::net::IpAddr::from([127, 0, 0, 1])) {
                Ok(_) => Ok((format!("Authenticating user \"{u}\" ..."), text("Success"))),
                Err(_) => Err(Failure(EX_DATAERR, format!("Authenticating user \"{u}\" ...\nError:\nUser \"{u}\" failed to authenticate"))),
            }
        }
        "list_vhosts" => {
            let b = running(app)?;
            let rows = b
                .vhost_names()
                .into_iter()
                .map(|n| vec![json!(n)])
                .collect();
            Ok(("Listing vhosts ...".into(), table(&["name"], rows)))
        }
        "add_vhost" => {
            let b = running(app)?;
            let vh = arg(args, 0, "add_vhost <vhost>")?;
            submit(
                &b,
                MetaOp::AddVhost {
                    name: vh.to_string(),
                },
            )
            .await?;
            Ok((format!("Adding vhost \"{vh}\" ..."), text("")))
        }
        "delete_vhost" => {
            let b = running(app)?;
            let vh = arg(args, 0, "delete_vhost <vhost>")?;
            if b.vhost(vh).is_none() {
                return Err(Failure(
                    EX_DATAERR,
                    format!("Error:\nVirtual host '{vh}' does not exist"),
                ));
            }
            submit(
                &b,
                MetaOp::DeleteVhost {
                    name: vh.to_string(),
                },
            )
            .await?;
            Ok((format!("Deleting vhost \"{vh}\" ..."), text("")))
        }
        "set_permissions" => {
            let b = running(app)?;
            let usage = "set_permissions [-p <vhost>] <username> <conf> <write> <read>";
            let vh = vhost_of(opts);
            need_vhost(&b, &vh)?;
            let u = arg(args, 0, usage)?;
            if b.auth.user(u).is_none() {
                return Err(Failure(
                    EX_DATAERR,
                    format!("Error:\nUser \"{u}\" does not exist"),
                ));
            }
            let (configure, write, read) = (
                arg(args, 1, usage)?,
                arg(args, 2, usage)?,
                arg(args, 3, usage)?,
            );
            Permission::new(configure, write, read).map_err(|e| {
                Failure(
                    EX_DATAERR,
                    format!("Error: invalid regular expression: {e}"),
                )
            })?;
            let op = MetaOp::SetPermissions {
                user: u.to_string(),
                vhost: vh.clone(),
                configure: configure.to_string(),
                write: write.to_string(),
                read: read.to_string(),
            };
            submit(&b, op).await?;
            Ok((
                format!("Setting permissions for user \"{u}\" in vhost \"{vh}\" ..."),
                text(""),
            ))
        }
        "clear_permissions" => {
            let b = running(app)?;
            let vh = vhost_of(opts);
            let u = arg(args, 0, "clear_permissions [-p <vhost>] <username>")?;
            let op = MetaOp::ClearPermissions {
                user: u.to_string(),
                vhost: vh.clone(),
            };
            submit(&b, op).await?;
            Ok((
                format!("Clearing permissions for user \"{u}\" in vhost \"{vh}\" ..."),
                text(""),
            ))
        }
        "list_permissions" => {
            let b = running(app)?;
            let vh = vhost_of(opts);
            let rows = b
                .auth
                .permissions()
                .into_iter()
                .filter(|(_, v, _)| *v == vh)
                .map(|(u, _, p)| {
                    vec![
                        json!(u),
                        json!(p.patterns[0]),
                        json!(p.patterns[1]),
                        json!(p.patterns[2]),
                    ]
                })
                .collect();
            Ok((
                format!("Listing permissions for vhost \"{vh}\" ..."),
                table(&["user", "configure", "write", "read"], rows),
            ))
        }
        "set_policy" => {
            let b = running(app)?;
            let usage = "set_policy [-p <vhost>] [--priority <priority>] [--apply-to <apply-to>] <name> <pattern> <definition>";
            let vh = vhost_of(opts);
            need_vhost(&b, &vh)?;
            let (name, pattern, def) = (
                arg(args, 0, usage)?,
                arg(args, 1, usage)?,
                arg(args, 2, usage)?,
            );
            let priority = opts
                .get("priority")
                .and_then(Value::as_str)
                .map_or(Ok(0), |p| {
                    p.parse::<i64>()
                        .map_err(|_| Failure(EX_USAGE, format!("Error: invalid priority '{p}'")))
                })?;
            let apply_to = opts
                .get("apply_to")
                .and_then(Value::as_str)
                .unwrap_or("all");
            let definition: Value = serde_json::from_str(def).map_err(|e| {
                Failure(
                    EX_DATAERR,
                    format!("Error:\nCould not parse JSON document: {e}"),
                )
            })?;
            let banner = format!("Setting policy \"{name}\" for pattern \"{pattern}\" to \"{def}\" with priority \"{priority}\" for vhost \"{vh}\" ...");
            Policy::new(&vh, name, pattern, apply_to, priority, definition.clone()).map_err(
                |m| {
                    Failure(
                        EX_DATAERR,
                        format!("{banner}\nError:\nValidation failed\n\n{m}\n"),
                    )
                },
            )?;
            let op = MetaOp::SetPolicy {
                vhost: vh.clone(),
                name: name.to_string(),
                pattern: pattern.to_string(),
                apply_to: apply_to.to_string(),
                priority,
                definition,
            };
            submit(&b, op).await?;
            Ok((banner, text("")))
        }
        "clear_policy" => {
            let b = running(app)?;
            let vh = vhost_of(opts);
            let name = arg(args, 0, "clear_policy [-p <vhost>] <name>")?;
            need_vhost(&b, &vh)?;
            let op = MetaOp::ClearPolicy {
                vhost: vh.clone(),
                name: name.to_string(),
            };
            if !submit(&b, op).await?.created {
                return Err(Failure(
                    EX_DATAERR,
                    "Error:\nParameter does not exist".to_string(),
                ));
            }
            Ok((
                format!("Clearing policy \"{name}\" on vhost \"{vh}\" ..."),
                text(""),
            ))
        }
        "list_policies" => {
            let b = running(app)?;
            let vh = vhost_of(opts);
            let rows = need_vhost(&b, &vh)?
                .policies()
                .iter()
                .map(|p| {
                    vec![
                        json!(p.vhost),
                        json!(p.name),
                        json!(p.pattern),
                        json!(p.apply_to.as_str()),
                        json!(p.definition.to_string()),
                        json!(p.priority),
                    ]
                })
                .collect();
            Ok((
                format!("Listing policies for vhost \"{vh}\" ..."),
                table(
                    &[
                        "vhost",
                        "name",
                        "pattern",
                        "apply-to",
                        "definition",
                        "priority",
                    ],
                    rows,
                ),
            ))
        }
        "purge_queue" | "delete_queue" => {
            let b = running(app)?;
            let vh = vhost_of(opts);
            let q = arg(args, 0, &format!("{command} [-p <vhost>] <queue>"))?;
            let queue = need_vhost(&b, &vh)?.queue(q).ok_or_else(|| {
                Failure(
                    EX_DATAERR,
                    format!("Error:\nQueue '{q}' in vhost '{vh}' does not exist"),
                )
            })?;
            if command == "purge_queue" {
                match queue.remote_link() {
                    Some(link) => {
                        let request = warren_broker::queue::remote::Request::Purge;
                        link.request(&queue, request)
                            .await
                            .map_err(|e| Failure(EX_UNAVAILABLE, format!("Error:\n{e}")))?;
                    }
                    None => {
                        queue.purge();
                    }
                }
                Ok((format!("Purging queue '{q}' in vhost '{vh}' ..."), text("")))
            } else {
                let n = queue.message_count().max(
                    submit(
                        &b,
                        MetaOp::DeleteQueue {
                            vhost: vh.clone(),
                            name: q.to_string(),
                        },
                    )
                    .await?
                    .message_count as usize,
                );
                Ok((
                    format!("Deleting queue '{q}' on vhost '{vh}' ..."),
                    text(format!(
                        "Queue was successfully deleted with {n} ready messages"
                    )),
                ))
            }
        }
        "export_definitions" => {
            let b = running(app)?;
            let doc = warren_broker::definitions::export(&b);
            Ok((
                format!(
                    "Exporting definitions in JSON to a file at \"{}\" ...",
                    args.first().map_or("-", String::as_str)
                ),
                json!({"definitions": doc}),
            ))
        }
        "import_definitions" => {
            let b = running(app)?;
            let doc = opts.get("definitions").cloned().unwrap_or(Value::Null);
            if !doc.is_object() {
                return Err(Failure(
                    EX_DATAERR,
                    "Error: definitions must be a JSON object".into(),
                ));
            }
            let warnings = submit(&b, MetaOp::Import { definitions: doc })
                .await?
                .warnings;
            Ok((
                "Importing definitions in JSON ...".into(),
                text(warnings.join("\n")),
            ))
        }
        "join_cluster" | "forget_cluster_node" | "set_cluster_name" | "force_boot" => {
            super::cluster::execute(app, command, args, opts).await
        }
        "sync_queue" | "cancel_sync_queue" => {
            let b = running(app)?;
            let name = arg(args, 0, &format!("{command} [-p <vhost>] <queue>"))?.to_string();
            let vh = vhost_of(opts);
            let cancel = command == "cancel_sync_queue";
            submit(
                &b,
                MetaOp::SyncQueue {
                    vhost: vh.clone(),
                    name: name.clone(),
                    cancel,
                },
            )
            .await?;
            let doing = if cancel {
                "Stopping synchronising"
            } else {
                "Synchronising"
            };
            Ok((
                format!("{doing} queue '{name}' in vhost '{vh}' ..."),
                text(""),
            ))
        }
        other => Err(Failure(
            EX_USAGE,
            format!(
                "Error: unknown command '{other}'. Run 'warren ctl help' for the list of commands."
            ),
        )),
    }
}

/// Applies a metadata change (through the cluster when clustered).
async fn submit(b: &Arc<Broker>, op: MetaOp) -> Result<MetaReply, Failure> {
    b.submit(op)
        .await
        .map_err(|e| Failure(EX_SOFTWARE, format!("Error:\n{}", e.text)))
}

fn put_user(u: warren_broker::auth::User) -> MetaOp {
    MetaOp::PutUser {
        name: u.name,
        password_hash: u.password_hash,
        tags: u.tags,
    }
}

fn queue_count(b: &Broker) -> usize {
    b.vhost_names()
        .iter()
        .filter_map(|n| b.vhost(n))
        .map(|v| v.read().queues.len())
        .sum()
}
