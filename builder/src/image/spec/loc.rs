//! Where a value was written: [`Loc`] (file and line) for errors, [`At`]
//! (a value with its `Loc`), and [`Source`], one spec file being read, which
//! turns TOML spans into lines and resolves relative paths against the
//! file's directory.

use std::collections::BTreeSet;
use std::fs;
use std::ops::Range;
use std::path::{Path, PathBuf};

use owui_bundle::error::IoContext;
use owui_bundle::{Error, Result};
use toml::Spanned;

/// A file and line, for errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Loc {
    pub(super) file: PathBuf,
    pub(super) line: usize,
}

impl Loc {
    pub(super) fn err(&self, key: &str, detail: impl Into<String>) -> Error {
        Error::invalid(
            format!("{} line {}: {key}", self.file.display(), self.line),
            detail,
        )
    }
}

/// A value and where it was written.
#[derive(Debug, Clone)]
pub(super) struct At<T> {
    pub(super) value: T,
    pub(super) loc: Loc,
}

/// One spec file being read: its path, text and directory.
pub(super) struct Source {
    pub(super) file: PathBuf,
    pub(super) text: String,
    dir: PathBuf,
}

impl Source {
    pub(super) fn read(file: &Path) -> Result<Source> {
        let text = fs::read_to_string(file).at("reading image spec", file)?;
        let dir = match file.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        Ok(Source {
            file: file.to_path_buf(),
            text,
            dir,
        })
    }

    pub(super) fn loc(&self, span: Range<usize>) -> Loc {
        let end = span.start.min(self.text.len());
        let line = self.text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1;
        Loc {
            file: self.file.clone(),
            line,
        }
    }

    pub(super) fn at<T>(&self, s: Spanned<T>) -> At<T> {
        let loc = self.loc(s.span());
        At {
            value: s.into_inner(),
            loc,
        }
    }

    /// A list of strings, each with its line; a value listed twice in this
    /// file is an error.
    pub(super) fn list(&self, key: &str, items: Vec<Spanned<String>>) -> Result<Vec<At<String>>> {
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for item in items {
            let item = self.at(item);
            if !seen.insert(item.value.clone()) {
                return Err(item
                    .loc
                    .err(key, format!("{:?} is listed twice", item.value)));
            }
            out.push(item);
        }
        Ok(out)
    }

    pub(super) fn resolve(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.dir.join(path)
        }
    }
}
