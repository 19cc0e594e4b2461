//! Configuration errors: each names the file, the key in TOML dotted form and
//! what was wrong, on one line (several validation problems: one per line).

use std::fmt;
use std::ops::Range;

use toml::de::{DeTable, DeValue};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{origin}: cannot read the configuration: {source}")]
    Read {
        origin: String,
        #[source]
        source: std::io::Error,
    },
    /// Not TOML, or TOML that does not fit the schema (unknown key, wrong
    /// type, missing key, bad value). TOML stops at the first such error.
    #[error("{}", syntax_line(.origin, *.line, *.column, .key, .message))]
    Syntax {
        origin: String,
        /// 1-based.
        line: usize,
        /// 1-based, in characters.
        column: usize,
        /// Dotted path of the offending key (`ikev2.profile.P.dpd.interval`,
        /// `bgp.neighbor[0].remote_as`); empty when the error is not inside
        /// a key (a syntax error, or a missing top-level table).
        key: String,
        message: String,
    },
    /// Well-formed, but inconsistent: every problem found, in file order of
    /// the tables.
    #[error("{}", invalid_lines(.origin, .problems))]
    Invalid {
        origin: String,
        problems: Vec<Problem>,
    },
}

/// One validation problem: the dotted key path and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

fn syntax_line(origin: &str, line: usize, column: usize, key: &str, message: &str) -> String {
    if key.is_empty() {
        format!("{origin}:{line}:{column}: {message}")
    } else {
        format!("{origin}:{line}:{column}: {key}: {message}")
    }
}

fn invalid_lines(origin: &str, problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("{origin}: {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

impl ConfigError {
    /// Turns a TOML error into a `Syntax` error: line and column from the
    /// byte span, the key path from where the span lies in the document.
    pub(crate) fn from_toml(origin: &str, text: &str, err: &toml::de::Error) -> Self {
        let span = err.span();
        let (line, column) = span.as_ref().map_or((1, 1), |s| line_column(text, s.start));
        let key = span
            .filter(|s| !s.is_empty())
            .and_then(|s| key_at(text, &s))
            .unwrap_or_default();
        let message = friendlier(err.message(), key.is_empty());
        Self::Syntax {
            origin: origin.to_owned(),
            line,
            column,
            key,
            message,
        }
    }
}

/// serde speaks of fields and Rust types; the file has keys, tables and
/// numbers.
fn friendlier(message: &str, at_root: bool) -> String {
    let mut m = message.trim().replace('\n', "; ");
    if at_root && let Some(table) = m.strip_prefix("missing field `") {
        m = format!("missing table [{}]", table.trim_end_matches('`'));
    }
    for (from, to) in [
        ("unknown field `", "unknown key `"),
        ("missing field `", "missing key `"),
    ] {
        if let Some(rest) = m.strip_prefix(from) {
            m = format!("{to}{rest}");
        }
    }
    for (rust, human) in [
        ("expected u8", "expected an integer in 0..=255"),
        ("expected u16", "expected an integer in 0..=65535"),
        ("expected u32", "expected an integer in 0..=4294967295"),
        ("expected u64", "expected a non-negative integer"),
        (
            "expected IPv4 address",
            "expected an IPv4 address (\"a.b.c.d\")",
        ),
        ("expected a boolean", "expected true or false"),
    ] {
        if let Some(head) = m.strip_suffix(rust) {
            m = format!("{head}{human}");
        }
    }
    m
}

/// 1-based line and column (in characters) of a byte offset.
pub(crate) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// The dotted path of the innermost key whose name or value covers `span`.
fn key_at(text: &str, span: &Range<usize>) -> Option<String> {
    let doc = DeTable::parse(text).ok()?;
    let mut path = Vec::new();
    find_in_table(doc.get_ref(), span.start, &mut path).then(|| path.concat())
}

fn find_in_table(table: &DeTable<'_>, pos: usize, path: &mut Vec<String>) -> bool {
    for (key, value) in table {
        let segment = if path.is_empty() {
            quote_key(key.get_ref())
        } else {
            format!(".{}", quote_key(key.get_ref()))
        };
        path.push(segment);
        if find_in_value(value.get_ref(), pos, path)
            || key.span().contains(&pos)
            || value.span().contains(&pos)
        {
            return true;
        }
        path.pop();
    }
    false
}

fn find_in_value(value: &DeValue<'_>, pos: usize, path: &mut Vec<String>) -> bool {
    match value {
        DeValue::Table(t) => find_in_table(t, pos, path),
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                path.push(format!("[{i}]"));
                if find_in_value(item.get_ref(), pos, path) || item.span().contains(&pos) {
                    return true;
                }
                path.pop();
            }
            false
        }
        _ => false,
    }
}

/// A key as it would be written in a dotted TOML key: bare when it can be.
pub(crate) fn quote_key(key: &str) -> String {
    if !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        key.to_owned()
    } else {
        format!("{key:?}")
    }
}
