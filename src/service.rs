//! Serves typed requests: the rules of each op, over the hub (who is online, rooms) and
//! the store (names seen, inboxes). Dialect-free: sessions of every dialect call this.

use std::sync::Arc;

use crate::auth::Hasher;
use crate::auth::backoff::Backoff;
use crate::backend::{Answer, Backend, Kept, Later, Local};
use crate::hub::{After, Departure, Ending, Holder, HubConfig, HubError, Proof};
use crate::metrics::Metrics;
use crate::outbound::{OutQueue, Outbound};
use crate::protocol::{
    ClientId, DEFAULT_HISTORY_LIMIT, DEFAULT_INBOX_LIMIT, ErrorBody, ErrorCode, Hello,
    MAX_HISTORY_LIMIT, MAX_INBOX_LIMIT, MAX_TEXT, Menu, Password, Recipient, Reply, Request,
    Response, Seen, check_name, check_room,
};
use crate::store::{Appended, Store, StoreError, is_guest};

/// Headroom left in a frame for the inbox reply's own fields around its messages.
const INBOX_FRAME_HEADROOM: usize = 1024;

/// Everything a session needs to serve requests; shared by all sessions.
#[derive(Debug)]
pub struct Services {
    /// Who is online, rooms, names and inboxes: this node's or the cluster's.
    pub backend: Backend,
    /// The largest frame a reply may fill (the inbox stops short of it).
    pub max_frame: usize,
    /// Refuse a `hello` without a password.
    pub require_password: bool,
    /// The longest `text` of a direct or room message, in bytes.
    pub max_text: usize,
    /// What the server counts, shared with its other layers.
    pub metrics: Arc<Metrics>,
    hasher: Hasher,
    /// Failed passwords per name, which slow down the next answer.
    backoff: Backoff,
}

/// The rules [`Services`] serves by that the operator chooses.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub max_frame: usize,
    pub max_text: usize,
    pub require_password: bool,
    pub hub: HubConfig,
}

/// What one connection has established so far.
#[derive(Debug)]
pub struct SessionState {
    /// The connection's own id, until it resumes a session: then that session's.
    pub client_id: ClientId,
    /// Set by a successful `hello`. Shared, so that each message sent carries its
    /// sender's name without a copy of it.
    pub name: Option<Arc<str>>,
    /// It said `bye`: its session ends with the connection, and is not parked.
    pub said_bye: bool,
    /// Where the connection stands under the server's rate limit (`--rate`), kept by
    /// the connection layer: see `server::RateLimit`.
    pub rate_clock: Option<tokio::time::Instant>,
}

impl SessionState {
    pub fn new(client_id: ClientId) -> Self {
        SessionState {
            client_id,
            name: None,
            said_bye: false,
            rate_clock: None,
        }
    }
}

/// How far [`Services::serve_now`] got with a request.
pub enum Served {
    /// Answered at once.
    Now(Result<Reply, ErrorBody>),
    /// A message on its way to being kept: answer with [`Services::sent`] once it is.
    Sending(Sending),
    /// Waits on the store or a password hash.
    Later(Request),
    /// Waits on the cluster; `None` when the answer was queued already.
    Waiting(Later<Option<Result<Reply, ErrorBody>>>),
    /// Answered already: the hub queued the answer in one step with what must follow
    /// it (a replay).
    Queued,
}

/// A direct message on its way to being kept, ready once it is (committed to the store);
/// its output goes to [`Services::sent`]. The sessions wait on this alone, a future of
/// two words, and never on the store itself: what keeps the message is the services'
/// business.
#[must_use = "the send is answered only once it is kept"]
#[derive(Debug)]
pub struct Sending(Kept<Appended>);

/// What became of a send: for [`Services::sent`].
#[derive(Debug)]
pub struct Stored(Result<Appended, StoreError>);

impl Future for Sending {
    type Output = Stored;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Stored> {
        std::pin::Pin::new(&mut self.0).poll(cx).map(Stored)
    }
}

fn error(code: ErrorCode, message: impl Into<String>) -> ErrorBody {
    ErrorBody::new(code, message)
}

fn valid_room(room: &str) -> Result<(), ErrorBody> {
    match check_room(room) {
        Some(why) => Err(error(ErrorCode::BadName, why)),
        None => Ok(()),
    }
}

