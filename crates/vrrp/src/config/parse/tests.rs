//! Parser tests: the user's tutorial file, every supported keyword, and errors with file:line.

use super::*;

const TUTORIAL: &str = include_str!("../../../tests/data/keepalived-tutorial.conf");

#[test]
fn tutorial_file_is_accepted() {
    let l = load_str(TUTORIAL, "keepalived.conf").unwrap();
    assert!(l.warnings.is_empty(), "{:?}", l.warnings);
    let c = l.config;
    assert_eq!(c.global.router_id.as_deref(), Some("NodeA"));
    let s = &c.scripts[0];
    assert_eq!(
        (
            s.name.as_str(),
            s.script.as_str(),
            s.interval,
            s.weight,
            s.timeout
        ),
        (
            "chk_haproxy",
            "/etc/keepalived/haproxy_chk.sh",
            Duration::from_secs(5),
            2,
            Duration::from_secs(5)
        )
    );
    let i = &c.instances[0];
    assert_eq!(i.name, "VI_1");
    assert_eq!(i.state, InitialState::Master);
    assert_eq!(i.interface, "ens33");
    assert_eq!(
        (i.vrid, i.priority, i.version, i.advert_int_cs),
        (1, 100, 2, 100)
    );
    assert_eq!(i.auth_pass, Some(*b"1111\0\0\0\0"));
    assert_eq!(
        i.track_scripts,
        vec![TrackScript {
            name: "chk_haproxy".into(),
            weight: None
        }]
    );
    assert_eq!(
        i.vips,
        vec![Vip {
            addr: Ipv4Addr::new(192, 168, 0, 10),
            prefix: 32,
            dev: None,
            label: None
        }]
    );
    assert!(i.preempt);
    assert_eq!(
        (i.garp_master_delay, i.garp_master_repeat),
        (Duration::from_secs(5), 5)
    );
}

#[test]
fn full_keyword_set() {
    let text = r#"
global_defs {
  router_id lb1
  enable_script_security
  script_user root
  vrrp_version 3
}
vrrp_script chk {
  script "/bin/true arg"
  interval 2
  timeout 1
  weight -20
  fall 3
  rise 2
  user nobody
}
vrrp_instance VI_1 {
  state BACKUP
  interface eth0
  virtual_router_id 51
  priority 90
  advert_int 0.1
  nopreempt
  preempt_delay 2
  authentication {
    auth_type PASS
    auth_pass secret
  }
  unicast_src_ip 198.18.0.2
  unicast_peer {
    198.18.0.3
  }
  track_script {
    chk weight -30
  }
  track_interface {
    eth1
    eth2 weight -5
  }
  virtual_ipaddress {
    198.18.0.100/24 dev eth0 label eth0:vip
    198.18.0.101
  }
  notify_master "/x master"
  notify_backup /x
  notify_fault /x
  notify /y
  garp_master_delay 1
  garp_master_repeat 3
}
vrrp_sync_group G {
  group {
    VI_1
  }
  notify_master /gm
  notify "/gn x"
}
"#;
    let l = load_str(text, "full.conf").unwrap();
    let i = &l.config.instances[0];
    assert_eq!(
        (i.version, i.advert_int_cs, i.priority, i.preempt),
        (3, 10, 90, false)
    );
    assert_eq!(i.auth_pass, None, "v3 ignores authentication");
    assert!(
        l.warnings
            .iter()
            .any(|w| w.contains("full.conf:25") && w.contains("VRRPv3")),
        "{:?}",
        l.warnings
    );
    assert_eq!(i.preempt_delay, Duration::from_secs(2));
    assert_eq!(i.unicast_src_ip, Some(Ipv4Addr::new(198, 18, 0, 2)));
    assert_eq!(i.unicast_peers, vec![Ipv4Addr::new(198, 18, 0, 3)]);
    assert_eq!(i.track_scripts[0].weight, Some(-30));
    assert_eq!(
        i.track_interfaces[1],
        TrackInterface {
            name: "eth2".into(),
            weight: -5
        }
    );
    assert_eq!(i.vips[0].prefix, 24);
    assert_eq!(i.vips[0].label.as_deref(), Some("eth0:vip"));
    assert_eq!(i.vips[0].dev.as_deref(), Some("eth0"));
    assert_eq!(i.notify_master.as_deref(), Some("/x master"));
    assert_eq!(
        (i.garp_master_delay, i.garp_master_repeat),
        (Duration::from_secs(1), 3)
    );
    let s = &l.config.scripts[0];
    assert_eq!(
        (s.weight, s.fall, s.rise, s.timeout),
        (-20, 3, 2, Duration::from_secs(1))
    );
    assert!(l.config.global.enable_script_security);
    assert_eq!(l.config.sync_groups[0].members, vec!["VI_1"]);
    assert_eq!(
        l.config.sync_groups[0].notify_master.as_deref(),
        Some("/gm")
    );
    assert_eq!(l.config.sync_groups[0].notify.as_deref(), Some("/gn x"));
}

