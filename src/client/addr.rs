//! Server addresses as people type them: `localhost:12000`, `10.0.0.5`, or just `12000`.

use std::net::{IpAddr, SocketAddr};

use super::ClientError;

/// The native protocol's usual port (the labs' port).
pub const DEFAULT_PORT: u16 = 12000;

/// Completes an address as typed: a bare port is on this machine (`12000` is
/// `127.0.0.1:12000`), a host without a port gets [`DEFAULT_PORT`], anything else is
/// kept as it is for the resolver to judge.
pub fn normalize_addr(addr: &str) -> String {
    let addr = addr.trim();
    if !addr.is_empty() && addr.bytes().all(|b| b.is_ascii_digit()) {
        return format!("127.0.0.1:{addr}");
    }
    if addr.parse::<SocketAddr>().is_ok() {
        return addr.to_owned();
    }
    if let Ok(ip) = addr.parse::<IpAddr>() {
        return SocketAddr::new(ip, DEFAULT_PORT).to_string();
    }
    if !addr.is_empty() && !addr.contains(':') {
        return format!("{addr}:{DEFAULT_PORT}");
    }
    addr.to_owned()
}

/// The first socket address `addr` (completed by [`normalize_addr`]) resolves to.
pub async fn resolve_addr(addr: &str) -> Result<SocketAddr, ClientError> {
    let full = normalize_addr(addr);
    let bad = |why: String| ClientError::Address {
        addr: addr.trim().to_owned(),
        why,
    };
    if full.is_empty() {
        return Err(bad("no address given".into()));
    }
    let mut found = tokio::net::lookup_host(&full)
        .await
        .map_err(|e| bad(e.to_string()))?;
    found
        .next()
        .ok_or_else(|| bad("the name has no address".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_completed_as_people_mean_them() {
        assert_eq!(normalize_addr("12000"), "127.0.0.1:12000");
        assert_eq!(normalize_addr(" 4000 "), "127.0.0.1:4000");
        assert_eq!(normalize_addr("localhost:12000"), "localhost:12000");
        assert_eq!(normalize_addr("localhost"), "localhost:12000");
        assert_eq!(normalize_addr("10.0.0.5"), "10.0.0.5:12000");
        assert_eq!(normalize_addr("10.0.0.5:7"), "10.0.0.5:7");
        assert_eq!(normalize_addr("::1"), "[::1]:12000");
        assert_eq!(normalize_addr("[::1]:9"), "[::1]:9");
    }

    #[tokio::test]
    async fn resolving_says_what_is_wrong() {
        assert_eq!(
            resolve_addr("12000").await.unwrap(),
            "127.0.0.1:12000".parse::<SocketAddr>().unwrap()
        );
        assert!(
            resolve_addr("localhost:9")
                .await
                .unwrap()
                .ip()
                .is_loopback()
        );
        for bad in ["", "99999", "no such host:x"] {
            let e = resolve_addr(bad).await.unwrap_err();
            assert!(matches!(e, ClientError::Address { .. }), "{bad}: {e}");
        }
    }
}
