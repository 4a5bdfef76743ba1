//! One VRRP instance: the RFC 3768 / RFC 5798 state machine and its side effects.
//!
//! Owns: the INIT/BACKUP/MASTER/FAULT state of one `vrrp_instance`, its timers (advertisement
//! timer as MASTER, master-down timer = 3 × advert interval + skew as BACKUP), receive-side
//! validation (TTL 255, version, VRID, v2 authentication and interval, unicast peer list),
//! preemption (`nopreempt`, `preempt_delay`), equal-priority tie-break on the higher primary
//! address, and the actions of each transition (adverts, VIP add/remove, gratuitous ARP, notify
//! scripts). Guarantees: VIPs are held only in MASTER state (removed on every exit from MASTER,
//! including shutdown, where a priority-0 advert is sent first so the backup takes over after
//! its skew time instead of the full master-down interval); invalid packets are dropped with a
//! rate-limited log line (at most one per second per instance); no input can panic it.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{sleep_until, Instant};
use tracing::{debug, info, warn};

use crate::arp;
use crate::config::model::{Instance, Vip};
use crate::iface;
use crate::netlink::Netlink;
use crate::packet::{parse_ipv4, Advert, AUTH_NONE, AUTH_PASS, IPPROTO_VRRP, VRRP_GROUP};
use crate::socket::VrrpSocket;
use crate::sync_group::{GroupRt, Membership};
use crate::track::{effective_priority, notify, Effective, TrackState};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Init,
    Backup,
    Master,
    Fault,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Init => "INIT",
            State::Backup => "BACKUP",
            State::Master => "MASTER",
            State::Fault => "FAULT",
        }
    }
}

/// How an instance task is asked to end.
pub enum Stop {
    /// Daemon exit: MASTER sends priority 0 and releases its VIPs.
    Shutdown,
    /// Reload: keep the VIPs that the new configuration still lists (the successor resumes
    /// MASTER without a gap); release the others.
    Handover { keep: Vec<Vip> },
}

/// What a stopped task tells its successor.
pub struct Outcome {
    pub was_master: bool,
}

pub struct InstanceHandle {
    pub name: String,
    pub cmd: mpsc::Sender<(Stop, oneshot::Sender<Outcome>)>,
}

pub struct Setup {
    pub cfg: Instance,
    pub nl: Netlink,
    pub script_user: Option<String>,
    /// (weight, state) of every tracked script, weights already resolved.
    pub scripts: Vec<(i32, watch::Receiver<TrackState>)>,
    pub wake: mpsc::Receiver<()>,
    pub resume_master: bool,
    pub group: Option<Membership>,
}

/// At most one log line per second per instance for dropped packets.
struct RateLog {
    last: Option<Instant>,
    suppressed: u32,
}

