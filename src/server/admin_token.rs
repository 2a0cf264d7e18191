//! Who may read the admin pages (`/dashboard`, `/api/*`), which show personal data:
//! names, peers' addresses, what students sent. With `--admin-token T`, only requests
//! that carry T; without it, anyone on a loopback listener (they are on this machine
//! already), and on any other address only requests that carry a token made up at
//! start and printed on the console as a ready URL, as Jupyter does.
//!
//! A token comes as `Authorization: Bearer T` or as `?token=T` (what the printed URL
//! and the dashboard page's own address carry); it is compared in constant time and
//! never logged, except in the one line that prints a made-up one.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

/// Longest admin token accepted on the command line, in bytes.
pub const MAX_ADMIN_TOKEN: usize = 256;

/// A secret token; `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken(Box<str>);

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(***)")
    }
}

impl AdminToken {
    /// A token as the operator gives it: printable ASCII without spaces (it travels
    /// in a header and in a URL), at most [`MAX_ADMIN_TOKEN`] bytes.
    pub fn parse(s: &str) -> Result<AdminToken, String> {
        if s.is_empty() {
            return Err("the admin token is empty".into());
        }
        if s.len() > MAX_ADMIN_TOKEN {
            return Err(format!(
                "the admin token is {} bytes; at most {MAX_ADMIN_TOKEN} are accepted",
                s.len()
            ));
        }
        if !s.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(
                "the admin token must be printable ASCII without spaces (it goes in a URL and a header)"
                    .into(),
            );
        }
        Ok(AdminToken(s.into()))
    }

    /// 128 bits from the OS's random source as 32 hex digits; `None` if the source
    /// failed.
    fn random() -> Option<AdminToken> {
        let mut bytes = [0u8; 16];
        getrandom::getrandom(&mut bytes).ok()?;
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        Some(AdminToken(hex.into()))
    }

    fn matches(&self, given: &[u8]) -> bool {
        self.0.as_bytes().ct_eq(given).into()
    }

    /// The token itself, to print in the ready URL.
    fn reveal(&self) -> &str {
        &self.0
    }
}

/// How the admin pages are guarded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminAccess {
    /// Open to every request (a loopback listener without `--admin-token`).
    Open,
    /// Only requests that carry the token.
    Token(AdminToken),
    /// Closed to every request: a token was needed and none could be made.
    Closed,
}

/// Where the guard comes from, for the one line that says so at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// `--admin-token`.
    Given,
    /// None was given and the listener is on loopback.
    Loopback,
    /// Made up at start (the listener is not on loopback).
    Generated,
    /// One was needed and the OS's random source failed.
    Failed,
}

/// The rule: the operator's token if given; else open on a loopback listener; else a
/// token made up now.
pub fn access(given: Option<&AdminToken>, listen: SocketAddr) -> (AdminAccess, Origin) {
    match given {
        Some(token) => (AdminAccess::Token(token.clone()), Origin::Given),
        None if listen.ip().is_loopback() => (AdminAccess::Open, Origin::Loopback),
        None => match AdminToken::random() {
            Some(token) => (AdminAccess::Token(token), Origin::Generated),
            None => (AdminAccess::Closed, Origin::Failed),
        },
    }
}

/// Logs how the admin pages are guarded: one line, which holds the ready URL (the
/// only place a token is ever logged) when the token was made up here. `scheme` is
/// `https` when the listener speaks TLS.
pub fn announce(access: &AdminAccess, origin: &Origin, listen: SocketAddr, scheme: &str) {
    match (origin, access) {
        (Origin::Generated, AdminAccess::Token(token)) => {
            let host = if listen.ip().is_unspecified() {
                this_machine()
            } else {
                listen.ip().to_string()
            };
            let host = if host.contains(':') {
                format!("[{host}]")
            } else {
                host
            };
            tracing::info!(
                "dashboard (admin pages need this token): {scheme}://{host}:{}/dashboard?token={}",
                listen.port(),
                token.reveal()
            );
        }
        (Origin::Given, _) => {
            tracing::info!(
                "dashboard: {scheme}://{listen}/dashboard (admin pages need --admin-token)"
            )
        }
        (Origin::Loopback, _) => tracing::info!(
            "dashboard: {scheme}://{listen}/dashboard (open to this machine only; --admin-token guards it)"
        ),
        _ => tracing::error!(
            "admin pages closed: the OS's random source failed, so no admin token could be \
             made; give one with --admin-token"
        ),
    }
}

/// The machine's host name, or a placeholder the operator fills in.
fn this_machine() -> String {
    #[cfg(unix)]
    if let Ok(name) = nix::unistd::gethostname()
        && let Some(name) = name.to_str()
        && !name.is_empty()
    {
        return name.to_owned();
    }
    "<this machine>".into()
}

