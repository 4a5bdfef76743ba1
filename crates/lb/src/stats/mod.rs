//! Statistics as HAProxy presents them: one row per frontend, server and backend, each a map
//! from CSV column name to value. `csv` renders them with HAProxy 2.6's exact header, `html` as
//! the stats page, `http` serves both (with `stats auth`), and the stats socket reuses `csv`.

pub mod csv;
pub mod html;
pub mod http;

use crate::config::units::human_duration;
use crate::state::{Admin, Counters, ProxyState, Runtime, ServerState};
use std::collections::HashMap;
use std::time::Instant;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum RowKind {
    Frontend,
    Backend,
    Server,
}

pub struct Row {
    pub kind: RowKind,
    pub values: HashMap<&'static str, String>,
    /// For servers: a CSS class like HAProxy's (`active_up`, `active_down`, `maintain`...).
    pub class: &'static str,
    /// The HTML "Status" cell text, e.g. `5m3s UP`.
    pub status_html: String,
}

impl Row {
    fn new(kind: RowKind) -> Row {
        Row {
            kind,
            values: HashMap::new(),
            class: "",
            status_html: String::new(),
        }
    }
    fn set(&mut self, k: &'static str, v: impl ToString) {
        self.values.insert(k, v.to_string());
    }
    pub fn get(&self, k: &str) -> &str {
        self.values.get(k).map(String::as_str).unwrap_or("")
    }
}

/// Server status as HAProxy prints it, plus the CSS class for the HTML row.
pub fn server_status(s: &ServerState) -> (String, &'static str) {
    let h = s.health();
    let (rise, fall) = (s.opts.rise, s.opts.fall);
    if h.admin == Admin::Maint {
        return ("MAINT".into(), "maintain");
    }
    if !s.checked() {
        let st = if h.admin == Admin::Drain || s.weight() == 0 {
            "DRAIN"
        } else {
            "no check"
        };
        return (
            st.into(),
            if s.opts.backup {
                "backup_no_check"
            } else {
                "active_no_check"
            },
        );
    }
    let (text, class) = if h.up {
        if h.health >= rise + fall - 1 {
            (
                "UP".to_string(),
                if s.opts.backup {
                    "backup_up"
                } else {
                    "active_up"
                },
            )
        } else {
            (
                format!("UP {}/{}", h.health - rise + 1, fall),
                if s.opts.backup {
                    "backup_going_down"
                } else {
                    "active_going_down"
                },
            )
        }
    } else if h.health == 0 {
        (
            "DOWN".to_string(),
            if s.opts.backup {
                "backup_down"
            } else {
                "active_down"
            },
        )
    } else {
        (
            format!("DOWN {}/{}", h.health, rise),
            if s.opts.backup {
                "backup_going_up"
            } else {
                "active_going_up"
            },
        )
    };
    if (h.admin == Admin::Drain || s.weight() == 0) && h.up {
        return ("DRAIN".into(), "draining");
    }
    (text, class)
}

fn counters(r: &mut Row, c: &Counters, now_ms: u64) {
    use std::sync::atomic::Ordering::Relaxed;
    r.set("scur", c.scur.load(Relaxed));
    r.set("smax", c.smax.load(Relaxed));
    r.set("stot", c.stot.load(Relaxed));
    r.set("bin", c.bin.load(Relaxed));
    r.set("bout", c.bout.load(Relaxed));
    r.set("rate", c.rate.current(now_ms));
    r.set("rate_max", c.rate.max.load(Relaxed));
}

fn backend_common(r: &mut Row, c: &Counters, now_ms: u64) {
    use std::sync::atomic::Ordering::Relaxed;
    r.set("qcur", c.qcur.load(Relaxed));
    r.set("qmax", c.qmax.load(Relaxed));
    r.set("econ", c.econ.load(Relaxed));
    r.set("eresp", c.eresp.load(Relaxed));
    r.set("wretr", c.wretr.load(Relaxed));
    r.set("wredis", c.wredis.load(Relaxed));
    r.set("dresp", 0);
    r.set("lbtot", c.lbtot.load(Relaxed));
    r.set("cli_abrt", c.cli_abrt.load(Relaxed));
    r.set("srv_abrt", c.srv_abrt.load(Relaxed));
    let last = c.last_sess_ms.load(Relaxed);
    r.set(
        "lastsess",
        if last == 0 {
            -1
        } else {
            ((now_ms + 1).saturating_sub(last) / 1000) as i64
        },
    );
}

