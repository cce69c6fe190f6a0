//! The two line-editor clients: `seller-cli` and `buyer-cli`.
//!
//! [`shell`] runs commands from a terminal (rustyline: history, completion,
//! no-echo passwords) or from a script (stdin that is not a terminal, or `-c`),
//! [`args`] splits and parses command lines, [`table`] prints results,
//! [`help`] describes the commands (and guesses a mistyped one), and
//! [`seller`] / [`buyer`] hold each side's commands. Every request and response
//! is a `wire` type sent through `client::Client`, which does the protocol's
//! JSON. The one place JSON is written here is `--json` output: responses as
//! they came, and buyer.rs's cart with its lines and total built by hand.

pub mod account;
pub mod args;
pub mod buyer;
pub mod help;
pub mod seller;
pub mod shell;
pub mod table;
