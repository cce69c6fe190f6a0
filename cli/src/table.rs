//! Aligned text tables and money.

use unicode_width::UnicodeWidthStr;

/// An amount of money as a person types it: digits, and at most two after a
/// point (`9`, `9.5`, `9.99`, `.50`), 0 to 1,000,000,000. No sign, no
/// exponent (`1e3` is not a price anyone means), no `inf` or `nan`.
///
/// # Errors
/// A usage error naming `what` and showing the form.
pub fn amount(word: &str, what: &str) -> Result<f64, crate::args::Usage> {
    let bad = || {
        crate::args::Usage(format!(
            "{what} is an amount like 9.99 (0 to 1000000000, to the cent), got {word:?}"
        ))
    };
    let (whole, cents) = word.split_once('.').unwrap_or((word, ""));
    let digits = |s: &str| s.chars().all(|c| c.is_ascii_digit());
    if !digits(whole) || !digits(cents) || cents.len() > 2 || (whole.is_empty() && cents.is_empty())
    {
        return Err(bad());
    }
    if word.ends_with('.') {
        return Err(bad());
    }
    let value: f64 = word.parse().map_err(|_| bad())?;
    wire::validate::price(value).map_err(|_| bad())?;
    Ok(value)
}

/// `n` and the noun, singular for one: `1 item`, `2 items`, `0 items`.
pub fn count(n: impl Into<i64>, one: &str, many: &str) -> String {
    let n = n.into();
    format!("{n} {}", if n == 1 { one } else { many })
}

/// `text` broken at spaces into lines of at most `width` characters (a word
/// longer than that gets a line of its own).
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        let wide = line.chars().count() + 1 + word.chars().count();
        if !line.is_empty() && wide > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// The terminal's width in columns, or 80 when stdout is not a terminal.
pub fn terminal_width() -> usize {
    // SAFETY: TIOCGWINSZ fills the winsize we pass; nothing else is touched.
    let mut size: libc::winsize = unsafe { std::mem::zeroed() };
    let ok = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut size) } == 0;
    if ok && size.ws_col >= 20 {
        usize::from(size.ws_col)
    } else {
        80
    }
}

/// Formats a price with two decimals.
pub fn money(price: f64) -> String {
    format!("{price:.2}")
}

/// A table: a header and rows of cells, printed with aligned columns. Numeric
/// columns (named in `right`) are right-aligned.
pub struct Table {
    header: Vec<&'static str>,
    right: Vec<bool>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column names; a name starting with `>` is right-aligned
    /// (the `>` is not printed).
    pub fn new(columns: &[&'static str]) -> Table {
        Table {
            header: columns.iter().map(|c| c.trim_start_matches('>')).collect(),
            right: columns.iter().map(|c| c.starts_with('>')).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row.
    pub fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.header.len());
        self.rows.push(cells);
    }

    /// The table as text, one line per row, no trailing spaces. Columns are
    /// measured in display columns (`日本茶` takes six, `☕` two), not chars.
    pub fn render(&self) -> String {
        let width = |i: usize| {
            self.rows
                .iter()
                .map(|r| r[i].width())
                .chain([self.header[i].width()])
                .max()
                .unwrap_or(0)
        };
        let widths: Vec<usize> = (0..self.header.len()).map(width).collect();
        let line = |cells: Vec<&str>| {
            let parts: Vec<String> = cells
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let pad = " ".repeat(widths[i].saturating_sub(c.width()));
                    if self.right[i] {
                        format!("{pad}{c}")
                    } else {
                        format!("{c}{pad}")
                    }
                })
                .collect();
            parts.join("  ").trim_end().to_owned()
        };
        let mut out = vec![line(self.header.clone())];
        for row in &self.rows {
            out.push(line(row.iter().map(String::as_str).collect()));
        }
        out.join("\n")
    }
}

/// Items as a table.
/// Items as a table; `with_seller` adds the SELLER column (not for a seller's
/// own items, where it would repeat their id on every line).
pub fn items(items: &[wire::response::Item], with_seller: bool) -> String {
    if items.is_empty() {
        return "(no items)".into();
    }
    let mut columns = vec![
        ">ID",
        "NAME",
        ">CATEGORY",
        "CONDITION",
        ">PRICE",
        ">QTY",
        ">UP",
        ">DOWN",
    ];
    if with_seller {
        columns.push(">SELLER");
    }
    columns.push("KEYWORDS");
    let mut t = Table::new(&columns);
    for i in items {
        let mut row = vec![
            i.item_id.to_string(),
            i.item_name.clone(),
            i.category.to_string(),
            i.condition.as_str().to_owned(),
            money(i.sale_price),
            if i.quantity == 0 {
                "sold out".to_owned()
            } else {
                i.quantity.to_string()
            },
            i.thumbs_up.to_string(),
            i.thumbs_down.to_string(),
        ];
        if with_seller {
            row.push(i.seller_id.to_string());
        }
        row.push(i.keywords.join(","));
        t.row(row);
    }
    t.render()
}

/// A seller's rating as one line.
pub fn rating(r: &wire::response::SellerRating) -> String {
    format!(
        "seller {}: {} up, {} down, {} items sold",
        r.seller_id, r.thumbs_up, r.thumbs_down, r.items_sold
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_singular_for_one_and_lines_wrap_at_spaces() {
        assert_eq!(count(1, "item", "items"), "1 item");
        assert_eq!(count(0, "unit", "units"), "0 units");
        assert_eq!(count(2, "run", "runs"), "2 runs");
        assert_eq!(wrap("aa bb cc dd", 5), vec!["aa bb", "cc dd"]);
        assert_eq!(wrap("a verylongword b", 4), vec!["a", "verylongword", "b"]);
        assert!(wrap("", 10).is_empty());
    }

    #[test]
    fn amounts_are_typed_as_money_not_as_floats() {
        for (typed, value) in [
            ("9", 9.0),
            ("9.5", 9.5),
            ("9.99", 9.99),
            (".50", 0.5),
            ("0", 0.0),
        ] {
            assert_eq!(amount(typed, "PRICE").unwrap(), value, "{typed}");
        }
        for typed in [
            "1e3",
            "-3",
            "+3",
            "9.999",
            "inf",
            "NaN",
            "",
            ".",
            "9.",
            "1,5",
            "2000000000",
        ] {
            let e = amount(typed, "PRICE").unwrap_err();
            assert!(e.0.contains("an amount like 9.99"), "{typed}: {e}");
        }
    }

    #[test]
    fn columns_align_and_money_has_two_decimals() {
        let mut t = Table::new(&[">ID", "NAME", ">PRICE"]);
        t.row(vec!["7".into(), "Blue mug".into(), money(9.5)]);
        t.row(vec!["12".into(), "x".into(), money(1234.0)]);
        assert_eq!(
            t.render(),
            "ID  NAME        PRICE\n 7  Blue mug     9.50\n12  x         1234.00"
        );
    }

    #[test]
    fn wide_and_emoji_characters_keep_the_columns_aligned() {
        let mut t = Table::new(&["NAME", ">PRICE"]);
        t.row(vec!["Café ☕ 日本茶".into(), money(3.0)]);
        t.row(vec!["Tea".into(), money(12.0)]);
        let out = t.render();
        let lines: Vec<&str> = out.lines().collect();
        // Every PRICE cell ends in the same display column.
        let ends: Vec<usize> = lines.iter().map(|l| l.width()).collect();
        assert_eq!(ends[1], ends[2], "{out}");
        assert_eq!(lines[2], format!("Tea{}12.00", " ".repeat(13)), "{out}");
    }
}
