//! Parsers for the values of command-line flags, used as clap value parsers: every
//! number has a range, and a value outside it (negative, huge, not finite, not a
//! number) is refused by the argument parser with the flag and the range named,
//! before anything runs. clap writes the error as
//! `invalid value '-1' for '--connections <N>': -1 is not in 1..=100000`.

use std::fmt;
use std::ops::RangeInclusive;
use std::time::Duration;

/// A whole number in `range`, for a flag whose value is a count. Declare the flag with
/// `allow_negative_numbers` (or `allow_hyphen_values`) on its command so that `-1`
/// reaches this parser and is refused for its range rather than taken for a flag.
pub fn count<T>(
    range: RangeInclusive<u64>,
) -> impl Fn(&str) -> Result<T, String> + Clone + Send + Sync + 'static
where
    T: TryFrom<u64>,
{
    move |s: &str| {
        let value: i128 = s
            .trim()
            .parse()
            .map_err(|_| format!("not a whole number; expected {range:?}"))?;
        u64::try_from(value)
            .ok()
            .filter(|v| range.contains(v))
            .and_then(|v| T::try_from(v).ok())
            .ok_or_else(|| format!("{value} is not in {range:?}"))
    }
}

/// A number of seconds (a decimal fraction is fine) from `min` to `max`, as a
/// [`Duration`]; NaN and infinity are refused like any value out of range.
pub fn seconds(
    min: f64,
    max: f64,
) -> impl Fn(&str) -> Result<Duration, String> + Clone + Send + Sync + 'static {
    move |s: &str| {
        let secs: f64 = s
            .trim()
            .parse()
            .map_err(|_| format!("not a number of seconds; expected {min}..={max}"))?;
        if !(min..=max).contains(&secs) {
            return Err(format!("{s} is not in {min}..={max} seconds"));
        }
        Duration::try_from_secs_f64(secs).map_err(|e| e.to_string())
    }
}

/// A server address as a person types it: `host:port`, a bare host (the command's
/// usual port is added), or a bare port (on 127.0.0.1). IPv6 literals are written
/// `[::1]:12000`, or bare as `::1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    pub host: String,
    pub port: Option<u16>,
}

impl Address {
    /// The parser for `--addr`.
    pub fn parse(s: &str) -> Result<Address, String> {
        let s = s.trim();
        let bad = |why: &str| format!("{why}; expected HOST:PORT, HOST or PORT");
        let port = |p: &str| {
            p.parse::<u16>()
                .ok()
                .filter(|&p| p != 0)
                .ok_or_else(|| bad(&format!("port {p:?} is not in 1..=65535")))
        };
        if s.is_empty() {
            return Err(bad("empty address"));
        }
        if s.bytes().all(|b| b.is_ascii_digit()) {
            return Ok(Address {
                host: "127.0.0.1".into(),
                port: Some(port(s)?),
            });
        }
        if let Some(rest) = s.strip_prefix('[') {
            let (host, after) = rest
                .split_once(']')
                .ok_or_else(|| bad("no closing ] after an IPv6 address"))?;
            let port = match after {
                "" => None,
                p => Some(port(
                    p.strip_prefix(':').ok_or_else(|| bad("junk after ]"))?,
                )?),
            };
            return Ok(Address {
                host: host.into(),
                port,
            });
        }
        let (host, port) = match s.matches(':').count() {
            0 => (s, None),
            1 => {
                let (host, p) = s.split_once(':').unwrap_or((s, ""));
                (host, Some(port(p)?))
            }
            // More than one colon: a bare IPv6 address.
            _ => (s, None),
        };
        if host.is_empty() || host.contains(char::is_whitespace) {
            return Err(bad(&format!("no host in {s:?}")));
        }
        Ok(Address {
            host: host.into(),
            port,
        })
    }

    /// `host:port` to connect to, with `default_port` where none was given.
    pub fn with_port(&self, default_port: u16) -> String {
        let port = self.port.unwrap_or(default_port);
        if self.host.contains(':') {
            format!("[{}]:{port}", self.host)
        } else {
            format!("{}:{port}", self.host)
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.port, self.host.contains(':')) {
            (Some(port), true) => write!(f, "[{}]:{port}", self.host),
            (Some(port), false) => write!(f, "{}:{port}", self.host),
            (None, _) => f.write_str(&self.host),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_whole_numbers_in_range() {
        let parse = count::<usize>(1..=100);
        assert_eq!(parse("1"), Ok(1));
        assert_eq!(parse(" 100 "), Ok(100));
        assert_eq!(parse("0"), Err("0 is not in 1..=100".into()));
        assert_eq!(parse("-1"), Err("-1 is not in 1..=100".into()));
        assert_eq!(
            parse("99999999999999999999999"),
            Err("99999999999999999999999 is not in 1..=100".into())
        );
        for junk in ["1e3", "1.5", "", "ten", "NaN"] {
            assert_eq!(
                parse(junk),
                Err("not a whole number; expected 1..=100".into()),
                "{junk:?}"
            );
        }
        // A range wider than the type: the type's bound is enforced too.
        let small = count::<u8>(0..=1000);
        assert_eq!(small("255"), Ok(255));
        assert!(small("256").is_err());
    }

    #[test]
    fn seconds_are_finite_and_in_range() {
        let parse = seconds(0.1, 86_400.0);
        assert_eq!(parse("5"), Ok(Duration::from_secs(5)));
        assert_eq!(parse("0.25"), Ok(Duration::from_millis(250)));
        assert_eq!(parse("86400"), Ok(Duration::from_secs(86_400)));
        for bad in ["1e30", "-1", "0", "0.01", "inf", "-inf", "NaN", "86400.5"] {
            assert_eq!(
                parse(bad),
                Err(format!("{bad} is not in 0.1..=86400 seconds")),
                "{bad:?}"
            );
        }
        assert_eq!(
            parse("soon"),
            Err("not a number of seconds; expected 0.1..=86400".into())
        );
    }

    #[test]
    fn addresses_take_a_host_a_port_or_both() {
        let parsed = |s: &str| Address::parse(s).map(|a| a.with_port(12000));
        assert_eq!(parsed("12001"), Ok("127.0.0.1:12001".into()));
        assert_eq!(parsed("localhost"), Ok("localhost:12000".into()));
        assert_eq!(parsed("localhost:12002"), Ok("localhost:12002".into()));
        assert_eq!(parsed("10.0.0.7:80"), Ok("10.0.0.7:80".into()));
        assert_eq!(parsed("::1"), Ok("[::1]:12000".into()));
        assert_eq!(parsed("[::1]"), Ok("[::1]:12000".into()));
        assert_eq!(parsed("[::1]:9"), Ok("[::1]:9".into()));
        for bad in [
            "", "0", "65536", "host:", "host:x", ":12000", "[::1", "[::1]x", "a b",
        ] {
            assert!(Address::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            Address::parse("99999").unwrap_err(),
            "port \"99999\" is not in 1..=65535; expected HOST:PORT, HOST or PORT"
        );
    }
}
