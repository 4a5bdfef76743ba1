//! Interpretation of the statement tree as keepalived configuration.
//!
//! Owns: keyword semantics, defaults (keepalived 2.2's), range checks and cross references.
//! Guarantees: a malformed value or block is an error naming file:line; an unknown or unsupported
//! keyword is a warning naming file:line and is otherwise ignored (like keepalived), so a user's
//! existing file loads while nothing is silently mis-read.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::lexer::{lex_file, lex_str, LexError, Loc};
use super::model::*;
use super::tree::{build, Stmt};

/// Result of loading a file: the configuration plus the warnings to log.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<String>,
}

pub fn load_file(path: &Path) -> Result<Loaded, String> {
    let tokens = lex_file(path).map_err(|e| e.to_string())?;
    finish(&tokens)
}

pub fn load_str(text: &str, name: &str) -> Result<Loaded, String> {
    let tokens = lex_str(text, &Arc::from(name)).map_err(|e| e.to_string())?;
    finish(&tokens)
}

fn finish(tokens: &[super::lexer::Token]) -> Result<Loaded, String> {
    let tree = build(tokens).map_err(|e: LexError| e.to_string())?;
    let mut p = Parser::default();
    p.top(&tree).map_err(|e| e.to_string())?;
    Ok(Loaded {
        config: p.config,
        warnings: p.warnings,
    })
}

#[derive(Debug)]
struct Error {
    loc: Loc,
    msg: String,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.loc, self.msg)
    }
}

type R<T> = Result<T, Error>;

fn err<T>(s: &Stmt, msg: impl Into<String>) -> R<T> {
    Err(Error {
        loc: s.loc.clone(),
        msg: msg.into(),
    })
}

#[derive(Default)]
struct Parser {
    config: Config,
    warnings: Vec<String>,
    garp_delay: Option<Duration>,
    garp_repeat: Option<u32>,
}

/// Per-instance values whose final form depends on the VRRP version, which may be set later.
struct Pending {
    version: Option<u8>,
    advert_int: Option<(String, Loc)>,
    auth: Option<(Option<String>, Option<String>, Loc)>,
    garp_delay: Option<Duration>,
    garp_repeat: Option<u32>,
}

impl Parser {
    fn warn(&mut self, s: &Stmt, msg: impl std::fmt::Display) {
        self.warnings.push(format!("{}: {msg}", s.loc));
    }

    fn unknown(&mut self, s: &Stmt, ctx: &str) {
        self.warn(
            s,
            format_args!("unknown keyword '{}' in {ctx}, ignored", s.keyword),
        );
    }

    fn top(&mut self, tree: &[Stmt]) -> R<()> {
        // global_defs first: it sets defaults (vrrp_version, garp) that instances inherit.
        for s in tree.iter().filter(|s| s.keyword == "global_defs") {
            self.global_defs(s)?;
        }
        for s in tree {
            match s.keyword.as_str() {
                "global_defs" => {}
                "vrrp_script" => self.vrrp_script(s)?,
                "vrrp_instance" => self.vrrp_instance(s)?,
                "vrrp_sync_group" => self.sync_group(s)?,
                "virtual_server" | "virtual_server_group" => self.warn(
                    s,
                    format_args!(
                        "'{}' is not supported (warren vrrp is a VRRP speaker only; use `warren lb` \
                         for load balancing), block ignored",
                        s.keyword
                    ),
                ),
                _ => self.unknown(s, "top level"),
            }
        }
        self.validate()
    }

