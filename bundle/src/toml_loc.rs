//! Where a TOML value was written, in one format for every TOML file we
//! read (bundle and image specs, seeds, driver sets, agent.toml, fixtures):
//! `FILE line N: KEY: what is wrong`. Parse errors keep the toml crate's
//! own text (line, column and the line quoted) after `FILE: `.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// A file and line, for errors found after parsing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loc {
    pub file: PathBuf,
    pub line: usize,
}

impl Loc {
    /// The line of byte `offset` (a span's start) in `text`, the text of `file`.
    pub fn at(file: &Path, text: &str, offset: usize) -> Loc {
        let end = offset.min(text.len());
        let line = text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1;
        Loc {
            file: file.to_path_buf(),
            line,
        }
    }

    /// An invalid-input error at this place: `FILE line N: KEY: DETAIL`.
    pub fn err(&self, key: &str, detail: impl Into<String>) -> Error {
        Error::invalid(format!("{self}: {key}"), detail)
    }
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} line {}", self.file.display(), self.line)
    }
}

/// Parses `text`, the contents of `what` (a file), as TOML into `T`. The
/// parser's message quotes the input: control characters in it are
/// escaped, so a hostile file cannot write to the operator's terminal.
pub fn parse<T: DeserializeOwned>(what: &str, text: &str) -> Result<T> {
    toml::from_str(text).map_err(|e| parse_error(what, e))
}

/// The error for a TOML parser's failure `e` on `what` (also for the
/// `toml_edit` reader that keeps comments): `FILE: ` and its message.
pub fn parse_error(what: &str, e: impl fmt::Display) -> Error {
    Error::invalid(what, printable(e.to_string().trim_end()))
}

/// `text` with every control character but the line break escaped.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\n' => c.to_string(),
            c if c.is_control() => c.escape_default().to_string(),
            c => c.to_string(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loc_counts_lines_to_the_offset() {
        let text = "a = 1\nb = 2\nc = 3\n";
        let at = |offset| Loc::at(Path::new("/x/f.toml"), text, offset).to_string();
        assert_eq!(at(0), "/x/f.toml line 1");
        assert_eq!(at(6), "/x/f.toml line 2");
        assert_eq!(at(13), "/x/f.toml line 3");
        // Past the end (a span of another text): the last line, no panic.
        assert_eq!(at(999), "/x/f.toml line 4");
        let e = Loc::at(Path::new("f.toml"), text, 6).err("b", "is wrong");
        assert_eq!(e.to_string(), "f.toml line 2: b: is wrong");
        assert_eq!(e.exit_code(), 3);
    }

    #[test]
    fn parse_errors_name_the_file_and_line_and_escape_control_characters() {
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct T {
            #[allow(dead_code)]
            a: u32,
        }
        let e = parse::<T>("f.toml", "a = 1\n\"\u{1b}[2J\" = 2\n").unwrap_err();
        let text = e.to_string();
        assert!(text.starts_with("f.toml: "), "{text}");
        assert!(text.contains("line 2"), "{text}");
        assert!(
            !text.contains('\u{1b}') && text.contains("\\u{1b}"),
            "{text}"
        );
        assert_eq!(e.exit_code(), 3);
    }
}
