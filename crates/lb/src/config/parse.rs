//! Reads HAProxy configuration text into [`Config`]: sections, directives and their arguments.
//! Guarantees: every line is either understood, reported as an ignored (unsupported but harmless)
//! directive with a `file:line` warning, or refused with a `file:line` error. Nothing is silently
//! mis-read. Cross-proxy checks live in `validate.rs`.

use super::addr;
use super::model::*;
use super::units::{parse_int, parse_time};
use super::Diagnostics;
use std::path::PathBuf;

enum Section {
    None,
    Global,
    Defaults,
    Proxy(usize),
}

pub struct Parser {
    pub cfg: Config,
    defaults: Proxy,
    section: Section,
    pub diags: Diagnostics,
}

/// Directives HAProxy knows that do not change how traffic is forwarded here; they are accepted
/// with a warning. Anything that would change forwarding (ACLs, TLS, other check types) is refused.
const IGNORED_GLOBAL: &[&str] = &[
    "nbproc",
    "user",
    "group",
    "uid",
    "gid",
    "chroot",
    "ulimit-n",
    "ca-base",
    "crt-base",
    "spread-checks",
    "node",
    "description",
    "hard-stop-after",
    "log-send-hostname",
    "log-tag",
    "ssl-default-bind-ciphers",
    "ssl-default-bind-options",
    "ssl-default-server-ciphers",
    "ssl-default-server-options",
    "ssl-default-bind-ciphersuites",
    "ssl-server-verify",
    "tune.ssl.default-dh-param",
    "maxconnrate",
    "maxsessrate",
    "server-state-file",
    "server-state-base",
    "localpeer",
    "cpu-map",
    "noepoll",
    "nosplice",
    "setenv",
    "presetenv",
    "unsetenv",
    "resetenv",
    "expose-experimental-directives",
];
const IGNORED_PROXY: &[&str] = &[
    "description",
    "id",
    "fullconn",
    "hash-type",
    "log-format",
    "log-tag",
    "unique-id-format",
    "unique-id-header",
    "errorfile",
    "errorloc",
    "errorloc302",
    "errorloc303",
    "monitor-uri",
    "capture",
    "compression",
    "rate-limit",
    "backlog",
    "bind-process",
    "email-alert",
    "enabled",
    "max-keep-alive-queue",
    "http-reuse",
    "load-server-state-from-file",
    "grace",
    "cookie",
];
const IGNORED_OPTIONS: &[&str] = &[
    "log-health-checks",
    "splice-auto",
    "splice-request",
    "splice-response",
    "contstats",
    "abortonclose",
    "http-server-close",
    "httpclose",
    "forceclose",
    "http-keep-alive",
    "forwardfor",
    "log-separate-errors",
    "logasap",
    "nolinger",
    "persist",
    "socket-stats",
    "independent-streams",
    "http-buffer-request",
    "dontlog-normal",
    "prefer-last-server",
    "http-no-delay",
    "checkcache",
    "accept-invalid-http-request",
    "accept-invalid-http-response",
];
const IGNORED_TIMEOUTS: &[&str] = &["http-request", "http-keep-alive", "tarpit"];

impl Default for Parser {
    fn default() -> Self {
        Parser {
            cfg: Config::default(),
            defaults: Proxy::builtin_defaults(),
            section: Section::None,
            diags: Diagnostics::default(),
        }
    }
}

impl Parser {
    /// Parses one file's text; errors and warnings accumulate in `self.diags`.
    pub fn parse_text(&mut self, file: &str, text: &str) {
        // Each file starts outside any section, as HAProxy requires.
        self.section = Section::None;
        for (i, raw) in text.lines().enumerate() {
            let loc = Loc {
                file: file.to_string(),
                line: i + 1,
            };
            let words = match super::lexer::split_words(raw) {
                Ok(w) => w,
                Err(e) => {
                    self.diags.error(&loc, e);
                    continue;
                }
            };
            if words.is_empty() {
                continue;
            }
            if let Err(e) = self.directive(&loc, &words) {
                self.diags.error(&loc, e);
            }
        }
    }