    fn global_defs(&mut self, s: &Stmt) -> R<()> {
        for st in block(s)? {
            match st.keyword.as_str() {
                "router_id" => self.config.global.router_id = Some(one(st)?.to_string()),
                "enable_script_security" => self.config.global.enable_script_security = true,
                "script_user" => {
                    self.config.global.script_user = Some(one(st)?.to_string());
                    if st.args.len() > 1 {
                        self.warn(st, "script_user: group name ignored");
                    }
                }
                "vrrp_version" => self.config.global.vrrp_version = version(st)?,
                "vrrp_garp_master_delay" => {
                    self.garp_delay = Some(Duration::from_secs(num(st, 0, 3600)?.into()))
                }
                "vrrp_garp_master_repeat" => self.garp_repeat = Some(num(st, 1, 1000)?),
                "notification_email"
                | "notification_email_from"
                | "smtp_server"
                | "smtp_connect_timeout" => self.warn(
                    st,
                    format_args!("'{}' has no effect (no e-mail alerts)", st.keyword),
                ),
                _ => self.unknown(st, "global_defs"),
            }
        }
        Ok(())
    }

    fn vrrp_script(&mut self, s: &Stmt) -> R<()> {
        let name = one(s)?.to_string();
        if self.config.scripts.iter().any(|x| x.name == name) {
            return err(s, format!("vrrp_script {name} defined twice"));
        }
        let mut script = None;
        let mut interval = Duration::from_secs(1);
        let mut timeout = None;
        let (mut weight, mut fall, mut rise, mut user) = (0i32, 1u32, 1u32, None);
        for st in block(s)? {
            match st.keyword.as_str() {
                // keepalived takes the rest of the line as the command (quoted or not).
                "script" if !st.args.is_empty() => script = Some(st.args.join(" ")),
                "script" => return err(st, "script needs a command"),
                "interval" => interval = secs(st)?,
                "timeout" => timeout = Some(secs(st)?),
                "weight" => {
                    weight = int(st, -253, 253)?;
                    if st.args.get(1).map(String::as_str) == Some("reverse") {
                        return err(st, "weight ... reverse is not supported yet");
                    }
                }
                "fall" => fall = num(st, 1, 1_000_000)?,
                "rise" => rise = num(st, 1, 1_000_000)?,
                "user" => user = Some(one(st)?.to_string()),
                "init_fail" => self.warn(st, "init_fail is not supported yet, ignored"),
                _ => self.unknown(st, "vrrp_script"),
            }
        }
        let Some(script) = script else {
            return err(s, format!("vrrp_script {name} has no 'script'"));
        };
        self.config.scripts.push(VrrpScript {
            name,
            script,
            interval,
            timeout: timeout.unwrap_or(interval),
            weight,
            fall,
            rise,
            user,
            loc: s.loc.clone(),
        });
        Ok(())
    }

    fn sync_group(&mut self, s: &Stmt) -> R<()> {
        let name = one(s)?.to_string();
        let mut g = SyncGroup {
            name,
            members: Vec::new(),
            notify_master: None,
            notify_backup: None,
            notify_fault: None,
            notify: None,
            loc: s.loc.clone(),
        };
        for st in block(s)? {
            match st.keyword.as_str() {
                "group" => {
                    for m in block(st)? {
                        g.members.push(m.keyword.clone());
                        g.members.extend(m.args.iter().cloned());
                    }
                }
                "notify_master" => g.notify_master = Some(self.notify(st)?),
                "notify_backup" => g.notify_backup = Some(self.notify(st)?),
                "notify_fault" => g.notify_fault = Some(self.notify(st)?),
                "notify" => g.notify = Some(self.notify(st)?),
                _ => self.warn(
                    st,
                    format_args!(
                        "'{}' in vrrp_sync_group is not supported yet, ignored",
                        st.keyword
                    ),
                ),
            }
        }
        self.config.sync_groups.push(g);
        Ok(())
    }

