//! `allowed_outbound_hosts`: what a component may connect to.
//!
//! Each entry is `scheme://host[:port]` as in Spin: the scheme may be `*`,
//! the host may be `*`, `*.domain` or an IP range in CIDR notation
//! (`127.0.0.0/24`, `ff00::/8`; it matches IP addresses, never names), the
//! port may be a number, `*` or a range `a..b` (end exclusive); with no port
//! the scheme's default applies. The same grants cover outbound HTTP, Redis
//! and TCP/UDP sockets (`wasi:sockets`, schemes `tcp` and `udp`). A component
//! with no entries may connect nowhere. Anything not granted is refused
//! before a byte is sent.

use std::net::{IpAddr, SocketAddr};

use anyhow::{Context, bail, ensure};
use ipnet::IpNet;

/// One `allowed_outbound_hosts` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern {
    scheme: Option<String>,
    host: HostMatch,
    port: PortMatch,
    raw: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostMatch {
    Any,
    Exact(String),
    /// `*.example.com`: any subdomain of `example.com`.
    Subdomain(String),
    /// `127.0.0.0/24`: any IP address in the range.
    Cidr(IpNet),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PortMatch {
    Any,
    Range(u16, u16),
    /// No port written: the scheme's default.
    Default,
}

/// The set of grants of one component.
#[derive(Debug, Clone, Default)]
pub struct AllowedHosts {
    patterns: Vec<HostPattern>,
}

/// The default port of the schemes components use.
pub fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        "redis" => Some(6379),
        "rediss" => Some(6380),
        "postgres" => Some(5432),
        "mysql" => Some(3306),
        "mqtt" => Some(1883),
        _ => None,
    }
}

impl HostPattern {
    pub fn parse(raw: &str) -> anyhow::Result<Self> {
        let (scheme, rest) = raw
            .split_once("://")
            .with_context(|| format!("allowed host `{raw}` must be `scheme://host[:port]`"))?;
        // Spin tolerates a trailing slash; a path beyond that is a mistake,
        // unless the `/` is a CIDR range's prefix length.
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let cidr = cidr_of(rest);
        ensure!(
            cidr.is_some() || !is_cidr(rest),
            "allowed host `{raw}`: an IP range needs a port (`{rest}:PORT`)"
        );
        ensure!(
            cidr.is_some() || !rest.contains('/'),
            "allowed host `{raw}` must not contain a path"
        );
        let scheme = match scheme {
            "*" => None,
            s if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '+') => {
                Some(s.to_ascii_lowercase())
            }
            _ => bail!("allowed host `{raw}` has an invalid scheme"),
        };
        let (host, port) = match rest.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (rest, None),
        };
        let host = match host {
            _ if cidr.is_some() => {
                ensure!(
                    port.is_some(),
                    "allowed host `{raw}`: an IP range needs a port (`{rest}:PORT`)"
                );
                HostMatch::Cidr(cidr.expect("checked"))
            }
            "*" => HostMatch::Any,
            h if h.starts_with("*.") => HostMatch::Subdomain(h[2..].to_ascii_lowercase()),
            h if !h.is_empty() && !h.contains('*') => HostMatch::Exact(h.to_ascii_lowercase()),
            _ => bail!("allowed host `{raw}` has an invalid host"),
        };
        let port = match port {
            None => PortMatch::Default,
            Some("*") => PortMatch::Any,
            Some(p) => match p.split_once("..") {
                Some((lo, hi)) => PortMatch::Range(
                    lo.parse()
                        .with_context(|| format!("bad port range in `{raw}`"))?,
                    hi.parse::<u16>()
                        .with_context(|| format!("bad port range in `{raw}`"))?
                        .saturating_sub(1),
                ),
                None => {
                    let p = p.parse().with_context(|| format!("bad port in `{raw}`"))?;
                    PortMatch::Range(p, p)
                }
            },
        };
        if port == PortMatch::Default
            && let Some(scheme) = &scheme
        {
            ensure!(
                default_port(scheme).is_some(),
                "allowed host `{raw}`: scheme `{scheme}` has no default port; write one"
            );
        }
        Ok(Self {
            scheme,
            host,
            port,
            raw: raw.to_string(),
        })
    }

    fn allows(&self, scheme: &str, host: &str, port: u16) -> bool {
        let scheme_ok = self.scheme.as_deref().is_none_or(|s| s == scheme);
        let host = host.to_ascii_lowercase();
        let host_ok = match &self.host {
            HostMatch::Any => true,
            HostMatch::Exact(h) => *h == host,
            HostMatch::Subdomain(domain) => host
                .strip_suffix(domain.as_str())
                .is_some_and(|prefix| prefix.ends_with('.')),
            HostMatch::Cidr(net) => host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
                .is_ok_and(|ip| net.contains(&ip)),
        };
        let port_ok = match self.port {
            PortMatch::Any => true,
            PortMatch::Range(lo, hi) => (lo..=hi).contains(&port),
            PortMatch::Default => default_port(scheme) == Some(port),
        };
        scheme_ok && host_ok && port_ok
    }

    /// The exact host named, if this entry names one (`data-service.spin.internal`).
    pub fn exact_host(&self) -> Option<&str> {
        match &self.host {
            HostMatch::Exact(h) => Some(h),
            _ => None,
        }
    }

    pub fn as_str(&self) -> &str {
        &self.raw
    }
}

