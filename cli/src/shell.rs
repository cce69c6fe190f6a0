//! The command loop shared by both CLIs.
//!
//! At a terminal: a rustyline prompt showing who is logged in, history in the
//! user's data directory, tab completion of command names, Ctrl-C cancels the
//! line, Ctrl-D or `quit` logs out and exits. From a pipe or `-c`: one command
//! per line, no prompts or colours, exit status 1 if any command failed.

use crate::args::{self, Args, Usage};
use crate::help::{closest, help, BUILTINS};
use client::{Client, ClientConfig, ClientError};
use rustyline::completion::{Completer, Pair};
use rustyline::config::Configurer;
use rustyline::error::ReadlineError;
use rustyline::highlight::{CmdKind, Highlighter};
use rustyline::hint::Hinter;
use rustyline::history::DefaultHistory;
use rustyline::validate::Validator;
use rustyline::{ColorMode, CompletionType, Context, Editor, Helper};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::cell::RefCell;
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use wire::response::Failure;
use wire::{ErrorCode, Response};

/// Who is logged in.
#[derive(Debug, Clone)]
pub struct Login {
    pub session_id: String,
    pub username: String,
}

/// Why a command failed.
#[derive(Debug)]
pub enum CliError {
    /// Bad input: answered with the command's usage line.
    Usage(Usage),
    /// The server refused the request.
    Server(Failure),
    /// The connection failed beyond the retries.
    Client(ClientError),
    /// Anything else the user must fix (e.g. not logged in).
    Other(String),
}

impl From<Usage> for CliError {
    fn from(u: Usage) -> Self {
        CliError::Usage(u)
    }
}

impl From<ClientError> for CliError {
    fn from(e: ClientError) -> Self {
        CliError::Client(e)
    }
}

/// A command: its name, how to call it, and what runs it.
pub struct Command {
    pub name: &'static str,
    pub usage: &'static str,
    pub about: &'static str,
    pub example: &'static str,
    /// The `--options` it takes.
    pub options: &'static [&'static str],
    pub run: fn(&mut Ctx, Args) -> Result<(), CliError>,
}

/// One side's CLI: its name, server default and commands.
pub struct Side {
    /// `seller` or `buyer`: the prompt and the history file's name.
    pub name: &'static str,
    pub default_server: &'static str,
    /// The environment variable naming the server.
    pub server_env: &'static str,
    pub commands: &'static [Command],
    /// Ends the session (the `Logout` request of this side).
    pub logout: fn(&mut Ctx) -> Result<(), CliError>,
}

/// What commands work with: the connection, the login, how to print.
pub struct Ctx {
    /// Connected on the first request that needs the server.
    client: Client,
    /// Ctrl-C was pressed while a request waited (at a terminal).
    interrupted: Arc<AtomicBool>,
    /// A retry line is on the terminal and must be cleared.
    retrying: Arc<AtomicBool>,
    /// `seller` or `buyer`, for messages.
    side: &'static str,
    /// Where this side's server usually is (`127.0.0.1:6001`), for messages.
    default_server: &'static str,
    /// The server answered a Ping as this side's server (checked once, before
    /// the first request: a seller server would otherwise answer a buyer's
    /// login with "wrong username or password").
    checked: bool,
    pub login: Option<Login>,
    /// Print each response as one JSON line instead of tables.
    pub json: bool,
    color: bool,
    /// Passwords and card details may be asked for (stdin is a terminal).
    pub interactive: bool,
    /// The buyer's cart changed since it was last saved (or the login).
    pub cart_unsaved: bool,
    /// The last price this CLI showed for each item, so that the cart can
    /// mark one that changed since ("was 7.00").
    pub seen_prices: std::collections::HashMap<i64, f64>,
    /// Print nothing (the logout at exit in `--json` mode).
    quiet: bool,
    /// The lines of a script read from stdin, shared with the loop that runs
    /// them: a secret left off a command's line is the script's next line.
    script_lines: Option<Lines>,
}

/// A script's lines, read one at a time by the loop and by [`Ctx::secret`].
type Lines = Rc<RefCell<Box<dyn Iterator<Item = String>>>>;

