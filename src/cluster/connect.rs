//! Reaching NATS: a comma-separated list of `nats://HOST:PORT` addresses, each tried
//! within a bounded time, so that a node that cannot reach NATS says which addresses
//! failed and stops at once instead of retrying in silence.

use std::time::Duration;

use async_nats::{ConnectOptions, ServerAddr};
use futures_util::future::join_all;
use tokio::net::TcpStream;

use super::{ClusterError, check_node};

/// One address of the list, as given and as the client library reads it.
#[derive(Debug, Clone)]
pub struct NatsUrl {
    pub given: String,
    addr: ServerAddr,
}

/// A connection to NATS, and the addresses that could not be reached at start (the
/// client reconnects through the others, and through every server the cluster tells
/// it of, so these deserve a warning but not a refusal).
#[derive(Debug)]
pub struct Connected {
    pub client: async_nats::Client,
    pub unreachable: Vec<String>,
}

/// Reads `nats://HOST:PORT[,nats://HOST:PORT...]`. Only `nats://` is accepted: TLS and
/// credentials are not configured yet, and a URL that would need them should fail here
/// rather than at the first connect.
pub fn parse_urls(list: &str) -> Result<Vec<NatsUrl>, ClusterError> {
    let urls = list
        .split(',')
        .map(str::trim)
        .filter(|url| !url.is_empty())
        .map(parse_url)
        .collect::<Result<Vec<_>, _>>()?;
    if urls.is_empty() {
        return Err(ClusterError::NoUrls);
    }
    Ok(urls)
}

fn parse_url(given: &str) -> Result<NatsUrl, ClusterError> {
    let bad = |why: &str| ClusterError::BadUrl {
        url: given.to_owned(),
        why: why.to_owned(),
    };
    let rest = given
        .strip_prefix("nats://")
        .ok_or_else(|| bad("it does not start with nats://"))?;
    let (host, port) = rest.rsplit_once(':').ok_or_else(|| bad("no :PORT"))?;
    if host.is_empty() || host.contains(['/', '@', '?']) {
        return Err(bad("the host is missing or has a path or credentials"));
    }
    port.parse::<u16>()
        .ok()
        .filter(|&p| p != 0)
        .ok_or_else(|| bad("the port is not a number from 1 to 65535"))?;
    let addr = given
        .parse::<ServerAddr>()
        .map_err(|e| bad(&e.to_string()))?;
    Ok(NatsUrl {
        given: given.to_owned(),
        addr,
    })
}

/// Connects node `node` to the NATS servers of `list`. Each address is tried for at
/// most `timeout`; when none answers, the error names every one. Once connected, the
/// client reconnects by itself, without limit, to any server of the cluster.
pub async fn connect(list: &str, node: &str, timeout: Duration) -> Result<Connected, ClusterError> {
    check_node(node)?;
    let urls = parse_urls(list)?;
    let reached = join_all(urls.iter().map(|url| reachable(url, timeout))).await;
    let (up, down): (Vec<_>, Vec<_>) = urls.iter().zip(reached).partition(|(_, ok)| *ok);
    let unreachable: Vec<String> = down.into_iter().map(|(u, _)| u.given.clone()).collect();
    if up.is_empty() {
        return Err(ClusterError::Unreachable {
            urls: unreachable,
            timeout,
        });
    }
    let addrs: Vec<ServerAddr> = up.iter().map(|(u, _)| u.addr.clone()).collect();
    let options = ConnectOptions::new()
        .name(format!("switchboard {node}"))
        .connection_timeout(timeout)
        .max_reconnects(None);
    let joined = || {
        up.iter()
            .map(|(u, _)| u.given.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    // The TCP probe passed, but the server may still not speak NATS or hang in the
    // handshake: the whole connect is bounded too.
    let client = tokio::time::timeout(
        timeout.saturating_mul(2),
        async_nats::connect_with_options(addrs, options),
    )
    .await
    .map_err(|_| ClusterError::Connect {
        urls: joined(),
        detail: format!("no NATS handshake within {:?}", timeout.saturating_mul(2)),
    })?
    .map_err(|e| ClusterError::Connect {
        urls: joined(),
        detail: e.to_string(),
    })?;
    Ok(Connected {
        client,
        unreachable,
    })
}

/// Whether something accepts TCP connections at `url` within `timeout`.
async fn reachable(url: &NatsUrl, timeout: Duration) -> bool {
    let host = url.addr.host();
    let port = url.addr.port();
    matches!(
        tokio::time::timeout(timeout, TcpStream::connect((host, port))).await,
        Ok(Ok(_))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_of_nats_urls_parse() {
        let urls = parse_urls("nats://127.0.0.1:4222, nats://nats-2:4223,").unwrap();
        let given: Vec<_> = urls.iter().map(|u| u.given.as_str()).collect();
        assert_eq!(given, ["nats://127.0.0.1:4222", "nats://nats-2:4223"]);
    }

    #[test]
    fn other_addresses_are_refused_with_the_reason() {
        for (bad, why) in [
            ("127.0.0.1:4222", "nats://"),
            ("tls://h:4222", "nats://"),
            ("nats://h", "PORT"),
            ("nats://h:0", "port"),
            ("nats://h:x", "port"),
            ("nats://u:p@h:4222", "credentials"),
            ("nats://:4222", "host"),
        ] {
            let err = parse_urls(bad).unwrap_err().to_string();
            assert!(err.contains(bad) && err.contains(why), "{bad}: {err}");
        }
        assert!(matches!(parse_urls(" , "), Err(ClusterError::NoUrls)));
    }
}