    fn vrrp_instance(&mut self, s: &Stmt) -> R<()> {
        let name = one(s)?.to_string();
        let mut inst = Instance {
            name: name.clone(),
            loc: s.loc.clone(),
            state: InitialState::Backup,
            interface: String::new(),
            vrid: 0,
            priority: 100,
            version: self.config.global.vrrp_version,
            advert_int_cs: 100,
            preempt: true,
            preempt_delay: Duration::ZERO,
            auth_pass: None,
            unicast_src_ip: None,
            unicast_peers: Vec::new(),
            track_scripts: Vec::new(),
            track_interfaces: Vec::new(),
            vips: Vec::new(),
            excluded_vips: Vec::new(),
            notify_master: None,
            notify_backup: None,
            notify_fault: None,
            notify_stop: None,
            notify: None,
            garp_master_delay: self.garp_delay.unwrap_or(Duration::from_secs(5)),
            garp_master_repeat: self.garp_repeat.unwrap_or(5),
        };
        let mut pend = Pending {
            version: None,
            advert_int: None,
            auth: None,
            garp_delay: None,
            garp_repeat: None,
        };
        for st in block(s)? {
            self.instance_kw(st, &mut inst, &mut pend)?;
        }
        if inst.interface.is_empty() {
            return err(s, format!("vrrp_instance {name}: 'interface' is required"));
        }
        if inst.vrid == 0 {
            return err(
                s,
                format!("vrrp_instance {name}: 'virtual_router_id' is required"),
            );
        }
        if let Some(v) = pend.version {
            inst.version = v;
        }
        if let Some(d) = pend.garp_delay {
            inst.garp_master_delay = d;
        }
        if let Some(r) = pend.garp_repeat {
            inst.garp_master_repeat = r;
        }
        if let Some((text, loc)) = pend.advert_int {
            inst.advert_int_cs = advert_cs(&text, inst.version, &loc, &mut self.warnings)?;
        }
        if let Some((kind, pass, loc)) = pend.auth {
            if inst.version == 3 {
                self.warnings.push(format!(
                    "{loc}: (vrrp_instance {name}) authentication is not part of VRRPv3, ignored"
                ));
            } else {
                match kind.as_deref() {
                    Some("PASS") => {
                        let Some(pass) = pass else {
                            return Err(Error {
                                loc,
                                msg: "auth_type PASS needs auth_pass".into(),
                            });
                        };
                        if pass.len() > 8 {
                            self.warnings.push(format!(
                                "{loc}: auth_pass longer than 8 characters, truncated (as keepalived)"
                            ));
                        }
                        let mut b = [0u8; 8];
                        for (d, s) in b.iter_mut().zip(pass.bytes()) {
                            *d = s;
                        }
                        inst.auth_pass = Some(b);
                    }
                    Some("AH") => {
                        return Err(Error {
                            loc,
                            msg: "auth_type AH is not supported".into(),
                        })
                    }
                    Some(other) => {
                        return Err(Error {
                            loc,
                            msg: format!("unknown auth_type '{other}' (PASS or AH)"),
                        })
                    }
                    None => {
                        return Err(Error {
                            loc,
                            msg: "authentication block without auth_type".into(),
                        })
                    }
                }
            }
        }
        if !inst.preempt && inst.state == InitialState::Master {
            self.warnings.push(format!(
                "{}: (vrrp_instance {name}) nopreempt with state MASTER: keepalived requires state \
                 BACKUP for nopreempt; the instance will still not preempt once running",
                s.loc
            ));
        }
        if inst.priority == 255 && inst.state == InitialState::Backup {
            self.warnings.push(format!(
                "{}: (vrrp_instance {name}) priority 255 (address owner) implies state MASTER",
                s.loc
            ));
        }
        self.config.instances.push(inst);
        Ok(())
    }

