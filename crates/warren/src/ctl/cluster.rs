//! The cluster commands of `warren ctl`, as rabbitmqctl names them: `join_cluster`,
//! `cluster_status`, `forget_cluster_node`, `set_cluster_name`.
//!
//! Joining is two-step, like RabbitMQ's: `join_cluster` (app stopped) checks the seed and
//! records it; the next `start_app` asks the cluster to add this node, which then receives
//! the cluster's metadata through the Raft log.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use warren_cluster::raft::network::call_once;
use warren_cluster::raft::{Command, Peer};
use warren_cluster::NodeName;

use super::commands::{arg, text, Failure, Outcome, EX_SOFTWARE, EX_UNAVAILABLE, EX_USAGE};
use crate::app::App;

const APP_MUST_BE_STOPPED: &str = "Error: this command requires the 'warren' app to be stopped on the target node. Stop it with 'warren ctl stop_app'.";

pub async fn execute(app: &Arc<App>, command: &str, args: &[String], opts: &Value) -> Outcome {
    let node = app.node.clone();
    match command {
        "join_cluster" => {
            let seed = arg(
                args,
                0,
                "join_cluster [--disc|--ram] <existing_cluster_member>",
            )?;
            let banner = format!("Clustering node {node} with {seed}");
            if opts.get("ram").is_some() {
                return Err(Failure(EX_USAGE, format!("{banner}\nError: RAM nodes are not supported by Warren: every node keeps the metadata on disk (use --disc or no flag)")));
            }
            if app.broker().is_some() {
                return Err(Failure(
                    EX_USAGE,
                    format!("{banner}\n{APP_MUST_BE_STOPPED}"),
                ));
            }
            let seed_name = NodeName::parse(seed)
                .map_err(|e| Failure(EX_USAGE, format!("{banner}\nError: {e}")))?;
            if seed_name.full() == node {
                return Err(Failure(
                    EX_USAGE,
                    format!("{banner}\nError: cannot cluster node with itself"),
                ));
            }
            if let Some(why) = holds_data(app) {
                return Err(Failure(EX_SOFTWARE, format!("{banner}\nError: node {node} {why}; run 'warren ctl reset' first (it deletes this node's data)")));
            }
            let addr = seed_address(&seed_name);
            let ping = tokio::time::timeout(
                Duration::from_secs(5),
                call_once(&addr, &app.cookie, &node, &json!({"cluster": "ping"})),
            )
            .await;
            match ping {
                Ok(Ok(v)) if v["ok"].as_bool() == Some(true) => {
                    if v["running"].as_bool() != Some(true) {
                        return Err(Failure(EX_UNAVAILABLE, format!("{banner}\nError: the warren application is not running on {seed}; start it there first")));
                    }
                }
                Ok(Ok(_)) | Ok(Err(_)) | Err(_) => {
                    let why = match ping {
                        Ok(Err(e)) if e.to_string().contains("Rejected") => format!("{seed} refused this node's cookie (the cookie files differ; copy the cookie file of {seed} to this host)"),
                        _ => format!("cannot reach {seed} at {addr} (is it running? is the cluster port open?)"),
                    };
                    return Err(Failure(EX_UNAVAILABLE, format!("{banner}\nError: unable to perform an operation on node '{seed}'.\n{why}")));
                }
            }
            let marker = app.data_dir().join("cluster-join.json");
            std::fs::create_dir_all(app.data_dir())
                .and_then(|_| std::fs::write(&marker, json!({"seed": addr}).to_string()))
                .map_err(|e| {
                    Failure(
                        EX_SOFTWARE,
                        format!("{banner}\nError: cannot write {}: {e}", marker.display()),
                    )
                })?;
            Ok((banner, text("")))
        }
        "cluster_status" => {
            let (members, group) = match app.group() {
                Some(g) => (g.members(), Some(g)),
                None => (
                    app.recorded_members()
                        .into_iter()
                        .map(|p| (p, true))
                        .collect(),
                    None,
                ),
            };
            let members = if members.is_empty() {
                vec![(app.peer(), true)]
            } else {
                members
            };
            let mut running = Vec::new();
            for (p, _) in &members {
                if is_running(app, p).await {
                    running.push(p.name.clone());
                }
            }
            let disk: Vec<String> = members.iter().map(|(p, _)| p.name.clone()).collect();
            let voters: Vec<String> = members
                .iter()
                .filter(|m| m.1)
                .map(|(p, _)| p.name.clone())
                .collect();
            let cluster_name = match (&group, app.broker()) {
                (Some(g), Some(b)) => g.cluster_name(&b),
                _ => node.clone(),
            };
            let leader = group.as_ref().and_then(|g| g.leader());
            let majority = group
                .as_ref()
                .is_none_or(|g| g.has_majority(Duration::from_secs(3)));
            let partitions = if majority {
                json!({})
            } else {
                json!({node.clone(): disk.iter().filter(|n| **n != node).collect::<Vec<_>>()})
            };
            let listeners: Vec<Value> = running
                .iter()
                .map(|n| json!({"node": n, "protocol": "clustering", "interface": "[::]"}))
                .collect();
            let json_out = json!({
                "cluster_name": cluster_name, "disk_nodes": disk, "ram_nodes": [],
                "running_nodes": running, "voters": voters, "metadata_leader": leader,
                "alarms": [], "partitions": partitions, "listeners": listeners,
                "versions": disk.iter().map(|n| json!({"node": n, "warren_version": env!("CARGO_PKG_VERSION")})).collect::<Vec<_>>(),
            });
            let mut t = format!("Basics\n\nCluster name: {cluster_name}\n\nDisk Nodes\n\n{}\n\nRunning Nodes\n\n{}\n\nNetwork Partitions\n\n",
                disk.join("\n"), running.join("\n"));
            if majority {
                t.push_str("(none)");
            } else {
                t.push_str(&format!("Node {node} cannot reach a majority of the cluster's voters ({}); it does not serve clients until it can", voters.join(", ")));
            }
            if let Some(l) = &leader {
                t.push_str(&format!("\n\nMetadata Leader\n\n{l}"));
            }
            Ok((
                format!("Cluster status of node {node} ..."),
                json!({"text": t, "json": json_out}),
            ))
        }
        "forget_cluster_node" => {
            let target = arg(
                args,
                0,
                "forget_cluster_node [--offline] <existing_cluster_member>",
            )?;
            let banner = format!("Removing node {target} from the cluster");
            let target_name = NodeName::parse(target)
                .map_err(|e| Failure(EX_USAGE, format!("{banner}\nError: {e}")))?
                .full();
            if target_name == node {
                return Err(Failure(EX_USAGE, format!("{banner}\nError: a node cannot forget itself; run this on another member, or 'warren ctl reset' here")));
            }
            if opts.get("offline").is_some() {
                return forget_offline(app, &banner);
            }
            let Some(group) = app.group() else {
                return Err(Failure(EX_UNAVAILABLE, format!("{banner}\nError: node {node} is not running as a cluster member (use --offline with its app stopped)")));
            };
            let Some((peer, _)) = group
                .members()
                .into_iter()
                .find(|(p, _)| p.name == target_name)
            else {
                return Err(Failure(
                    EX_SOFTWARE,
                    format!("{banner}\nError: {target_name} is not a member of this cluster"),
                ));
            };
            if is_running(app, &peer).await {
                return Err(Failure(EX_SOFTWARE, format!("{banner}\nError: node {target_name} is running; stop its app ('warren ctl -n {target_name} stop_app') before forgetting it")));
            }
            let r = group
                .ask_leader(json!({"cluster": "forget", "node": target_name}))
                .await;
            match r {
                Ok(v) if v["ok"].as_bool() == Some(true) => Ok((banner, text(""))),
                Ok(v) => Err(Failure(EX_SOFTWARE, format!("{banner}\nError: {}", v["error"].as_str().unwrap_or("the cluster refused")))),
                Err(e) => Err(Failure(EX_UNAVAILABLE, format!("{banner}\nError: {e}; with most nodes gone, stop this node's app and use --offline"))),
            }
        }
        "set_cluster_name" => {
            let name = arg(args, 0, "set_cluster_name <name>")?;
            let banner = format!("Setting cluster name to {name} ...");
            let Some(group) = app.group() else {
                return Err(Failure(
                    EX_UNAVAILABLE,
                    format!("{banner}\nError: node {node} is not a running cluster member"),
                ));
            };
            group
                .write(Command::SetClusterName(name.to_string()))
                .await
                .map_err(|(_, e)| Failure(EX_SOFTWARE, format!("{banner}\nError: {e}")))?;
            Ok((banner, text("")))
        }
        "force_boot" => {
            // RabbitMQ needs this when the last node to stop cannot start first. Warren nodes
            // start in any order and wait for a majority, so there is nothing to force; serving
            // without a majority is `forget_cluster_node --offline`, never implicit.
            Ok((
                format!("Forcing boot for node {node} ..."),
                text("Nothing to do: Warren nodes start in any order and rejoin their cluster. A node that cannot reach a majority waits; if the other nodes are gone for good, stop this node's app and run 'warren ctl forget_cluster_node --offline <node>'."),
            ))
        }
        other => Err(Failure(
            EX_USAGE,
            format!("Error: unknown command '{other}'"),
        )),
    }
}