impl Ctx {
    /// Sends `request` and returns its result. In `--json` mode the response is
    /// printed as it came. A `SESSION_EXPIRED` answer drops the login.
    ///
    /// # Errors
    /// The server's refusal, or a connection failure after the retries.
    pub fn call<O: wire::Op>(&mut self, fields: O::Fields) -> Result<O::Reply, CliError> {
        let print = self.json && !self.quiet;
        self.call_printing(&O::request(fields), print)
    }

    /// Like [`Ctx::call`], never printing the raw response (for a command that
    /// prints its own JSON).
    ///
    /// # Errors
    /// As [`Ctx::call`].
    pub fn call_quietly<O: wire::Op>(&mut self, fields: O::Fields) -> Result<O::Reply, CliError> {
        self.call_printing(&O::request(fields), false)
    }

    fn call_printing<R: wire::Operation + Serialize, B: DeserializeOwned>(
        &mut self,
        request: &R,
        print: bool,
    ) -> Result<B, CliError> {
        self.interrupted.store(false, Ordering::SeqCst);
        if !self.checked {
            self.check_server()?;
        }
        let mut raw = self.send(request)?;
        // Decoding works in place, so the text is kept first. A refusal is
        // printed in --json mode even by a quiet call.
        let text = self
            .json
            .then(|| String::from_utf8_lossy(&raw).into_owned());
        let response =
            Response::<B>::decode(&mut raw).map_err(|e| ClientError::Decode(e.to_string()))?;
        if let Some(text) = text {
            if print || (response.status != wire::Status::Ok && !self.quiet) {
                println!("{}", without_session_ids(text));
            }
        }
        response.into_result().map_err(|failure| {
            if failure.code == ErrorCode::SessionExpired {
                self.login = None;
            }
            CliError::Server(failure)
        })
    }

    /// Sends `request` (reconnecting as the client's rules say) and returns
    /// the raw reply, clearing the retry line it may have left at the terminal.
    fn send<R: wire::Operation + Serialize>(
        &mut self,
        request: &R,
    ) -> Result<bytes::BytesMut, ClientError> {
        let result = self.client.call_raw(request, None);
        if self.retrying.swap(false, Ordering::SeqCst) && self.interactive {
            eprint!("\r\x1b[K");
        }
        result
    }

    /// Asks the server which side it serves (Ping's `server`) and refuses to
    /// go on with the other side's. A server that does not say (one of the
    /// wire format written elsewhere) is taken at its word.
    ///
    /// # Errors
    /// When the server cannot be reached, or serves the other side.
    fn check_server(&mut self) -> Result<(), CliError> {
        let ping = wire::seller::Request::Ping(wire::request::NoFields {});
        let mut raw = self.send(&ping)?;
        if let Ok(Response {
            body: Some(pong), ..
        }) = Response::<wire::response::Pong>::decode(&mut raw)
        {
            let other = if self.side == "seller" {
                "buyer"
            } else {
                "seller"
            };
            if pong.server == other {
                let port = self
                    .default_server
                    .rsplit_once(':')
                    .map_or(self.default_server, |(_, port)| port);
                return Err(CliError::Other(format!(
                    "{} is a {other} server; the {} server is usually on {port}",
                    self.client.addr(),
                    self.side
                )));
            }
        }
        self.checked = true;
        Ok(())
    }

    /// The session id, or an error telling the user to log in.
    ///
    /// # Errors
    /// When nobody is logged in.
    pub fn session(&self) -> Result<String, CliError> {
        self.login
            .as_ref()
            .map(|l| l.session_id.clone())
            .ok_or_else(|| CliError::Other("not logged in: use login USER first".into()))
    }

    /// Prints result text, unless responses are printed as JSON.
    pub fn show(&self, text: &str) {
        if !self.json && !self.quiet {
            println!("{text}");
        }
    }

