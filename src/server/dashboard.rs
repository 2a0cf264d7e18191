//! The projector dashboard: `GET /dashboard`, one page embedded in the binary, and
//! `GET /api/dashboard`, the JSON snapshot the page polls twice a second: who is
//! connected (and how), what the lab programs sent, the rooms, and the message rate.
//! Both are admin pages (`admin_token.rs`).

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;

use super::SessionKit;
use super::admin_token::{self, AdminAccess};
use super::registry::{Registry, Submission, Transport};
use crate::hub::RoomView;
use crate::protocol::{ClientId, now_millis, rfc3339_of_millis};
use crate::service::Services;

/// Connections listed at most; the page fits far fewer on a screen.
const MAX_CLIENTS: usize = 1000;
/// Rooms listed at most, and members named per room.
const MAX_ROOMS: usize = 200;
const MAX_MEMBERS: usize = 100;

/// The page, its style and script put in at the first request: one response, so
/// that nothing else needs the token.
static PAGE: LazyLock<String> = LazyLock::new(|| {
    include_str!("web/dashboard.html")
        .replace("/*STYLE*/", include_str!("web/dashboard.css"))
        .replace("/*SCRIPT*/", include_str!("web/dashboard.js"))
});

/// What the dashboard's routes read.
/// `/dashboard` and `/api/dashboard`, behind the admin guard.
pub(super) fn routes<S: Clone + Send + Sync + 'static>(
    kit: &SessionKit,
    access: &Arc<AdminAccess>,
) -> Router<S> {
    admin_token::guarded(
        Router::new()
            .route("/dashboard", get(page))
            .route("/api/dashboard", get(snapshot)),
        access,
    )
    .with_state(kit.clone())
}

async fn page() -> Response {
    let mut response = (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        PAGE.as_str(),
    )
        .into_response();
    let headers = response.headers_mut();
    // The page's address may hold the token: no other site is told it, and no cache
    // keeps what the page shows.
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
             connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        ),
    );
    response
}

