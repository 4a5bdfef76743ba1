//! End-to-end VRRP tests: real `warren vrrp` (and keepalived 2.x) processes in network
//! namespaces, a client that connects to the VIP, and the kernel's own view (`ip addr`,
//! `ip neigh`). Needs root; without it every test prints a one-line reason and returns.
//! Tests run one at a time (global mutex) and clean up through `Lab::drop`.

mod support;

use std::time::Duration;

use support::{serial, Lab, VIP};

const S: Duration = Duration::from_secs(1);

/// One instance; `extra` lines go inside `vrrp_instance`, `top` before it.
fn conf(top: &str, version: u8, state: &str, prio: u8, advert: &str, extra: &str) -> String {
    format!(
        "global_defs {{\n  script_user root\n  enable_script_security\n  vrrp_version {version}\n}}\n{top}\n\
         vrrp_instance VI_1 {{\n  state {state}\n  interface eth0\n  virtual_router_id 51\n  priority {prio}\n  \
         advert_int {advert}\n{extra}\n  virtual_ipaddress {{\n    {VIP}/24 label eth0:vip\n  }}\n}}\n"
    )
}

const AUTH_1111: &str = "  authentication {\n    auth_type PASS\n    auth_pass 1111\n  }";

fn expect_master(lab: &Lab, host: &str) {
    assert!(lab.has_vip(host), "{host} should hold the VIP");
    let other = if host == "a" { "b" } else { "a" };
    assert!(!lab.has_vip(other), "{other} should not hold the VIP");
}

/// The client reaches the VIP on `host` and its ARP entry names `host`'s MAC.
fn client_follows(lab: &Lab, host: &str) -> Duration {
    let t = lab
        .probe_until(host, 5 * S)
        .unwrap_or_else(|| panic!("client never reached {host} through the VIP"));
    assert_eq!(
        lab.client_arp(),
        Some(lab.mac(host)),
        "client ARP entry for the VIP should be {host}'s MAC"
    );
    t
}

#[test]
fn master_holds_vip_stop_and_crash_fail_over_and_preempt_back() {
    let Some(_g) = serial() else { return };
    let mut lab = Lab::new("wvrt-");
    let ca = conf("", 3, "MASTER", 150, "0.2", "");
    let cb = conf("", 3, "BACKUP", 100, "0.2", "");
    let a = lab.warren("a", &ca);
    let b = lab.warren("b", &cb);
    lab.wait_for("a holds the VIP", 5 * S, |l| l.has_vip("a"));
    expect_master(&lab, "a");
    client_follows(&lab, "a");
    assert!(lab.log(a).contains("(VI_1) Entering MASTER STATE"));
    assert!(lab.log(b).contains("(VI_1) Entering BACKUP STATE"));

    // Graceful stop: priority 0 advert, VIP released, backup takes over after its skew time.
    lab.stop(a, libc::SIGTERM);
    assert!(!lab.has_vip("a"), "a released the VIP on SIGTERM");
    let t = client_follows(&lab, "b");
    println!("SIGTERM failover, client-observed: {t:?}");
    assert!(lab
        .log(b)
        .contains("(VI_1) Backup received priority 0 advertisement"));
    assert!(
        t < Duration::from_millis(500),
        "priority-0 failover took {t:?}"
    );
    expect_master(&lab, "b");

    // The original master returns and preempts.
    let a2 = lab.warren("a", &ca);
    lab.wait_for("a takes the VIP back", 5 * S, |l| {
        l.has_vip("a") && !l.has_vip("b")
    });
    client_follows(&lab, "a");
    assert!(lab
        .log(b)
        .contains("Master received advert from 198.18.0.1 with higher priority 150, ours 100"));

    // Crash: kill -9 and the host's link goes away; the backup takes over after master-down.
    lab.stop(a2, libc::SIGKILL);
    lab.link("a", false);
    let t = client_follows(&lab, "b");
    println!("crash failover, client-observed: {t:?}");
    assert!(lab.log(b).contains("(VI_1) Receive advertisement timeout"));
    // The crashed host comes back: the stale VIP is removed at start, then it preempts.
    lab.link("a", true);
    lab.warren("a", &ca);
    lab.wait_for("a takes the VIP back after crash", 5 * S, |l| {
        l.has_vip("a") && !l.has_vip("b")
    });
    client_follows(&lab, "a");
    lab.stable_master("a", S);
}

#[test]
fn nopreempt_keeps_the_current_master() {
    let Some(_g) = serial() else { return };
    let mut lab = Lab::new("wvrt-");
    lab.warren("b", &conf("", 3, "BACKUP", 100, "0.2", "  nopreempt"));
    lab.wait_for("b holds the VIP", 5 * S, |l| l.has_vip("b"));
    let a = lab.warren("a", &conf("", 3, "BACKUP", 150, "0.2", "  nopreempt"));
    lab.wait_for("a is BACKUP", 5 * S, |l| {
        l.log(a).contains("Entering BACKUP STATE")
    });
    // 2 s is more than twice a's master-down interval (0.6 s + skew).
    lab.stable_master("b", 2 * S);
    client_follows(&lab, "b");
}