    /// A password: the given one, or asked for without echo at a terminal.
    ///
    /// # Errors
    /// When none was given and none can be asked for.
    ///
    /// In a script read from stdin, a secret left off the command's line is
    /// the script's next line (as a person would type it at the prompt); in
    /// `-c` it is an error. Neither ever echoes what it read.
    pub fn secret(&self, given: Option<String>, prompt: &str) -> Result<String, CliError> {
        let what = prompt.trim_end_matches(": ").to_lowercase();
        match given {
            Some(p) => Ok(p),
            None if self.interactive => read_secret(prompt),
            None => match &self.script_lines {
                Some(lines) => lines
                    .borrow_mut()
                    .next()
                    .map(|line| line.trim_end_matches(['\r', '\n']).to_owned())
                    .filter(|line| !line.is_empty())
                    .ok_or_else(|| {
                        CliError::Other(format!(
                            "no {what} given: the line after the command is read as the {what}"
                        ))
                    }),
                None => Err(Usage(format!(
                    "missing {what} (give it on the command's line, or run the script \
                     from stdin with the {what} on the next line)"
                ))
                .into()),
            },
        }
    }

    /// A value: the given one, or asked for (with echo) at a terminal.
    ///
    /// # Errors
    /// When none was given and none can be asked for.
    pub fn ask(&self, given: Option<String>, prompt: &str) -> Result<String, CliError> {
        match given {
            Some(v) => Ok(v),
            None if self.interactive => {
                let mut editor =
                    rustyline::DefaultEditor::new().map_err(|e| CliError::Other(e.to_string()))?;
                editor.readline(prompt).map_err(|e| prompt_error(prompt, e))
            }
            None => Err(Usage(format!(
                "missing {}",
                prompt.trim_end_matches(": ").to_lowercase()
            ))
            .into()),
        }
    }

    /// A yes/no question at the terminal (`[y/N]`): only a yes is a yes;
    /// no answer (Ctrl-D, Ctrl-C) is a no.
    ///
    /// # Errors
    /// When the terminal cannot be read at all.
    pub fn confirm(&self, prompt: &str) -> Result<bool, CliError> {
        let mut editor =
            rustyline::DefaultEditor::new().map_err(|e| CliError::Other(e.to_string()))?;
        match editor.readline(prompt) {
            Ok(answer) => Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes")),
            Err(ReadlineError::Eof | ReadlineError::Interrupted) => Ok(false),
            Err(e) => Err(CliError::Other(format!("cannot read the answer: {e}"))),
        }
    }

    fn report(&self, command: Option<&Command>, error: &CliError) {
        let line = match error {
            CliError::Usage(u) => match command {
                Some(c) => format!("{u}; usage: {}", c.usage),
                None => u.0.clone(),
            },
            CliError::Server(f) if f.code == ErrorCode::SessionExpired => {
                "your session has expired; log in again".to_owned()
            }
            CliError::Server(f) => format!("{} ({})", f.message, f.code),
            CliError::Client(e)
                if e.is_connection_lost() || matches!(e, ClientError::GaveUp { .. }) =>
            {
                format!(
                    "cannot reach the {} server at {} ({e}); is it running? \
                     deploy/up.sh starts one on this machine{}",
                    self.side,
                    self.client.addr(),
                    if self.login.is_some() {
                        " (your session ends by itself after a while)"
                    } else {
                        ""
                    }
                )
            }
            CliError::Client(e) => e.to_string(),
            CliError::Other(m) => m.clone(),
        };
        if self.color {
            eprintln!("\x1b[31merror: {line}\x1b[0m");
        } else {
            eprintln!("error: {line}");
        }
        // A --json script gets one line per command, failures included: the
        // server's refusal was printed as it came; the CLI's own finds are
        // printed here in the same shape.
        if self.json && !matches!(error, CliError::Server(_)) {
            let code = match error {
                CliError::Usage(_) => "CLI_USAGE",
                CliError::Client(e)
                    if e.is_connection_lost() || matches!(e, ClientError::GaveUp { .. }) =>
                {
                    "UNAVAILABLE"
                }
                _ => "CLI_ERROR",
            };
            let value = simd_json::json!({"status": "Error", "code": code, "message": line});
            println!("{}", simd_json::to_string(&value).unwrap_or_default());
        }
    }
}

