//! The HTML stats page: a header with process information, then one table per proxy with
//! HAProxy's column groups (Queue, Session rate, Sessions, Bytes, Denied, Errors, Warnings,
//! Server) and rows FRONTEND / servers / BACKEND. Values are HTML-escaped.

use super::{named_rows, Row, RowKind};
use crate::config::units::human_duration;
use crate::config::Stats;
use crate::state::Runtime;
use std::fmt::Write;

pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const STYLE: &str = "body{font-family:arial,helvetica,sans-serif;font-size:12px}\
table.tbl{border-collapse:collapse;border-style:none}\
table.tbl td,table.tbl th{border:1px solid gray;padding:1px 3px;white-space:nowrap;text-align:right}\
table.tbl th{background:#20a0ff;color:#fff}\
.titre{background:#20a0ff;color:#000;font-weight:bold;text-align:center}\
.pxname{background:#b00040;color:#ffff40;font-weight:bold;text-align:left}\
.frontend{background:#e8e8d0}.backend{background:#e8e8d0}\
.active_up{background:#c0ffc0}.backup_up{background:#b0d0ff}\
.active_going_down{background:#ffffa0}.backup_going_down{background:#ffffa0}\
.active_going_up{background:#ffa0a0}.backup_going_up{background:#ffa0a0}\
.active_down{background:#ff9090}.backup_down{background:#ff9090}\
.maintain{background:#c07820}.draining{background:#20a0ff}\
.active_no_check,.backup_no_check{background:#e0e0e0}\
td.ac{text-align:center}";

fn cell(out: &mut String, v: &str) {
    let _ = write!(out, "<td>{}</td>", escape(v));
}

pub fn render(rt: &Runtime, stats: &Stats, uri: &str) -> String {
    let mut out = String::with_capacity(16 * 1024);
    out.push_str("<!DOCTYPE html>\n<html><head><meta http-equiv=\"content-type\" content=\"text/html; charset=iso-8859-1\">\n");
    if let Some(r) = stats.refresh {
        let _ = writeln!(
            out,
            "<meta http-equiv=\"refresh\" content=\"{}\">",
            r.as_secs().max(1)
        );
    }
    let title = if stats.hide_version {
        "Statistics Report".to_string()
    } else {
        format!(
            "Statistics Report for warren lb {}",
            env!("CARGO_PKG_VERSION")
        )
    };
    let _ = write!(
        out,
        "<title>{title}</title><style>{STYLE}</style></head><body>\n<h1>{title}</h1>\n"
    );
    let uptime = human_duration(rt.start.elapsed());
    let _ = writeln!(
        out,
        "<h3>&gt; General process information</h3><p>pid = {} (process #1, nbproc = 1, nbthread = 1)<br>uptime = {uptime}<br>\
         system limits: maxconn = {}<br>current conns = {}; maxconn = {}</p>",
        rt.pid,
        rt.global_maxconn,
        rt.cur_conns.load(std::sync::atomic::Ordering::Relaxed),
        rt.global_maxconn
    );
    let base = escape(uri);
    let _ = write!(
        out,
        "<ul><li><a href=\"{base}\">Refresh now</a></li><li><a href=\"{base};csv\">CSV export</a></li></ul>\n\
         <p>Legend: <span class=active_up>active UP</span> <span class=active_going_down>active UP, going down</span> \
         <span class=active_going_up>active DOWN, going up</span> <span class=active_down>active or backup DOWN</span> \
         <span class=maintain>MAINT</span> <span class=draining>DRAIN</span> <span class=active_no_check>not checked</span></p>\n"
    );
    for (p, rows) in named_rows(rt) {
        let name = escape(&p.cfg.name);
        let _ = writeln!(out, "<table class=\"tbl\" width=\"100%\"><tr class=\"titre\"><th class=\"pxname\" width=\"10%\"><a name=\"{name}\"></a>{name}</th><th class=\"empty\" width=\"90%\"></th></tr></table>");
        out.push_str(
            "<table class=\"tbl\" width=\"100%\">\n<tr class=\"titre\"><th rowspan=2></th><th colspan=3>Queue</th><th colspan=3>Session rate</th>\
             <th colspan=6>Sessions</th><th colspan=2>Bytes</th><th colspan=2>Denied</th><th colspan=3>Errors</th><th colspan=2>Warnings</th>\
             <th colspan=9>Server</th></tr>\n<tr class=\"titre\">",
        );
        for h in [
            "Cur", "Max", "Limit", "Cur", "Max", "Limit", "Cur", "Max", "Limit", "Total", "LbTot",
            "Last", "In", "Out", "Req", "Resp", "Req", "Conn", "Resp", "Retr", "Redis", "Status",
            "LastChk", "Wght", "Act", "Bck", "Chk", "Dwn", "Dwntme", "Thrtle",
        ] {
            let _ = write!(out, "<th>{h}</th>");
        }
        out.push_str("</tr>\n");
        for r in &rows {
            row(&mut out, r);
        }
        out.push_str("</table><p>\n");
    }
    out.push_str("</body></html>\n");
    out
}