    fn directive(&mut self, loc: &Loc, w: &[String]) -> Result<(), String> {
        let kw = w[0].as_str();
        match kw {
            "global" => {
                self.section = Section::Global;
                return Ok(());
            }
            "defaults" => {
                if w.len() > 2 {
                    return Err("'defaults' takes at most a name".into());
                }
                // A new defaults section restarts from HAProxy's built-in values.
                self.defaults = Proxy::builtin_defaults();
                self.section = Section::Defaults;
                return Ok(());
            }
            "listen" | "frontend" | "backend" => return self.open_proxy(loc, w),
            _ => {}
        }
        match self.section {
            Section::None => Err(format!("unknown keyword '{kw}' out of section")),
            Section::Global => self.global(loc, w),
            Section::Defaults => {
                let mut d = std::mem::replace(&mut self.defaults, Proxy::builtin_defaults());
                let r = self.proxy_directive(loc, &mut d, true, w);
                self.defaults = d;
                r
            }
            Section::Proxy(i) => {
                let mut p = std::mem::replace(&mut self.cfg.proxies[i], Proxy::builtin_defaults());
                let r = self.proxy_directive(loc, &mut p, false, w);
                self.cfg.proxies[i] = p;
                r
            }
        }
    }

    fn open_proxy(&mut self, loc: &Loc, w: &[String]) -> Result<(), String> {
        let kind = match w[0].as_str() {
            "listen" => ProxyKind::Listen,
            "frontend" => ProxyKind::Frontend,
            _ => ProxyKind::Backend,
        };
        let name = w
            .get(1)
            .ok_or_else(|| format!("'{}' expects a name", w[0]))?;
        if w.len() > 2 {
            return Err(format!(
                "unexpected '{}' after {} name (named defaults 'from' are not supported)",
                w[2], w[0]
            ));
        }
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))
        {
            return Err(format!(
                "invalid proxy name '{name}' (use letters, digits, '-', '_', '.', ':')"
            ));
        }
        let mut p = self.defaults.clone();
        p.name = name.clone();
        p.kind = kind;
        p.loc = loc.clone();
        // default_backend in defaults only matters for frontends.
        if !kind.has_frontend() {
            p.default_backend = None;
        }
        self.cfg.proxies.push(p);
        self.section = Section::Proxy(self.cfg.proxies.len() - 1);
        Ok(())
    }

    fn global(&mut self, loc: &Loc, w: &[String]) -> Result<(), String> {
        let g = &mut self.cfg.global;
        match w[0].as_str() {
            "log" => g.logs.push(super::logtarget::parse(&w[1..])?),
            "maxconn" => g.maxconn = Some(parse_int(arg(w, 1)?, "maxconn", 1, 1_000_000)? as u32),
            "daemon" => g.daemon = true,
            "master-worker" => match w.get(1).map(String::as_str) {
                None => g.master_worker = Some(true),
                Some("no-exit-on-failure") => g.master_worker = Some(false),
                Some(other) => {
                    return Err(format!(
                        "'master-worker' only supports 'no-exit-on-failure' option, not '{other}'"
                    ))
                }
            },
            "nbthread" => g.nbthread = Some(parse_int(arg(w, 1)?, "nbthread", 1, 256)? as usize),
            "quiet" | "zero-warning" => {}
            "pidfile" => g.pidfile = Some(PathBuf::from(arg(w, 1)?)),
            "stats" => {
                match w.get(1).map(String::as_str) {
                    Some("socket") => {
                        let path = arg(w, 2)?;
                        if path.contains(':') && !path.starts_with('/') {
                            return Err(format!(
                                "stats socket '{path}': only UNIX socket paths are supported"
                            ));
                        }
                        let mut s = StatsSocket {
                            path: PathBuf::from(path),
                            mode: None,
                            level: Level::Operator,
                            loc: loc.clone(),
                        };
                        let mut i = 3;
                        while i < w.len() {
                            match w[i].as_str() {
                                "mode" => {
                                    let m = arg(w, i + 1)?;
                                    s.mode = Some(
                                        u32::from_str_radix(m, 8)
                                            .map_err(|_| format!("invalid octal mode '{m}'"))?,
                                    );
                                    i += 2;
                                }
                                "level" => {
                                    s.level = match arg(w, i + 1)? {
                                    "user" => Level::User,
                                    "operator" => Level::Operator,
                                    "admin" => Level::Admin,
                                    l => return Err(format!("unknown stats socket level '{l}' (user, operator, admin)")),
                                };
                                    i += 2;
                                }
                                "expose-fd" | "user" | "group" | "uid" | "gid" | "name" => {
                                    self.diags.warning(
                                        loc,
                                        format!(
                                            "stats socket option '{}' is not supported and ignored",
                                            w[i]
                                        ),
                                    );
                                    i += 2;
                                }
                                o => return Err(format!("unknown stats socket option '{o}'")),
                            }
                        }
                        self.cfg.global.stats_sockets.push(s);
                    }
                    Some("timeout") | Some("maxconn") | Some("bind-process") => self.diags.warning(
                        loc,
                        format!("'stats {}' is not supported and ignored", w[1]),
                    ),
                    _ => {
                        return Err(
                            "'stats' in 'global' supports 'socket', 'timeout', 'maxconn'".into(),
                        )
                    }
                }
            }
            kw if IGNORED_GLOBAL.contains(&kw) || kw.starts_with("tune.") => self.diags.warning(
                loc,
                format!("'{kw}' is not supported by warren lb and is ignored"),
            ),
            kw => return Err(format!("unknown keyword '{kw}' in 'global' section")),
        }
        Ok(())
    }

    fn proxy_directive(
        &mut self,
        loc: &Loc,
        p: &mut Proxy,
        is_defaults: bool,
        w: &[String],
    ) -> Result<(), String> {
        let kw = w[0].as_str();
        let section = if is_defaults {
            "defaults"
        } else {
            p.kind.name()
        };
        let need_fe = |ok: bool| -> Result<(), String> {
            if ok {
                Ok(())
            } else {
                Err(format!("'{kw}' is not allowed in a '{section}' section"))
            }
        };
        match kw {
            "bind" => {
                need_fe(!is_defaults && p.kind.has_frontend())?;
                for a in addr::parse_bind(arg(w, 1)?)? {
                    p.binds.push(Bind { addr: a, loc: loc.clone() });
                }
                let mut i = 2;
                while i < w.len() {
                    match w[i].as_str() {
                        "ssl" | "crt" | "accept-proxy" | "accept-netscaler-cip" | "alpn" | "ca-file" => {
                            return Err(format!("bind option '{}' is not supported", w[i]))
                        }
                        "name" | "interface" | "id" | "nice" | "process" | "maxconn" | "backlog" | "mss" | "tcp-ut" => {
                            self.diags.warning(loc, format!("bind option '{}' is not supported and ignored", w[i]));
                            i += 1;
                        }
                        o => self.diags.warning(loc, format!("bind option '{o}' is not supported and ignored")),
                    }
                    i += 1;
                }
            }
            "mode" => {
                p.mode = match arg(w, 1)? {
                    "tcp" => Mode::Tcp,
                    "http" => Mode::Http,
                    "health" => return Err("'mode health' is not supported".into()),
                    m => return Err(format!("unknown proxy mode '{m}' (tcp or http)")),
                }
            }
            "balance" => {
                need_fe(is_defaults || p.kind.has_backend())?;
                p.balance = match arg(w, 1)? {
                    "roundrobin" | "static-rr" => Balance::RoundRobin,
                    "leastconn" => Balance::LeastConn,
                    "source" => Balance::Source,
                    "first" => Balance::First,
                    a @ ("uri" | "url_param" | "hdr" | "random" | "rdp-cookie" | "hash") => {
                        return Err(format!("balance algorithm '{a}' is not supported (roundrobin, leastconn, source, first)"))
                    }
                    a => return Err(format!("unknown balance algorithm '{a}'")),
                };
                if w.len() > 2 {
                    return Err(format!("unexpected '{}' after 'balance {}'", w[2], w[1]));
                }
            }
            "server" => {
                need_fe(!is_defaults && p.kind.has_backend())?;
                let name = arg(w, 1)?.to_string();
                if p.servers.iter().any(|s| s.name == name) {
                    return Err(format!("server '{name}' is already defined in {} '{}'", section, p.name));
                }
                let addr = addr::parse_server(arg(w, 2)?)?;
                let mut opts = p.default_server.clone();
                self.server_opts(loc, &mut opts, &w[3..])?;
                p.servers.push(Server { name, addr, opts, loc: loc.clone() });
            }
            "default-server" => {
                need_fe(is_defaults || p.kind.has_backend())?;
                let mut opts = p.default_server.clone();
                self.server_opts(loc, &mut opts, &w[1..])?;
                p.default_server = opts;
            }
            "timeout" => {
                let which = arg(w, 1)?;
                let value = parse_time(arg(w, 2)?)?;
                match which {
                    "connect" => p.timeouts.connect = Some(value),
                    "client" => p.timeouts.client = Some(value),
                    "server" => p.timeouts.server = Some(value),
                    "check" => p.timeouts.check = Some(value),
                    "queue" => p.timeouts.queue = Some(value),
                    "tunnel" => p.timeouts.tunnel = Some(value),
                    "client-fin" => p.timeouts.client_fin = Some(value),
                    "server-fin" => p.timeouts.server_fin = Some(value),
                    t if IGNORED_TIMEOUTS.contains(&t) => {
                        self.diags.warning(loc, format!("'timeout {t}' is not supported and ignored"))
                    }
                    t => return Err(format!("unknown timeout '{t}'")),
                }
            }
            "contimeout" | "clitimeout" | "srvtimeout" => {
                return Err(format!("'{kw}' was removed from HAProxy; use 'timeout connect|client|server'"))
            }
            "maxconn" => p.maxconn = Some(parse_int(arg(w, 1)?, "maxconn", 1, 1_000_000)? as u32),
            "retries" => p.retries = parse_int(arg(w, 1)?, "retries", 0, 100)? as u32,
            "no" if w.get(1).map(String::as_str) == Some("log") => p.logs.clear(),
            "option" | "no" => self.option(loc, p, w)?,
            "log" => match arg(w, 1)? {
                "global" => p.logs.extend(self.cfg.global.logs.iter().cloned()),
                _ => p.logs.push(super::logtarget::parse(&w[1..])?),
            },
            "stats" => self.stats(loc, p, w)?,
            "http-check" => self.http_check(p, w)?,
            "default_backend" => {
                need_fe(is_defaults || p.kind.has_frontend())?;
                p.default_backend = Some(arg(w, 1)?.to_string());
            }
            "use_backend" => {
                need_fe(!is_defaults && p.kind.has_frontend())?;
                if w.len() > 2 {
                    return Err("conditional 'use_backend ... if/unless' needs ACLs, which are not supported".into());
                }
                p.use_backend = Some(arg(w, 1)?.to_string());
            }
            "acl" | "tcp-request" | "http-request" | "http-response" | "redirect" | "reqadd" | "block"
            | "stick-table" | "stick" | "tcp-response" | "filter" | "use-server" | "force-persist" | "ignore-persist" => {
                return Err(format!("'{kw}' is not supported by warren lb (it would change which traffic is accepted or routed)"))
            }
            kw if IGNORED_PROXY.contains(&kw) => {
                self.diags.warning(loc, format!("'{kw}' is not supported by warren lb and is ignored"))
            }
            kw => return Err(format!("unknown keyword '{kw}' in '{section}' section")),
        }
        Ok(())
    }

    fn option(&mut self, loc: &Loc, p: &mut Proxy, w: &[String]) -> Result<(), String> {
        // `no option X` turns an inherited option off.
        let (enable, w) = if w[0] == "no" {
            if w.get(1).map(String::as_str) != Some("option") {
                return Err(format!(
                    "'no' must be followed by 'option' (got '{}')",
                    w.get(1).map(String::as_str).unwrap_or("")
                ));
            }
            (false, &w[1..])
        } else {
            (true, w)
        };
        let name = arg(w, 1)?;
        match name {
            "redispatch" => p.redispatch = enable,
            "allbackups" => p.allbackups = enable,
            "tcpka" => (p.cli_tcpka, p.srv_tcpka) = (enable, enable),
            "clitcpka" => p.cli_tcpka = enable,
            "srvtcpka" => p.srv_tcpka = enable,
            "tcplog" => p.tcplog = enable,
            "httplog" => p.httplog = enable,
            "dontlognull" => p.dontlognull = enable,
            "httpchk" => {
                if !enable {
                    p.check = HealthCheck::Tcp;
                    return Ok(());
                }
                // `option httpchk [<method>] [<uri>] [<version>]`, or a lone `<uri>`.
                let args = &w[2..];
                let (method, uri, version) = match args.len() {
                    0 => (
                        "OPTIONS".to_string(),
                        "/".to_string(),
                        "HTTP/1.0".to_string(),
                    ),
                    1 => (
                        "OPTIONS".to_string(),
                        args[0].clone(),
                        "HTTP/1.0".to_string(),
                    ),
                    2 => (args[0].clone(), args[1].clone(), "HTTP/1.0".to_string()),
                    3 => (args[0].clone(), args[1].clone(), args[2].clone()),
                    _ => {
                        return Err(
                            "'option httpchk' takes at most a method, a URI and a version".into(),
                        )
                    }
                };
                if version.contains(' ') {
                    return Err("headers in the 'option httpchk' version string are not supported; use 'http-check send hdr'".into());
                }
                p.check = HealthCheck::Http {
                    method,
                    uri,
                    version,
                    headers: Vec::new(),
                    expect_status: None,
                };
            }
            "amqp-check" => {
                p.check = if enable {
                    HealthCheck::Amqp
                } else {
                    HealthCheck::Tcp
                }
            }
            o @ ("tcp-check"
            | "ssl-hello-chk"
            | "mysql-check"
            | "pgsql-check"
            | "redis-check"
            | "smtpchk"
            | "ldap-check"
            | "spop-check"
            | "external-check"
            | "transparent"
            | "http-use-proxy-header") => {
                return Err(format!(
                    "'option {o}' is not supported (the health check or routing would differ)"
                ))
            }
            o if IGNORED_OPTIONS.contains(&o) => self.diags.warning(
                loc,
                format!("'option {o}' is not supported by warren lb and is ignored"),
            ),
            o => return Err(format!("unknown option '{o}'")),
        }
        Ok(())
    }

    fn stats(&mut self, loc: &Loc, p: &mut Proxy, w: &[String]) -> Result<(), String> {
        let s = &mut p.stats;
        match arg(w, 1)? {
            "enable" => s.enabled = true,
            "uri" => {
                let uri = arg(w, 2)?;
                if !uri.starts_with('/') {
                    return Err(format!("stats uri '{uri}' must start with '/'"));
                }
                s.uri = uri.to_string();
                s.enabled = true;
            }
            "refresh" => {
                s.refresh = Some(parse_time(arg(w, 2)?)?);
                s.enabled = true;
            }
            "auth" => {
                let (user, pass) = arg(w, 2)?
                    .split_once(':')
                    .ok_or_else(|| "'stats auth' expects 'user:password'".to_string())?;
                s.auth.push((user.to_string(), pass.to_string()));
                s.enabled = true;
            }
            "realm" => {
                s.realm = arg(w, 2)?.to_string();
                s.enabled = true;
            }
            "hide-version" => s.hide_version = true,
            "socket" => return Err("'stats socket' belongs in the 'global' section".into()),
            o @ ("admin" | "show-legends" | "show-node" | "show-desc" | "scope"
            | "show-modules" | "http-request") => self
                .diags
                .warning(loc, format!("'stats {o}' is not supported and ignored")),
            o => return Err(format!("unknown stats keyword '{o}'")),
        }
        Ok(())
    }

    fn http_check(&mut self, p: &mut Proxy, w: &[String]) -> Result<(), String> {
        if !matches!(p.check, HealthCheck::Http { .. }) {
            // HAProxy accepts http-check before option httpchk; keep the order-independent form.
            p.check = HealthCheck::Http {
                method: "OPTIONS".into(),
                uri: "/".into(),
                version: "HTTP/1.0".into(),
                headers: Vec::new(),
                expect_status: None,
            };
        }
        let HealthCheck::Http {
            method,
            uri,
            version,
            headers,
            expect_status,
        } = &mut p.check
        else {
            return Ok(());
        };
        match arg(w, 1)? {
            "send" => {
                let mut i = 2;
                while i < w.len() {
                    let v = arg(w, i + 1)?.to_string();
                    match w[i].as_str() {
                        "meth" => *method = v,
                        "uri" => *uri = v,
                        "ver" => *version = v,
                        "hdr" => {
                            headers.push((v, arg(w, i + 2)?.to_string()));
                            i += 1;
                        }
                        o => {
                            return Err(format!(
                            "'http-check send' option '{o}' is not supported (meth, uri, ver, hdr)"
                        ))
                        }
                    }
                    i += 2;
                }
            }
            "expect" => match (w.get(2).map(String::as_str), w.get(3)) {
                (Some("status"), Some(code)) if w.len() == 4 => {
                    *expect_status =
                        Some(parse_int(code, "http-check expect status", 100, 599)? as u16)
                }
                _ => return Err("only 'http-check expect status <code>' is supported".into()),
            },
            "disable-on-404" | "send-state" => {
                return Err(format!("'http-check {}' is not supported", w[1]))
            }
            o => return Err(format!("unknown http-check keyword '{o}'")),
        }
        Ok(())
    }

    fn server_opts(&mut self, loc: &Loc, o: &mut ServerOpts, w: &[String]) -> Result<(), String> {
        let mut i = 0;
        while i < w.len() {
            let kw = w[i].as_str();
            let mut value = || -> Result<&str, String> {
                i += 1;
                w.get(i)
                    .map(String::as_str)
                    .ok_or_else(|| format!("server option '{kw}' expects a value"))
            };
            match kw {
                "check" => o.check = true,
                "no-check" => o.check = false,
                "port" => o.port = Some(parse_int(value()?, "port", 1, 65535)? as u16),
                "inter" => o.inter = positive_time(value()?, kw)?,
                "fastinter" => o.fastinter = Some(positive_time(value()?, kw)?),
                "downinter" => o.downinter = Some(positive_time(value()?, kw)?),
                "rise" => o.rise = parse_int(value()?, "rise", 1, 1000)? as u32,
                "fall" => o.fall = parse_int(value()?, "fall", 1, 1000)? as u32,
                "weight" => o.weight = parse_int(value()?, "weight", 0, 256)? as u32,
                "backup" => o.backup = true,
                "no-backup" => o.backup = false,
                "disabled" => o.disabled = true,
                "enabled" => o.disabled = false,
                "maxconn" => {
                    o.maxconn = Some(parse_int(value()?, "maxconn", 0, 1_000_000)? as u32)
                        .filter(|m| *m > 0)
                }
                "maxqueue" => {
                    value()?;
                    self.diags.warning(loc, "server option 'maxqueue' is not enforced (the backend queue is bounded by maxconn) and is ignored");
                }
                "send-proxy" => o.send_proxy = Some(ProxyProtocol::V1),
                "send-proxy-v2" => o.send_proxy = Some(ProxyProtocol::V2),
                "no-send-proxy" | "no-send-proxy-v2" => o.send_proxy = None,
                "ssl" | "check-ssl" | "verify" | "sni" | "crt" | "ca-file" | "track"
                | "agent-check" | "redir" | "check-send-proxy" | "proto" | "source" | "usesrc"
                | "namespace" => return Err(format!("server option '{kw}' is not supported")),
                "cookie" | "id" | "init-addr" | "resolvers" | "resolve-prefer" | "slowstart"
                | "observe" | "on-error" | "on-marked-down" | "on-marked-up" | "error-limit"
                | "minconn" | "pool-max-conn" | "pool-purge-delay" | "max-reuse"
                | "agent-inter" | "agent-port" | "tfo" => {
                    value()?;
                    self.diags.warning(
                        loc,
                        format!("server option '{kw}' is not supported and ignored"),
                    );
                }
                "non-stick" | "no-tfo" | "allow-0rtt" => self.diags.warning(
                    loc,
                    format!("server option '{kw}' is not supported and ignored"),
                ),
                _ => return Err(format!("unknown server option '{kw}'")),
            }
            i += 1;
        }
        Ok(())
    }
}

fn positive_time(v: &str, what: &str) -> Result<std::time::Duration, String> {
    let t = parse_time(v)?;
    if t.is_zero() {
        return Err(format!("'{what}' must be greater than 0"));
    }
    Ok(t)
}

fn arg(w: &[String], i: usize) -> Result<&str, String> {
    w.get(i)
        .map(String::as_str)
        .ok_or_else(|| format!("'{}' expects more arguments", w[..i.min(w.len())].join(" ")))
}