impl Services {
    pub fn new(store: Store, policy: Policy) -> Self {
        Services::counted(store, policy, Arc::default())
    }

    /// Services over this node's own hub and `store`, counting into `metrics`.
    pub fn counted(store: Store, policy: Policy, metrics: Arc<Metrics>) -> Self {
        let local = Local::new(store, policy.hub, Arc::clone(&metrics));
        Services::over(Backend::Local(local), policy, metrics)
    }

    /// Services over `backend`, counting into `metrics`.
    pub fn over(backend: Backend, policy: Policy, metrics: Arc<Metrics>) -> Self {
        Services {
            backend,
            metrics,
            max_frame: policy.max_frame,
            require_password: policy.require_password,
            max_text: policy.max_text.min(MAX_TEXT),
            hasher: Hasher::default(),
            backoff: Backoff::default(),
        }
    }

    fn check_text(&self, text: &str) -> Result<(), ErrorBody> {
        if text.len() > self.max_text {
            return Err(error(
                ErrorCode::TooLarge,
                format!(
                    "text is {} bytes; the limit is {} bytes",
                    text.len(),
                    self.max_text
                ),
            ));
        }
        Ok(())
    }

    /// Serves one request for `session`, `id` being the request's; `None` when the
    /// answer was queued already (see [`Served::Queued`]). `bye` is answered here like
    /// any other op; closing the connection afterwards is the session's business.
    pub async fn handle(
        &self,
        session: &mut SessionState,
        id: Option<u64>,
        request: Request,
    ) -> Option<Result<Reply, ErrorBody>> {
        match self.serve_now(session, id, request) {
            Served::Now(outcome) => Some(outcome),
            Served::Sending(pending) => Some(self.sent(pending.await)),
            Served::Later(request) => self.serve_later(session, id, request).await,
            Served::Waiting(later) => later.await,
            Served::Queued => None,
        }
    }

    /// Serves `request` if that needs no waiting; the ops that wait on the store or on
    /// a password hash are handed back for [`Services::serve_later`]. Sessions box only
    /// those: every future a session may await is part of its task's size, idle or not.
    pub fn serve_now(
        &self,
        session: &mut SessionState,
        request_id: Option<u64>,
        request: Request,
    ) -> Served {
        let id = session.client_id;
        if session.name.is_none() && !request.allowed_before_hello() {
            return Served::Now(Err(error(
                ErrorCode::NotRegistered,
                "say hello with your name first",
            )));
        }
        Served::Now(match request {
            Request::Send { to, text } => {
                let from = session.name.clone().unwrap_or_else(|| Arc::from(""));
                match self.start_send(from, to, text) {
                    Ok(pending) => return Served::Sending(pending),
                    Err(e) => Err(e),
                }
            }
            Request::Hello { .. } | Request::Inbox { .. } | Request::Ack { .. } => {
                return Served::Later(request);
            }
            Request::Ping => Ok(Reply::Done {}),
            Request::Bye => return answered(self.backend.bye(id), done),
            Request::Menu => Ok(Reply::Menu(Menu::course_project())),
            Request::Users => {
                return answered(self.backend.users_now(), |users| Reply::Users { users });
            }
            _ => return self.serve_room(id, request_id, request),
        })
    }