    fn instance_kw(&mut self, st: &Stmt, inst: &mut Instance, pend: &mut Pending) -> R<()> {
        match st.keyword.as_str() {
            "state" => {
                inst.state = match one(st)? {
                    "MASTER" => InitialState::Master,
                    "BACKUP" => InitialState::Backup,
                    o => return err(st, format!("state must be MASTER or BACKUP, not '{o}'")),
                }
            }
            "interface" => inst.interface = one(st)?.to_string(),
            "virtual_router_id" => inst.vrid = num(st, 1, 255)? as u8,
            "priority" => inst.priority = num(st, 1, 255)? as u8,
            "version" => pend.version = Some(version(st)?),
            "advert_int" => pend.advert_int = Some((one(st)?.to_string(), st.loc.clone())),
            "nopreempt" => inst.preempt = false,
            "preempt" => inst.preempt = true,
            "preempt_delay" => inst.preempt_delay = secs_range(st, 0.0, 1000.0)?,
            "authentication" => {
                let (mut kind, mut pass) = (None, None);
                for a in block(st)? {
                    match a.keyword.as_str() {
                        "auth_type" => kind = Some(one(a)?.to_string()),
                        "auth_pass" => pass = Some(one(a)?.to_string()),
                        _ => self.unknown(a, "authentication"),
                    }
                    if a.args.len() > 1 {
                        self.warn(
                            a,
                            "extra words after the value ignored (one keyword per line)",
                        );
                    }
                }
                pend.auth = Some((kind, pass, st.loc.clone()));
            }
            "unicast_src_ip" => inst.unicast_src_ip = Some(ipv4(st, one(st)?)?),
            "unicast_peer" => {
                for p in block(st)? {
                    inst.unicast_peers.push(ipv4(p, &p.keyword)?);
                    if !p.args.is_empty() {
                        self.warn(
                            p,
                            "unicast_peer options (min_ttl, max_ttl) are not supported, ignored",
                        );
                    }
                }
            }
            "track_script" => {
                for t in block(st)? {
                    let weight = match t.args.first().map(String::as_str) {
                        None => None,
                        Some("weight") => {
                            let w = t.args.get(1).ok_or_else(|| Error {
                                loc: t.loc.clone(),
                                msg: "weight needs a number".into(),
                            })?;
                            if t.args.get(2).map(String::as_str) == Some("reverse") {
                                return err(t, "weight ... reverse is not supported yet");
                            }
                            Some(parse_int(t, w, -253, 253)?)
                        }
                        Some(o) => {
                            return err(t, format!("unexpected '{o}' after track_script name"))
                        }
                    };
                    inst.track_scripts.push(TrackScript {
                        name: t.keyword.clone(),
                        weight,
                    });
                }
            }
            "track_interface" => {
                for t in block(st)? {
                    let weight = match t.args.first().map(String::as_str) {
                        None => 0,
                        Some("weight") => match t.args.get(1) {
                            Some(w) => parse_int(t, w, -253, 253)?,
                            None => return err(t, "weight needs a number"),
                        },
                        Some(o) => return err(t, format!("unexpected '{o}' after interface name")),
                    };
                    inst.track_interfaces.push(TrackInterface {
                        name: t.keyword.clone(),
                        weight,
                    });
                }
            }
            "virtual_ipaddress" => {
                for v in block(st)? {
                    inst.vips.push(self.vip(v)?);
                }
            }
            "virtual_ipaddress_excluded" => {
                for v in block(st)? {
                    inst.excluded_vips.push(self.vip(v)?);
                }
            }
            "notify_master" => inst.notify_master = Some(self.notify(st)?),
            "notify_backup" => inst.notify_backup = Some(self.notify(st)?),
            "notify_fault" => inst.notify_fault = Some(self.notify(st)?),
            "notify_stop" => inst.notify_stop = Some(self.notify(st)?),
            "notify" => inst.notify = Some(self.notify(st)?),
            "garp_master_delay" => {
                pend.garp_delay = Some(Duration::from_secs(num(st, 0, 3600)?.into()))
            }
            "garp_master_repeat" => pend.garp_repeat = Some(num(st, 1, 1000)?),
            "dont_track_primary" => {}
            "smtp_alert" => self.warn(st, "smtp_alert has no effect (no e-mail alerts)"),
            _ => self.unknown(st, "vrrp_instance"),
        }
        Ok(())
    }

    fn notify(&mut self, st: &Stmt) -> R<String> {
        let cmd = one(st)?.to_string();
        if st.args.len() > 1 {
            self.warn(
                st,
                "notify script user/group is not supported, the script runs as script_user",
            );
        }
        Ok(cmd)
    }

