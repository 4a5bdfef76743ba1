//! The validated configuration: what `warren vrrp` will actually run.
//!
//! Owns: the typed form of a keepalived file after parsing and validation. Guarantees: every value
//! here is already range-checked (VRID 1–255, priority 1–255, advert interval representable on
//! the wire for the instance's VRRP version, auth password ≤ 8 octets, every `track_script`
//! names a defined `vrrp_script`), so the protocol code never re-validates.

use std::net::Ipv4Addr;
use std::time::Duration;

use super::lexer::Loc;

#[derive(Debug, Clone, Default)]
pub struct Config {
    pub global: GlobalDefs,
    pub scripts: Vec<VrrpScript>,
    pub instances: Vec<Instance>,
    pub sync_groups: Vec<SyncGroup>,
}

#[derive(Debug, Clone)]
pub struct GlobalDefs {
    pub router_id: Option<String>,
    pub enable_script_security: bool,
    pub script_user: Option<String>,
    /// Default VRRP version for instances that do not say `version` themselves (keepalived: 2).
    pub vrrp_version: u8,
}

impl Default for GlobalDefs {
    fn default() -> Self {
        GlobalDefs {
            router_id: None,
            enable_script_security: false,
            script_user: None,
            vrrp_version: 2,
        }
    }
}

#[derive(Debug, Clone)]
pub struct VrrpScript {
    pub name: String,
    pub script: String,
    pub interval: Duration,
    /// keepalived: defaults to the interval.
    pub timeout: Duration,
    pub weight: i32,
    pub fall: u32,
    pub rise: u32,
    pub user: Option<String>,
    pub loc: Loc,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitialState {
    Master,
    Backup,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackScript {
    pub name: String,
    /// Overrides the script's own weight for this instance (`track_script { chk weight -20 }`).
    pub weight: Option<i32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackInterface {
    pub name: String,
    /// keepalived: 0 (the default) means "down → FAULT"; otherwise added/subtracted like a script.
    pub weight: i32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vip {
    pub addr: Ipv4Addr,
    pub prefix: u8,
    /// `dev IF`: defaults to the instance's interface.
    pub dev: Option<String>,
    pub label: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Instance {
    pub name: String,
    pub loc: Loc,
    pub state: InitialState,
    pub interface: String,
    pub vrid: u8,
    pub priority: u8,
    pub version: u8,
    /// Advertisement interval in centiseconds (v2 only ever carries whole seconds).
    pub advert_int_cs: u16,
    pub preempt: bool,
    pub preempt_delay: Duration,
    /// `auth_type PASS` password, zero padded to the 8 octets that go on the wire (v2 only).
    pub auth_pass: Option<[u8; 8]>,
    pub unicast_src_ip: Option<Ipv4Addr>,
    pub unicast_peers: Vec<Ipv4Addr>,
    pub track_scripts: Vec<TrackScript>,
    pub track_interfaces: Vec<TrackInterface>,
    pub vips: Vec<Vip>,
    /// `virtual_ipaddress_excluded`: added and removed with the others, never advertised.
    pub excluded_vips: Vec<Vip>,
    pub notify_master: Option<String>,
    pub notify_backup: Option<String>,
    pub notify_fault: Option<String>,
    pub notify_stop: Option<String>,
    pub notify: Option<String>,
    pub garp_master_delay: Duration,
    pub garp_master_repeat: u32,
}

impl Instance {
    pub fn advert_int(&self) -> Duration {
        Duration::from_millis(u64::from(self.advert_int_cs) * 10)
    }
}

#[derive(Debug, Clone)]
pub struct SyncGroup {
    pub name: String,
    pub members: Vec<String>,
    pub notify_master: Option<String>,
    pub notify_backup: Option<String>,
    pub notify_fault: Option<String>,
    /// Called with `GROUP NAME STATE PRIORITY`.
    pub notify: Option<String>,
    pub loc: Loc,
}