impl RateLog {
    fn allow(&mut self) -> Option<u32> {
        let now = Instant::now();
        match self.last {
            Some(t) if now.duration_since(t) < Duration::from_secs(1) => {
                self.suppressed = self.suppressed.saturating_add(1);
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

struct Vrrp {
    cfg: Instance,
    nl: Netlink,
    script_user: Option<String>,
    src: Ipv4Addr,
    sock: Arc<VrrpSocket>,
    scripts: Vec<(i32, watch::Receiver<TrackState>)>,
    iface_states: Vec<TrackState>,
    own_up: bool,
    state: State,
    eff: Effective,
    deadline: Instant,
    master_adv_cs: u16,
    preempt_since: Option<Instant>,
    garp_at: Option<Instant>,
    drops: RateLog,
    lower: RateLog,
    group: Option<Arc<GroupRt>>,
    /// Set while obeying a sync-group order, so the transition is not broadcast back.
    forced: bool,
}

fn far() -> Instant {
    Instant::now() + Duration::from_secs(86_400 * 365)
}

fn cs(v: f64) -> Duration {
    Duration::from_secs_f64(v / 100.0)
}

/// Starts the instance task. Fails (with a message for the operator) when the interface is
/// missing or has no IPv4 address, or the raw sockets cannot be opened.
pub fn spawn(setup: Setup) -> Result<InstanceHandle, String> {
    let cfg = setup.cfg;
    let name = cfg.name.clone();
    let info = iface::lookup(&cfg.interface)
        .ok_or_else(|| format!("({name}) interface {} does not exist", cfg.interface))?;
    let vip_addrs: Vec<Ipv4Addr> = cfg
        .vips
        .iter()
        .chain(&cfg.excluded_vips)
        .map(|v| v.addr)
        .collect();
    let src = match cfg.unicast_src_ip {
        Some(a) => a,
        None => info
            .ipv4
            .iter()
            .copied()
            .find(|a| !vip_addrs.contains(a))
            .ok_or_else(|| format!("({name}) interface {} has no IPv4 address", cfg.interface))?,
    };
    let sock = VrrpSocket::open(&cfg.interface, info.index, cfg.unicast_peers.is_empty()).map_err(
        |e| {
            format!(
                "({name}) cannot open VRRP sockets on {}: {e}",
                cfg.interface
            )
        },
    )?;
    let (tx, rx) = mpsc::channel(1);
    let (group, orders) = match setup.group {
        Some(m) => (Some(m.group), Some(m.orders)),
        None => (None, None),
    };
    let v = Vrrp {
        src,
        sock: Arc::new(sock),
        scripts: setup.scripts,
        iface_states: vec![TrackState::Unknown; cfg.track_interfaces.len()],
        own_up: info.up,
        state: State::Init,
        eff: Effective {
            priority: cfg.priority,
            fault: false,
        },
        deadline: far(),
        master_adv_cs: cfg.advert_int_cs,
        preempt_since: None,
        garp_at: None,
        drops: RateLog {
            last: None,
            suppressed: 0,
        },
        lower: RateLog {
            last: None,
            suppressed: 0,
        },
        nl: setup.nl,
        script_user: setup.script_user,
        group,
        forced: false,
        cfg,
    };
    tokio::spawn(v.run(rx, setup.wake, orders, setup.resume_master));
    Ok(InstanceHandle { name, cmd: tx })
}

impl Vrrp {
    fn tag(&self) -> String {
        format!("({})", self.cfg.name)
    }

    async fn run(
        mut self,
        mut cmd: mpsc::Receiver<(Stop, oneshot::Sender<Outcome>)>,
        mut wake: mpsc::Receiver<()>,
        mut orders: Option<mpsc::Receiver<State>>,
        resume_master: bool,
    ) {
        self.refresh_tracking();
        self.eff = self.compute();
        if self.eff.fault {
            self.enter_fault().await;
        } else if self.cfg.priority == 255 || resume_master {
            self.enter_master().await;
        } else {
            // A VIP left behind by a crashed predecessor must not stay up while we are BACKUP.
            self.release_vips(&[]).await;
            self.enter_backup("(init)").await;
        }
        let sock = self.sock.clone();
        let mut buf = vec![0u8; 2048];
        let mut poll = tokio::time::interval(Duration::from_millis(100));
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let garp_at = self.garp_at.unwrap_or_else(far);
            tokio::select! {
                r = sock.recv(&mut buf) => match r {
                    Ok(n) => {
                        let pkt = buf[..n.min(buf.len())].to_vec();
                        self.on_packet(&pkt).await;
                    }
                    Err(e) => {
                        self.drop_log(format!("receive error: {e}"));
                        // A persistent error (interface gone) must not turn into a busy loop.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                _ = sleep_until(self.deadline) => self.on_timer().await,
                _ = sleep_until(garp_at) => {
                    self.garp_at = None;
                    if self.state == State::Master {
                        self.send_garps();
                    }
                }
                Some(()) = wake.recv() => self.reevaluate().await,
                Some(order) = async {
                    match orders.as_mut() {
                        Some(o) => o.recv().await,
                        None => std::future::pending().await,
                    }
                } => self.on_order(order).await,
                _ = poll.tick() => {
                    if self.refresh_tracking() {
                        self.reevaluate().await;
                    }
                }
                c = cmd.recv() => {
                    let (stop, reply) = match c {
                        Some(c) => c,
                        None => (Stop::Shutdown, oneshot::channel().0),
                    };
                    let was_master = self.state == State::Master;
                    match stop {
                        Stop::Shutdown => self.shutdown().await,
                        Stop::Handover { keep } => self.release_vips(&keep).await,
                    }
                    let _ = reply.send(Outcome { was_master });
                    return;
                }
            }
        }
    }

    /// Re-reads interface states; true when anything changed.
    fn refresh_tracking(&mut self) -> bool {
        let mut changed = false;
        let own = iface::lookup(&self.cfg.interface)
            .map(|i| i.up)
            .unwrap_or(false);
        if own != self.own_up {
            self.own_up = own;
            changed = true;
        }
        for (i, t) in self.cfg.track_interfaces.iter().enumerate() {
            let s = match iface::lookup(&t.name) {
                Some(info) if info.up => TrackState::Ok,
                _ => TrackState::Failed,
            };
            if self.iface_states[i] != s {
                if self.iface_states[i] != TrackState::Unknown || s == TrackState::Failed {
                    info!(
                        "{} tracked interface {} is {}",
                        self.tag(),
                        t.name,
                        if s == TrackState::Ok { "UP" } else { "DOWN" }
                    );
                }
                self.iface_states[i] = s;
                changed = true;
            }
        }
        changed
    }

    fn compute(&self) -> Effective {
        let mut tracks: Vec<(i32, TrackState)> = self
            .scripts
            .iter()
            .map(|(w, rx)| (*w, *rx.borrow()))
            .collect();
        tracks.extend(
            self.cfg
                .track_interfaces
                .iter()
                .zip(&self.iface_states)
                .map(|(t, s)| (t.weight, *s)),
        );
        let mut e = effective_priority(self.cfg.priority, &tracks);
        if !self.own_up {
            e.fault = true;
        }
        e
    }

    async fn reevaluate(&mut self) {
        let new = self.compute();
        let old = self.eff;
        self.eff = new;
        if new.priority != old.priority {
            info!(
                "{} Changing effective priority from {} to {}",
                self.tag(),
                old.priority,
                new.priority
            );
            if self.state == State::Master {
                // Tell the backup at once, so a now-higher backup can preempt without waiting.
                self.send_advert(new.priority);
            }
        }
        match (self.state, new.fault) {
            (State::Fault, false) => {
                if self
                    .group
                    .as_ref()
                    .is_some_and(|g| g.other_member_faulty(&self.cfg.name))
                {
                    // Our own fault is gone but the group's is not: stay in FAULT with it.
                    self.sync_record(State::Fault, false);
                    return;
                }
                info!("{} Leaving FAULT state", self.tag());
                if self.cfg.priority == 255 {
                    self.enter_master().await;
                } else {
                    self.enter_backup("").await;
                }
            }
            (State::Fault, true) => self.sync_record(State::Fault, false),
            (_, true) => self.enter_fault().await,
            _ => {}
        }
    }

    fn adv_interval(&self) -> Duration {
        cs(f64::from(self.cfg.advert_int_cs))
    }

    /// RFC 3768: skew = (256 − priority) / 256 s. RFC 5798: (256 − priority) × Master_Adver_Interval / 256.
    fn skew(&self) -> Duration {
        let p = f64::from(256 - u16::from(self.eff.priority));
        if self.cfg.version == 2 {
            Duration::from_secs_f64(p / 256.0)
        } else {
            cs(p * f64::from(self.master_adv_cs) / 256.0)
        }
    }

    fn master_down(&self) -> Duration {
        let adv = if self.cfg.version == 2 {
            self.adv_interval()
        } else {
            cs(f64::from(self.master_adv_cs))
        };
        adv * 3 + self.skew()
    }

    fn advert(&self, priority: u8) -> Advert {
        let (auth_type, auth_data) = match self.cfg.auth_pass {
            Some(p) if self.cfg.version == 2 => (AUTH_PASS, p),
            _ => (AUTH_NONE, [0; 8]),
        };
        Advert {
            version: self.cfg.version,
            vrid: self.cfg.vrid,
            priority,
            interval_cs: self.cfg.advert_int_cs,
            auth_type,
            auth_data,
            addrs: self.cfg.vips.iter().map(|v| v.addr).collect(),
        }
    }

    fn send_advert(&mut self, priority: u8) {
        let adv = self.advert(priority);
        let dsts: Vec<Ipv4Addr> = if self.cfg.unicast_peers.is_empty() {
            vec![VRRP_GROUP]
        } else {
            self.cfg.unicast_peers.clone()
        };
        for dst in dsts {
            let bytes = adv.encode(self.src, dst);
            if let Err(e) = self.sock.send(self.src, dst, &bytes) {
                self.drop_log(format!("cannot send advert to {dst}: {e}"));
            }
        }
    }

    fn drop_log(&mut self, msg: String) {
        if let Some(n) = self.drops.allow() {
            let more = if n > 0 {
                format!(" ({n} similar suppressed)")
            } else {
                String::new()
            };
            warn!("{} {msg}{more}", self.tag());
        }
    }

    async fn on_timer(&mut self) {
        match self.state {
            State::Backup => {
                info!("{} Receive advertisement timeout", self.tag());
                self.enter_master().await;
            }
            State::Master => {
                self.send_advert(self.eff.priority);
                self.deadline = Instant::now() + self.adv_interval();
            }
            State::Init | State::Fault => self.deadline = far(),
        }
    }

    async fn on_packet(&mut self, pkt: &[u8]) {
        let Some(ip) = parse_ipv4(pkt) else {
            return self.drop_log("dropped packet: malformed IPv4 header".to_string());
        };
        if ip.protocol != IPPROTO_VRRP || ip.src == self.src {
            return;
        }
        let Some(payload) = pkt.get(ip.header_len..ip.total_len) else {
            return self.drop_log(format!("dropped packet from {}: truncated", ip.src));
        };
        let adv = match Advert::decode(payload, ip.src, ip.dst) {
            Ok(a) => a,
            Err(why) => return self.drop_log(format!("dropped packet from {}: {why}", ip.src)),
        };
        if adv.vrid != self.cfg.vrid {
            return; // another virtual router on the same link
        }
        if ip.ttl != 255 {
            return self.drop_log(format!(
                "dropped advert from {}: TTL {} != 255",
                ip.src, ip.ttl
            ));
        }
        if adv.version != self.cfg.version {
            return self.drop_log(format!(
                "dropped advert from {}: VRRP version {} (ours {})",
                ip.src, adv.version, self.cfg.version
            ));
        }
        if !self.cfg.unicast_peers.is_empty() && !self.cfg.unicast_peers.contains(&ip.src) {
            return self.drop_log(format!(
                "dropped advert from {}: not a unicast_peer",
                ip.src
            ));
        }
        if self.cfg.version == 2 {
            let ok = match self.cfg.auth_pass {
                Some(p) => adv.auth_type == AUTH_PASS && adv.auth_data == p,
                None => adv.auth_type == AUTH_NONE,
            };
            if !ok {
                return self.drop_log(format!(
                    "dropped advert from {}: authentication mismatch (received an invalid passwd or auth type {})",
                    ip.src, adv.auth_type
                ));
            }
            if adv.interval_cs != self.cfg.advert_int_cs {
                return self.drop_log(format!(
                    "dropped advert from {}: advert interval {}s differs from ours {}s",
                    ip.src,
                    adv.interval_cs / 100,
                    self.cfg.advert_int_cs / 100
                ));
            }
        }
        let now = Instant::now();
        let ours = self.eff.priority;
        match self.state {
            State::Backup => {
                if adv.priority == 0 {
                    info!("{} Backup received priority 0 advertisement", self.tag());
                    self.deadline = now + self.skew();
                } else if !self.cfg.preempt || adv.priority >= ours {
                    self.master_adv_cs = adv.interval_cs.max(1);
                    self.deadline = now + self.master_down();
                    self.preempt_since = None;
                } else {
                    if !self.cfg.preempt_delay.is_zero() {
                        let since = *self.preempt_since.get_or_insert(now);
                        if now < since + self.cfg.preempt_delay {
                            self.deadline = now + self.master_down();
                            return;
                        }
                    }
                    if let Some(n) = self.lower.allow() {
                        info!(
                            "{} received lower priority advert from {} (priority {}, ours {}), preempting{}",
                            self.tag(), ip.src, adv.priority, ours,
                            if n > 0 { format!(" ({n} similar suppressed)") } else { String::new() }
                        );
                    }
                    // Not resetting the master-down timer is how RFC preemption works.
                }
            }
            State::Master => {
                if adv.priority == 0 {
                    self.send_advert(ours);
                    self.deadline = now + self.adv_interval();
                } else if adv.priority > ours
                    || (adv.priority == ours && u32::from(ip.src) > u32::from(self.src))
                {
                    if adv.priority == ours {
                        info!(
                            "{} Master received advert from {} with equal priority {} and a higher address, ours {}",
                            self.tag(),
                            ip.src,
                            adv.priority,
                            self.src
                        );
                    } else {
                        info!(
                            "{} Master received advert from {} with higher priority {}, ours {}",
                            self.tag(),
                            ip.src,
                            adv.priority,
                            ours
                        );
                    }
                    self.master_adv_cs = adv.interval_cs.max(1);
                    self.enter_backup("").await;
                } else {
                    if self.lower.allow().is_some() {
                        info!(
                            "{} received lower priority advert from {} (priority {}, ours {}), forcing new election",
                            self.tag(), ip.src, adv.priority, ours
                        );
                    }
                    self.send_advert(ours);
                    self.deadline = now + self.adv_interval();
                }
            }
            State::Init | State::Fault => {}
        }
    }

    fn notify_state(&self, state: State) {
        let script = match state {
            State::Master => &self.cfg.notify_master,
            State::Backup => &self.cfg.notify_backup,
            State::Fault => &self.cfg.notify_fault,
            State::Init => &None,
        };
        let user = self.script_user.as_deref();
        if let Some(s) = script {
            notify(s, &[], user);
        }
        if let Some(s) = &self.cfg.notify {
            let args = [
                "INSTANCE".to_string(),
                self.cfg.name.clone(),
                state.name().to_string(),
                self.eff.priority.to_string(),
            ];
            notify(s, &args, user);
        }
    }

    async fn enter_master(&mut self) {
        info!("{} Entering MASTER STATE", self.tag());
        self.state = State::Master;
        self.preempt_since = None;
        self.send_advert(self.eff.priority);
        self.deadline = Instant::now() + self.adv_interval();
        info!("{} setting VIPs.", self.tag());
        for v in self
            .cfg
            .vips
            .clone()
            .iter()
            .chain(&self.cfg.excluded_vips.clone())
        {
            let Some((idx, _)) = self.vip_dev(v) else {
                continue;
            };
            if let Err(e) = self.nl.add(idx, v.addr, v.prefix, v.label.as_deref()).await {
                warn!("{} {e}", self.tag());
            }
        }
        self.send_garps();
        if !self.cfg.garp_master_delay.is_zero() {
            self.garp_at = Some(Instant::now() + self.cfg.garp_master_delay);
        }
        self.notify_state(State::Master);
        self.sync_record(State::Master, !self.forced);
    }

    fn vip_dev(&self, v: &Vip) -> Option<(u32, [u8; 6])> {
        let dev = v.dev.as_deref().unwrap_or(&self.cfg.interface);
        match iface::lookup(dev) {
            Some(i) => Some((i.index, i.mac)),
            None => {
                warn!(
                    "{} interface {dev} for VIP {} does not exist",
                    self.tag(),
                    v.addr
                );
                None
            }
        }
    }

    fn send_garps(&self) {
        for v in self.cfg.vips.iter().chain(&self.cfg.excluded_vips) {
            let Some((idx, mac)) = self.vip_dev(v) else {
                continue;
            };
            let dev = v.dev.as_deref().unwrap_or(&self.cfg.interface);
            info!(
                "{} Sending/queueing gratuitous ARPs on {dev} for {}",
                self.tag(),
                v.addr
            );
            for _ in 0..self.cfg.garp_master_repeat {
                if let Err(e) = arp::send_garps(idx, mac, &[v.addr]) {
                    warn!("{} gratuitous ARP for {} failed: {e}", self.tag(), v.addr);
                    break;
                }
            }
        }
    }

    /// Removes every VIP of this instance except those in `keep`.
    async fn release_vips(&mut self, keep: &[Vip]) {
        for v in self
            .cfg
            .vips
            .clone()
            .iter()
            .chain(&self.cfg.excluded_vips.clone())
        {
            if keep
                .iter()
                .any(|k| k.addr == v.addr && k.prefix == v.prefix && k.dev == v.dev)
            {
                continue;
            }
            let Some((idx, _)) = self.vip_dev(v) else {
                continue;
            };
            if let Err(e) = self.nl.del(idx, v.addr, v.prefix).await {
                warn!("{} {e}", self.tag());
            }
        }
    }

    async fn enter_backup(&mut self, why: &str) {
        let was_master = self.state == State::Master;
        let sep = if why.is_empty() { "" } else { " " };
        info!("{} Entering BACKUP STATE{sep}{why}", self.tag());
        self.state = State::Backup;
        self.garp_at = None;
        if was_master {
            info!("{} removing VIPs.", self.tag());
            self.release_vips(&[]).await;
        }
        self.deadline = Instant::now() + self.master_down();
        self.notify_state(State::Backup);
        self.sync_record(State::Backup, !self.forced);
    }

    async fn enter_fault(&mut self) {
        if self.state == State::Master {
            self.send_advert(0);
            self.release_vips(&[]).await;
        }
        info!("{} Entering FAULT STATE", self.tag());
        self.state = State::Fault;
        self.garp_at = None;
        self.deadline = far();
        self.notify_state(State::Fault);
        self.sync_record(State::Fault, !self.forced);
    }

    /// Tells the sync group (if any) about our state; `initiated` orders the others to follow.
    fn sync_record(&self, state: State, initiated: bool) {
        if let Some(g) = &self.group {
            let own_fault = state == State::Fault && self.compute().fault;
            g.record(
                &self.cfg.name,
                state,
                own_fault,
                initiated,
                self.eff.priority,
                self.script_user.as_deref(),
            );
        }
    }

    /// Obeys a sync-group order (another member changed state by itself).
    async fn on_order(&mut self, order: State) {
        self.forced = true;
        match (order, self.state) {
            (State::Master, State::Backup) => self.enter_master().await,
            (State::Backup, State::Master) => self.enter_backup("(sync group)").await,
            (State::Backup, State::Fault) if !self.compute().fault => {
                self.enter_backup("(sync group)").await
            }
            (State::Fault, s) if s != State::Fault => self.enter_fault().await,
            _ => {}
        }
        self.forced = false;
    }

    async fn shutdown(&mut self) {
        if self.state == State::Master {
            self.send_advert(0);
            info!("{} sent 0 priority", self.tag());
            self.release_vips(&[]).await;
        }
        let user = self.script_user.as_deref();
        if let Some(s) = &self.cfg.notify_stop {
            notify(s, &[], user);
        }
        if let Some(s) = &self.cfg.notify {
            let args = [
                "INSTANCE".to_string(),
                self.cfg.name.clone(),
                "STOP".to_string(),
                self.eff.priority.to_string(),
            ];
            notify(s, &args, user);
        }
        debug!("{} stopped", self.tag());
    }
}