    fn vip(&mut self, v: &Stmt) -> R<Vip> {
        let (addr_s, prefix_s) = match v.keyword.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (v.keyword.as_str(), None),
        };
        let addr = match addr_s.parse::<IpAddr>() {
            Ok(IpAddr::V4(a)) => a,
            Ok(IpAddr::V6(_)) => return err(v, "IPv6 virtual addresses are not supported yet"),
            Err(_) => return err(v, format!("'{}' is not an IP address", v.keyword)),
        };
        let prefix = match prefix_s {
            None => 32,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= 32 => n,
                _ => return err(v, format!("bad prefix length '/{p}'")),
            },
        };
        let mut vip = Vip {
            addr,
            prefix,
            dev: None,
            label: None,
        };
        let mut it = v.args.iter();
        while let Some(k) = it.next() {
            let val = it.next();
            match (k.as_str(), val) {
                ("dev", Some(d)) => vip.dev = Some(d.clone()),
                ("label", Some(l)) => {
                    if l.len() > 15 {
                        return err(v, format!("label '{l}' longer than 15 characters"));
                    }
                    vip.label = Some(l.clone());
                }
                ("brd" | "scope" | "broadcast", Some(_)) => self.warn(
                    v,
                    format_args!("virtual_ipaddress option '{k}' is not supported, ignored"),
                ),
                (k, _) => return err(v, format!("unexpected '{k}' in virtual_ipaddress entry")),
            }
        }
        Ok(vip)
    }

    fn validate(&mut self) -> R<()> {
        let insts = self.config.instances.clone();
        for (i, a) in insts.iter().enumerate() {
            let here = Stmt {
                keyword: String::new(),
                args: vec![],
                block: None,
                loc: a.loc.clone(),
            };
            for b in &insts[..i] {
                if a.name == b.name {
                    return err(&here, format!("vrrp_instance {} defined twice", a.name));
                }
                if a.interface == b.interface && a.vrid == b.vrid {
                    return err(
                        &here,
                        format!(
                            "vrrp_instance {} uses the same interface and virtual_router_id as {}",
                            a.name, b.name
                        ),
                    );
                }
            }
            for t in &a.track_scripts {
                if !self.config.scripts.iter().any(|s| s.name == t.name) {
                    return err(
                        &here,
                        format!(
                            "vrrp_instance {}: track_script '{}' is not defined",
                            a.name, t.name
                        ),
                    );
                }
            }
            if a.priority == 255
                && (!a.track_scripts.is_empty() || a.track_interfaces.iter().any(|t| t.weight != 0))
            {
                self.warnings.push(format!(
                    "{}: (vrrp_instance {}) priority 255: tracking weights do not change an address owner's priority",
                    a.loc, a.name
                ));
            }
            if a.vips.is_empty() {
                self.warnings.push(format!(
                    "{}: (vrrp_instance {}) has no virtual_ipaddress",
                    a.loc, a.name
                ));
            }
        }
        let groups = self.config.sync_groups.clone();
        for (gi, g) in groups.iter().enumerate() {
            for m in &g.members {
                if !insts.iter().any(|i| &i.name == m) {
                    return Err(Error {
                        loc: g.loc.clone(),
                        msg: format!(
                            "vrrp_sync_group {}: member '{m}' is not a vrrp_instance",
                            g.name
                        ),
                    });
                }
                if let Some(other) = groups[..gi].iter().find(|o| o.members.contains(m)) {
                    return Err(Error {
                        loc: g.loc.clone(),
                        msg: format!(
                            "vrrp_sync_group {}: instance {m} is already in sync group {}",
                            g.name, other.name
                        ),
                    });
                }
            }
            if g.members.len() < 2 {
                self.warnings.push(format!(
                    "{}: vrrp_sync_group {} has fewer than 2 members",
                    g.loc, g.name
                ));
            }
        }
        Ok(())
    }
}

