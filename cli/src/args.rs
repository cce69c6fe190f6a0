//! Splitting a line into commands and words, and reading a command's arguments.

use std::collections::VecDeque;
use std::fmt;
use std::str::FromStr;

/// A problem with what the user typed; the shell answers with the usage line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Usage(pub String);

impl fmt::Display for Usage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Splits `line` into words: whitespace separates, single or double quotes
/// group, a backslash escapes the next character, and `\u{301}` (or
/// `\u0301`) is the character of that code point.
///
/// # Errors
/// An unterminated quote.
pub fn words(line: &str) -> Result<Vec<String>, Usage> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (_, '\\') => {
                match chars.next() {
                    Some('u') => word.push(code_point(&mut chars)?),
                    Some(next) => word.push(next),
                    None => {}
                }
                in_word = true;
            }
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (None, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        return Err(Usage("unterminated quote".into()));
    }
    if in_word {
        out.push(word);
    }
    Ok(out)
}

/// The character of a `\u{HEX}` or `\uHHHH` escape, after its `\u`.
fn code_point(chars: &mut std::str::Chars<'_>) -> Result<char, Usage> {
    let bad = |what: &str| Usage(format!("\\u{what}: write \\u{{301}} or \\u0301"));
    let mut hex = String::new();
    let mut look = chars.clone();
    if look.next() == Some('{') {
        chars.next();
        loop {
            match chars.next() {
                Some('}') => break,
                Some(c) if c.is_ascii_hexdigit() && hex.len() < 6 => hex.push(c),
                _ => return Err(bad(&format!("{{{hex}"))),
            }
        }
    } else {
        for _ in 0..4 {
            match chars.next() {
                Some(c) if c.is_ascii_hexdigit() => hex.push(c),
                _ => return Err(bad(&hex)),
            }
        }
    }
    u32::from_str_radix(&hex, 16)
        .ok()
        .and_then(char::from_u32)
        .ok_or_else(|| Usage(format!("\\u{{{hex}}} is not a character")))
}

