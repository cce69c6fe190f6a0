//! What the CLIs say about their commands: the command list and one
//! command's help, wrapped to the terminal, and the command a mistyped one
//! was most likely meant to be.

use crate::shell::{CliError, Side};

/// The commands every CLI has besides its side's.
pub const BUILTINS: &[&str] = &["help", "quit", "exit"];

/// The command list (no `topic`) or one command's usage, what it does and an
/// example, wrapped to the terminal's width.
///
/// # Errors
/// When `topic` names no command of this side.
pub fn help(side: &Side, topic: Option<&str>) -> Result<String, CliError> {
    let width = crate::table::terminal_width();
    match topic {
        None => {
            let mut out = format!("{}-cli commands (help COMMAND for details):\n", side.name);
            let entries = side.commands.iter().map(|c| (c.usage, c.about)).chain([
                ("help [COMMAND]", "this list, or one command"),
                ("quit", "log out and exit (also Ctrl-D)"),
            ]);
            for (usage, about) in entries {
                out.push_str(&entry(usage, about, width));
            }
            Ok(out.trim_end().to_owned())
        }
        Some(name) => side
            .commands
            .iter()
            .find(|c| c.name == name)
            .map(|c| {
                let mut out = String::new();
                for (label, text) in [
                    ("usage: ", c.usage),
                    ("", c.about),
                    ("example: ", c.example),
                ] {
                    let lines =
                        crate::table::wrap(&format!("{label}{text}"), width.saturating_sub(4));
                    out.push_str(&lines.join("\n    "));
                    out.push('\n');
                }
                out.trim_end().to_owned()
            })
            .ok_or_else(|| CliError::Other(format!("no command {name:?}; try help"))),
    }
}

/// One line of the command list, `usage` then `about`, within `width`: the
/// about text in a column of its own when both fit beside each other, else
/// under the usage, indented.
fn entry(usage: &str, about: &str, width: usize) -> String {
    const COLUMN: usize = 44;
    let mut out = String::new();
    let usage_lines = crate::table::wrap(usage, width.saturating_sub(4));
    let beside = usage_lines.len() == 1 && usage.chars().count() < COLUMN && width > COLUMN + 20;
    if beside {
        let about_lines = crate::table::wrap(about, width - COLUMN - 3);
        for (i, line) in about_lines.iter().enumerate() {
            let left = if i == 0 { usage } else { "" };
            out.push_str(&format!("  {left:<COLUMN$} {line}\n"));
        }
    } else {
        for (i, line) in usage_lines.iter().enumerate() {
            let indent = if i == 0 { "  " } else { "    " };
            out.push_str(&format!("{indent}{line}\n"));
        }
        for line in crate::table::wrap(about, width.saturating_sub(6)) {
            out.push_str(&format!("      {line}\n"));
        }
    }
    out
}

/// The command `typed` was most likely meant to be: the same in another
/// case, or the nearest by edit distance (at most 2, and less than half the
/// word), among this side's commands and the built-ins.
pub fn closest(side: &Side, typed: &str) -> Option<&'static str> {
    let typed = typed.to_lowercase();
    let names = side
        .commands
        .iter()
        .map(|c| c.name)
        .chain(BUILTINS.iter().copied());
    names
        .map(|name| (distance(&typed, name), name))
        .filter(|(d, _)| *d <= 2 && *d * 2 < typed.chars().count().max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, name)| name)
}

/// Levenshtein distance, by characters.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = if ca == *cb {
                diagonal
            } else {
                1 + diagonal.min(above).min(row[j])
            };
            diagonal = above;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    #[test]
    fn edit_distance_counts_characters() {
        assert_eq!(super::distance("regster", "register"), 1);
        assert_eq!(super::distance("items", "items"), 0);
        assert_eq!(super::distance("", "ab"), 2);
        assert_eq!(super::distance("café", "cafe"), 1);
    }
}