/// Where a seed node's cluster port is: explicit `name@host:port`, this host's node
/// registry, or the default port.
fn seed_address(n: &NodeName) -> String {
    let port = n
        .port
        .or_else(|| warren_cluster::registry::lookup(&n.full()).map(|e| e.cluster_port))
        .unwrap_or(25672);
    format!("{}:{port}", n.host)
}

/// Why this node cannot join a cluster as it is, if it cannot.
fn holds_data(app: &App) -> Option<String> {
    let dir = app.data_dir();
    if dir.join("raft.redb").exists() {
        return Some("is already a member of a cluster".into());
    }
    let defs: Value = std::fs::read(dir.join("definitions.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let queues = defs["queues"].as_array().map_or(0, Vec::len);
    if queues > 0 {
        return Some(format!("holds {queues} queue(s)"));
    }
    let journal_bytes: u64 = std::fs::read_dir(dir.join("journal"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum();
    (journal_bytes > 0).then(|| "holds messages".into())
}

async fn is_running(app: &App, p: &Peer) -> bool {
    if p.name == app.node {
        return app.broker().is_some();
    }
    let req = json!({"cluster": "ping"});
    let ping = call_once(&p.addr, &app.cookie, &app.node, &req);
    matches!(
        tokio::time::timeout(Duration::from_secs(2), ping).await,
        Ok(Ok(v)) if v["running"].as_bool() == Some(true)
    )
}

/// `forget_cluster_node --offline`, run against a stopped survivor: it leaves the old
/// cluster behind and will start as a cluster of its own, keeping its metadata and messages.
/// The forgotten nodes must be reset before they rejoin.
fn forget_offline(app: &App, banner: &str) -> Outcome {
    if app.broker().is_some() {
        return Err(Failure(
            EX_USAGE,
            format!("{banner}\n{APP_MUST_BE_STOPPED}"),
        ));
    }
    let dir = app.data_dir();
    let defs_path = dir.join("definitions.json");
    let mut defs: Value = std::fs::read(&defs_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    if let Some(o) = defs.as_object_mut() {
        o.remove("warren_cluster");
    }
    let bytes = serde_json::to_vec_pretty(&defs).unwrap_or_default();
    warren_store::definitions::write_atomic(&defs_path, &bytes)
        .and_then(|_| match std::fs::remove_file(dir.join("raft.redb")) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        })
        .map_err(|e| Failure(EX_SOFTWARE, format!("{banner}\nError: {e}")))?;
    tracing::warn!(
        "forgot every other cluster member (--offline): this node starts as a cluster of its own"
    );
    Ok((
        banner.to_string(),
        text("This node now forms a cluster of its own; start it with 'warren ctl start_app'. Reset the forgotten nodes before they rejoin."),
    ))
}