/// A response as printed by `--json`: as it came, less any `session_id` (a
/// bearer secret: output is logged and pasted; the CLI keeps the session).
fn without_session_ids(text: String) -> String {
    if !text.contains("\"session_id\"") {
        return text;
    }
    fn strip(value: &mut simd_json::OwnedValue) {
        use simd_json::prelude::*;
        if let Some(object) = value.as_object_mut() {
            object.remove("session_id");
            for (_, inner) in object.iter_mut() {
                strip(inner);
            }
        } else if let Some(array) = value.as_array_mut() {
            array.iter_mut().for_each(strip);
        }
    }
    let mut bytes = text.into_bytes();
    match simd_json::to_owned_value(&mut bytes) {
        Ok(mut value) => {
            strip(&mut value);
            simd_json::to_string(&value)
                .unwrap_or_else(|_| r#"{"status":"OK","message":"(not printable)"}"#.into())
        }
        // Not JSON after all: nothing of it is printed.
        Err(_) => r#"{"status":"Error","message":"a response that is not JSON"}"#.into(),
    }
}

/// What a prompt that got no answer says: Ctrl-C cancels, Ctrl-D gives none.
fn prompt_error(prompt: &str, e: ReadlineError) -> CliError {
    let what = prompt
        .trim_end()
        .trim_end_matches("[y/N]")
        .trim_end()
        .trim_end_matches(':')
        .to_lowercase();
    match e {
        ReadlineError::Interrupted => CliError::Other("cancelled".into()),
        // The line editor has ended the prompt's line already.
        ReadlineError::Eof => CliError::Other(format!("no {what} given")),
        e => CliError::Other(format!("cannot read the {what}: {e}")),
    }
}

/// Hides what is typed at a secret prompt: the line editor draws it as
/// blanks, so the characters never reach the terminal, and Ctrl-C cancels the
/// prompt like any other line.
struct Masking;

impl Highlighter for Masking {
    fn highlight<'l>(&self, line: &'l str, _pos: usize) -> std::borrow::Cow<'l, str> {
        use unicode_width::UnicodeWidthStr;
        std::borrow::Cow::Owned(" ".repeat(line.width()))
    }

    fn highlight_char(&self, _line: &str, _pos: usize, kind: CmdKind) -> bool {
        kind != CmdKind::MoveCursor
    }
}
impl Completer for Masking {
    type Candidate = Pair;
}
impl Hinter for Masking {
    type Hint = String;
}
impl Validator for Masking {}
impl Helper for Masking {}

/// Reads a secret at the terminal without showing it.
fn read_secret(prompt: &str) -> Result<String, CliError> {
    let mut editor: Editor<Masking, DefaultHistory> =
        Editor::new().map_err(|e| CliError::Other(e.to_string()))?;
    editor.set_helper(Some(Masking));
    editor.set_color_mode(ColorMode::Forced);
    editor.set_auto_add_history(false);
    editor.readline(prompt).map_err(|e| prompt_error(prompt, e))
}

/// Tab completion of command names (the first word only).
struct Completion {
    names: Vec<&'static str>,
}

impl Completer for Completion {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let typed = &line[..pos];
        // The command name, or the topic after `help `.
        let (start, typed) = match typed.strip_prefix("help ") {
            Some(topic) if !topic.contains(char::is_whitespace) => (pos - topic.len(), topic),
            _ if typed.contains(char::is_whitespace) => return Ok((pos, Vec::new())),
            _ => (0, typed),
        };
        let matches = self
            .names
            .iter()
            .filter(|n| n.starts_with(typed))
            .map(|n| Pair {
                display: (*n).to_owned(),
                replacement: format!("{n} "),
            })
            .collect();
        Ok((start, matches))
    }
}

impl Hinter for Completion {
    type Hint = String;
}
impl Highlighter for Completion {}
impl Validator for Completion {}
impl Helper for Completion {}