    /// The room ops of [`Services::serve_now`]: apart, so that the ops every session
    /// makes most (pings, sends) stay a small function of their own.
    #[inline(never)]
    fn serve_room(&self, id: ClientId, request_id: Option<u64>, request: Request) -> Served {
        match request {
            Request::CreateRoom { room } => {
                if let Err(e) = valid_room(&room) {
                    return Served::Now(Err(e));
                }
                let created = self.backend.create_room(id, &room);
                answered(created, |epoch| Reply::Created { epoch, seq: 0 })
            }
            Request::JoinRoom { room, after, epoch } => {
                let after = after.map(|seq| After {
                    seq,
                    epoch: epoch.as_deref(),
                });
                let answer = move |reply| queued(request_id, reply);
                match self.backend.join_room(id, &room, after, answer) {
                    Answer::Now(Ok(())) => Served::Queued,
                    Answer::Now(Err(e)) => Served::Now(Err(e.into())),
                    Answer::Later(later) => Served::Waiting(Box::pin(async move {
                        later.await.err().map(|e| Err(e.into()))
                    })),
                }
            }
            Request::History {
                room,
                before,
                limit,
            } => {
                let limit = limit
                    .unwrap_or(DEFAULT_HISTORY_LIMIT)
                    .min(MAX_HISTORY_LIMIT);
                let budget = self.max_frame.saturating_sub(INBOX_FRAME_HEADROOM);
                let page = (self.backend).history(id, &room, before, limit as usize, budget);
                answered(page, Reply::History)
            }
            Request::Say { room, text } => {
                if let Err(e) = self.check_text(&text) {
                    return Served::Now(Err(e));
                }
                match self.backend.say(id, &room, text) {
                    Answer::Now(said) => Served::Now(self.said(said)),
                    Answer::Later(later) => {
                        let metrics = Arc::clone(&self.metrics);
                        Served::Waiting(Box::pin(async move {
                            let said = later.await;
                            if said.is_ok() {
                                metrics.room_message();
                            }
                            Some(said.map(|seq| Reply::Said { seq }).map_err(ErrorBody::from))
                        }))
                    }
                }
            }
            Request::LeaveRoom { room } => answered(self.backend.leave_room(id, &room), done),
            Request::CloseRoom { room } => answered(self.backend.close_room(id, &room), done),
            other => Served::Later(other),
        }
    }

    /// The answer to a `say` the hub took (or refused) at once.
    fn said(&self, said: Result<u64, HubError>) -> Result<Reply, ErrorBody> {
        let seq = said?;
        self.metrics.room_message();
        Ok(Reply::Said { seq })
    }

    /// Serves what [`Services::serve_now`] handed back: hello and inbox. `None` when
    /// the answer was queued already.
    pub async fn serve_later(
        &self,
        session: &mut SessionState,
        request_id: Option<u64>,
        request: Request,
    ) -> Option<Result<Reply, ErrorBody>> {
        let name = || session.name.as_deref().unwrap_or_default().to_owned();
        Some(match request {
            // Boxed: checking a password is the largest future here, and sends and
            // inbox reads should not each allocate room for it.
            Request::Hello(hello) => {
                return Box::pin(self.hello(session, request_id, *hello)).await;
            }
            Request::Inbox { limit, peek } => self.inbox(name(), limit, peek).await,
            Request::Ack { up_to } => self.ack(name(), up_to).await,
            other => match self.serve_now(session, request_id, other) {
                Served::Now(outcome) => outcome,
                Served::Queued => return None,
                Served::Waiting(later) => return later.await,
                Served::Sending(_) | Served::Later(_) => {
                    Err(error(ErrorCode::Internal, "no way to serve this op"))
                }
            },
        })
    }

    async fn hello(
        &self,
        session: &mut SessionState,
        request_id: Option<u64>,
        hello: Hello,
    ) -> Option<Result<Reply, ErrorBody>> {
        let Hello {
            name,
            password,
            resume,
            seen,
        } = hello;
        if let Some(why) = check_name(&name) {
            return Some(Err(error(ErrorCode::BadName, why)));
        }
        if password.is_some() && is_guest(&name) {
            return Some(Err(error(
                ErrorCode::BadName,
                "a guest- name is forgotten when its guest leaves, so it cannot be protected \
                 with a password; choose another name",
            )));
        }
        let id = session.client_id;
        let resuming = resume.is_some() && self.backend.resumes();
        if let Some(token) = resume.as_ref().filter(|_| resuming)
            && self
                .take_over(
                    session,
                    request_id,
                    &name,
                    Proof::Token(token),
                    seen.as_ref(),
                )
                .await
        {
            return None;
        }
        // Prove, then claim: a name that someone online holds is refused before any
        // password is hashed, and the name is claimed only once its password checked
        // out, so a guesser never holds, is listed as, or is notified for it.
        let mut holder = match self.backend.may_claim(id, &name).get().await {
            Ok(holder) => holder,
            Err(e) => return Some(Err(e.into())),
        };
        // A guest's name is never protected, so a parked guest ends here, before the
        // store hears of the name again: forgetting the guest afterwards would forget
        // the new session's name with it.
        if holder == Holder::Parked && is_guest(&name) {
            self.end_parked(&name).await;
            holder = Holder::Free;
        }
        let (name, by_password) = match self.authenticate(&name, password.as_ref()).await {
            Ok(proven) => proven,
            Err(e) => return Some(Err(e)),
        };
        if holder == Holder::Parked {
            if by_password
                && self
                    .take_over(session, request_id, &name, Proof::Password, seen.as_ref())
                    .await
            {
                return None;
            }
            self.end_parked(&name).await;
        }
        let token = match self.backend.claim_name(id, &name).get().await {
            Ok(token) => token,
            Err(e) => return Some(Err(e.into())),
        };
        tracing::info!(client_id = id, name = %name, "hello");
        session.name = Some(Arc::from(name.as_str()));
        Some(Ok(Reply::Hello {
            client_id: id,
            name,
            resume_token: token.map(|t| t.to_wire()),
            resumed: resuming.then_some(false),
            rooms: None,
        }))
    }

