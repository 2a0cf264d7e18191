//! Saying hello from the menu client: the password of a protected name, a password
//! chosen for a new name where the server requires one, another name where this one
//! cannot be had.

use super::{ask_name, typed};
use crate::cli::CliError;
use crate::cli::console::Console;
use crate::client::{Client, ClientError};
use crate::protocol::{ClientId, ErrorCode};

/// Wrong passwords allowed for one name before the client gives up.
const PASSWORD_TRIES: u32 = 3;

pub(super) struct LoggedIn {
    pub(super) client_id: ClientId,
    pub(super) name: String,
}

/// Says hello until the server lets the user in, asking for what it needs: the
/// password of a protected name (three tries), a new password where the server
/// requires one, another name where this one is taken or not allowed. `None` when
/// the user quits.
pub(super) async fn log_in(
    console: &mut Console,
    client: &Client,
    mut name: String,
    mut password: Option<String>,
) -> Result<Option<LoggedIn>, CliError> {
    let mut wrong = 0;
    loop {
        let e = match client.hello_with(&name, password.as_deref()).await {
            Ok(client_id) => return Ok(Some(LoggedIn { client_id, name })),
            Err(ClientError::Server(e)) => e,
            Err(e) => return Err(e.into()),
        };
        match e.code {
            // The server's words are the only sign of a name that is merely new.
            ErrorCode::AuthFailed if e.message.contains("requires a password") => {
                console.say(format!(
                    "This server requires a password: choose one for the name {name}."
                ));
                match choose_password(console).await {
                    Some(chosen) => password = Some(chosen),
                    None => return Ok(None),
                }
            }
            ErrorCode::AuthFailed => {
                if password.is_some() {
                    wrong += 1;
                    if wrong >= PASSWORD_TRIES {
                        return Err(CliError::Usage(format!(
                            "wrong password for {name}, {PASSWORD_TRIES} times"
                        )));
                    }
                    console.say("Wrong password; please try again.");
                } else {
                    console.say(format!("The name {name} is protected by a password."));
                }
                match ask_secret(console, "Password: ").await {
                    Some(typed) => password = Some(typed),
                    None => return Ok(None),
                }
            }
            ErrorCode::NameTaken | ErrorCode::BadName => {
                console.say(format!("{}.", e.message));
                (password, wrong) = (None, 0);
                match ask_name(console).await {
                    Some(next) => name = next,
                    None => return Ok(None),
                }
            }
            _ => return Err(ClientError::Server(e).into()),
        }
    }
}

/// A password typed at a masked prompt, asked again while blank; `None` on quit.
async fn ask_secret(console: &mut Console, prompt: &str) -> Option<String> {
    loop {
        console.prompt_secret(prompt);
        let typed = typed(console).await?;
        if !typed.is_empty() {
            return Some(typed);
        }
    }
}

/// A new password, typed twice so that a slip of the finger does not lock the user
/// out of their own name.
async fn choose_password(console: &mut Console) -> Option<String> {
    loop {
        let first = ask_secret(console, "Choose a password: ").await?;
        let again = ask_secret(console, "Type it again: ").await?;
        if first == again {
            return Some(first);
        }
        console.say("The two passwords differ; please choose again.");
    }
}
