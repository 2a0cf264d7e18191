//! The terminal for the interactive client: a line editor on its own thread, and a way
//! to print server events above the prompt without garbling what the user is typing.
//!
//! rustyline blocks while it reads, so it runs on a thread that reads one line per
//! prompt it is given; the async side asks for a line, keeps handling server events
//! meanwhile, and prints them through rustyline's external printer, which redraws the
//! prompt and the half-typed line below the message.

use std::borrow::Cow;
use std::io::{BufRead, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use rustyline::completion::Completer;
use rustyline::config::Configurer;
use rustyline::error::ReadlineError;
use rustyline::highlight::{CmdKind, Highlighter};
use rustyline::hint::Hinter;
use rustyline::history::DefaultHistory;
use rustyline::validate::Validator;
use rustyline::{ColorMode, Editor, ExternalPrinter, Helper};
use tokio::sync::mpsc;

/// Shows a line as typed, or, while a password is asked for, as one `*` per character.
#[derive(Default)]
struct Masking {
    on: bool,
}

impl Highlighter for Masking {
    fn highlight<'l>(&self, line: &'l str, _pos: usize) -> Cow<'l, str> {
        if self.on {
            Cow::Owned("*".repeat(line.chars().count()))
        } else {
            Cow::Borrowed(line)
        }
    }

    fn highlight_char(&self, _line: &str, _pos: usize, kind: CmdKind) -> bool {
        self.on && kind != CmdKind::MoveCursor
    }
}

impl Completer for Masking {
    type Candidate = String;
}

impl Hinter for Masking {
    type Hint = String;
}

impl Validator for Masking {}

impl Helper for Masking {}

/// A prompt for the reader thread, and whether what is typed there is secret.
struct Ask {
    prompt: String,
    secret: bool,
}

/// What the user did at a prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    Line(String),
    /// Ctrl-C.
    Interrupted,
    /// Ctrl-D, or the end of piped input.
    Eof,
    /// The prompt was taken back by [`Console::cancel`].
    Cancelled,
}

type Printer = Box<dyn ExternalPrinter + Send>;

pub struct Console {
    prompts: std_mpsc::Sender<Ask>,
    lines: mpsc::Receiver<Input>,
    printer: Option<Printer>,
    /// A prompt is out and its line has not come back yet.
    waiting: bool,
    /// Writing to stdout failed (its reader went away, as `connect | head` does).
    output_gone: bool,
    /// Set while a prompt is being taken back, so that the interrupt this causes is
    /// not taken for the user's Ctrl-C.
    cancelling: Arc<AtomicBool>,
    /// The line editor runs on a terminal, where a prompt can be taken back.
    editing: bool,
    /// Keeps SIGINT from ending the process when it arrives while no prompt is out:
    /// the line editor catches it only while it reads.
    #[cfg(unix)]
    _sigint: Option<tokio::signal::unix::Signal>,
}

/// How long taking a prompt back may take before the console gives up on it.
const CANCEL_PATIENCE: Duration = Duration::from_millis(500);

