//! `switchboard backup` and `switchboard admin`: through the admin socket of the server
//! running on the store (see `server::admin`), or, with no server running, on the store
//! file itself.

use std::io::Write;
use std::path::Path;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use super::CliError;
use super::console::{Console, Input};
use crate::auth::Hasher;
use crate::protocol::Password;
use crate::server::admin::{Request, Response, execute, socket_path};
use crate::store::{KeepRead, Options, Store, StoreError, is_guest};

/// What `switchboard admin` does.
#[derive(Debug, Clone)]
pub enum Command {
    /// Lists every user with whether it is protected and its unread count.
    Users,
    /// Sets a new password, read from the terminal (twice) or stdin.
    ResetPassword(String),
    /// Removes a password: the name is open, and its next hello with a password
    /// protects it again.
    RemovePassword(String),
    /// Deletes a user's mail and password, and the user unless mail it sent remains.
    Forget(String),
}

/// Copies the store at `db` to `to`, whole: a running server's as committed so far.
pub async fn backup(db: &Path, to: &Path, out: &mut impl Write) -> Result<(), CliError> {
    let to = std::path::absolute(to)
        .map_err(|e| CliError::Usage(format!("cannot use {}: {e}", to.display())))?;
    call(db, Request::Backup { to: to.clone() }).await?;
    writeln!(out, "backed up {} to {}", db.display(), to.display())?;
    Ok(())
}

/// Runs `command` on the store at `db`.
pub async fn admin(db: &Path, command: Command, out: &mut impl Write) -> Result<(), CliError> {
    match command {
        Command::Users => {
            let users = call(db, Request::Users).await?.users.unwrap_or_default();
            let width = users.iter().map(|u| u.name.len()).max().unwrap_or(4).max(4);
            writeln!(out, "{:width$}  password  unread", "name")?;
            for user in users {
                let protected = if user.protected { "yes" } else { "no" };
                writeln!(out, "{:width$}  {protected:8}  {}", user.name, user.unread)?;
            }
        }
        Command::ResetPassword(name) => {
            if is_guest(&name) {
                return Err(CliError::Usage(format!(
                    "{name} is a guest name; guests have no password"
                )));
            }
            let password = new_password(&name).await?;
            let hash = Hasher::default()
                .hash(&password)
                .await
                .map_err(|e| CliError::Usage(e.to_string()))?;
            let hash = Some(hash);
            call(
                db,
                Request::SetPassword {
                    name: name.clone(),
                    hash,
                },
            )
            .await?;
            writeln!(out, "{name}: password reset")?;
        }
        Command::RemovePassword(name) => {
            let request = Request::SetPassword {
                name: name.clone(),
                hash: None,
            };
            call(db, request).await?;
            writeln!(
                out,
                "{name}: password removed; the next hello with a password sets a new one"
            )?;
        }
        Command::Forget(name) => {
            call(db, Request::Forget { name: name.clone() }).await?;
            writeln!(out, "{name}: forgotten")?;
        }
    }
    Ok(())
}

/// A new password, asked twice (masked on a terminal; two lines when piped).
async fn new_password(name: &str) -> Result<Password, CliError> {
    let mut console = Console::start();
    let mut ask = async |prompt: &str| {
        console.prompt_secret(prompt);
        match console.line().await {
            Input::Line(line) => Ok(line),
            Input::Interrupted | Input::Eof | Input::Cancelled => {
                Err(CliError::Usage("no password given; nothing changed".into()))
            }
        }
    };
    let first = ask(&format!("new password for {name}: ")).await?;
    let again = ask("the same again: ").await?;
    if first != again {
        return Err(CliError::Usage(
            "the two passwords differ; nothing changed".into(),
        ));
    }
    if first.is_empty() {
        return Err(CliError::Usage(
            "an empty password; nothing changed (remove-password opens a name)".into(),
        ));
    }
    Ok(Password(first))
}

/// Sends `request` to the server running on `db`, or, with none running, serves it on
/// the store file; an answer that is not ok is an error.
async fn call(db: &Path, request: Request) -> Result<Response, CliError> {
    let response = match UnixStream::connect(socket_path(db)).await {
        Ok(stream) => through_socket(stream, &request).await?,
        // No socket, or one a crashed server left: no server is running there.
        Err(_) => on_file(db, request).await?,
    };
    match response {
        Response { ok: true, .. } => Ok(response),
        Response { error, .. } => Err(CliError::Usage(
            error.unwrap_or_else(|| "refused without a reason".into()),
        )),
    }
}

async fn through_socket(stream: UnixStream, request: &Request) -> Result<Response, CliError> {
    let lost = |e: std::io::Error| CliError::Connect(format!("the admin socket failed: {e}"));
    let (read, mut write) = stream.into_split();
    let mut line = serde_json::to_vec(request).map_err(|e| CliError::Usage(e.to_string()))?;
    line.push(b'\n');
    write.write_all(&line).await.map_err(lost)?;
    let mut answer = String::new();
    BufReader::new(read)
        .read_line(&mut answer)
        .await
        .map_err(lost)?;
    serde_json::from_str(&answer).map_err(|_| {
        CliError::Connect("the server closed the admin socket without an answer".into())
    })
}

/// Opens the store file itself (no server runs on it), serves `request` and closes it.
async fn on_file(db: &Path, request: Request) -> Result<Response, CliError> {
    if !db.is_file() {
        return Err(CliError::Usage(format!(
            "there is no store at {} (--db names it)",
            db.display()
        )));
    }
    let options = Options {
        keep_read: KeepRead::Untouched,
        ..Options::default()
    };
    let (store, closer) = Store::start(db, options).map_err(|e| match e {
        StoreError::InUse => CliError::Usage(format!(
            "the store {} is in use by a server without an admin socket ({} is missing); \
             stop that server first",
            db.display(),
            socket_path(db).display()
        )),
        e => CliError::Usage(format!("cannot open the store {}: {e}", db.display())),
    })?;
    let response = execute(&store, None, request).await;
    drop(store);
    closer.closed().await;
    Ok(response)
}