impl AdminAccess {
    /// Whether the request carries what the guard asks for.
    pub fn allows(&self, headers: &HeaderMap, query: Option<&str>) -> bool {
        let token = match self {
            AdminAccess::Open => return true,
            AdminAccess::Closed => return false,
            AdminAccess::Token(token) => token,
        };
        let bearer = headers
            .get_all(header::AUTHORIZATION)
            .iter()
            .filter_map(|value| bearer_token(value.as_bytes()))
            .any(|given| token.matches(given));
        bearer || query_tokens(query.unwrap_or("")).any(|given| token.matches(&given))
    }
}

/// The token of an `Authorization: Bearer T` header (the scheme in any case).
fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = value.split_at_checked(7)?;
    scheme
        .eq_ignore_ascii_case(b"bearer ")
        .then(|| rest.trim_ascii())
}

/// Every `token=` value of a query string, percent-decoded.
fn query_tokens(query: &str) -> impl Iterator<Item = Vec<u8>> + '_ {
    query
        .split('&')
        .filter_map(|pair| pair.strip_prefix("token="))
        .map(|value| percent_encoding::percent_decode_str(value).collect())
}

/// `router`'s routes, each answering 401 to a request without the admin token.
pub(super) fn guarded<S: Clone + Send + Sync + 'static>(
    router: axum::Router<S>,
    access: &Arc<AdminAccess>,
) -> axum::Router<S> {
    router.route_layer(axum::middleware::from_fn_with_state(
        Arc::clone(access),
        require,
    ))
}

/// A middleware that answers 401 to requests the guard does not allow.
async fn require(State(access): State<Arc<AdminAccess>>, request: Request, next: Next) -> Response {
    if access.allows(request.headers(), request.uri().query()) {
        return next.run(request).await;
    }
    let mut refused = (
        StatusCode::UNAUTHORIZED,
        "the admin pages need the admin token: send `Authorization: Bearer <token>` or add \
         `?token=<token>` (the token is --admin-token, or the one in the URL the server \
         printed at start)\n",
    )
        .into_response();
    refused.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"switchboard admin\""),
    );
    refused
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn with_bearer(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn the_rule_opens_loopback_and_guards_everything_else() {
        let given = AdminToken::parse("s3cret").unwrap();
        for listen in ["127.0.0.1:1", "[::1]:1", "0.0.0.0:1", "192.168.1.5:1"] {
            assert_eq!(
                access(Some(&given), addr(listen)),
                (AdminAccess::Token(given.clone()), Origin::Given)
            );
        }
        assert_eq!(
            access(None, addr("127.0.0.1:12080")),
            (AdminAccess::Open, Origin::Loopback)
        );
        for listen in ["0.0.0.0:12080", "[::]:12080", "10.0.0.2:80"] {
            let (guard, origin) = access(None, addr(listen));
            assert_eq!(origin, Origin::Generated);
            let AdminAccess::Token(token) = guard else {
                panic!("{listen}: not guarded")
            };
            assert_eq!(token.reveal().len(), 32);
            assert!(token.reveal().bytes().all(|b| b.is_ascii_hexdigit()));
            // Made up anew each time.
            assert_ne!(access(None, addr(listen)).0, AdminAccess::Token(token));
        }
    }

    #[test]
    fn a_token_is_taken_from_the_header_or_the_query() {
        let guard = AdminAccess::Token(AdminToken::parse("a+b/c").unwrap());
        let none = HeaderMap::new();
        assert!(!guard.allows(&none, None));
        assert!(guard.allows(&with_bearer("Bearer a+b/c"), None));
        assert!(guard.allows(&with_bearer("bearer  a+b/c "), None));
        assert!(!guard.allows(&with_bearer("Bearer a+b/"), None));
        assert!(!guard.allows(&with_bearer("Basic a+b/c"), None));
        assert!(!guard.allows(&with_bearer("Bearer"), None));
        assert!(guard.allows(&none, Some("token=a%2Bb%2Fc")));
        assert!(guard.allows(&none, Some("after=3&token=a+b/c")));
        assert!(!guard.allows(&none, Some("token=a+b")));
        assert!(!guard.allows(&none, Some("xtoken=a+b/c")));
        assert!(AdminAccess::Open.allows(&none, None));
        assert!(!AdminAccess::Closed.allows(&with_bearer("Bearer a+b/c"), None));
    }

    #[test]
    fn a_given_token_must_be_printable_and_short() {
        assert!(AdminToken::parse("").is_err());
        assert!(AdminToken::parse("has space").is_err());
        assert!(AdminToken::parse("tab\there").is_err());
        assert!(AdminToken::parse("é").is_err());
        assert!(AdminToken::parse(&"x".repeat(MAX_ADMIN_TOKEN + 1)).is_err());
        assert!(AdminToken::parse(&"x".repeat(MAX_ADMIN_TOKEN)).is_ok());
        assert_eq!(
            format!("{:?}", AdminToken::parse("s3cret").unwrap()),
            "AdminToken(***)"
        );
    }
}