/// Splits a `-c` argument into commands at `;` outside quotes.
pub fn commands(script: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for c in script.chars() {
        match (escaped, quote, c) {
            (true, _, _) => escaped = false,
            (false, _, '\\') => escaped = true,
            (false, Some(q), c) if c == q => quote = None,
            (false, None, '"' | '\'') => quote = Some(c),
            (false, None, ';') => {
                out.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    out.push(current);
    out.into_iter()
        .map(|c| c.trim().to_owned())
        .filter(|c| !c.is_empty())
        .collect()
}

/// The arguments of one command: positional words and `--name value` options.
#[derive(Debug, Default)]
pub struct Args {
    positional: VecDeque<String>,
    options: Vec<(String, String)>,
}

impl Args {
    /// Sorts `words` into positionals and the options named in `options`; a
    /// name ending in `!` (`"yes!"`) is a flag, `--yes`, which takes no value.
    ///
    /// # Errors
    /// An unknown option, or an option without its value.
    pub fn parse(words: Vec<String>, options: &[&str]) -> Result<Args, Usage> {
        let mut args = Args::default();
        let mut it = words.into_iter();
        while let Some(word) = it.next() {
            if let Some(name) = word.strip_prefix("--") {
                if options.iter().any(|o| o.strip_suffix('!') == Some(name)) {
                    args.options.push((name.to_owned(), String::new()));
                    continue;
                }
                if !options.contains(&name) {
                    return Err(Usage(format!("unknown option --{name}")));
                }
                let value = it
                    .next()
                    .ok_or_else(|| Usage(format!("--{name} needs a value")))?;
                args.options.push((name.to_owned(), value));
            } else {
                args.positional.push_back(word);
            }
        }
        Ok(args)
    }

    /// The next positional argument, required.
    ///
    /// # Errors
    /// When it is missing.
    pub fn word(&mut self, what: &str) -> Result<String, Usage> {
        self.positional
            .pop_front()
            .ok_or_else(|| Usage(format!("missing {what}")))
    }

    /// The next positional argument, if any.
    pub fn opt_word(&mut self) -> Option<String> {
        self.positional.pop_front()
    }

    /// The next positional argument as a number of type `T`.
    ///
    /// # Errors
    /// When it is missing or not such a number.
    pub fn number<T: FromStr>(&mut self, what: &str) -> Result<T, Usage> {
        let word = self.word(what)?;
        word.parse()
            .map_err(|_| Usage(format!("{what} must be a number, got {word:?}")))
    }

    /// All remaining positional arguments.
    pub fn rest(&mut self) -> Vec<String> {
        self.positional.drain(..).collect()
    }

    /// The value of option `--name`, if given.
    pub fn option(&mut self, name: &str) -> Option<String> {
        let at = self.options.iter().position(|(n, _)| n == name)?;
        Some(self.options.remove(at).1)
    }

    /// Whether flag `--name` was given.
    pub fn flag(&mut self, name: &str) -> bool {
        self.option(name).is_some()
    }

    /// Option `--name` as a number of type `T`, if given.
    ///
    /// # Errors
    /// When it is not such a number.
    pub fn option_number<T: FromStr>(&mut self, name: &str) -> Result<Option<T>, Usage> {
        self.option(name)
            .map(|v| {
                v.parse()
                    .map_err(|_| Usage(format!("--{name} must be a number, got {v:?}")))
            })
            .transpose()
    }

    /// Checks that nothing is left over.
    ///
    /// # Errors
    /// When extra arguments remain.
    pub fn done(self) -> Result<(), Usage> {
        if self.positional.is_empty() {
            Ok(())
        } else {
            Err(Usage(format!(
                "unexpected {}",
                self.positional.into_iter().collect::<Vec<_>>().join(" ")
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_respect_quotes_and_escapes() {
        assert_eq!(
            words(r#"register "Blue mug" --keywords mug,blue 'it''s' a\ b"#).unwrap(),
            vec![
                "register",
                "Blue mug",
                "--keywords",
                "mug,blue",
                "its",
                "a b"
            ]
        );
        assert_eq!(words("  ").unwrap(), Vec::<String>::new());
        assert_eq!(words(r#"x """#).unwrap(), vec!["x", ""]);
        assert!(words(r#"say "unterminated"#).is_err());
        assert_eq!(
            words(r#"search 3 "e\u0301clair" cre\u{300}me"#).unwrap(),
            vec!["search", "3", "e\u{301}clair", "cre\u{300}me"]
        );
        assert!(words(r"x \u{zz}").is_err());
        assert!(words(r"x \u12").is_err());
        assert!(words(r"x \u{d800}").is_err(), "a surrogate is no character");
    }

    #[test]
    fn commands_split_at_semicolons_outside_quotes() {
        assert_eq!(
            commands(r#"login a b; register "x;y" --qty 1 ;; items"#),
            vec!["login a b", r#"register "x;y" --qty 1"#, "items"]
        );
    }

    #[test]
    fn args_sort_options_from_positionals_and_report_leftovers() {
        let w = words("12 -3 --limit 5").unwrap();
        let mut a = Args::parse(w, &["limit"]).unwrap();
        assert_eq!(a.number::<i64>("item").unwrap(), 12);
        assert_eq!(a.number::<i64>("change").unwrap(), -3);
        assert_eq!(a.option_number::<i64>("limit").unwrap(), Some(5));
        assert!(a.done().is_ok());
        assert!(Args::parse(words("--nope 1").unwrap(), &["limit"]).is_err());
        assert!(Args::parse(words("--limit").unwrap(), &["limit"]).is_err());
        let mut a = Args::parse(words("x y").unwrap(), &[]).unwrap();
        assert!(a.number::<i64>("item").is_err());
        assert!(a.done().is_err());
    }
}