fn block(s: &Stmt) -> R<&[Stmt]> {
    match &s.block {
        Some(b) => Ok(b),
        None => err(s, format!("'{}' needs a {{ ... }} block", s.keyword)),
    }
}

fn one(s: &Stmt) -> R<&str> {
    match s.args.first() {
        Some(a) => Ok(a),
        None => err(s, format!("'{}' needs a value", s.keyword)),
    }
}

fn num(s: &Stmt, lo: u32, hi: u32) -> R<u32> {
    let v = one(s)?;
    match v.parse::<u32>() {
        Ok(n) if (lo..=hi).contains(&n) => Ok(n),
        _ => err(
            s,
            format!("{} must be an integer in {lo}..={hi}, not '{v}'", s.keyword),
        ),
    }
}

fn parse_int(s: &Stmt, v: &str, lo: i32, hi: i32) -> R<i32> {
    match v.parse::<i32>() {
        Ok(n) if (lo..=hi).contains(&n) => Ok(n),
        _ => err(
            s,
            format!("weight must be an integer in {lo}..={hi}, not '{v}'"),
        ),
    }
}

fn int(s: &Stmt, lo: i32, hi: i32) -> R<i32> {
    parse_int(s, one(s)?, lo, hi)
}

fn version(s: &Stmt) -> R<u8> {
    match one(s)? {
        "2" => Ok(2),
        "3" => Ok(3),
        o => err(s, format!("VRRP version must be 2 or 3, not '{o}'")),
    }
}

fn secs_range(s: &Stmt, lo: f64, hi: f64) -> R<Duration> {
    let v = one(s)?;
    match v.parse::<f64>() {
        Ok(n) if n.is_finite() && n >= lo && n <= hi => Ok(Duration::from_secs_f64(n)),
        _ => err(
            s,
            format!(
                "{} must be a number of seconds in {lo}..={hi}, not '{v}'",
                s.keyword
            ),
        ),
    }
}

fn secs(s: &Stmt) -> R<Duration> {
    let d = secs_range(s, 0.0, 86_400.0)?;
    if d.is_zero() {
        return err(s, format!("{} must be greater than 0", s.keyword));
    }
    Ok(d)
}

fn ipv4(s: &Stmt, v: &str) -> R<Ipv4Addr> {
    match v.parse::<IpAddr>() {
        Ok(IpAddr::V4(a)) => Ok(a),
        Ok(IpAddr::V6(_)) => err(s, "IPv6 is not supported yet"),
        Err(_) => err(s, format!("'{v}' is not an IPv4 address")),
    }
}

/// advert_int → centiseconds. v2 carries whole seconds (1–255); v3 centiseconds (1–4095).
fn advert_cs(text: &str, version: u8, loc: &Loc, warnings: &mut Vec<String>) -> R<u16> {
    let bad = |msg: String| Error {
        loc: loc.clone(),
        msg,
    };
    let secs: f64 = text
        .parse()
        .ok()
        .filter(|v: &f64| v.is_finite() && *v > 0.0)
        .ok_or_else(|| {
            bad(format!(
                "advert_int must be a positive number of seconds, not '{text}'"
            ))
        })?;
    if version == 2 {
        let whole = secs.ceil();
        if whole > 255.0 {
            return Err(bad(
                "advert_int must be at most 255 seconds for VRRPv2".into()
            ));
        }
        if whole != secs {
            warnings.push(format!(
                "{loc}: advert_int {text}: VRRPv2 only carries whole seconds, using {whole} \
                 (set vrrp_version 3 for sub-second adverts)"
            ));
        }
        Ok((whole as u16) * 100)
    } else {
        let cs = (secs * 100.0).round();
        if !(1.0..=4095.0).contains(&cs) {
            return Err(bad(format!(
                "advert_int {text} out of range for VRRPv3 (0.01..=40.95)"
            )));
        }
        Ok(cs as u16)
    }
}

#[cfg(test)]
mod tests;
