//! Statement tree: keepalived's line-oriented grammar on top of the token stream.
//!
//! Owns: grouping tokens into statements (`keyword args... [{ nested statements }]`). A keyword's
//! arguments end at the end of the line, at `{` or at `}`; a block may open on the keyword's line
//! or on the next one. Guarantees: unbalanced braces are refused with the file:line of the
//! offending brace (or of the block left open), never guessed at.

use super::lexer::{LexError, Loc, Tok, Token};

#[derive(Debug, Clone)]
pub struct Stmt {
    pub keyword: String,
    pub args: Vec<String>,
    pub block: Option<Vec<Stmt>>,
    pub loc: Loc,
}

pub fn build(tokens: &[Token]) -> Result<Vec<Stmt>, LexError> {
    let mut pos = 0;
    let stmts = block(tokens, &mut pos, None)?;
    Ok(stmts)
}

fn skip_eol(tokens: &[Token], pos: &mut usize) {
    while *pos < tokens.len() && tokens[*pos].tok == Tok::Eol {
        *pos += 1;
    }
}

/// Parses statements until the matching `}` (when `opened_at` is set) or the end of input.
fn block(
    tokens: &[Token],
    pos: &mut usize,
    opened_at: Option<&Loc>,
) -> Result<Vec<Stmt>, LexError> {
    let mut out = Vec::new();
    loop {
        skip_eol(tokens, pos);
        let Some(t) = tokens.get(*pos) else {
            return match opened_at {
                Some(l) => Err(LexError {
                    loc: Some(l.clone()),
                    msg: "block opened here is never closed (missing '}')".into(),
                }),
                None => Ok(out),
            };
        };
        match &t.tok {
            Tok::Close => {
                *pos += 1;
                return match opened_at {
                    Some(_) => Ok(out),
                    None => Err(LexError {
                        loc: Some(t.loc.clone()),
                        msg: "unexpected '}' with no open block".into(),
                    }),
                };
            }
            Tok::Open => {
                return Err(LexError {
                    loc: Some(t.loc.clone()),
                    msg: "unexpected '{' without a keyword before it".into(),
                })
            }
            Tok::Eol => *pos += 1,
            Tok::Word(w) => {
                let loc = t.loc.clone();
                let keyword = w.clone();
                *pos += 1;
                let mut args = Vec::new();
                while let Some(Token {
                    tok: Tok::Word(a), ..
                }) = tokens.get(*pos)
                {
                    args.push(a.clone());
                    *pos += 1;
                }
                // A block may open on the same line or on the following line.
                let mut look = *pos;
                if matches!(tokens.get(look).map(|t| &t.tok), Some(Tok::Eol)) {
                    skip_eol(tokens, &mut look);
                }
                let block_stmts = if let Some(Token {
                    tok: Tok::Open,
                    loc: open_loc,
                }) = tokens.get(look)
                {
                    let open_loc = open_loc.clone();
                    *pos = look + 1;
                    Some(block(tokens, pos, Some(&open_loc))?)
                } else {
                    None
                };
                out.push(Stmt {
                    keyword,
                    args,
                    block: block_stmts,
                    loc,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::lexer::lex_str;
    use std::sync::Arc;

    fn tree(s: &str) -> Result<Vec<Stmt>, LexError> {
        build(&lex_str(s, &Arc::from("t.conf")).unwrap())
    }

    #[test]
    fn nested_and_next_line_brace() {
        let t = tree("a 1 2\nb\n{\n c { d }\n}\n").unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].args, vec!["1", "2"]);
        let b = t[1].block.as_ref().unwrap();
        assert_eq!(b[0].keyword, "c");
        assert_eq!(b[0].block.as_ref().unwrap()[0].keyword, "d");
    }

    #[test]
    fn unbalanced() {
        let e = tree("a {\n b\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "t.conf:1: block opened here is never closed (missing '}')"
        );
        let e = tree("a\n}\n").unwrap_err();
        assert_eq!(e.to_string(), "t.conf:2: unexpected '}' with no open block");
    }
}
