//! Serves typed requests: the rules of each op, over the hub (who is online, rooms) and
//! the store (names seen, inboxes). Dialect-free: sessions of every dialect call this.

use crate::hub::Hub;
use crate::protocol::{
    ClientId, DEFAULT_INBOX_LIMIT, ErrorBody, ErrorCode, MAX_INBOX_LIMIT, MAX_TEXT, Menu,
    Recipient, Reply, Request, check_name, check_room,
};
use crate::store::Store;

/// Headroom left in a frame for the inbox reply's own fields around its messages.
const INBOX_FRAME_HEADROOM: usize = 1024;

/// Everything a session needs to serve requests; shared by all sessions.
#[derive(Debug)]
pub struct Services {
    pub hub: Hub,
    pub store: Store,
    /// The largest frame a reply may fill (the inbox stops short of it).
    pub max_frame: usize,
}

/// What one connection has established so far.
#[derive(Debug)]
pub struct SessionState {
    pub client_id: ClientId,
    /// Set by a successful `hello`.
    pub name: Option<String>,
}

impl SessionState {
    pub fn new(client_id: ClientId) -> Self {
        SessionState {
            client_id,
            name: None,
        }
    }
}

fn error(code: ErrorCode, message: impl Into<String>) -> ErrorBody {
    ErrorBody::new(code, message)
}

fn check_text(text: &str) -> Result<(), ErrorBody> {
    if text.len() > MAX_TEXT {
        return Err(error(
            ErrorCode::TooLarge,
            format!(
                "text is {} bytes; the limit is {MAX_TEXT} bytes",
                text.len()
            ),
        ));
    }
    Ok(())
}

fn valid_room(room: &str) -> Result<(), ErrorBody> {
    match check_room(room) {
        Some(why) => Err(error(ErrorCode::BadName, why)),
        None => Ok(()),
    }
}

impl Services {
    pub fn new(store: Store, max_frame: usize) -> Self {
        Services {
            hub: Hub::new(),
            store,
            max_frame,
        }
    }

    /// Serves one request for `session`. `bye` is answered here like any other op;
    /// closing the connection afterwards is the session's business.
    pub async fn handle(
        &self,
        session: &mut SessionState,
        request: Request,
    ) -> Result<Reply, ErrorBody> {
        let id = session.client_id;
        let name = match (&session.name, request.allowed_before_hello()) {
            (Some(name), _) => name.clone(),
            (None, true) => String::new(),
            (None, false) => {
                return Err(error(
                    ErrorCode::NotRegistered,
                    "say hello with your name first",
                ));
            }
        };
        match request {
            Request::Ping | Request::Bye => Ok(Reply::Done {}),
            Request::Hello { name, .. } => self.hello(session, name).await,
            Request::Menu => Ok(Reply::Menu(Menu::course_project())),
            Request::Users => Ok(Reply::Users {
                users: self.hub.users(),
            }),
            Request::Send { to, text } => self.send(&name, to, &text).await,
            Request::Inbox { limit } => {
                let limit = limit.unwrap_or(DEFAULT_INBOX_LIMIT).min(MAX_INBOX_LIMIT);
                let budget = self.max_frame.saturating_sub(INBOX_FRAME_HEADROOM);
                let page = self.store.take_inbox(&name, limit, budget).await?;
                Ok(Reply::Inbox(page))
            }
            Request::CreateRoom { room } => {
                valid_room(&room)?;
                self.hub.create_room(id, &room)?;
                Ok(Reply::Done {})
            }
            Request::JoinRoom { room } => {
                let members = self.hub.join_room(id, &room)?;
                Ok(Reply::Joined { members })
            }
            Request::Say { room, text } => {
                check_text(&text)?;
                self.hub.say(id, &room, &text)?;
                Ok(Reply::Done {})
            }
            Request::LeaveRoom { room } => {
                self.hub.leave_room(id, &room)?;
                Ok(Reply::Done {})
            }
            Request::CloseRoom { room } => {
                self.hub.close_room(id, &room)?;
                Ok(Reply::Done {})
            }
        }
    }

    async fn hello(&self, session: &mut SessionState, name: String) -> Result<Reply, ErrorBody> {
        if let Some(why) = check_name(&name) {
            return Err(error(ErrorCode::BadName, why));
        }
        let id = session.client_id;
        self.hub.claim_name(id, &name)?;
        if let Err(e) = self.store.seen(&name).await {
            self.hub.release_name(id);
            return Err(e.into());
        }
        tracing::info!(client_id = id, name = %name, "hello");
        session.name = Some(name.clone());
        Ok(Reply::Hello {
            client_id: id,
            name,
        })
    }

    async fn send(&self, from: &str, to: Recipient, text: &str) -> Result<Reply, ErrorBody> {
        check_text(text)?;
        let to = match to {
            Recipient::Name(name) => name,
            Recipient::Id(client) => self.hub.name_of(client).ok_or_else(|| {
                error(
                    ErrorCode::NoSuchUser,
                    format!("no user is online with client id {client}"),
                )
            })?,
        };
        let message_id = self.store.append(&to, from, text).await?;
        self.hub.notify_mail(&to, from, message_id);
        Ok(Reply::Sent { message_id })
    }
}
