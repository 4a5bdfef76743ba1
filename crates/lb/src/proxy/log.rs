//! HAProxy's `option tcplog` line, written to stderr:
//! `%ci:%cp [%t] %ft %b/%s %Tw/%Tc/%Tt %B %ts %ac/%fc/%bc/%sc/%rc %sq/%bq`, and the date
//! formatting it needs (UTC, `26/Nov/2026:03:10:00.123`), done by hand to avoid a date crate.

use std::time::{SystemTime, UNIX_EPOCH};

pub struct TcpLog<'a> {
    pub client: std::net::SocketAddr,
    pub accept: SystemTime,
    pub frontend: &'a str,
    pub backend: &'a str,
    pub server: &'a str,
    /// Queue wait, connect time (-1 when never connected), total time, in ms.
    pub tw: i64,
    pub tc: i64,
    pub tt: i64,
    pub bytes: u64,
    pub term: [char; 2],
    pub counts: [u64; 5],
    pub queues: [u64; 2],
}

impl std::fmt::Display for TcpLog<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ip = self.client.ip().to_canonical();
        write!(
            f,
            "{}:{} [{}] {} {}/{} {}/{}/{} {} {}{} {}/{}/{}/{}/{} {}/{}",
            ip,
            self.client.port(),
            http_date(self.accept),
            self.frontend,
            self.backend,
            self.server,
            self.tw,
            self.tc,
            self.tt,
            self.bytes,
            self.term[0],
            self.term[1],
            self.counts[0],
            self.counts[1],
            self.counts[2],
            self.counts[3],
            self.counts[4],
            self.queues[0],
            self.queues[1]
        )
    }
}

/// Converts days since 1970-01-01 to (year, month, day) (Howard Hinnant's civil_from_days).
pub fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// `26/Nov/2026:03:10:00.123` in UTC.
pub fn http_date(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (y, m, day) = civil(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    format!(
        "{:02}/{}/{}:{:02}:{:02}:{:02}.{:03}",
        day,
        MONTHS[(m - 1) as usize],
        y,
        sod / 3600,
        (sod / 60) % 60,
        sod % 60,
        d.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn dates() {
        assert_eq!(civil(0), (1970, 1, 1));
        assert_eq!(
            http_date(UNIX_EPOCH + Duration::from_millis(1_795_662_600_123)),
            "26/Nov/2026:03:10:00.123"
        );
    }

    #[test]
    fn tcplog_shape() {
        let l = TcpLog {
            client: "127.0.0.1:34542".parse().unwrap(),
            accept: UNIX_EPOCH,
            frontend: "fe",
            backend: "be",
            server: "s1",
            tw: 0,
            tc: 1,
            tt: 5007,
            bytes: 212,
            term: ['-', '-'],
            counts: [1, 1, 0, 0, 0],
            queues: [0, 0],
        };
        assert_eq!(
            l.to_string(),
            "127.0.0.1:34542 [01/Jan/1970:00:00:00.000] fe be/s1 0/1/5007 212 -- 1/1/0/0/0 0/0"
        );
    }
}