async fn snapshot(State(dash): State<SessionKit>, request: Request) -> Response {
    let after = request
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .find_map(|pair| pair.strip_prefix("after="))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let body = serde_json::to_vec(&Snapshot::take(
        &dash.services,
        &dash.shared.registry,
        after,
    ))
    .unwrap_or_default();
    let mut response = ([(header::CONTENT_TYPE, "application/json")], body).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `GET /api/dashboard`.
#[derive(Debug, Serialize)]
pub struct Snapshot {
    /// When it was taken, RFC 3339.
    now: String,
    /// Open connections, in the order they connected.
    clients: Vec<ClientView>,
    clients_total: usize,
    rooms: Vec<RoomView>,
    rooms_total: usize,
    lab: LabView,
    rate: RateView,
}

#[derive(Debug, Serialize)]
struct ClientView {
    client_id: ClientId,
    /// Until it has said hello, none.
    name: Option<String>,
    /// The name in the last dict it sent, for a lab program, which never says hello.
    #[serde(skip_serializing_if = "Option::is_none")]
    sent_name: Option<String>,
    dialect: Transport,
    peer: String,
    since: String,
    since_ms: i64,
}

#[derive(Debug, Serialize)]
struct LabView {
    /// The number of the latest submission: the next poll asks for those after it.
    last: u64,
    /// The submissions after the `after` asked for, oldest first.
    submissions: Vec<SubmissionView>,
}

#[derive(Debug, Serialize)]
struct SubmissionView {
    #[serde(flatten)]
    submission: Submission,
    /// The columns every lab program means, whatever it named them.
    known: Known,
    /// The fields that are none of those, as `fields` has them.
    other: Vec<(String, String)>,
}

#[derive(Debug, Default, Serialize)]
struct Known {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    student_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    github: Option<String>,
}

#[derive(Debug, Serialize)]
struct RateView {
    /// Room and direct messages asked for since the server started.
    messages_total: u64,
    /// Messages in each of the last seconds (up to five minutes), oldest first.
    per_second: Vec<u64>,
    /// Counted so far in the second under way.
    current: u64,
}

impl Snapshot {
    fn take(services: &Services, registry: &Registry, after: u64) -> Snapshot {
        let names: HashMap<ClientId, String> = services
            .backend
            .users()
            .into_iter()
            .map(|user| (user.client_id, user.name))
            .collect();
        let (kept, last) = registry.lab_since(0);
        let mut views: Vec<SubmissionView> = kept
            .into_iter()
            .map(|submission| {
                let (known, other) = Known::of(&submission.fields);
                SubmissionView {
                    submission,
                    known,
                    other,
                }
            })
            .collect();
        // Oldest first, so that a client's latest dict wins.
        let sent_names: HashMap<ClientId, String> = views
            .iter()
            .filter_map(|view| Some((view.submission.client_id, view.known.name.clone()?)))
            .collect();
        views.retain(|view| view.submission.seq > after);
        let connections = registry.connections();
        let clients_total = connections.len();
        let clients = connections
            .into_iter()
            .take(MAX_CLIENTS)
            .map(|c| ClientView {
                client_id: c.client_id,
                name: names.get(&c.client_id).cloned(),
                sent_name: sent_names.get(&c.client_id).cloned(),
                dialect: c.transport,
                peer: c.peer.to_string(),
                since: rfc3339_of_millis(c.start_ms),
                since_ms: c.start_ms,
            })
            .collect();
        let (rooms, rooms_total) = services.backend.rooms_overview(MAX_ROOMS, MAX_MEMBERS);
        let (per_second, current) = registry.rates();
        Snapshot {
            now: rfc3339_of_millis(now_millis()),
            clients,
            clients_total,
            rooms,
            rooms_total,
            lab: LabView {
                last,
                submissions: views,
            },
            rate: RateView {
                messages_total: registry.messages(),
                per_second,
                current,
            },
        }
    }
}

impl Known {
    /// Finds the well-known columns among a dict's keys, compared in lower case without
    /// `_`, `-`, `.` or spaces (`Student_ID`, `studentId` and `student id` are one
    /// key); the first of each wins. The fields left over are returned beside.
    fn of(fields: &[(String, String)]) -> (Known, Vec<(String, String)>) {
        let mut known = Known::default();
        let mut other = Vec::new();
        for (key_as_given, value) in fields {
            let key: String = key_as_given
                .chars()
                .filter(|c| !matches!(c, '_' | '-' | ' ' | '.'))
                .flat_map(char::to_lowercase)
                .collect();
            let slot = match key.as_str() {
                "name" | "fullname" | "nombre" | "studentname" | "username" => {
                    Some(&mut known.name)
                }
                "email" | "mail" | "emailaddress" | "correo" => Some(&mut known.email),
                "studentid" | "id" | "sid" | "studentnumber" | "matricula" | "carnet" => {
                    Some(&mut known.student_id)
                }
                "github" | "githubusername" | "githubuser" | "githubhandle" | "gh" => {
                    Some(&mut known.github)
                }
                _ => None,
            };
            match slot {
                Some(slot @ None) => *slot = Some(value.clone()),
                _ => other.push((key_as_given.clone(), value.clone())),
            }
        }
        (known, other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_well_known_columns_are_found_whatever_their_spelling() {
        let fields = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        let (known, other) = Known::of(&fields(&[
            ("Email", "ana@example.edu"),
            ("GitHub_Username", "ana-gh"),
            ("Name", "Ana"),
            ("name", "second"),
            ("student-ID", "A0123"),
            ("team", "3"),
        ]));
        assert_eq!(other, fields(&[("name", "second"), ("team", "3")]));
        assert_eq!(known.name.as_deref(), Some("Ana"));
        assert_eq!(known.email.as_deref(), Some("ana@example.edu"));
        assert_eq!(known.student_id.as_deref(), Some("A0123"));
        assert_eq!(known.github.as_deref(), Some("ana-gh"));
        let (none, _) = Known::of(&fields(&[("colour", "red")]));
        assert!(none.name.is_none() && none.github.is_none());
    }

    #[test]
    fn the_page_is_whole_and_has_its_stable_ids() {
        for id in [
            "id=\"clients\"",
            "id=\"lab\"",
            "id=\"rooms\"",
            "id=\"rate\"",
        ] {
            assert!(PAGE.contains(id), "{id}");
        }
        assert!(!PAGE.contains("/*STYLE*/") && !PAGE.contains("/*SCRIPT*/"));
        assert!(!PAGE.contains("http://") && !PAGE.contains("https://"));
    }
}
