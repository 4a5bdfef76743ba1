//! `warren vrrp -t` (config test) as a user runs it: exit codes and messages. No root needed.

mod support;

use std::process::Command;

fn run(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(support::warren_bin())
        .arg("vrrp")
        .args(args)
        .output()
        .expect("run warren");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn config_test_accepts_the_tutorial_file_unchanged() {
    let f = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/keepalived-tutorial.conf"
    );
    let (code, err) = run(&["-t", "-f", f]);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("is valid"), "{err}");
}

#[test]
fn config_test_refuses_malformed_file_with_location() {
    let dir = std::env::temp_dir().join(format!("wvr-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("bad.conf");
    std::fs::write(
        &f,
        "vrrp_instance VI_1 {\n  interface eth0\n  virtual_router_id 51\n  priority high\n}\n",
    )
    .unwrap();
    let (code, err) = run(&["-t", "-f", &f.display().to_string()]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&format!("{}:4: priority must be an integer", f.display())),
        "{err}"
    );
    let (code, err) = run(&["-t", "-f", &dir.join("missing.conf").display().to_string()]);
    assert_eq!(code, Some(1));
    assert!(err.contains("cannot read"), "{err}");
    let (code, _) = run(&["--bogus"]);
    assert_eq!(code, Some(1));
    // A valid file whose interface does not exist: refused before forking, with its location.
    let g = dir.join("noif.conf");
    std::fs::write(
        &g,
        "vrrp_instance VI_1 {\n  interface wvr-nope0\n  virtual_router_id 51\n}\n",
    )
    .unwrap();
    let pid = dir.join("noif.pid");
    let (code, err) = run(&[
        "-f",
        &g.display().to_string(),
        "-p",
        &pid.display().to_string(),
    ]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("noif.conf:1: (vrrp_instance VI_1) interface wvr-nope0 does not exist"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