/// All rows, in HAProxy's order: per proxy, FRONTEND, servers, BACKEND.
pub fn rows(rt: &Runtime) -> Vec<(std::sync::Arc<ProxyState>, Vec<Row>)> {
    let now_ms = rt.now_ms();
    let now = Instant::now();
    let pid = rt.pid;
    rt.proxies
        .iter()
        .map(|p| {
            let mut out = Vec::new();
            let mode = if p.cfg.is_stats() { "http" } else { "tcp" };
            if p.cfg.kind.has_frontend() && !p.cfg.binds.is_empty() {
                let mut r = Row::new(RowKind::Frontend);
                counters(&mut r, &p.fe, now_ms);
                r.set("slim", p.frontend_maxconn);
                for k in ["dreq", "dresp", "ereq"] {
                    r.set(k, 0);
                }
                r.set(
                    "status",
                    if rt.stopping.load(std::sync::atomic::Ordering::Relaxed) {
                        "STOP"
                    } else {
                        "OPEN"
                    },
                );
                r.set("rate_lim", 0);
                r.set("type", 0);
                r.set("sid", 0);
                r.set("mode", mode);
                r.set("conn_rate", p.fe.rate.current(now_ms));
                r.set(
                    "conn_rate_max",
                    p.fe.rate.max.load(std::sync::atomic::Ordering::Relaxed),
                );
                r.set("conn_tot", Counters::get(&p.fe.stot));
                r.status_html = "OPEN".into();
                r.class = "frontend";
                finish(&mut r, p, pid);
                out.push(r);
            }
            if p.cfg.kind.has_backend() {
                // The backend's weight is that of the servers taking traffic: the active ones, or
                // the backups when no active server is usable.
                let (mut total_weight, mut bck_weight) = (0u64, 0u64);
                let (mut act, mut bck) = (0u64, 0u64);
                for s in &p.servers {
                    let mut r = Row::new(RowKind::Server);
                    counters(&mut r, &s.counters, now_ms);
                    backend_common(&mut r, &s.counters, now_ms);
                    if let Some(m) = s.opts.maxconn {
                        r.set("slim", m);
                    }
                    let (status, class) = server_status(s);
                    let h = s.health();
                    let since = now.saturating_duration_since(h.last_change);
                    r.status_html = if status == "no check" {
                        "<i>no check</i>".into()
                    } else {
                        format!("{} {status}", human_duration(since))
                    };
                    r.set("status", status);
                    r.class = class;
                    r.set("weight", s.weight());
                    r.set("act", u8::from(!s.opts.backup));
                    r.set("bck", u8::from(s.opts.backup));
                    if s.is_usable() {
                        if s.opts.backup {
                            bck += 1;
                            bck_weight += u64::from(s.weight());
                        } else {
                            act += 1;
                            total_weight += u64::from(s.weight());
                        }
                    }
                    r.set("lastchg", since.as_secs());
                    r.set("throttle", "");
                    r.set("type", 2);
                    r.set("sid", s.sid);
                    if let Some(q) = s.opts.maxqueue {
                        r.set("qlimit", q);
                    }
                    if s.checked() {
                        let down = h.downtime
                            + h.down_since
                                .map(|d| now.saturating_duration_since(d))
                                .unwrap_or_default();
                        r.set("chkfail", h.chkfail);
                        r.set("chkdown", h.chkdown);
                        r.set("downtime", down.as_secs());
                        r.set("check_rise", s.opts.rise);
                        r.set("check_fall", s.opts.fall);
                        r.set("check_health", h.health);
                        match &h.last_check {
                            Some(c) => {
                                r.set("check_status", c.status);
                                if let Some(code) = c.code {
                                    r.set("check_code", code);
                                }
                                if let Some(d) = c.duration {
                                    r.set("check_duration", d.as_millis());
                                }
                                r.set("last_chk", c.desc.replace(',', " "));
                                r.set("check_desc", c.desc.split(',').next().unwrap_or(""));
                            }
                            None => {
                                r.set("check_status", "INI");
                                r.set("check_desc", "Initializing");
                            }
                        }
                    }
                    r.set("mode", mode);
                    r.set("uweight", s.opts.weight);
                    finish(&mut r, p, pid);
                    out.push(r);
                }
                let mut r = Row::new(RowKind::Backend);
                counters(&mut r, &p.be, now_ms);
                backend_common(&mut r, &p.be, now_ms);
                // HAProxy's default backend fullconn: 10% of the frontend maxconn.
                r.set("slim", (p.frontend_maxconn / 10).max(1));
                r.set("dreq", 0);
                let up = p.cfg.is_stats() || p.servers.iter().any(|s| s.is_usable());
                r.set("status", if up { "UP" } else { "DOWN" });
                r.status_html = format!(
                    "{} {}",
                    human_duration(now.saturating_duration_since(p.last_change)),
                    if up { "UP" } else { "DOWN" }
                );
                if act == 0 {
                    total_weight = if p.cfg.allbackups {
                        bck_weight
                    } else {
                        p.servers
                            .iter()
                            .find(|s| s.opts.backup && s.is_usable())
                            .map_or(0, |s| u64::from(s.weight()))
                    };
                }
                r.set("weight", total_weight);
                r.set("act", act);
                r.set("bck", bck);
                r.set("chkdown", 0);
                r.set(
                    "lastchg",
                    now.saturating_duration_since(p.last_change).as_secs(),
                );
                r.set("downtime", 0);
                r.set("type", 1);
                r.set("sid", 0);
                r.set("mode", mode);
                r.set("uweight", total_weight);
                r.class = "backend";
                finish(&mut r, p, pid);
                out.push(r);
            }
            (p.clone(), out)
        })
        .collect()
}