    /// Takes the session holding `name` over for `session`, if `proof` allows; the
    /// hub queues the answer. False when it does not.
    async fn take_over(
        &self,
        session: &mut SessionState,
        request_id: Option<u64>,
        name: &str,
        proof: Proof<'_>,
        seen: Option<&Seen>,
    ) -> bool {
        let answer = move |reply| queued(request_id, reply);
        let taken = (self.backend).take_over(session.client_id, name, proof, seen, answer);
        match taken.get().await {
            Ok((client_id, name)) => {
                tracing::info!(
                    client_id,
                    name = %name,
                    connection = session.client_id,
                    "resumed"
                );
                session.client_id = client_id;
                session.name = Some(Arc::from(name.as_str()));
                true
            }
            Err(_) => false,
        }
    }

    /// Lets `name` in: with its password if it is protected; registering `password` if
    /// it is not yet; openly if neither (unless the server requires passwords). Returns
    /// the name as it is displayed (in the case it was first given), and whether its
    /// password was proven: the one thing that takes over a parked session without
    /// its token.
    async fn authenticate(
        &self,
        name: &str,
        password: Option<&Password>,
    ) -> Result<(String, bool), ErrorBody> {
        let internal = |e: crate::auth::AuthError| {
            tracing::error!("{e}");
            error(ErrorCode::Internal, "could not check the password")
        };
        let mut account = self.backend.credentials(name).await?;
        loop {
            let hash = account.as_ref().and_then(|a| a.hash.as_deref());
            let display = || {
                account
                    .as_ref()
                    .map_or(name, |a| a.name.as_str())
                    .to_owned()
            };
            match (hash, password) {
                (Some(hash), Some(password)) => {
                    return match self.hasher.verify(password, hash).await {
                        Ok(true) => {
                            self.backoff.succeeded(name);
                            Ok((display(), true))
                        }
                        Ok(false) => Err(self.refuse_slowly(name).await),
                        Err(e) => Err(internal(e)),
                    };
                }
                (Some(_), None) => return Err(self.refuse_slowly(name).await),
                (None, None) if self.require_password => {
                    return Err(error(
                        ErrorCode::AuthFailed,
                        "this server requires a password with hello",
                    ));
                }
                (None, None) => return Ok((self.backend.seen(name).await?, false)),
                (None, Some(password)) => {
                    let hash = self.hasher.hash(password).await.map_err(internal)?;
                    if self.backend.register(name, hash).await? {
                        tracing::info!(name, "name protected with a password");
                        return Ok((display(), false));
                    }
                    // Protected by someone else a moment ago: check against theirs.
                    account = self.backend.credentials(name).await?;
                }
            }
        }
    }

    /// The answer to a wrong or missing password for a protected name (the same for
    /// both: no hint which it was), given only after the name's guessing delay; see
    /// [`Backoff`].
    async fn refuse_slowly(&self, name: &str) -> ErrorBody {
        let wait = self.backoff.failed(name, tokio::time::Instant::now());
        tokio::time::sleep(wait).await;
        error(
            ErrorCode::AuthFailed,
            "wrong or missing password for this name",
        )
    }

    /// The connection whose session is `id` and whose queue is `queue` ended; if it
    /// was cut, its session waits for its client to resume. What ends for good is
    /// forgotten: in the hub, and a guest's name and mail in the store.
    pub fn depart(&self, id: ClientId, queue: &OutQueue, how: Ending) -> Departure {
        let departure = self.backend.depart(id, queue, how);
        if let Departure::Gone(Some(name)) = &departure {
            self.forget_if_guest(name);
        }
        departure
    }

