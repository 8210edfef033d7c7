//! A reader for the small piece of Python that pyautogui code and UI-TARS actions are written
//! in: statements that are calls with literal arguments (`pyautogui.click(10, 20, button='right')`),
//! bare names (`DONE`) and imports. Nothing is evaluated; anything else is an error.

/// A literal argument.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Lit {
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<Lit>),
    Bool(bool),
    None,
}

impl Lit {
    pub(crate) fn number(&self) -> Option<f64> {
        match self {
            Lit::Int(v) => Some(*v as f64),
            Lit::Float(v) => Some(*v),
            _ => None,
        }
    }

    pub(crate) fn text(&self) -> Option<&str> {
        match self {
            Lit::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// A call: dotted name, positional and keyword arguments.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Call {
    pub name: String,
    pub args: Vec<Lit>,
    pub kwargs: Vec<(String, Lit)>,
}

impl Call {
    /// The argument at `index`, or the keyword argument `name`.
    pub(crate) fn arg(&self, index: usize, name: &str) -> Option<&Lit> {
        self.kwargs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
            .or_else(|| self.args.get(index))
    }
}

/// One statement.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Stmt {
    Call(Call),
    /// A bare name such as `WAIT`, `DONE`, `FAIL`.
    Name(String),
}

const MAX_DEPTH: usize = 16;

/// Positional and keyword arguments of a call.
type Arguments = (Vec<Lit>, Vec<(String, Lit)>);

/// Reads `code` as statements separated by newlines or `;`. Imports and comments are skipped.
pub(crate) fn statements(code: &str) -> Result<Vec<Stmt>, String> {
    let mut r = Reader {
        chars: code.chars().collect(),
        at: 0,
    };
    let mut out = Vec::new();
    loop {
        r.skip_blank(true);
        let Some(c) = r.peek() else { break };
        if c == ';' {
            r.at += 1;
            continue;
        }
        let name = r.ident().ok_or_else(|| r.error("a statement"))?;
        if name == "import" || name == "from" {
            while r.peek().is_some_and(|c| c != '\n' && c != ';') {
                r.at += 1;
            }
            continue;
        }
        r.skip_blank(false);
        if r.peek() == Some('(') {
            r.at += 1;
            let (args, kwargs) = r.arguments()?;
            out.push(Stmt::Call(Call { name, args, kwargs }));
        } else {
            out.push(Stmt::Name(name));
        }
        r.skip_blank(false);
        match r.peek() {
            None | Some('\n') | Some(';') => {}
            Some(_) => return Err(r.error("the end of the statement")),
        }
    }
    Ok(out)
}

struct Reader {
    chars: Vec<char>,
    at: usize,
}

impl Reader {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).copied()
    }

    fn error(&self, wanted: &str) -> String {
        let seen: String = self.chars.iter().skip(self.at).take(20).collect();
        match self.peek() {
            Some(_) => format!("expected {wanted} at character {}, found {seen:?}", self.at),
            None => format!("expected {wanted}, found the end"),
        }
    }

    /// Skips spaces and comments, and newlines too when `newlines`.
    fn skip_blank(&mut self, newlines: bool) {
        while let Some(c) = self.peek() {
            if c == '#' {
                while self.peek().is_some_and(|c| c != '\n') {
                    self.at += 1;
                }
            } else if c == ' ' || c == '\t' || c == '\r' || (newlines && c == '\n') {
                self.at += 1;
            } else {
                break;
            }
        }
    }

    fn ident(&mut self) -> Option<String> {
        let start = self.at;
        while let Some(c) = self.peek() {
            let ok = c == '_'
                || c.is_ascii_alphabetic()
                || (self.at > start && (c.is_ascii_digit() || c == '.'));
            if !ok {
                break;
            }
            self.at += 1;
        }
        (self.at > start).then(|| self.chars[start..self.at].iter().collect())
    }

    /// The arguments after `(`, through the closing `)`.
    fn arguments(&mut self) -> Result<Arguments, String> {
        let mut args = Vec::new();
        let mut kwargs = Vec::new();
        loop {
            self.skip_blank(true);
            if self.peek() == Some(')') {
                self.at += 1;
                return Ok((args, kwargs));
            }
            let mark = self.at;
            let keyword = self.ident().and_then(|name| {
                self.skip_blank(true);
                (self.peek() == Some('=')).then_some(name)
            });
            match keyword {
                Some(name) => {
                    self.at += 1;
                    self.skip_blank(true);
                    kwargs.push((name, self.literal(0)?));
                }
                None => {
                    self.at = mark;
                    if !kwargs.is_empty() {
                        return Err(self.error("a keyword argument (positional after keyword)"));
                    }
                    args.push(self.literal(0)?);
                }
            }
            self.skip_blank(true);
            match self.peek() {
                Some(',') => self.at += 1,
                Some(')') => {}
                _ => return Err(self.error("',' or ')'")),
            }
        }
    }

    fn literal(&mut self, depth: usize) -> Result<Lit, String> {
        if depth > MAX_DEPTH {
            return Err("literals nested too deep".into());
        }
        match self.peek() {
            Some('\'') | Some('"') => self.string().map(Lit::Str),
            Some('[') | Some('(') => {
                let close = if self.peek() == Some('[') { ']' } else { ')' };
                self.at += 1;
                let mut items = Vec::new();
                loop {
                    self.skip_blank(true);
                    if self.peek() == Some(close) {
                        self.at += 1;
                        return Ok(Lit::List(items));
                    }
                    items.push(self.literal(depth + 1)?);
                    self.skip_blank(true);
                    match self.peek() {
                        Some(',') => self.at += 1,
                        Some(c) if c == close => {}
                        _ => return Err(self.error("',' or the end of the list")),
                    }
                }
            }
            Some(c) if c.is_ascii_digit() || c == '-' || c == '+' || c == '.' => self.number(),
            Some(_) => match self.ident().as_deref() {
                Some("True") => Ok(Lit::Bool(true)),
                Some("False") => Ok(Lit::Bool(false)),
                Some("None") => Ok(Lit::None),
                _ => Err(self.error("a literal")),
            },
            None => Err(self.error("a literal")),
        }
    }

    fn number(&mut self) -> Result<Lit, String> {
        let start = self.at;
        if matches!(self.peek(), Some('-') | Some('+')) {
            self.at += 1;
        }
        while let Some(c) = self.peek() {
            let exponent_sign = (c == '-' || c == '+')
                && self.at > start
                && matches!(self.chars[self.at - 1], 'e' | 'E');
            if c.is_ascii_digit() || c == '.' || c == 'e' || c == 'E' || c == '_' || exponent_sign {
                self.at += 1;
            } else {
                break;
            }
        }
        let text: String = self.chars[start..self.at]
            .iter()
            .filter(|&&c| c != '_')
            .collect();
        if let Ok(v) = text.parse::<i64>() {
            return Ok(Lit::Int(v));
        }
        match text.parse::<f64>() {
            Ok(v) if v.is_finite() => Ok(Lit::Float(v)),
            _ => Err(format!("{text:?} is not a number")),
        }
    }

    fn string(&mut self) -> Result<String, String> {
        let Some(quote) = self.peek() else {
            return Err(self.error("a string"));
        };
        self.at += 1;
        let mut out = String::new();
        loop {
            let Some(c) = self.peek() else {
                return Err("a string is not closed".into());
            };
            self.at += 1;
            if c == quote {
                return Ok(out);
            }
            if c == '\n' {
                return Err("a string runs past the end of its line".into());
            }
            if c != '\\' {
                out.push(c);
                continue;
            }
            let Some(e) = self.peek() else {
                return Err("a string ends in a backslash".into());
            };
            self.at += 1;
            match e {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'r' => out.push('\r'),
                '0' => out.push('\0'),
                '\\' | '\'' | '"' => out.push(e),
                'x' | 'u' | 'U' => {
                    let len = match e {
                        'x' => 2,
                        'u' => 4,
                        _ => 8,
                    };
                    let digits: String = self.chars.iter().skip(self.at).take(len).collect();
                    let code = u32::from_str_radix(&digits, 16)
                        .ok()
                        .filter(|_| digits.len() == len)
                        .and_then(char::from_u32)
                        .ok_or_else(|| format!("bad escape \\{e}{digits}"))?;
                    self.at += len;
                    out.push(code);
                }
                other => {
                    out.push('\\');
                    out.push(other);
                }
            }
        }
    }
}