#[test]
fn unknown_keyword_warns_with_location() {
    let l = load_str(
        "vrrp_instance A {\n interface e\n virtual_router_id 1\n frobnicate 3\n virtual_ipaddress {\n 1.2.3.4\n }\n}\nvirtual_server 1.2.3.4 80 {\n delay_loop 6\n}\n",
        "k.conf",
    )
    .unwrap();
    assert!(
        l.warnings
            .iter()
            .any(|w| w.starts_with("k.conf:4: unknown keyword 'frobnicate'")),
        "{:?}",
        l.warnings
    );
    assert!(
        l.warnings
            .iter()
            .any(|w| w.starts_with("k.conf:9:") && w.contains("not supported")),
        "{:?}",
        l.warnings
    );
}

fn error_of(text: &str) -> String {
    load_str(text, "e.conf").unwrap_err()
}

#[test]
fn errors_name_file_and_line() {
    assert_eq!(
        error_of("vrrp_instance A {\n interface e\n virtual_router_id 300\n}\n"),
        "e.conf:3: virtual_router_id must be an integer in 1..=255, not '300'"
    );
    assert_eq!(
        error_of("vrrp_instance A {\n interface e\n"),
        "e.conf:1: block opened here is never closed (missing '}')"
    );
    assert_eq!(
        error_of("vrrp_instance A {\n virtual_router_id 3\n}\n"),
        "e.conf:1: vrrp_instance A: 'interface' is required"
    );
    assert_eq!(
        error_of("vrrp_instance A {\n interface e\n virtual_router_id 3\n track_script {\n nope\n }\n}\n"),
        "e.conf:1: vrrp_instance A: track_script 'nope' is not defined"
    );
    assert_eq!(
        error_of("vrrp_instance A {\n interface e\n virtual_router_id 3\n virtual_ipaddress {\n 10.0.0.300\n }\n}\n"),
        "e.conf:5: '10.0.0.300' is not an IP address"
    );
    assert_eq!(
        error_of("vrrp_instance A {\n interface e\n virtual_router_id 3\n advert_int 50\n version 3\n}\n"),
        "e.conf:4: advert_int 50 out of range for VRRPv3 (0.01..=40.95)"
    );
    assert_eq!(
        error_of("vrrp_instance A {\n interface e\n virtual_router_id 3\n}\nvrrp_sync_group G {\n group {\n A\n B\n }\n}\n"),
        "e.conf:5: vrrp_sync_group G: member 'B' is not a vrrp_instance"
    );
    assert_eq!(
        error_of("global_defs\n"),
        "e.conf:1: 'global_defs' needs a { ... } block"
    );
    assert_eq!(
        error_of("vrrp_instance A {\n state SLAVE\n}\n"),
        "e.conf:2: state must be MASTER or BACKUP, not 'SLAVE'"
    );
}

#[test]
fn v2_fraction_rounds_up_with_warning() {
    let l = load_str(
        "vrrp_instance A {\n interface e\n virtual_router_id 3\n advert_int 0.5\n}\n",
        "w.conf",
    )
    .unwrap();
    assert_eq!(l.config.instances[0].advert_int_cs, 100);
    assert!(l
        .warnings
        .iter()
        .any(|w| w.starts_with("w.conf:4: advert_int 0.5")));
}

#[test]
fn long_password_truncated() {
    let l = load_str(
        "vrrp_instance A {\n interface e\n virtual_router_id 3\n authentication {\n auth_type PASS\n auth_pass 1234567890\n }\n}\n",
        "p.conf",
    )
    .unwrap();
    assert_eq!(l.config.instances[0].auth_pass, Some(*b"12345678"));
}

#[test]
fn include_files() {
    let dir = std::env::temp_dir().join(format!("wvr-inc-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("conf.d")).unwrap();
    std::fs::write(dir.join("main.conf"), "include conf.d/*.conf\n").unwrap();
    std::fs::write(
        dir.join("conf.d/a.conf"),
        "vrrp_instance A {\n interface e\n virtual_router_id 3\n bogus\n}\n",
    )
    .unwrap();
    let l = load_file(&dir.join("main.conf")).unwrap();
    assert_eq!(l.config.instances[0].name, "A");
    assert!(
        l.warnings[0].contains("conf.d/a.conf:4"),
        "{:?}",
        l.warnings
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
