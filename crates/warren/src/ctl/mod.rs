//! `warren ctl`: rabbitmqctl for Warren nodes — the same command names, flags, banners and
//! exit codes (64 usage, 65 data error, 69 unavailable, 70 software error, 75 timeout).
//!
//! The client finds the node through the per-host registry (or `name@host:port`), proves it
//! knows the cookie by challenge–response on the node's cluster port, sends one command and
//! prints the answer as rabbitmqctl would (tab-separated tables, or `--formatter json`).

mod activity;
pub mod cluster;
pub mod commands;
pub mod server;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use serde_json::{json, Map, Value};
use warren_cluster::handshake::ConnectError;
use warren_cluster::{cookie, registry, NodeName};

const USAGE: &str = "Usage: warren ctl [-n <node>] [--formatter json] [-q] [--cookie-file <path>] <command> [<args>]

Commands (as rabbitmqctl): status, stop, stop_app, start_app, reset, force_reset,
await_startup, cluster_status, list_queues [-p <vhost>] [<column> ...], list_exchanges,
list_bindings, list_connections [<column> ...], list_channels [<column> ...],
list_consumers [-p <vhost>] [<column> ...], close_connection <name|pid> <reason>,
list_users, add_user, delete_user, change_password, set_user_tags, authenticate_user,
list_vhosts, add_vhost, delete_vhost, set_permissions, clear_permissions, list_permissions,
set_policy [--priority <n>] [--apply-to <kind>], clear_policy, list_policies, purge_queue,
delete_queue, export_definitions <file|->, import_definitions <file>";

struct Parsed {
    node: String,
    json: bool,
    quiet: bool,
    silent: bool,
    cookie_file: Option<PathBuf>,
    command: String,
    args: Vec<String>,
    opts: Map<String, Value>,
}

fn parse(args: Vec<OsString>) -> Result<Parsed, String> {
    let mut it = args.into_iter().map(|a| a.to_string_lossy().into_owned());
    let mut p = Parsed {
        node: std::env::var("WARREN_NODENAME")
            .unwrap_or_else(|_| format!("warren@{}", warren_cluster::short_hostname())),
        json: false,
        quiet: false,
        silent: false,
        cookie_file: None,
        command: String::new(),
        args: Vec::new(),
        opts: Map::new(),
    };
    while let Some(a) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .ok_or_else(|| format!("option {name} needs a value"))
        };
        match a.as_str() {
            "-n" | "--node" => p.node = value(&a)?,
            "--formatter" => p.json = value(&a)? == "json",
            "-q" | "--quiet" => p.quiet = true,
            "-s" | "--silent" => {
                p.quiet = true;
                p.silent = true
            }
            "--cookie-file" => p.cookie_file = Some(PathBuf::from(value(&a)?)),
            "-t" | "--timeout" => {
                value(&a)?;
            }
            "-p" | "--vhost" => {
                let v = value(&a)?;
                p.opts.insert("vhost".into(), json!(v));
            }
            "--priority" => {
                let v = value(&a)?;
                p.opts.insert("priority".into(), json!(v));
            }
            "--apply-to" => {
                let v = value(&a)?;
                p.opts.insert("apply_to".into(), json!(v));
            }
            "--offline" | "--disc" | "--ram" => {
                p.opts.insert(a.trim_start_matches('-').into(), json!(true));
            }
            "-h" | "--help" | "help" if p.command.is_empty() => return Err("help".into()),
            _ if p.command.is_empty() => p.command = a,
            _ => p.args.push(a),
        }
    }
    if p.command.is_empty() {
        return Err(String::new());
    }
    Ok(p)
}

pub fn main(args: Vec<OsString>) -> ExitCode {
    let p = match parse(args) {
        Ok(p) => p,
        Err(e) if e == "help" => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            if !e.is_empty() {
                eprintln!("Error: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(64);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error: {e}");
            return ExitCode::from(70);
        }
    };
    ExitCode::from(rt.block_on(run(p)))
}

