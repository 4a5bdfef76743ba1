//! HAProxy configuration: reading files (`parse`), the validated model (`model`), units, quoting
//! and addresses. `load` is the one entry point: it returns a runnable [`Config`] or every error,
//! each with `file:line`.

pub mod addr;
pub mod lexer;
pub mod logtarget;
pub mod model;
pub mod parse;
pub mod units;
mod validate;

pub use model::*;
use std::path::PathBuf;

/// Warnings and errors gathered while reading configuration, already formatted with location.
#[derive(Debug, Default)]
pub struct Diagnostics {
    pub warnings: Vec<String>,
    pub errors: Vec<String>,
}

impl Diagnostics {
    pub fn error(&mut self, loc: &Loc, msg: impl std::fmt::Display) {
        self.errors.push(format!("parsing [{loc}] : {msg}"));
    }
    pub fn warning(&mut self, loc: &Loc, msg: impl std::fmt::Display) {
        self.warnings.push(format!("parsing [{loc}] : {msg}"));
    }
}

/// Reads and validates the given files in order (like several `-f`). `Err` carries the
/// diagnostics when anything was refused; warnings are returned in both cases.
pub fn load(files: &[PathBuf]) -> (Option<Config>, Diagnostics) {
    let mut parser = parse::Parser::default();
    for f in files {
        // As HAProxy: a directory stands for the `*.cfg` files in it, in lexical order.
        let paths = match std::fs::read_dir(f) {
            Ok(dir) => {
                let mut v: Vec<PathBuf> = dir
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "cfg") && p.is_file())
                    .collect();
                v.sort();
                v
            }
            Err(_) => vec![f.clone()],
        };
        for f in paths {
            match std::fs::read_to_string(&f) {
                Ok(text) => parser.parse_text(&f.display().to_string(), &text),
                Err(e) => parser.diags.errors.push(format!(
                    "Could not open configuration file {} : {e}",
                    f.display()
                )),
            }
        }
    }
    finish(parser)
}

/// Parses configuration text (for tests and embedding); `name` is used in messages.
pub fn load_str(name: &str, text: &str) -> (Option<Config>, Diagnostics) {
    let mut parser = parse::Parser::default();
    parser.parse_text(name, text);
    finish(parser)
}

fn finish(mut parser: parse::Parser) -> (Option<Config>, Diagnostics) {
    let mut cfg = std::mem::take(&mut parser.cfg);
    validate::validate(&mut cfg, &mut parser.diags);
    if parser.diags.errors.is_empty() {
        (Some(cfg), parser.diags)
    } else {
        (None, parser.diags)
    }
}

#[cfg(test)]
mod tests;
