//! Config errors that point at the spot in the file: `router.toml:12:7: message`.

use std::fmt;
use std::ops::Range;

/// One problem in the config, located by 1-based line and column; line 0 when it has
/// no position (a whole file, or a value named by its path instead).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl Diagnostic {
    /// Locates byte offset `span.start` of `text`.
    pub fn at(text: &str, span: Range<usize>, message: String) -> Diagnostic {
        let offset = span.start.min(text.len());
        let before = &text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = text[line_start..offset].chars().count() + 1;
        Diagnostic { line, column, message }
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
    pub fn unreadable(origin: String, err: &std::io::Error) -> ConfigError {
        ConfigError {
            origin,
            diagnostics: Vec::new(),
            unreadable: Some(err.to_string()),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(reason) = &self.unreadable {
            return write!(f, "{}: cannot read: {reason}", self.origin);
        }
        for (i, d) in self.diagnostics.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            if d.line == 0 {
                write!(f, "{}: {}", self.origin, d.message)?;
            } else {
                write!(f, "{}:{}:{}: {}", self.origin, d.line, d.column, d.message)?;
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
        let d = Diagnostic::at(text, offset..offset + 3, "bad".into());
        assert_eq!((d.line, d.column), (3, 7));
        let d = Diagnostic::at(text, 0..1, "first".into());
        assert_eq!((d.line, d.column), (1, 1));
    }
}
