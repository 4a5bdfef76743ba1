//! The node side of `warren ctl`: the control listener on the cluster port. Every
//! connection must pass the cookie challenge before any command runs.

use std::sync::Arc;

use serde_json::{json, Value};
use tokio::net::TcpListener;

use super::commands::{execute, Failure};
use crate::app::App;

pub async fn serve(app: Arc<App>, listener: TcpListener, cookie: String) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        let (app, cookie) = (app.clone(), cookie.clone());
        tokio::spawn(async move {
            let Ok(mut ch) = warren_cluster::handshake::accept(stream, &cookie, &app.node).await
            else {
                return;
            };
            while let Ok(Some(req)) = ch.recv().await {
                if req.get("raft").is_some() || req.get("cluster").is_some() {
                    let reply = peer_request(&app, &req).await;
                    if ch.send(&reply).await.is_err() {
                        return;
                    }
                    continue;
                }
                let command = req
                    .get("command")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                let args: Vec<String> = req
                    .get("args")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
                let opts = req.get("opts").cloned().unwrap_or(json!({}));
                tracing::debug!(peer = %ch.peer, "ctl command {command} {args:?}");
                let reply = match execute(&app, &command, &args, &opts).await {
                    Ok((banner, output)) => json!({"ok": true, "banner": banner, "output": output}),
                    Err(Failure(code, error)) => json!({"ok": false, "code": code, "error": error}),
                };
                if ch.send(&reply).await.is_err() {
                    return;
                }
            }
        });
    }
}

/// A request from another node: Raft traffic and cluster membership for the metadata group.
async fn peer_request(app: &Arc<App>, req: &Value) -> Value {
    if req["cluster"].as_str() == Some("ping") {
        let broker = app.broker();
        if let (Some(b), Some(stats)) = (&broker, req.get("stats")) {
            b.merge_remote_stats(stats);
        }
        return json!({"ok": true, "node": app.node, "running": broker.is_some()});
    }
    let group = match (app.group(), app.broker()) {
        (Some(g), _) => g,
        // The first node to be joined becomes a cluster of one on the spot.
        (None, Some(broker)) if req["cluster"].as_str() == Some("join") => {
            match app.start_group(&broker, false).await {
                Ok(g) => g,
                Err(e) => return json!({"error": e}),
            }
        }
        // A stale view of who leads may still point here: the asker tries again.
        (None, _) => {
            return json!({"retry": req.get("cluster").is_some(), "error": format!("node {} is not running as a cluster member", app.node)})
        }
    };
    group.handle(req).await
}