fn row(out: &mut String, r: &Row) {
    let label = match r.kind {
        RowKind::Frontend => "Frontend".to_string(),
        RowKind::Backend => "Backend".to_string(),
        RowKind::Server => r.get("svname").to_string(),
    };
    let _ = write!(
        out,
        "<tr class=\"{}\"><td class=ac>{}</td>",
        r.class,
        escape(&label)
    );
    let fe = r.kind == RowKind::Frontend;
    // Queue
    if fe {
        out.push_str("<td colspan=3></td>");
    } else {
        cell(out, r.get("qcur"));
        cell(out, r.get("qmax"));
        cell(
            out,
            if r.get("qlimit").is_empty() && r.kind == RowKind::Server {
                "-"
            } else {
                r.get("qlimit")
            },
        );
    }
    // Session rate
    cell(out, r.get("rate"));
    cell(out, r.get("rate_max"));
    cell(out, if fe { "-" } else { "" });
    // Sessions
    cell(out, r.get("scur"));
    cell(out, r.get("smax"));
    cell(
        out,
        if r.get("slim").is_empty() {
            "-"
        } else {
            r.get("slim")
        },
    );
    cell(out, r.get("stot"));
    cell(out, r.get("lbtot"));
    let last = match r.get("lastsess") {
        "" => String::new(),
        "-1" => "?".to_string(),
        s => s
            .parse::<u64>()
            .map(|v| human_duration(std::time::Duration::from_secs(v)))
            .unwrap_or_default(),
    };
    cell(out, &last);
    // Bytes, Denied, Errors, Warnings
    for k in [
        "bin", "bout", "dreq", "dresp", "ereq", "econ", "eresp", "wretr", "wredis",
    ] {
        cell(out, r.get(k));
    }
    // Server
    let _ = write!(
        out,
        "<td class=ac>{}</td>",
        if r.status_html.contains("<i>") {
            r.status_html.clone()
        } else {
            escape(&r.status_html)
        }
    );
    if fe {
        out.push_str("<td class=ac colspan=8></td></tr>\n");
        return;
    } else {
        let chk = match (r.get("check_status"), r.get("check_duration")) {
            ("", _) => String::new(),
            (s, "") => s.to_string(),
            (s, d) => {
                let code = r.get("check_code");
                if code.is_empty() {
                    format!("{s} in {d}ms")
                } else {
                    format!("{s}/{code} in {d}ms")
                }
            }
        };
        let _ = write!(
            out,
            "<td class=ac title=\"{}\">{}</td>",
            escape(r.get("last_chk")),
            escape(&chk)
        );
        let _ = write!(out, "<td class=ac>{}</td>", escape(r.get("weight")));
        let yes = |v: &str| match (r.kind, v) {
            (RowKind::Server, "1") => "Y".to_string(),
            (RowKind::Server, _) => "-".to_string(),
            (_, v) => v.to_string(),
        };
        let _ = write!(
            out,
            "<td class=ac>{}</td><td class=ac>{}</td>",
            yes(r.get("act")),
            yes(r.get("bck"))
        );
        cell(out, r.get("chkfail"));
        cell(out, r.get("chkdown"));
        let dt = r
            .get("downtime")
            .parse::<u64>()
            .map(|v| human_duration(std::time::Duration::from_secs(v)))
            .unwrap_or_default();
        cell(out, &dt);
    }
    out.push_str("<td class=ac>-</td></tr>\n");
}
