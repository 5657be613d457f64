//! Config errors that point at the spot in the file: `router.toml:12:7: message`.
//!
//! Every message is bounded ([`MAX_MESSAGE`], values quoted with [`quote`]) and so
//! is their number ([`MAX_DIAGNOSTICS`]): a rejected config is logged and kept on the
//! status page, and a 50 MB value must not become a 50 MB log line.

use std::fmt;
use std::ops::Range;

/// The longest message kept, in bytes (longer ones end in "…").
pub const MAX_MESSAGE: usize = 300;
/// How many characters of a value a message quotes.
pub const MAX_QUOTED: usize = 64;
/// How many diagnostics one error keeps; a last one says how many more there were.
pub const MAX_DIAGNOSTICS: usize = 50;

/// `value` in double quotes, escaped, cut to [`MAX_QUOTED`] characters with "…".
pub fn quote(value: &str) -> String {
    match value.char_indices().nth(MAX_QUOTED) {
        None => format!("{value:?}"),
        Some((end, _)) => format!("{:?}…", &value[..end]),
    }
}

/// `text` cut to at most `max` bytes (at a character boundary), "…" marking a cut.
pub fn clip(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// One problem in the config, located by 1-based line and column; line 0 when it has
/// no position (a whole file, or a value named by its path instead).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl Diagnostic {
    /// A diagnostic with its message cut to [`MAX_MESSAGE`].
    pub fn new(line: usize, column: usize, message: &str) -> Diagnostic {
        Diagnostic {
            line,
            column,
            message: clip(message, MAX_MESSAGE),
        }
    }

    /// Locates byte offset `span.start` of `text`.
    pub fn at(text: &str, span: Range<usize>, message: &str) -> Diagnostic {
        let mut offset = span.start.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = text[line_start..offset].chars().count() + 1;
        Diagnostic::new(line, column, message)
    }
}

/// Everything wrong with one config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub origin: String,
    pub diagnostics: Vec<Diagnostic>,
    /// Set when the file could not be read at all.
    pub unreadable: Option<String>,
}

impl ConfigError {
    /// The error of a file with these diagnostics, keeping [`MAX_DIAGNOSTICS`] of them.
    pub fn new(origin: String, diagnostics: Vec<Diagnostic>) -> ConfigError {
        ConfigError::with_unshown(origin, diagnostics, 0)
    }

    /// Like [`ConfigError::new`], when `unshown` more were found but not kept.
    pub fn with_unshown(origin: String, mut diagnostics: Vec<Diagnostic>, mut unshown: usize) -> ConfigError {
        if diagnostics.len() > MAX_DIAGNOSTICS {
            unshown += diagnostics.len() - MAX_DIAGNOSTICS;
            diagnostics.truncate(MAX_DIAGNOSTICS);
        }
        if unshown > 0 {
            diagnostics.push(Diagnostic::new(0, 0, &format!("{unshown} more errors not shown")));
        }
        ConfigError {
            origin,
            diagnostics,
            unreadable: None,
        }
    }

    /// One problem with the file as a whole (no line or column).
    pub fn whole_file(origin: String, message: &str) -> ConfigError {
        ConfigError::new(origin, vec![Diagnostic::new(0, 0, message)])
    }

    pub fn unreadable(origin: String, err: &std::io::Error) -> ConfigError {
        ConfigError {
            origin,
            diagnostics: Vec::new(),
            unreadable: Some(clip(&err.to_string(), MAX_MESSAGE)),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(reason) = &self.unreadable {
            return write!(f, "{}: cannot read: {}", self.origin, clip(reason, MAX_MESSAGE));
        }
        for (i, d) in self.diagnostics.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            let message = clip(&d.message, MAX_MESSAGE);
            if d.line == 0 {
                write!(f, "{}: {message}", self.origin)?;
            } else {
                write!(f, "{}:{}:{}: {message}", self.origin, d.line, d.column)?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locates_line_and_column() {
        let text = "a = 1\n[wan]\nmac = \"x\"\n";
        let offset = text.find("\"x\"").unwrap_or_default();
        let d = Diagnostic::at(text, offset..offset + 3, "bad");
        assert_eq!((d.line, d.column), (3, 7));
        let d = Diagnostic::at(text, 0..1, "first");
        assert_eq!((d.line, d.column), (1, 1));
    }
}

#[cfg(test)]
mod bounds {
    use super::*;
    use crate::Config;

    const BODY: &str = "[wan]\ninterface = \"wan\"\naddress = \"203.0.113.10/32\"\ngateway = \"203.0.113.254\"\n\n[lan]\ninterface = \"lan\"\naddress = \"172.16.0.1/16\"\n";

    #[test]
    fn a_huge_value_gives_a_short_message() {
        let huge = "a".repeat(900_000);
        for text in [
            format!("hostname = \"{huge}\"\n{BODY}"),
            format!("hostname = \"{huge}_\"\n{BODY}"),
            BODY.replace("203.0.113.254", &huge),
            format!("{BODY}\n[[forward]]\nport = \"{huge}\"\nto = \"172.16.0.2\"\n"),
            format!("{BODY}\nunknown_{huge} = 1\n"),
            format!("hostname = [\"{huge}\"]\n{BODY}"),
        ] {
            let err = Config::parse(&text, "router.toml").expect_err("invalid");
            let shown = err.to_string();
            assert!(
                shown.len() <= "router.toml:123:123: ".len() + MAX_MESSAGE,
                "{} bytes: {shown:.200}",
                shown.len()
            );
            assert!(err.diagnostics.iter().all(|d| d.message.len() <= MAX_MESSAGE));
        }
        let err = Config::parse(&format!("hostname = \"{huge}_\"\n{BODY}"), "router.toml").expect_err("invalid");
        assert_eq!(
            err.to_string(),
            "router.toml:1:12: hostname: 900001 characters, the kernel takes 64 at most"
        );
        let err =
            Config::parse(&BODY.replace("203.0.113.254", &format!("x{huge}")), "router.toml").expect_err("invalid");
        assert_eq!(
            err.to_string(),
            format!(
                "router.toml:4:11: wan.gateway: expected an IPv4 address like 203.0.113.254, found \"x{}\"…",
                "a".repeat(MAX_QUOTED - 1)
            )
        );
    }

    #[test]
    fn many_errors_are_cut_to_a_count() {
        let forwards = "[[forward]]\nport = 0\nto = \"172.16.0.2\"\n".repeat(500);
        let err = Config::parse(&format!("{BODY}\n{forwards}"), "router.toml").expect_err("invalid");
        assert_eq!(err.diagnostics.len(), MAX_DIAGNOSTICS + 1);
        assert_eq!(
            err.to_string().lines().last(),
            Some(format!("router.toml: {} more errors not shown", 500 - MAX_DIAGNOSTICS).as_str())
        );
    }

    #[test]
    fn clip_and_quote_cut_at_character_boundaries() {
        assert_eq!(clip("short", 10), "short");
        assert_eq!(clip("ééééé", 6), "é…");
        assert_eq!(quote("ab"), "\"ab\"");
        assert_eq!(quote(&"é".repeat(100)), format!("\"{}\"…", "é".repeat(MAX_QUOTED)));
    }
}
