//! `GET /`: the browser chat client, a page and its script and style embedded in the
//! binary, so that it works offline and matches the server it came with. The page speaks
//! the native protocol over `/ws` like any other client; nothing here knows the protocol.

use axum::Router;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, HOST, REFERRER_POLICY,
    X_CONTENT_TYPE_OPTIONS,
};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::IntoResponse;
use axum::routing::get;

const INDEX: &str = include_str!("web/index.html");
const APP: &str = include_str!("web/app.js");
const LINK: &str = include_str!("web/link.js");
const VIEW: &str = include_str!("web/view.js");
const STYLE: &str = include_str!("web/style.css");

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// The page's routes, for the HTTP listener's router.
pub(super) fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|headers: HeaderMap| async move { page(&headers) }))
        .route("/app.js", get(|| async { asset(JS, APP) }))
        .route("/link.js", get(|| async { asset(JS, LINK) }))
        .route("/view.js", get(|| async { asset(JS, VIEW) }))
        .route("/style.css", get(|| async { asset(CSS, STYLE) }))
}

/// The page, with a policy that lets it load nothing but its own files and connect to
/// nothing but this server's WebSocket.
fn page(headers: &HeaderMap) -> impl IntoResponse + use<> {
    let host = headers.get(HOST).and_then(|h| h.to_str().ok());
    let policy = content_security_policy(host);
    let policy = HeaderValue::from_str(&policy).expect("the policy is checked ASCII");
    (
        [
            (CONTENT_TYPE, HeaderValue::from_static(HTML)),
            (CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (CONTENT_SECURITY_POLICY, policy),
            (X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
            (REFERRER_POLICY, HeaderValue::from_static("no-referrer")),
        ],
        INDEX,
    )
}

/// A script or style sheet. `no-cache` makes a browser ask again (cheaply) after the
/// server is upgraded, so a page and its script never come from different versions.
fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse + use<> {
    (
        [
            (CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
        ],
        body,
    )
}

/// `'self'` alone does not cover WebSocket URLs in every browser, so the page's own
/// host is named for `ws:` and `wss:`; a `Host` that is not a plain host and port is
/// left out (the page then relies on `'self'`), so that no client can write into the
/// policy.
fn content_security_policy(host: Option<&str>) -> String {
    let sockets = match host.filter(|h| is_plain_host(h)) {
        Some(host) => format!(" ws://{host} wss://{host}"),
        None => String::new(),
    };
    format!(
        "default-src 'self'; connect-src 'self'{sockets}; \
         object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
}

/// A host name or address, with an optional port: letters, digits, `.-:[]`.
fn is_plain_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 255
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_names_the_pages_own_websocket() {
        let policy = content_security_policy(Some("chat.lan:12080"));
        assert!(policy.contains("connect-src 'self' ws://chat.lan:12080 wss://chat.lan:12080;"));
        assert!(policy.starts_with("default-src 'self';"));
    }

    #[test]
    fn a_host_that_is_not_plain_stays_out_of_the_policy() {
        for host in [
            None,
            Some(""),
            Some("evil; script-src *"),
            Some("a b"),
            Some("x\"y"),
        ] {
            let policy = content_security_policy(host);
            assert!(policy.contains("connect-src 'self';"), "{host:?}: {policy}");
            assert!(!policy.contains("script-src"), "{host:?}: {policy}");
        }
    }

    #[test]
    fn the_page_loads_only_its_own_files() {
        for body in [INDEX, APP, LINK, VIEW, STYLE] {
            assert!(!body.contains("http://") && !body.contains("https://"));
        }
        assert!(INDEX.contains(r#"src="/app.js""#) && INDEX.contains(r#"href="/style.css""#));
        assert!(APP.contains("from './link.js'") && APP.contains("from './view.js'"));
    }
}