#[test]
fn failing_track_script_with_negative_weight_fails_over() {
    let Some(_g) = serial() else { return };
    let mut lab = Lab::new("wvrt-");
    let flag = lab.dir.join("lb-down");
    let script = format!(
        "vrrp_script chk_lb {{\n  script \"/usr/bin/test ! -e {}\"\n  interval 0.2\n  weight -100\n  fall 1\n  rise 1\n}}",
        flag.display()
    );
    let a = lab.warren(
        "a",
        &conf(
            &script,
            3,
            "MASTER",
            150,
            "0.2",
            "  track_script {\n    chk_lb\n  }",
        ),
    );
    lab.warren("b", &conf("", 3, "BACKUP", 100, "0.2", ""));
    lab.wait_for("a holds the VIP", 5 * S, |l| l.has_vip("a"));
    client_follows(&lab, "a");
    std::fs::write(&flag, "").unwrap();
    lab.wait_for("b takes over when a's script fails", 5 * S, |l| {
        l.has_vip("b") && !l.has_vip("a")
    });
    client_follows(&lab, "b");
    assert!(
        lab.log(a)
            .contains("(VI_1) Changing effective priority from 150 to 50"),
        "{}",
        lab.log(a)
    );
    std::fs::remove_file(&flag).unwrap();
    lab.wait_for("a preempts when the script recovers", 5 * S, |l| {
        l.has_vip("a") && !l.has_vip("b")
    });
    client_follows(&lab, "a");
}

#[test]
fn advert_with_wrong_password_is_ignored() {
    let Some(_g) = serial() else { return };
    let mut lab = Lab::new("wvrt-");
    lab.warren("a", &conf("", 2, "MASTER", 150, "1", AUTH_1111));
    lab.wait_for("a holds the VIP", 6 * S, |l| l.has_vip("a"));
    // b has a lower priority: had it accepted a's adverts it would stay BACKUP.
    let b = lab.warren(
        "b",
        &conf(
            "",
            2,
            "BACKUP",
            100,
            "1",
            &AUTH_1111.replace("1111", "2222"),
        ),
    );
    lab.wait_for("b ignores a and becomes MASTER", 6 * S, |l| l.has_vip("b"));
    assert!(
        lab.log(b).contains("authentication mismatch"),
        "{}",
        lab.log(b)
    );
    // Rate limited: about one line per second, not one per packet.
    let n = lab.log(b).matches("authentication mismatch").count();
    assert!(n <= 6, "{n} drop lines");
}

#[test]
fn interop_keepalived_master_warren_backup_v2() {
    let Some(_g) = serial() else { return };
    if std::process::Command::new("keepalived")
        .arg("--version")
        .output()
        .is_err()
    {
        println!("skipping: keepalived is not installed");
        return;
    }
    let mut lab = Lab::new("wvrt-");
    // The tutorial's settings: VRRPv2, advert_int 1, PASS authentication.
    let ka_conf = conf("", 2, "MASTER", 150, "1", AUTH_1111);
    let k = lab.keepalived("a", &ka_conf);
    let w = lab.warren("b", &conf("", 2, "BACKUP", 100, "1", AUTH_1111));
    lab.wait_for("keepalived (a) holds the VIP", 8 * S, |l| l.has_vip("a"));
    lab.stable_master("a", 2 * S);
    assert!(
        !lab.log(w).contains("Entering MASTER STATE")
            || lab.log(w).contains("Master received advert")
    );
    client_follows(&lab, "a");
    lab.stop(k, libc::SIGTERM);
    let t = client_follows(&lab, "b");
    println!("keepalived → warren failover: {t:?}");
    expect_master(&lab, "b");
    lab.keepalived("a", &ka_conf);
    lab.wait_for("keepalived preempts warren", 8 * S, |l| {
        l.has_vip("a") && !l.has_vip("b")
    });
    client_follows(&lab, "a");
    assert!(lab
        .log(w)
        .contains("Master received advert from 198.18.0.1 with higher priority 150, ours 100"));
}

#[test]
fn interop_warren_master_keepalived_backup_v3() {
    let Some(_g) = serial() else { return };
    if std::process::Command::new("keepalived")
        .arg("--version")
        .output()
        .is_err()
    {
        println!("skipping: keepalived is not installed");
        return;
    }
    let mut lab = Lab::new("wvrt-");
    let wc = conf("", 3, "MASTER", 150, "0.2", "");
    let w = lab.warren("a", &wc);
    let k = lab.keepalived("b", &conf("", 3, "BACKUP", 100, "0.2", ""));
    lab.wait_for("warren (a) holds the VIP", 5 * S, |l| l.has_vip("a"));
    lab.stable_master("a", S);
    client_follows(&lab, "a");
    // Crash warren: keepalived must take over after its master-down interval.
    lab.stop(w, libc::SIGKILL);
    lab.link("a", false);
    let t = client_follows(&lab, "b");
    println!("warren → keepalived failover (crash): {t:?}");
    lab.link("a", true);
    lab.warren("a", &wc);
    lab.wait_for("warren preempts keepalived", 5 * S, |l| {
        l.has_vip("a") && !l.has_vip("b")
    });
    client_follows(&lab, "a");
    lab.stable_master("a", S);
    let kl = lab.log(k);
    assert!(
        kl.contains("Entering MASTER STATE") && kl.contains("Entering BACKUP STATE"),
        "{kl}"
    );
}