    /// Forgets client `id` whatever its state (its session panicked).
    pub fn disconnect(&self, id: ClientId) -> Option<String> {
        let name = self.backend.disconnect(id)?;
        self.forget_if_guest(&name);
        Some(name)
    }

    /// The server's sweep (see [`Hub::sweep`]); parked sessions whose grace ended are
    /// forgotten.
    pub fn sweep(&self, timeouts: crate::hub::Timeouts) {
        for name in self.backend.sweep(timeouts) {
            tracing::info!(name = %name, "parked session ended: no resume within the grace");
            self.forget_if_guest(&name);
        }
    }

    /// Ends the parked session holding `name`: its client said hello without the
    /// proof to resume it.
    async fn end_parked(&self, name: &str) {
        if let Some(ended) = self.backend.end_parked(name).get().await {
            tracing::info!(name = %ended, "parked session ended: its name said hello anew");
            self.forget_if_guest(&ended);
        }
    }

    fn forget_if_guest(&self, name: &str) {
        if is_guest(name) {
            // Queued now (the cluster's side spawns it); nothing waits for it.
            drop(self.backend.forget_guest(name));
        }
    }

    /// Checks a send and queues its message with the store; what the store answers
    /// goes to [`Services::sent`]. Split in two so that a session waits on the store's
    /// answer alone, not on a future with room for every op that waits.
    pub fn start_send(
        &self,
        from: Arc<str>,
        to: Recipient,
        text: String,
    ) -> Result<Sending, ErrorBody> {
        self.check_text(&text)?;
        let to = match to {
            Recipient::Name(name) => name,
            Recipient::Id(client) => match self.backend.name_of(client) {
                Some(name) => name,
                None => {
                    return (self.backend.append_to_id(client, from, text))
                        .map(Sending)
                        .ok_or_else(|| StoreError::NoSuchClient(client).into());
                }
            },
        };
        Ok(Sending(self.backend.append(to, from, text)))
    }

    /// Answers a send the store has committed (or refused), telling the recipient
    /// if it is online.
    pub fn sent(&self, Stored(stored): Stored) -> Result<Reply, ErrorBody> {
        let stored = stored?;
        self.metrics.direct_message();
        self.backend
            .notify_mail(&stored.to, &stored.from, stored.id);
        Ok(Reply::Sent {
            message_id: stored.id,
        })
    }

    /// A page of `name`'s unread mail, oldest first: taken (read on reply), or with
    /// `peek` left unread until it is acknowledged.
    async fn inbox(
        &self,
        name: String,
        limit: Option<u32>,
        peek: bool,
    ) -> Result<Reply, ErrorBody> {
        let limit = limit.unwrap_or(DEFAULT_INBOX_LIMIT).min(MAX_INBOX_LIMIT);
        let budget = self.max_frame.saturating_sub(INBOX_FRAME_HEADROOM);
        let page = self.backend.inbox(name, limit, budget, peek).await?;
        Ok(Reply::Inbox(page))
    }

    /// Marks read `name`'s unread mail up to message `up_to`, answered once that is
    /// committed: a client that saw `acked` will not be handed those messages again.
    async fn ack(&self, name: String, up_to: u64) -> Result<Reply, ErrorBody> {
        let acked = self.backend.ack(name, up_to).await?;
        Ok(Reply::Acked { acked })
    }
}

/// What an op the hub answers with `Ok(T)` is served as, `reply` making its reply.
fn answered<T: Send + 'static>(
    answer: Answer<Result<T, HubError>>,
    reply: fn(T) -> Reply,
) -> Served {
    match answer.map(move |outcome| outcome.map(reply).map_err(ErrorBody::from)) {
        Answer::Now(outcome) => Served::Now(outcome),
        Answer::Later(later) => Served::Waiting(Box::pin(async move { Some(later.await) })),
    }
}

fn done((): ()) -> Reply {
    Reply::Done {}
}

/// The queue item answering request `id` with `reply`, for the hub to queue.
fn queued(id: Option<u64>, reply: Reply) -> Outbound {
    Outbound::response(Response {
        id,
        outcome: Ok(reply),
    })
}