async fn run(mut p: Parsed) -> u8 {
    let node = match NodeName::parse(&p.node) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("Error: {e}");
            return 64;
        }
    };
    let cookie_path = cookie::path(p.cookie_file.as_deref());
    let cookie = match cookie::read(&cookie_path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("Error: {e}");
            return 69;
        }
    };
    if p.command == "import_definitions" {
        let Some(path) = p.args.first() else {
            eprintln!("Error (argument validation): not enough arguments.\nUsage: warren ctl import_definitions <file>");
            return 64;
        };
        let doc = match std::fs::read(path)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice::<Value>(&b).map_err(|e| e.to_string()))
        {
            Ok(d) => d,
            Err(e) => {
                eprintln!("Error: cannot read definitions from {path}: {e}");
                return 65;
            }
        };
        p.opts.insert("definitions".into(), doc);
    }
    let registered = registry::lookup(&node.full());
    let (host, port, how) = match (node.port, &registered) {
        (Some(port), _) => (node.host.clone(), port, format!("explicit port {port}")),
        (None, Some(e)) => (
            "127.0.0.1".to_string(),
            e.cluster_port,
            format!(
                "found in the node registry ({}), cluster port {}",
                registry::dir().display(),
                e.cluster_port
            ),
        ),
        (None, None) => (
            node.host.clone(),
            25672,
            format!(
                "not in the node registry ({}); tried the default cluster port 25672",
                registry::dir().display()
            ),
        ),
    };
    let me = format!(
        "warren-cli-{}@{}",
        std::process::id(),
        warren_cluster::short_hostname()
    );
    let mut ch = match warren_cluster::handshake::connect((host.as_str(), port), &cookie, &me).await
    {
        Ok(ch) => ch,
        Err(e) => {
            diagnostics(&node.full(), &host, &how, &e, &me, &cookie_path, &cookie);
            return 69;
        }
    };
    let req = json!({"command": p.command, "args": p.args, "opts": p.opts});
    let reply = match ch.call(&req).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("Error: lost the connection to node {}: {e}", node.full());
            return 69;
        }
    };
    if reply.get("ok").and_then(Value::as_bool) != Some(true) {
        eprintln!(
            "{}",
            reply
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("Error")
        );
        return reply.get("code").and_then(Value::as_u64).unwrap_or(70) as u8;
    }
    let banner = reply.get("banner").and_then(Value::as_str).unwrap_or("");
    if !p.quiet && !banner.is_empty() && !p.json {
        println!("{banner}");
    }
    print_output(&p, reply.get("output").unwrap_or(&Value::Null))
}

fn print_output(p: &Parsed, out: &Value) -> u8 {
    if let Some(doc) = out.get("definitions") {
        let text = serde_json::to_string_pretty(doc).unwrap_or_default();
        match p.args.first().map(String::as_str) {
            None | Some("-") => println!("{text}"),
            Some(path) => {
                if let Err(e) = std::fs::write(path, text) {
                    eprintln!("Error: cannot write {path}: {e}");
                    return 73;
                }
            }
        }
        return 0;
    }
    if let Some(t) = out.get("table") {
        let cols: Vec<&str> = t["columns"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let rows = t["rows"].as_array().cloned().unwrap_or_default();
        if p.json {
            let objs: Vec<Value> = rows
                .iter()
                .map(|r| {
                    let mut m = Map::new();
                    for (c, v) in cols.iter().zip(r.as_array().into_iter().flatten()) {
                        m.insert((*c).to_string(), v.clone());
                    }
                    Value::Object(m)
                })
                .collect();
            println!("{}", serde_json::to_string(&objs).unwrap_or_default());
            return 0;
        }
        if !p.silent {
            println!("{}", cols.join("\t"));
        }
        for r in rows {
            let cells: Vec<String> = r
                .as_array()
                .into_iter()
                .flatten()
                .map(|v| match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect();
            println!("{}", cells.join("\t"));
        }
        return 0;
    }
    if p.json {
        if let Some(j) = out.get("json") {
            println!("{}", serde_json::to_string(j).unwrap_or_default());
            return 0;
        }
    }
    if let Some(t) = out.get("text").and_then(Value::as_str) {
        if !t.is_empty() {
            println!("{t}");
        }
    }
    0
}

/// rabbitmqctl's diagnostics block for a node that cannot be reached or refuses our cookie.
fn diagnostics(
    node: &str,
    host: &str,
    how: &str,
    e: &ConnectError,
    me: &str,
    cookie_path: &std::path::Path,
    cookie: &str,
) {
    use base64::Engine;
    use sha2::Digest;
    let detail = match e {
        ConnectError::Unreachable(err) => format!("  * unable to connect to {host}: {err}"),
        ConnectError::Rejected => "  * TCP connection succeeded but the node refused the CLI tool\n  * Authentication failed (rejected by the remote node), please check the cookie".to_string(),
        ConnectError::Protocol(m) => format!("  * TCP connection succeeded but the node did not speak Warren's control protocol: {m}"),
    };
    let hash =
        base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(cookie.as_bytes()));
    eprintln!(
        "Error: unable to perform an operation on node '{node}'. Please see diagnostics information and suggestions below.

Most common reasons for this are:

 * Target node is unreachable (e.g. due to hostname resolution, TCP connection or firewall issues)
 * CLI tool fails to authenticate with the server (e.g. due to CLI tool's cookie not matching that of the server)
 * Target node is not running

In addition to the diagnostics info below:

 * Consult server logs on node {node}

DIAGNOSTICS
===========

attempted to contact: ['{node}']

{node}:
  * {how}
{detail}

Current node details:
 * node name: '{me}'
 * effective user's home directory: {}
 * cookie file: {}, hash: {hash}",
        std::env::var("HOME").unwrap_or_default(),
        cookie_path.display()
    );
}
