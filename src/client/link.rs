//! What a client and its supervisor share: the connection requests go to (which a
//! reconnecting client swaps after a cut), the session to resume, and what each
//! answer changes in them.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio::sync::{Notify, watch};

use super::conn::{Connection, OnAnswer};
use super::resume::Marks;
use super::{ClientError, ClientOptions};
use crate::protocol::{Hello, Password, Request, ResumeToken};

/// What the client and its supervisor share.
pub(super) struct Core {
    /// Where to connect again, as given.
    pub(super) addr: String,
    pub(super) options: ClientOptions,
    pub(super) client_id: AtomicU64,
    pub(super) next_id: AtomicU64,
    pub(super) link: watch::Sender<Link>,
    pub(super) listening: Arc<AtomicBool>,
    /// Who to say hello as again; set by a successful `hello` of a reconnecting client.
    pub(super) login: Arc<Mutex<Option<Login>>>,
    pub(super) marks: Arc<Mutex<Marks>>,
    /// `bye` was asked: the end that follows is not a cut.
    pub(super) leaving: AtomicBool,
    pub(super) leave: Notify,
}

/// The connection requests go to.
pub(super) enum Link {
    Up(Arc<Connection>),
    /// Cut; the supervisor is reconnecting.
    Down,
    Gone(Gone),
}

/// Why a reconnecting client has no connection any more.
#[derive(Clone)]
pub(super) enum Gone {
    Closed,
    /// Cut before any session was made (`hello`): not a cut to come back from.
    Ended(Arc<Connection>),
    GaveUp(String),
}

impl Gone {
    pub(super) fn error(&self) -> ClientError {
        match self {
            Gone::Closed => ClientError::Closed,
            Gone::Ended(line) => line.shared.ended_error().unwrap_or(ClientError::Closed),
            Gone::GaveUp(why) => ClientError::GaveUp(why.clone()),
        }
    }
}

/// A session's credentials, to resume it with.
#[derive(Clone)]
pub(super) struct Login {
    pub(super) name: String,
    pub(super) password: Option<Password>,
    pub(super) token: Option<ResumeToken>,
}

impl Core {
    pub(super) fn reconnects(&self) -> bool {
        self.options.reconnect.is_some()
    }

    /// Whether a cut now would be come back from: there is a session to resume, and
    /// the client is not leaving.
    pub(super) fn would_return(&self) -> bool {
        self.reconnects()
            && !self.leaving.load(Ordering::Relaxed)
            && self.login.lock().is_ok_and(|login| login.is_some())
    }

    /// The connection to send on: not `not` (a connection found ended), and for a
    /// reconnecting client, once it is back.
    pub(super) async fn line(
        &self,
        not: Option<&Arc<Connection>>,
    ) -> Result<Arc<Connection>, ClientError> {
        let mut link = self.link.subscribe();
        let link = link
            .wait_for(|link| match link {
                Link::Up(line) => not.is_none_or(|not| !Arc::ptr_eq(not, line)),
                Link::Down => false,
                Link::Gone(_) => true,
            })
            .await
            .map_err(|_| ClientError::Closed)?;
        match &*link {
            Link::Up(line) => Ok(Arc::clone(line)),
            Link::Gone(gone) => Err(gone.error()),
            Link::Down => Err(ClientError::Closed),
        }
    }

    /// What the answer to `request` changes in a reconnecting client's state.
    pub(super) fn on_answer(&self, request: &Request) -> Option<OnAnswer> {
        if !self.reconnects() {
            return None;
        }
        let seq = |reply: &serde_json::Map<String, Value>| {
            reply.get("seq").and_then(Value::as_u64).unwrap_or(0)
        };
        let marks = Arc::clone(&self.marks);
        let mark = move |change: &dyn Fn(&mut Marks)| {
            if let Ok(mut marks) = marks.lock() {
                change(&mut marks);
            }
        };
        Some(match request.clone() {
            Request::Hello(hello) => {
                let Hello { name, password, .. } = *hello;
                let login = Arc::clone(&self.login);
                Box::new(move |reply| {
                    let token = reply
                        .get("resume_token")
                        .and_then(Value::as_str)
                        .map(|t| ResumeToken(t.to_owned()));
                    if let Ok(mut login) = login.lock() {
                        *login = Some(Login {
                            name,
                            password,
                            token,
                        });
                    }
                })
            }
            Request::CreateRoom { room } => {
                Box::new(move |reply| mark(&|m| m.set(&room, seq(reply))))
            }
            Request::JoinRoom { room, after, .. } => Box::new(move |reply| {
                let recovered = reply.get("recovered") == Some(&Value::Bool(true));
                // A recovered join's replay follows its answer and moves the mark on.
                let from = match after {
                    Some(after) if recovered => after,
                    _ => seq(reply),
                };
                mark(&|m| m.set(&room, from))
            }),
            Request::Say { room, .. } => {
                Box::new(move |reply| mark(&|m| m.raise(&room, seq(reply))))
            }
            Request::LeaveRoom { room } | Request::CloseRoom { room } => {
                Box::new(move |_| mark(&|m| m.forget(&room)))
            }
            _ => return None,
        })
    }
}
