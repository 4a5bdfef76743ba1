//! Tokeniser for keepalived's configuration syntax.
//!
//! Owns: turning file text into words, braces and end-of-line markers, each tagged with the file
//! and line it came from, and expanding `include` directives (relative to the including file,
//! with `*`/`?` wildcards in the last path component). Guarantees: never panics on any input;
//! comments (`#` or `!` at the start of a word) run to the end of the line; a double-quoted string
//! is one word (quotes removed, `\"` and `\\` unescaped); `{` and `}` are always tokens of their
//! own, even when glued to a word, because keepalived accepts `authentication {` and `{auth_type`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where a token came from, printed as `file:line` in every diagnostic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loc {
    pub file: Arc<str>,
    pub line: u32,
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tok {
    Word(String),
    Open,
    Close,
    /// End of a line: keepalived is line oriented (a keyword's arguments stop at the newline).
    Eol,
}

#[derive(Debug, Clone)]
pub struct Token {
    pub tok: Tok,
    pub loc: Loc,
}

/// A problem that stops reading the configuration (missing file, unterminated quote, include loop).
#[derive(Debug, Clone)]
pub struct LexError {
    pub loc: Option<Loc>,
    pub msg: String,
}

impl fmt::Display for LexError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.loc {
            Some(l) => write!(f, "{l}: {}", self.msg),
            None => write!(f, "{}", self.msg),
        }
    }
}

/// Nesting limit for `include`, so a file that includes itself fails with a message, not a stack
/// overflow.
const MAX_INCLUDE_DEPTH: usize = 8;

/// Reads `path` (and everything it includes) into one token stream.
pub fn lex_file(path: &Path) -> Result<Vec<Token>, LexError> {
    let mut out = Vec::new();
    lex_file_into(path, None, 0, &mut out)?;
    Ok(out)
}

fn lex_file_into(
    path: &Path,
    from: Option<&Loc>,
    depth: usize,
    out: &mut Vec<Token>,
) -> Result<(), LexError> {
    if depth > MAX_INCLUDE_DEPTH {
        return Err(LexError {
            loc: from.cloned(),
            msg: format!("include nesting deeper than {MAX_INCLUDE_DEPTH} (loop?)"),
        });
    }
    let text = std::fs::read(path).map_err(|e| LexError {
        loc: from.cloned(),
        msg: format!("cannot read {}: {e}", path.display()),
    })?;
    let text = String::from_utf8_lossy(&text);
    let name: Arc<str> = Arc::from(path.display().to_string());
    let tokens = lex_str(&text, &name)?;
    // Splice includes: `include PATTERN` on a line of its own.
    let mut i = 0;
    while i < tokens.len() {
        let is_include = matches!(&tokens[i].tok, Tok::Word(w) if w == "include")
            && (i == 0 || tokens[i - 1].tok == Tok::Eol);
        if is_include {
            let loc = tokens[i].loc.clone();
            let pattern = match tokens.get(i + 1).map(|t| &t.tok) {
                Some(Tok::Word(w)) => w.clone(),
                _ => {
                    return Err(LexError {
                        loc: Some(loc),
                        msg: "include needs a file name".into(),
                    })
                }
            };
            let base = path.parent().unwrap_or(Path::new("."));
            for file in expand_include(base, &pattern, &loc)? {
                lex_file_into(&file, Some(&loc), depth + 1, out)?;
            }
            // Skip to the end of the include line.
            while i < tokens.len() && tokens[i].tok != Tok::Eol {
                i += 1;
            }
            continue;
        }
        out.push(tokens[i].clone());
        i += 1;
    }
    out.push(Token {
        tok: Tok::Eol,
        loc: Loc {
            file: name,
            line: 0,
        },
    });
    Ok(())
}

