//! Command-line flags, spelled as keepalived spells them.
//!
//! Owns: turning `warren vrrp ARGS...` into `Options`. Accepts keepalived's short flags (also
//! bundled, `-nlD`, and with attached values, `-fFILE`) and long forms. Guarantees: an unknown
//! flag or a missing value is an error naming it, never ignored.

use std::ffi::OsString;
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub config: PathBuf,
    pub dont_fork: bool,
    pub log_console: bool,
    pub log_detail: bool,
    pub config_test: bool,
    pub pid_file: PathBuf,
    pub vrrp_pid_file: Option<PathBuf>,
    pub version: bool,
    pub help: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            config: PathBuf::from("/etc/keepalived/keepalived.conf"),
            dont_fork: false,
            log_console: false,
            log_detail: false,
            config_test: false,
            pid_file: PathBuf::from("/run/warren-vrrp.pid"),
            vrrp_pid_file: None,
            version: false,
            help: false,
        }
    }
}

pub const USAGE: &str = "\
usage: warren vrrp [OPTIONS]   (keepalived-compatible VRRP speaker)
  -f, --use-file FILE       configuration file (default /etc/keepalived/keepalived.conf)
  -n, --dont-fork           stay in the foreground
  -l, --log-console         log to the console (stderr) instead of syslog
  -D, --log-detail          detailed (debug) log
  -t, --config-test         check the configuration and exit 0 (valid) or 1 (invalid)
  -p, --pid FILE            pid file (default /run/warren-vrrp.pid)
  -r, --vrrp_pid FILE       VRRP child pid file (same process here; written too)
  -c, --checkers_pid FILE   accepted for keepalived compatibility (no checker process)
  -P, --vrrp                VRRP only (always the case)
  -S, --log-facility N      accepted for compatibility (syslog facility daemon is used)
  -v, --version             print the version
  -h, --help                this help
Signals: SIGHUP reloads the configuration; SIGTERM/SIGINT release the VIPs and exit.";

pub fn parse(args: &[OsString]) -> Result<Options, String> {
    let mut o = Options::default();
    let args: Vec<String> = args
        .iter()
        .map(|a| {
            a.to_str()
                .map(str::to_string)
                .ok_or_else(|| format!("argument {a:?} is not UTF-8"))
        })
        .collect::<Result<_, _>>()?;
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        i += 1;
        if let Some(long) = a.strip_prefix("--") {
            let (name, inline) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (long, None),
            };
            let short = match name {
                "use-file" => 'f',
                "dont-fork" => 'n',
                "log-console" => 'l',
                "log-detail" => 'D',
                "config-test" => 't',
                "pid" => 'p',
                "vrrp_pid" => 'r',
                "checkers_pid" => 'c',
                "vrrp" => 'P',
                "log-facility" => 'S',
                "version" => 'v',
                "help" => 'h',
                "check" => {
                    return Err(
                        "--check: warren vrrp has no health checker (use `warren lb`)".into(),
                    )
                }
                _ => return Err(format!("unknown option --{name}")),
            };
            if takes_value(short) {
                let v = match inline {
                    Some(v) => v,
                    None => next_value(&args, &mut i, &format!("--{name}"))?,
                };
                set_value(&mut o, short, v);
            } else {
                set_flag(&mut o, short)?;
            }
        } else if let Some(shorts) = a.strip_prefix('-').filter(|s| !s.is_empty()) {
            let chars: Vec<char> = shorts.chars().collect();
            let mut j = 0;
            while j < chars.len() {
                let c = chars[j];
                j += 1;
                if takes_value(c) {
                    let rest: String = chars[j..].iter().collect();
                    let v = if rest.is_empty() {
                        next_value(&args, &mut i, &format!("-{c}"))?
                    } else {
                        rest
                    };
                    set_value(&mut o, c, v);
                    break;
                }
                set_flag(&mut o, c)?;
            }
        } else {
            return Err(format!("unexpected argument '{a}'"));
        }
    }
    Ok(o)
}

fn takes_value(c: char) -> bool {
    matches!(c, 'f' | 'p' | 'r' | 'c' | 'S')
}

fn next_value(args: &[String], i: &mut usize, flag: &str) -> Result<String, String> {
    let v = args
        .get(*i)
        .cloned()
        .ok_or_else(|| format!("option {flag} needs a value"))?;
    *i += 1;
    Ok(v)
}

fn set_value(o: &mut Options, c: char, v: String) {
    match c {
        'f' => o.config = PathBuf::from(v),
        'p' => o.pid_file = PathBuf::from(v),
        'r' => o.vrrp_pid_file = Some(PathBuf::from(v)),
        _ => {} // -c, -S: accepted for compatibility
    }
}

fn set_flag(o: &mut Options, c: char) -> Result<(), String> {
    match c {
        'n' => o.dont_fork = true,
        'l' => o.log_console = true,
        'D' => o.log_detail = true,
        't' => o.config_test = true,
        'P' => {}
        'v' => o.version = true,
        'h' => o.help = true,
        'C' => return Err("-C: warren vrrp has no health checker (use `warren lb`)".into()),
        _ => return Err(format!("unknown option -{c}")),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(a: &[&str]) -> Result<Options, String> {
        parse(&a.iter().map(OsString::from).collect::<Vec<_>>())
    }

    #[test]
    fn keepalived_style_flags() {
        let o = p(&[
            "-nlD",
            "-f",
            "/x.conf",
            "-p/run/a.pid",
            "--vrrp_pid=/run/b.pid",
            "-P",
            "-c",
            "/c",
        ])
        .unwrap();
        assert!(o.dont_fork && o.log_console && o.log_detail && !o.config_test);
        assert_eq!(o.config, PathBuf::from("/x.conf"));
        assert_eq!(o.pid_file, PathBuf::from("/run/a.pid"));
        assert_eq!(o.vrrp_pid_file, Some(PathBuf::from("/run/b.pid")));
        assert!(p(&["-t", "-f", "k.conf"]).unwrap().config_test);
        assert_eq!(p(&["-f"]).unwrap_err(), "option -f needs a value");
        assert_eq!(p(&["-x"]).unwrap_err(), "unknown option -x");
        assert!(p(&["-C"]).is_err());
    }
}
