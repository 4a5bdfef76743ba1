//! Checks that need the whole configuration: proxy name clashes, backend references, bind
//! clashes, HTTP mode only for the stats page, and HAProxy's "missing timeouts" warning.

use super::model::*;
use super::Diagnostics;
use std::collections::HashMap;

pub fn validate(cfg: &mut Config, d: &mut Diagnostics) {
    let mut fe_names: HashMap<String, usize> = HashMap::new();
    let mut be_names: HashMap<String, usize> = HashMap::new();
    for (i, p) in cfg.proxies.iter().enumerate() {
        if p.kind.has_frontend() {
            if let Some(&j) = fe_names.get(&p.name) {
                d.error(
                    &p.loc,
                    format!(
                        "{} '{}' has the same name as the proxy declared at {}",
                        p.kind.name(),
                        p.name,
                        cfg.proxies[j].loc
                    ),
                );
            }
            fe_names.insert(p.name.clone(), i);
        }
        if p.kind.has_backend() {
            if let Some(&j) = be_names.get(&p.name) {
                d.error(
                    &p.loc,
                    format!(
                        "{} '{}' has the same name as the proxy declared at {}",
                        p.kind.name(),
                        p.name,
                        cfg.proxies[j].loc
                    ),
                );
            }
            be_names.insert(p.name.clone(), i);
        }
    }

    let mut binds: HashMap<std::net::SocketAddr, Loc> = HashMap::new();
    for i in 0..cfg.proxies.len() {
        let p = &cfg.proxies[i];
        for b in &p.binds {
            if let Some(prev) = binds.get(&b.addr) {
                d.error(
                    &b.loc,
                    format!("address {} is already bound at {prev}", b.addr),
                );
            } else {
                binds.insert(b.addr, b.loc.clone());
            }
        }
        if p.mode == Mode::Http && !p.stats.enabled {
            d.error(
                &p.loc,
                format!(
                    "{} '{}': 'mode http' is only supported for the stats page ('stats enable')",
                    p.kind.name(),
                    p.name
                ),
            );
        }
        if p.mode == Mode::Tcp && p.stats.enabled {
            d.warning(
                &p.loc,
                format!(
                    "{} '{}': 'stats' directives need 'mode http'; ignored in 'mode tcp'",
                    p.kind.name(),
                    p.name
                ),
            );
        }
        if p.is_stats() {
            if p.kind != ProxyKind::Listen && p.kind != ProxyKind::Frontend {
                d.error(
                    &p.loc,
                    format!(
                        "backend '{}': the stats page must be served by a 'listen' or 'frontend'",
                        p.name
                    ),
                );
            }
            if !p.servers.is_empty() {
                d.warning(
                    &p.loc,
                    format!(
                        "{} '{}': servers in the stats listener are ignored",
                        p.kind.name(),
                        p.name
                    ),
                );
            }
        }
        if p.kind.has_frontend() && p.binds.is_empty() {
            if p.kind == ProxyKind::Frontend {
                d.error(
                    &p.loc,
                    format!("frontend '{}' has no 'bind' directive", p.name),
                );
            } else {
                d.warning(
                    &p.loc,
                    format!(
                        "listen '{}' has no 'bind' directive; it only serves as a backend",
                        p.name
                    ),
                );
            }
        }
        let mut backend = None;
        if p.kind == ProxyKind::Listen && !p.is_stats() {
            backend = Some(i);
        }
        if p.kind == ProxyKind::Frontend && !p.is_stats() {
            let target = p.use_backend.as_ref().or(p.default_backend.as_ref());
            match target {
                None => d.error(
                    &p.loc,
                    format!(
                        "frontend '{}' has no 'default_backend' nor 'use_backend'",
                        p.name
                    ),
                ),
                Some(t) => match be_names.get(t) {
                    Some(&j) => backend = Some(j),
                    None => d.error(
                        &p.loc,
                        format!("frontend '{}': unknown backend '{t}'", p.name),
                    ),
                },
            }
        }
        if let Some(j) = backend {
            let b = &cfg.proxies[j];
            if b.is_stats() {
                d.error(
                    &p.loc,
                    format!(
                        "'{}' cannot use the stats listener '{}' as a backend",
                        p.name, b.name
                    ),
                );
            }
        }
        let p = &cfg.proxies[i];
        if !p.is_stats() {
            let missing: Vec<&str> = [
                (
                    p.kind.has_frontend() && p.timeouts.client.is_none(),
                    "client",
                ),
                (
                    p.kind.has_backend() && p.timeouts.connect.is_none(),
                    "connect",
                ),
                (
                    p.kind.has_backend() && p.timeouts.server.is_none(),
                    "server",
                ),
            ]
            .iter()
            .filter(|(m, _)| *m)
            .map(|(_, n)| *n)
            .collect();
            if !missing.is_empty() {
                d.warning(
                    &p.loc,
                    format!(
                        "missing timeouts for {} '{}': {} (an unlimited timeout is used)",
                        p.kind.name(),
                        p.name,
                        missing.join(", ")
                    ),
                );
            }
        }
        cfg.proxies[i].backend_index = backend;
    }
}
