//! Where a value was written: [`At`] (a value with its [`Loc`], the file
//! and line every TOML reader reports), and [`Source`], one spec file being
//! read, which turns TOML spans into lines and resolves relative paths
//! against the file's directory.

use std::collections::BTreeSet;
use std::fs;
use std::ops::Range;
use std::path::{Path, PathBuf};

use owui_bundle::error::IoContext;
pub(super) use owui_bundle::toml_loc::Loc;
use owui_bundle::Result;
use toml::Spanned;

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
        Loc::at(&self.file, &self.text, span.start)
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