/// Runs one command line. `Ok(false)` means "quit".
fn execute(
    side: &Side,
    ctx: &mut Ctx,
    line: &str,
) -> Result<bool, (Option<&'static Command>, CliError)> {
    // `\q` before splitting: the splitter reads a backslash as an escape.
    if line.trim() == "\\q" {
        return Ok(false);
    }
    let words = args::words(line).map_err(|u| (None, u.into()))?;
    let Some((name, rest)) = words.split_first() else {
        return Ok(true);
    };
    match name.as_str() {
        "quit" | "exit" if !rest.is_empty() => {
            return Err((
                None,
                Usage(format!("{name} takes no arguments, got {}", rest.join(" "))).into(),
            ))
        }
        "quit" | "exit" => return Ok(false),
        "help" | "?" => {
            let text = help(side, rest.first().map(String::as_str)).map_err(|e| (None, e))?;
            println!("{text}");
            return Ok(true);
        }
        _ => {}
    }
    let command = side
        .commands
        .iter()
        .find(|c| c.name == name)
        .ok_or_else(|| {
            let hint = match closest(side, name) {
                Some(known) => format!("did you mean {known}?"),
                None => "try help".to_owned(),
            };
            (
                None,
                CliError::Other(format!("unknown command {name:?}; {hint}")),
            )
        })?;
    let parsed =
        Args::parse(rest.to_vec(), command.options).map_err(|u| (Some(command), u.into()))?;
    (command.run)(ctx, parsed).map_err(|e| (Some(command), e))?;
    Ok(true)
}

/// `$XDG_STATE_HOME/marketplace/<side>-cli-history` (`~/.local/state/...`): a
/// directory of the user's own, apart from the data directory of
/// `marketplace up`.
fn history_file(side: &Side) -> Option<PathBuf> {
    let base = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))?;
    let dir = base.join("marketplace");
    std::fs::create_dir_all(&dir).ok()?;
    Some(dir.join(format!("{}-cli-history", side.name)))
}

fn prompt(side: &Side, ctx: &Ctx) -> String {
    match &ctx.login {
        Some(l) => format!("{} {}> ", side.name, l.username),
        None => format!("{}> ", side.name),
    }
}

/// Logs out at exit. In `--json` mode nothing is printed for it (the script
/// did not ask for it); as text, what it discards is still said.
fn logout_quietly(side: &Side, ctx: &mut Ctx) {
    if ctx.login.is_some() {
        // On the way out, one attempt: a server that went away is not waited
        // for (the session ends by itself after its inactivity limit).
        ctx.client.set_retry(client::Retry {
            attempts: 1,
            ..client::Retry::default()
        });
        ctx.quiet = ctx.json;
        if let Err(e) = (side.logout)(ctx) {
            ctx.report(None, &e);
        }
        ctx.quiet = false;
    }
}

/// The line as history keeps it: never a password or card detail. `login`
/// and `create-account` keep the user name only; `buy` with card options is
/// kept as `buy`.
fn for_history(line: &str) -> String {
    let Ok(words) = args::words(line) else {
        return line.to_owned();
    };
    match words.split_first() {
        Some((name, rest)) if (name == "login" || name == "create-account") && rest.len() > 1 => {
            let user = &rest[0];
            if user.contains(|c: char| c.is_whitespace() || c == '"' || c == '\'') {
                format!("{name} {user:?}")
            } else {
                format!("{name} {user}")
            }
        }
        Some((name, rest)) if name == "buy" && !rest.is_empty() => "buy".to_owned(),
        _ => line.to_owned(),
    }
}

