//! HAProxy's command line, as far as `warren lb` supports it: `-f FILE` (repeatable), `-c`,
//! `-D`, `-db`, `-p PIDFILE`, `-sf PID...`, `-st PID...`, `-W`, `-Ws`, `-q`, `-v`. Anything else is refused
//! with a usage message rather than ignored.

use std::ffi::OsString;
use std::path::PathBuf;

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Cli {
    pub files: Vec<PathBuf>,
    pub check: bool,
    pub daemon: bool,
    pub foreground: bool,
    pub pidfile: Option<PathBuf>,
    pub soft_stop: Vec<i32>,
    pub hard_stop: Vec<i32>,
    pub quiet: bool,
    pub version: bool,
    /// `-W`/`-Ws`: run as a master that supervises and reloads a worker (`master`).
    pub master_worker: bool,
    /// `-Ws`: also tell systemd when the first worker serves (`Type=notify`).
    pub systemd_notify: bool,
}

pub const USAGE: &str = "usage: warren lb -f <cfgfile> [-f <cfgfile>...] [-c] [-D] [-db] [-p <pidfile>] [-q] [-v] [-W|-Ws] [-sf|-st <pid>...]\n\
  -f file : read configuration from file (several allowed, read in order)\n\
  -c      : check the configuration and exit\n\
  -D      : daemonise (also 'daemon' in 'global')\n\
  -db     : stay in the foreground even if 'daemon' is set\n\
  -p file : write the process id to file\n\
  -sf pid : after startup, ask these processes to finish (SIGUSR1: soft stop)\n\
  -st pid : after startup, terminate these processes (SIGTERM)\n\
  -W      : master-worker mode: SIGUSR2 to the master reloads the configuration\n\
  -Ws     : master-worker mode with systemd notification (Type=notify)\n\
  -q      : quiet (no warnings)\n\
  -v      : print the version";

pub fn parse(args: Vec<OsString>) -> Result<Cli, String> {
    let args: Vec<String> = args
        .into_iter()
        .map(|a| {
            a.into_string()
                .map_err(|a| format!("argument {a:?} is not valid UTF-8"))
        })
        .collect::<Result<_, _>>()?;
    let mut c = Cli::default();
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        let mut value = || -> Result<String, String> {
            i += 1;
            args.get(i)
                .cloned()
                .ok_or_else(|| format!("option '{a}' needs an argument"))
        };
        match a {
            "-f" => c.files.push(PathBuf::from(value()?)),
            "-c" => c.check = true,
            "-D" => c.daemon = true,
            "-db" => c.foreground = true,
            "-p" => c.pidfile = Some(PathBuf::from(value()?)),
            "-q" => c.quiet = true,
            "-v" | "-vv" | "-V" => c.version = true,
            "-sf" | "-st" => {
                let mut pids = Vec::new();
                while let Some(p) = args.get(i + 1).and_then(|p| p.parse::<i32>().ok()) {
                    if p <= 0 {
                        return Err(format!("invalid pid {p} after {a}"));
                    }
                    pids.push(p);
                    i += 1;
                }
                if a == "-sf" {
                    c.soft_stop.extend(pids)
                } else {
                    c.hard_stop.extend(pids)
                }
            }
            "-W" => c.master_worker = true,
            "-Ws" => (c.master_worker, c.systemd_notify) = (true, true),
            "-S" | "-x" | "-L" | "-N" | "-d" | "-dM" | "-de" | "-dp" | "-dS" | "-dr" => {
                return Err(format!("option '{a}' is not supported by warren lb"))
            }
            other if other.starts_with("-f") && other.len() > 2 => {
                c.files.push(PathBuf::from(&other[2..]))
            }
            other => return Err(format!("unknown option '{other}'")),
        }
        i += 1;
    }
    if c.files.is_empty() && !c.version {
        return Err("no configuration file given (use -f <cfgfile>)".into());
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Cli, String> {
        parse(s.split_whitespace().map(OsString::from).collect())
    }

    #[test]
    fn flags() {
        let c = p("-f a.cfg -f b.cfg -db -p /tmp/x.pid -sf 12 13 -c").unwrap();
        assert_eq!(c.files, [PathBuf::from("a.cfg"), PathBuf::from("b.cfg")]);
        assert!(c.foreground && c.check);
        assert_eq!(c.soft_stop, [12, 13]);
        assert_eq!(c.pidfile, Some(PathBuf::from("/tmp/x.pid")));
        assert_eq!(p("-f a -st 5").unwrap().hard_stop, [5]);
        assert_eq!(p("-f a -sf").unwrap().soft_stop, Vec::<i32>::new());
        let ws = p("-Ws -f a").unwrap();
        assert!(ws.master_worker && ws.systemd_notify);
        assert!(p("-W -f a").unwrap().master_worker && !p("-W -f a").unwrap().systemd_notify);
    }

    #[test]
    fn refusals() {
        assert!(p("").is_err());
        assert!(p("-f").is_err());
        assert!(p("-f a -S /run/master.sock").is_err());
        assert!(p("-f a --bogus").is_err());
    }
}