/// Columns HAProxy 2.6 fills with `0` per row type even when nothing happened (compression,
/// HTTP/2, SSL, timing averages...). We do not track them; they are zero, as they are in TCP mode.
const ZERO_FRONTEND: &str = "req_rate req_rate_max req_tot comp_in comp_out comp_byp comp_rsp dcon dses wrew eint ssl_sess ssl_reused_sess ssl_failed_handshake h2_headers_rcvd h2_data_rcvd h2_settings_rcvd h2_rst_stream_rcvd h2_goaway_rcvd h2_detected_conn_protocol_errors h2_detected_strm_protocol_errors h2_rst_stream_resp h2_goaway_resp h2_open_connections h2_backend_open_streams h2_total_connections h2_backend_total_streams h1_open_connections h1_open_streams h1_total_connections h1_total_streams h1_bytes_in h1_bytes_out h1_spliced_bytes_in h1_spliced_bytes_out";
const ZERO_SERVER: &str = "qtime ctime rtime ttime wrew connect reuse srv_icur qtime_max ctime_max rtime_max ttime_max eint idle_conn_cur safe_conn_cur used_conn_cur need_conn_est ssl_sess ssl_reused_sess ssl_failed_handshake";
const ZERO_BACKEND: &str = "comp_in comp_out comp_byp comp_rsp qtime ctime rtime ttime wrew connect reuse qtime_max ctime_max rtime_max ttime_max eint agg_server_status agg_server_check_status agg_check_status ssl_sess ssl_reused_sess ssl_failed_handshake h2_headers_rcvd h2_data_rcvd h2_settings_rcvd h2_rst_stream_rcvd h2_goaway_rcvd h2_detected_conn_protocol_errors h2_detected_strm_protocol_errors h2_rst_stream_resp h2_goaway_resp h2_open_connections h2_backend_open_streams h2_total_connections h2_backend_total_streams h1_open_connections h1_open_streams h1_total_connections h1_total_streams h1_bytes_in h1_bytes_out h1_spliced_bytes_in h1_spliced_bytes_out";

fn finish(r: &mut Row, p: &ProxyState, pid: u32) {
    let zeros = match r.kind {
        RowKind::Frontend => ZERO_FRONTEND,
        RowKind::Server => ZERO_SERVER,
        RowKind::Backend => ZERO_BACKEND,
    };
    for c in zeros.split(' ') {
        r.values.entry(c).or_insert_with(|| "0".into());
    }
    r.set("-", "-");
    if p.cfg.is_stats() && r.kind != RowKind::Server {
        for c in [
            "hrsp_1xx",
            "hrsp_2xx",
            "hrsp_3xx",
            "hrsp_4xx",
            "hrsp_5xx",
            "hrsp_other",
            "cache_lookups",
            "cache_hits",
        ] {
            r.values.entry(c).or_insert_with(|| "0".into());
        }
    }
    r.set("pxname", &p.cfg.name);
    let sv = match r.kind {
        RowKind::Frontend => "FRONTEND".to_string(),
        RowKind::Backend => "BACKEND".to_string(),
        RowKind::Server => String::new(),
    };
    if !sv.is_empty() {
        r.set("svname", sv);
    }
    r.set("pid", 1);
    let _ = pid;
    r.set("iid", p.iid);
}

/// Server rows need their name; set separately to keep `rows` readable.
pub fn named_rows(rt: &Runtime) -> Vec<(std::sync::Arc<ProxyState>, Vec<Row>)> {
    let mut all = rows(rt);
    for (p, rows) in &mut all {
        let mut names = p.servers.iter().map(|s| s.name.clone());
        for r in rows.iter_mut().filter(|r| r.kind == RowKind::Server) {
            if let Some(n) = names.next() {
                r.set("svname", n);
            }
        }
    }
    all
}