fn interactive(side: &Side, ctx: &mut Ctx) -> ExitCode {
    let mut editor: Editor<Completion, DefaultHistory> = match Editor::new() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("cannot start the line editor: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut names: Vec<&'static str> = side.commands.iter().map(|c| c.name).collect();
    names.extend(BUILTINS);
    editor.set_helper(Some(Completion { names }));
    // Tab completes what is unambiguous and lists the choices, as shells do,
    // rather than cycling through them.
    editor.set_completion_type(CompletionType::List);
    let history = history_file(side);
    if let Some(h) = &history {
        let _ = editor.load_history(h);
    }
    println!(
        "{}-cli for the server at {}; type help for commands",
        side.name,
        ctx.client.addr()
    );
    loop {
        match editor.readline(&prompt(side, ctx)) {
            Ok(text) => {
                // A paste of several lines (bracketed paste hands them over
                // as one) runs as several commands, in order.
                let mut quit = false;
                for line in text.split(['\n', '\r']) {
                    if line.trim().is_empty() {
                        continue;
                    }
                    // Written as it goes, so a crash or a kill loses nothing.
                    let _ = editor.add_history_entry(for_history(line));
                    if let Some(h) = &history {
                        let _ = editor.append_history(h);
                    }
                    match execute(side, ctx, line) {
                        Ok(true) => {}
                        Ok(false) => {
                            quit = true;
                            break;
                        }
                        Err((command, e)) => ctx.report(command, &e),
                    }
                }
                if quit {
                    break;
                }
            }
            Err(ReadlineError::Interrupted) => {}
            Err(ReadlineError::Eof) => break,
            Err(e) => {
                eprintln!("input error: {e}");
                break;
            }
        }
    }
    logout_quietly(side, ctx);
    ExitCode::SUCCESS
}

fn scripted(side: &Side, ctx: &mut Ctx, lines: Lines, stop_on_error: bool) -> ExitCode {
    let mut failed = false;
    loop {
        // Not held while the command runs: a secret it needs is the next line.
        let Some(line) = lines.borrow_mut().next() else {
            break;
        };
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match execute(side, ctx, line) {
            Ok(true) => {}
            Ok(false) => break,
            Err((command, e)) => {
                ctx.report(command, &e);
                failed = true;
                if stop_on_error {
                    break;
                }
            }
        }
    }
    logout_quietly(side, ctx);
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// The whole `main` of a CLI.
pub fn main(side: &Side) -> ExitCode {
    let mut args = pico_args::Arguments::from_env();
    if args.contains(["-V", "--version"]) {
        println!(
            "{}-cli {} (protocol {})",
            side.name,
            env!("CARGO_PKG_VERSION"),
            wire::PROTOCOL_VERSION
        );
        return ExitCode::SUCCESS;
    }
    if args.contains(["-h", "--help"]) {
        println!(
            "usage: {0}-cli [--server HOST:PORT[,HOST:PORT...]] [--tls --ca FILE] [--json] [-e] [-c \"cmd; cmd\"]\n\
             \n  --server HOST:PORT   the {0} server [{1}] (default {2}); several,\
             \n                       comma-separated: the next is used when one fails\
             \n  --tls                speak TLS (to a TLS port of the proxy), checking that\
             \n                       the server proves the name HOST of --server\
             \n  --ca FILE            the certificate authorities to trust, PEM; implies\
             \n                       --tls [TLS_CA_FILE]\
             \n  --json               print each response as one JSON line\
             \n  -c COMMANDS          run these commands (separated by ;) and exit\
             \n  -e, --stop-on-error  in a script, stop at the first command that fails\
             \n\nWithout -c, commands are read from the terminal (with line editing) or,\n\
             when stdin is not a terminal, one per line. Type help for commands.",
            side.name, side.server_env, side.default_server
        );
        return ExitCode::SUCCESS;
    }
    let server: Option<String> = args.opt_value_from_str("--server").unwrap_or(None);
    let server = server
        .or_else(|| {
            std::env::var(side.server_env)
                .ok()
                .filter(|s| !s.is_empty())
        })
        .unwrap_or_else(|| side.default_server.to_owned());
    let json = args.contains("--json");
    let stop_on_error = args.contains(["-e", "--stop-on-error"]);
    let tls_flag = args.contains("--tls");
    let ca: Option<std::path::PathBuf> = match args.opt_value_from_str("--ca") {
        Ok(ca) => ca.or_else(|| {
            std::env::var_os("TLS_CA_FILE")
                .filter(|v| !v.is_empty())
                .map(Into::into)
        }),
        Err(e) => {
            eprintln!("{}-cli: --ca: {e}", side.name);
            return ExitCode::from(2);
        }
    };
    if tls_flag && ca.is_none() {
        eprintln!(
            "{}-cli: --tls needs --ca FILE, the certificate authorities to trust",
            side.name
        );
        return ExitCode::from(2);
    }
    let tls = match &ca {
        // The name the first server proves (a list of proxies shares one).
        Some(ca) => match client::tls::Tls::from_ca_file(
            ca,
            client::tls::host_of(server.split(',').next().unwrap_or(&server)),
        ) {
            Ok(tls) => Some(tls),
            Err(e) => {
                eprintln!("{}-cli: {e}", side.name);
                return ExitCode::from(2);
            }
        },
        None => None,
    };
    let script: Option<String> = match args.opt_value_from_str("-c") {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{}-cli: -c: {e}", side.name);
            return ExitCode::from(2);
        }
    };
    let rest = args.finish();
    if !rest.is_empty() {
        eprintln!(
            "{}-cli: unexpected arguments {rest:?} (see --help)",
            side.name
        );
        return ExitCode::from(2);
    }
    let terminal = std::io::stdin().is_terminal() && script.is_none();
    // Not connected yet: help works without a server, and the first command
    // that needs one connects.
    // Reconnecting keeps trying for about 30 s (backoff capped at 2 s).
    // A server never reached is reported at once.
    let config = ClientConfig {
        retry: client::Retry {
            attempts: 20,
            base: std::time::Duration::from_millis(100),
            max: std::time::Duration::from_secs(2),
        },
        retry_unreached: false,
        ..ClientConfig::default()
    };
    let mut client = match Client::lazy(&server, config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: the {} server address {server:?}: {e}", side.name);
            return ExitCode::from(2);
        }
    };
    if let Some(tls) = tls {
        client.use_tls(tls);
    }
    // At a terminal Ctrl-C never ends the CLI: the line editor reads it as a
    // key (cancel the line or the prompt), and while a request waits it only
    // raises this flag, which stops reconnecting.
    let interrupted = Arc::new(AtomicBool::new(false));
    if terminal {
        if let Err(e) =
            signal_hook::flag::register(signal_hook::consts::SIGINT, interrupted.clone())
        {
            eprintln!("warning: Ctrl-C will end the CLI ({e})");
        }
    }
    let retrying = Arc::new(AtomicBool::new(false));
    {
        let (interrupted, retrying) = (interrupted.clone(), retrying.clone());
        client.on_retry(move |event| {
            if interrupted.swap(false, Ordering::SeqCst) {
                return false;
            }
            retrying.store(true, Ordering::SeqCst);
            let why = match event.error {
                client::ClientError::Refused(_) => "the server's database is unavailable",
                _ => "connection lost",
            };
            if terminal {
                // One line, rewritten in place.
                eprint!(
                    "\r\x1b[K{why}, retrying {}/{}… (Ctrl-C stops)",
                    event.attempt, event.of
                );
                let _ = std::io::stderr().flush();
            } else {
                eprintln!("{why}, retrying {}/{}…", event.attempt, event.of);
            }
            true
        });
    }
    let mut ctx = Ctx {
        client,
        interrupted,
        retrying,
        side: side.name,
        default_server: side.default_server,
        checked: false,
        login: None,
        json,
        color: terminal && std::io::stderr().is_terminal(),
        interactive: terminal,
        cart_unsaved: false,
        seen_prices: std::collections::HashMap::new(),
        quiet: false,
        script_lines: None,
    };
    match script {
        Some(script) => {
            let lines: Box<dyn Iterator<Item = String>> =
                Box::new(args::commands(&script).into_iter());
            scripted(side, &mut ctx, Rc::new(RefCell::new(lines)), stop_on_error)
        }
        None if terminal => interactive(side, &mut ctx),
        None => {
            let lines: Box<dyn Iterator<Item = String>> =
                Box::new(std::io::stdin().lock().lines().map_while(Result::ok));
            let lines = Rc::new(RefCell::new(lines));
            ctx.script_lines = Some(lines.clone());
            scripted(side, &mut ctx, lines, stop_on_error)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::without_session_ids;

    #[test]
    fn json_output_never_carries_a_session_id() {
        let line = without_session_ids(
            r#"{"status":"OK","message":"ok","session_id":"s3cr3t","buyer_id":7}"#.into(),
        );
        assert!(
            !line.contains("s3cr3t") && !line.contains("session_id"),
            "{line}"
        );
        assert!(line.contains(r#""buyer_id":7"#), "{line}");
        let nested = without_session_ids(r#"{"a":[{"session_id":"x"}],"b":1}"#.into());
        assert!(!nested.contains("session_id"), "{nested}");
        let other = r#"{"status":"OK","cart_items":{}}"#;
        assert_eq!(without_session_ids(other.into()), other);
    }
}