impl Console {
    /// Starts the reader thread: a line editor on a terminal, plain lines otherwise.
    pub fn start() -> Console {
        let (prompts, prompt_rx) = std_mpsc::channel::<Ask>();
        let (line_tx, lines) = mpsc::channel(1);
        let (printer_tx, printer_rx) = std_mpsc::channel::<Option<Printer>>();
        let cancelling = Arc::new(AtomicBool::new(false));
        let cancelled = Arc::clone(&cancelling);
        std::thread::spawn(move || match Editor::<Masking, DefaultHistory>::default() {
            Ok(mut editor) => {
                let printer = editor
                    .create_external_printer()
                    .ok()
                    .map(|p| Box::new(p) as Printer);
                let _ = printer_tx.send(printer);
                for Ask { prompt, secret } in prompt_rx {
                    if let Some(masking) = editor.helper_mut() {
                        masking.on = secret;
                    }
                    // Masking is done by the highlighter, which only runs with color on.
                    editor.set_color_mode(if secret {
                        ColorMode::Forced
                    } else {
                        ColorMode::Enabled
                    });
                    let input = match editor.readline(&prompt) {
                        Ok(line) => {
                            if !secret {
                                let _ = editor.add_history_entry(line.as_str());
                            }
                            Input::Line(line)
                        }
                        Err(ReadlineError::Interrupted)
                            if cancelled.swap(false, Ordering::SeqCst) =>
                        {
                            Input::Cancelled
                        }
                        Err(ReadlineError::Interrupted) => Input::Interrupted,
                        Err(_) => Input::Eof,
                    };
                    if line_tx.blocking_send(input).is_err() {
                        break;
                    }
                }
            }
            Err(_) => {
                let _ = printer_tx.send(None);
                let mut stdin = std::io::stdin().lock();
                for Ask { prompt, .. } in prompt_rx {
                    // A closed stdout is noticed by `say`; the input may still be read.
                    let mut out = std::io::stdout().lock();
                    let _ = write!(out, "{prompt}").and_then(|()| out.flush());
                    drop(out);
                    let mut line = String::new();
                    let input = match stdin.read_line(&mut line) {
                        Ok(0) | Err(_) => Input::Eof,
                        Ok(_) => Input::Line(line.trim_end_matches(['\r', '\n']).to_owned()),
                    };
                    if line_tx.blocking_send(input).is_err() {
                        break;
                    }
                }
            }
        });
        let printer = printer_rx.recv().ok().flatten();
        let editing = printer.is_some()
            && std::io::IsTerminal::is_terminal(&std::io::stdin())
            && std::io::IsTerminal::is_terminal(&std::io::stdout());
        Console {
            prompts,
            lines,
            printer,
            waiting: false,
            output_gone: false,
            cancelling,
            editing,
            #[cfg(unix)]
            _sigint: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).ok(),
        }
    }

    /// Prints one line, above the prompt if one is showing.
    pub fn say(&mut self, text: impl Into<String>) {
        let mut text = text.into();
        text.push('\n');
        if let Some(printer) = &mut self.printer
            && printer.print(text.clone()).is_ok()
        {
            return;
        }
        let mut out = std::io::stdout().lock();
        if write!(out, "{text}").and_then(|()| out.flush()).is_err() {
            self.output_gone = true;
        }
    }

    /// Whether stdout has gone away: nobody sees what the client says any more, so it
    /// should leave quietly.
    pub fn output_gone(&self) -> bool {
        self.output_gone
    }

    /// Shows `prompt`. If an earlier prompt still waits for its line (the user was
    /// taken out of a room by its owner), the line typed there answers this one, and
    /// `prompt` is printed above it so the user knows what is asked.
    pub fn prompt(&mut self, prompt: &str) {
        self.ask(prompt, false);
    }

    /// Shows `prompt` for a password: what is typed shows as `*` and stays out of the
    /// history.
    pub fn prompt_secret(&mut self, prompt: &str) {
        self.ask(prompt, true);
    }

    fn ask(&mut self, prompt: &str, secret: bool) {
        if self.waiting {
            self.say(prompt.trim_end());
        } else {
            let ask = Ask {
                prompt: prompt.to_owned(),
                secret,
            };
            self.waiting = self.prompts.send(ask).is_ok();
        }
    }

    /// Takes back the prompt that is out, so that the next one is drawn afresh instead
    /// of below a prompt whose question is gone; the half-typed line is dropped. Where
    /// that cannot be done (no terminal, or the editor did not answer in time), the
    /// next prompt's question is printed above the old one, as before.
    pub async fn cancel(&mut self) {
        if !self.waiting || !self.editing {
            return;
        }
        self.cancelling.store(true, Ordering::SeqCst);
        #[cfg(unix)]
        let raised = nix::sys::signal::raise(nix::sys::signal::Signal::SIGINT).is_ok();
        #[cfg(not(unix))]
        let raised = false;
        if raised
            && let Ok(Some(_)) = tokio::time::timeout(CANCEL_PATIENCE, self.lines.recv()).await
        {
            // The user's line, were it typed at that very moment, went with the prompt.
            self.waiting = false;
        }
        self.cancelling.store(false, Ordering::SeqCst);
    }

    /// The line typed at the prompt; cancel-safe, so it can race server events.
    pub async fn line(&mut self) -> Input {
        let input = self.lines.recv().await.unwrap_or(Input::Eof);
        self.waiting = false;
        input
    }
}