/// A Python string literal for `text`, single-quoted, that [`statements`] reads back as `text`.
pub(crate) fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('\'');
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\U{:08x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use super::{Lit, Stmt, quote, statements};

    #[test]
    fn calls_names_and_imports() {
        let code = "import pyautogui\npyautogui.click(10, 20.5, button='right'); DONE # end\n";
        let s = statements(code).expect("parses");
        assert_eq!(s.len(), 2);
        let Stmt::Call(call) = &s[0] else {
            panic!("{s:?}")
        };
        assert_eq!(call.name, "pyautogui.click");
        assert_eq!(call.args, [Lit::Int(10), Lit::Float(20.5)]);
        assert_eq!(call.arg(5, "button"), Some(&Lit::Str("right".into())));
        assert_eq!(s[1], Stmt::Name("DONE".into()));
    }

    #[test]
    fn strings_round_trip_through_quote() {
        for text in ["plain", "it's \"q\"", "a\\b\nc\t", "ünï ✓", "\u{7}"] {
            let code = format!("f({})", quote(text));
            let s = statements(&code).expect("parses");
            let Stmt::Call(call) = &s[0] else {
                panic!("{s:?}")
            };
            assert_eq!(call.args, [Lit::Str(text.into())], "{code}");
        }
    }

    #[test]
    fn broken_code_is_an_error_not_a_panic() {
        for bad in [
            "f(",
            "f('x",
            "f(1 2)",
            "f(a=1, 2)",
            "1 + 2",
            "f()g",
            "f(\"\\x4\")",
        ] {
            assert!(statements(bad).is_err(), "{bad:?}");
        }
        let deep = format!("f({}1{})", "[".repeat(100), "]".repeat(100));
        assert!(statements(&deep).is_err());
    }
}