/// The IP range of `host:port` when its host is written as one
/// (`127.0.0.1/24` is the range `127.0.0.0/24`, as in Spin).
fn cidr_of(host_and_port: &str) -> Option<IpNet> {
    let (host, _port) = host_and_port.rsplit_once(':')?;
    parse_cidr(host)
}

/// Whether `host` is an IP range with nothing after it (no port).
fn is_cidr(host: &str) -> bool {
    parse_cidr(host).is_some()
}

fn parse_cidr(host: &str) -> Option<IpNet> {
    let (addr, len) = host.split_once('/')?;
    let addr: IpAddr = addr
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()?;
    let net = IpNet::new(addr, len.parse().ok()?).ok()?;
    Some(net.trunc())
}

impl AllowedHosts {
    pub fn parse<'a>(entries: impl IntoIterator<Item = &'a str>) -> anyhow::Result<Self> {
        let patterns = entries
            .into_iter()
            .map(HostPattern::parse)
            .collect::<anyhow::Result<_>>()?;
        Ok(Self { patterns })
    }

    /// May a connection to `scheme://host:port` be made? `port` defaults to the scheme's.
    pub fn allows(&self, scheme: &str, host: &str, port: Option<u16>) -> bool {
        let scheme = scheme.to_ascii_lowercase();
        let Some(port) = port.or_else(|| default_port(&scheme)) else {
            return false;
        };
        self.patterns.iter().any(|p| p.allows(&scheme, host, port))
    }

    /// May a socket connect to `addr` (`scheme` `tcp` or `udp`)?
    pub fn allows_socket(&self, scheme: &str, addr: SocketAddr) -> bool {
        self.allows(scheme, &addr.ip().to_string(), Some(addr.port()))
    }

    /// May this URL be reached?
    pub fn allows_url(&self, url: &url::Url) -> bool {
        match url.host_str() {
            Some(host) => self.allows(url.scheme(), host, url.port()),
            None => false,
        }
    }

    pub fn patterns(&self) -> &[HostPattern] {
        &self.patterns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(entries: &[&str]) -> AllowedHosts {
        AllowedHosts::parse(entries.iter().copied()).unwrap()
    }

    #[test]
    fn matches_scheme_host_and_port() {
        let a = allowed(&[
            "https://query1.finance.yahoo.com",
            "http://127.0.0.1:8080",
            "redis://localhost:6379",
            "http://*.spin.internal",
            "*://wild.example:*",
            "http://ranged.example:9000..9002",
        ]);
        let cases = [
            ("https", "query1.finance.yahoo.com", None, true),
            ("https", "query1.finance.yahoo.com", Some(443), true),
            ("https", "query1.finance.yahoo.com", Some(8443), false),
            ("http", "query1.finance.yahoo.com", None, false),
            ("https", "evil.com", None, false),
            ("http", "127.0.0.1", Some(8080), true),
            ("http", "127.0.0.1", Some(8081), false),
            ("redis", "localhost", None, true),
            ("http", "data-service.spin.internal", None, true),
            ("http", "spin.internal", None, false),
            ("http", "evilspin.internal", None, false),
            ("ftp", "wild.example", Some(21), true),
            ("http", "ranged.example", Some(9001), true),
            ("http", "ranged.example", Some(9002), false),
        ];
        for (scheme, host, port, expected) in cases {
            assert_eq!(
                a.allows(scheme, host, port),
                expected,
                "{scheme}://{host}:{port:?}"
            );
        }
    }

    #[test]
    fn ip_ranges_match_addresses_in_them() {
        let a = allowed(&[
            "*://127.0.0.0/24:7000",
            "tcp://10.1.2.3/16:*",
            "http://[::1]/128:80",
        ]);
        let cases = [
            ("tcp", "127.0.0.1", 7000, true),
            ("http", "127.0.0.255", 7000, true),
            ("tcp", "127.0.1.1", 7000, false),
            ("tcp", "127.0.0.1", 7001, false),
            // A range matches addresses, never names.
            ("tcp", "localhost", 7000, false),
            // `10.1.2.3/16` is the range 10.1.0.0/16.
            ("tcp", "10.1.200.7", 5432, true),
            ("udp", "10.1.200.7", 5432, false),
            ("http", "::1", 80, true),
        ];
        for (scheme, host, port, expected) in cases {
            assert_eq!(
                a.allows(scheme, host, Some(port)),
                expected,
                "{scheme}://{host}:{port}"
            );
        }
        let socket: SocketAddr = "127.0.0.9:7000".parse().unwrap();
        assert!(a.allows_socket("tcp", socket));
        assert!(
            HostPattern::parse("*://127.0.0.0/24").is_err(),
            "a range needs a port"
        );
        assert!(
            HostPattern::parse("*://127.0.0.0/33:80").is_err(),
            "not a range: a path"
        );
    }

    #[test]
    fn nothing_is_allowed_by_default() {
        assert!(!AllowedHosts::default().allows("https", "example.com", None));
    }

    #[test]
    fn rejects_malformed_entries() {
        for bad in [
            "example.com",
            "http://",
            "http://a/b",
            "http://*x.com",
            "custom://h",
            "http://h:x",
        ] {
            assert!(HostPattern::parse(bad).is_err(), "{bad} accepted");
        }
    }
}
