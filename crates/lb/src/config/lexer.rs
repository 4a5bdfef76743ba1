//! Splits one configuration line into words the way HAProxy 2.x does: `#` starts a comment,
//! `"..."` quotes with backslash escapes and `${VAR}`/`$VAR` expansion, `'...'` quotes literally,
//! and a backslash outside quotes escapes the next character (`\ `, `\#`, `\\`, `\xHH`, `\t`...).

/// Splits `line` into words. Errors describe the problem; the caller adds `file:line`.
pub fn split_words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\r' | '\n' => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '#' => break,
            '\\' => {
                in_word = true;
                cur.push(escape(&mut chars)?);
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(ch) => cur.push(ch),
                        None => return Err("unmatched single quote".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => cur.push(escape(&mut chars)?),
                        Some('$') => expand_var(&mut chars, &mut cur)?,
                        Some(ch) => cur.push(ch),
                        None => return Err("unmatched double quote".into()),
                    }
                }
            }
            other => {
                in_word = true;
                cur.push(other);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

fn escape(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Result<char, String> {
    match chars.next() {
        Some('t') => Ok('\t'),
        Some('n') => Ok('\n'),
        Some('r') => Ok('\r'),
        Some('x') => {
            let hi = chars.next().and_then(|c| c.to_digit(16));
            let lo = chars.next().and_then(|c| c.to_digit(16));
            match (hi, lo) {
                (Some(h), Some(l)) => Ok(char::from((h * 16 + l) as u8)),
                _ => Err("invalid '\\x' escape (expected two hex digits)".into()),
            }
        }
        Some(c) => Ok(c),
        None => Err("line ends with a lone backslash".into()),
    }
}

/// Expands `$NAME` or `${NAME}` from the environment (inside double quotes only, as HAProxy).
fn expand_var(
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
    out: &mut String,
) -> Result<(), String> {
    let mut name = String::new();
    if chars.peek() == Some(&'{') {
        chars.next();
        loop {
            match chars.next() {
                Some('}') => break,
                Some(c) => name.push(c),
                None => return Err("unterminated '${' in quoted string".into()),
            }
        }
    } else {
        while let Some(&c) = chars.peek() {
            if c.is_ascii_alphanumeric() || c == '_' {
                name.push(c);
                chars.next();
            } else {
                break;
            }
        }
        if name.is_empty() {
            out.push('$');
            return Ok(());
        }
    }
    out.push_str(&std::env::var(&name).unwrap_or_default());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::split_words;

    fn w(s: &str) -> Vec<String> {
        split_words(s).unwrap()
    }

    #[test]
    fn plain_words_and_comments() {
        assert_eq!(
            w("  server a 1.2.3.4:5 check # comment"),
            ["server", "a", "1.2.3.4:5", "check"]
        );
        assert!(w("# only a comment").is_empty());
        assert!(w("   ").is_empty());
    }

    #[test]
    fn quoting() {
        assert_eq!(
            w(r#"stats realm "Warren Stats""#),
            ["stats", "realm", "Warren Stats"]
        );
        assert_eq!(w(r"stats realm 'a # b'"), ["stats", "realm", "a # b"]);
        assert_eq!(w(r"stats realm a\ b\#c"), ["stats", "realm", "a b#c"]);
        assert_eq!(w(r#"x "a\"b""#), ["x", "a\"b"]);
        assert_eq!(w(r#"x "\x41""#), ["x", "A"]);
        assert_eq!(w(r#"x pre"mid"post"#), ["x", "premidpost"]);
        assert_eq!(w(r#"x """#), ["x", ""]);
    }

    #[test]
    fn env_expansion_in_double_quotes_only() {
        std::env::set_var("WARREN_LB_TEST_VAR", "v");
        assert_eq!(
            w(r#"x "${WARREN_LB_TEST_VAR}-$WARREN_LB_TEST_VAR""#),
            ["x", "v-v"]
        );
        assert_eq!(w(r"x '$WARREN_LB_TEST_VAR'"), ["x", "$WARREN_LB_TEST_VAR"]);
    }

    #[test]
    fn unterminated_quotes_are_errors() {
        assert!(split_words(r#"x "abc"#).is_err());
        assert!(split_words("x 'abc").is_err());
        assert!(split_words("x abc\\").is_err());
    }
}