fn expand_include(base: &Path, pattern: &str, loc: &Loc) -> Result<Vec<PathBuf>, LexError> {
    let full = if Path::new(pattern).is_absolute() {
        PathBuf::from(pattern)
    } else {
        base.join(pattern)
    };
    let file_part = full
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    if !file_part.contains(['*', '?']) {
        return Ok(vec![full]);
    }
    let dir = full.parent().unwrap_or(Path::new("."));
    let entries = std::fs::read_dir(dir).map_err(|e| LexError {
        loc: Some(loc.clone()),
        msg: format!("include {pattern}: cannot read {}: {e}", dir.display()),
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .filter(|e| wildcard(&file_part, &e.file_name().to_string_lossy()))
        .map(|e| e.path())
        .collect();
    // Sorted, so that the order of included blocks does not depend on the file system.
    files.sort();
    Ok(files)
}

/// Shell-style matching of `*` and `?` (no character classes).
fn wildcard(pat: &str, name: &str) -> bool {
    let p: Vec<char> = pat.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni, mut star, mut mark) = (0usize, 0usize, None::<usize>, 0usize);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// Tokenises one file's text.
pub fn lex_str(text: &str, file: &Arc<str>) -> Result<Vec<Token>, LexError> {
    let mut out = Vec::new();
    for (idx, raw_line) in text.lines().enumerate() {
        let line = u32::try_from(idx + 1).unwrap_or(u32::MAX);
        let loc = Loc {
            file: file.clone(),
            line,
        };
        let push = |out: &mut Vec<Token>, tok: Tok| {
            out.push(Token {
                tok,
                loc: loc.clone(),
            })
        };
        let mut chars = raw_line.chars().peekable();
        let mut word = String::new();
        while let Some(c) = chars.next() {
            match c {
                c if c.is_whitespace() => {
                    if !word.is_empty() {
                        push(&mut out, Tok::Word(std::mem::take(&mut word)));
                    }
                }
                '#' | '!' if word.is_empty() => break,
                '{' | '}' => {
                    if !word.is_empty() {
                        push(&mut out, Tok::Word(std::mem::take(&mut word)));
                    }
                    push(&mut out, if c == '{' { Tok::Open } else { Tok::Close });
                }
                '"' => {
                    let mut closed = false;
                    while let Some(q) = chars.next() {
                        match q {
                            '"' => {
                                closed = true;
                                break;
                            }
                            '\\' => match chars.next() {
                                Some(e @ ('"' | '\\')) => word.push(e),
                                Some(e) => {
                                    word.push('\\');
                                    word.push(e);
                                }
                                None => word.push('\\'),
                            },
                            other => word.push(other),
                        }
                    }
                    if !closed {
                        return Err(LexError {
                            loc: Some(loc),
                            msg: "unterminated quoted string".into(),
                        });
                    }
                    // An empty quoted string is still a word.
                    if word.is_empty() {
                        push(&mut out, Tok::Word(String::new()));
                    }
                }
                other => word.push(other),
            }
        }
        if !word.is_empty() {
            push(&mut out, Tok::Word(word));
        }
        push(&mut out, Tok::Eol);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<Tok> {
        lex_str(s, &Arc::from("t"))
            .unwrap()
            .into_iter()
            .map(|t| t.tok)
            .collect()
    }

    #[test]
    fn comments_braces_quotes() {
        let t = words("a {b} # c\n! all comment\nscript \"/x y \\\"z\\\"\" ! tail");
        assert_eq!(
            t,
            vec![
                Tok::Word("a".into()),
                Tok::Open,
                Tok::Word("b".into()),
                Tok::Close,
                Tok::Eol,
                Tok::Eol,
                Tok::Word("script".into()),
                Tok::Word("/x y \"z\"".into()),
                Tok::Eol,
            ]
        );
    }

    #[test]
    fn unterminated_quote_has_line() {
        let e = lex_str("ok\nscript \"abc", &Arc::from("f.conf")).unwrap_err();
        assert_eq!(e.to_string(), "f.conf:2: unterminated quoted string");
    }

    #[test]
    fn wildcards() {
        assert!(wildcard("*.conf", "a.conf"));
        assert!(!wildcard("*.conf", "a.conf.bak"));
        assert!(wildcard("v?_*", "vi_1"));
    }
}
