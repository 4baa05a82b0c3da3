//! `.env` files, read the way docker compose reads them.
//!
//! SeaTable 4.3+ keeps its settings and secrets in `/opt/seatable-compose/.env`, and only docker
//! compose ever reads that file. To see the values SeaTable's containers see, this module follows
//! compose's own parser (compose-go's `dotenv` and `template` packages) instead of shell rules or a
//! regex: `KEY=VALUE`, `KEY: VALUE`, `export KEY=VALUE`, `#` comments, single quotes (literal),
//! double quotes (escapes, interpolation), multi-line quoted values, and `$VAR` / `${VAR...}`
//! interpolation, including compose's `:-` `-` `:?` `?` `:+` `+` modifiers and `$$`.
//!
//! It is hand-written on purpose: a general dotenv crate follows shell-like rules of its own, and
//! any rule that differs from compose's reads another value than the one SeaTable runs with.
//!
//! Where we knowingly differ from compose:
//! - A bare `KEY` line (compose: "copy it from the environment") is skipped: we want what the file
//!   says, and the environment compose ran with is not ours.
//! - Interpolation looks at keys defined earlier in the file before the caller's lookup (compose asks
//!   the process environment first), for the same reason.
//! - Anything after a closing quote on the same line is ignored (compose would try to read another
//!   statement there).
//! - In unquoted values a `#` after any whitespace starts a comment (compose: only after a space),
//!   including the whitespace right after `=`, so `KEY= # note` is empty.
//!
//! Error messages never quote values: a malformed line may well hold a password.

use std::fmt;

/// A parsed `.env`: each key once, in the order it was first defined, holding its last value.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct DotEnv {
    entries: Vec<(String, String)>,
}

/// Why a `.env` (or, in `ini.rs`, a `.conf`) could not be read: the line and what is wrong
/// there. The caller adds the file name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for LineError {}

fn error(line: usize, message: impl Into<String>) -> LineError {
    LineError { line, message: message.into() }
}

/// `${A:-${B:-...}}` recurses; a hostile file must not be able to exhaust the stack.
const MAX_NESTING: usize = 32;

impl DotEnv {
    /// Parses without any outer variables: unknown `$VAR`s expand to "".
    pub fn parse(text: &str) -> Result<DotEnv, LineError> {
        Self::parse_with(text, &|_| None)
    }

    /// Parses; `lookup` answers for variables the file has not defined (yet), usually the process
    /// environment.
    pub fn parse_with(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<DotEnv, LineError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let text = text.replace("\r\n", "\n");
        Parser { chars: text.chars().collect(), pos: 0, line: 1, lookup, env: DotEnv::default() }.run()
    }

    /// `None` if the key is not set; `Some("")` if it is set to nothing.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// `None` if the key is unset, empty or only whitespace.
    pub fn get_nonempty(&self, key: &str) -> Option<&str> {
        self.get(key).filter(|v| !v.trim().is_empty())
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(k, _)| k.as_str())
    }

    /// `true/false/1/0/yes/no/on/off` (any case); `None` when unset or anything else.
    pub fn bool(&self, key: &str) -> Option<bool> {
        self.get(key).and_then(parse_bool)
    }

    fn set(&mut self, key: String, value: String) {
        match self.entries.iter_mut().find(|(k, _)| *k == key) {
            Some(entry) => entry.1 = value,
            None => self.entries.push((key, value)),
        }
    }
}

/// Values are secrets more often than not, so only the keys are shown.
impl fmt::Debug for DotEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DotEnv").field("keys", &self.keys().collect::<Vec<_>>()).finish()
    }
}

/// The boolean spellings SeaTable's settings use (Python configparser's set): `true/false`,
/// `1/0`, `yes/no`, `on/off`, any case, surrounding whitespace ignored.
pub fn parse_bool(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

struct Parser<'a> {
    chars: Vec<char>,
    pos: usize,
    line: usize,
    lookup: &'a dyn Fn(&str) -> Option<String>,
    env: DotEnv,
}

/// compose's notion of a space: whitespace that does not end the line.
fn is_blank(c: char) -> bool {
    c != '\n' && c.is_whitespace()
}

fn is_key_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '.' | '-' | '[' | ']')
}

/// Interpolation names are narrower than keys: compose's `[_a-z][_a-z0-9]*`, any case.
fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn name_end(s: &[char], from: usize) -> usize {
    let len = s.iter().skip(from).take_while(|c| c.is_ascii_alphanumeric() || **c == '_').count();
    from + len
}

fn strip_export(head: &str) -> &str {
    match head.strip_prefix("export") {
        Some(rest) if rest.starts_with(char::is_whitespace) => rest.trim_start(),
        _ => head,
    }
}

impl Parser<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    /// Moves to the end of the current line, leaving the `\n` for `run` to count.
    fn skip_line(&mut self) {
        while self.peek().is_some_and(|c| c != '\n') {
            self.pos += 1;
        }
    }

    fn run(mut self) -> Result<DotEnv, LineError> {
        loop {
            while let Some(c) = self.peek().filter(|c| c.is_whitespace()) {
                if c == '\n' {
                    self.line += 1;
                }
                self.pos += 1;
            }
            match self.peek() {
                None => return Ok(self.env),
                Some('#') => self.skip_line(),
                Some(_) => self.statement()?,
            }
        }
    }

    fn statement(&mut self) -> Result<(), LineError> {
        let line = self.line;
        let start = self.pos;
        // compose ends the key at the first `=` or `:` (its YAML-ish form) on the line.
        let mut end = start;
        let mut separator = false;
        while let Some(c) = self.chars.get(end) {
            match c {
                '=' | ':' => {
                    separator = true;
                    break;
                }
                '\n' => break,
                _ => end += 1,
            }
        }
        let head: String = self.chars[start..end].iter().collect();
        let key = strip_export(head.trim());

        if !separator {
            self.pos = end;
            if !key.is_empty() && key.chars().all(is_key_char) {
                // A bare key: compose would copy it from its own environment, which is not ours.
                return Ok(());
            }
            return Err(error(line, "expected `KEY=VALUE`"));
        }
        if key.is_empty() {
            return Err(error(line, "missing key before `=`"));
        }
        if key.chars().any(char::is_whitespace) {
            return Err(error(line, "key cannot contain whitespace"));
        }
        if let Some(bad) = key.chars().find(|c| !is_key_char(*c)) {
            return Err(error(line, format!("unexpected character {bad:?} in key")));
        }
        let key = key.to_string();
        self.pos = end + 1;
        let value = self.value(line)?;
        self.env.set(key, value);
        Ok(())
    }

    fn value(&mut self, line: usize) -> Result<String, LineError> {
        let ws_start = self.pos;
        while self.peek().is_some_and(is_blank) {
            self.pos += 1;
        }
        let after_blank = self.pos > ws_start;
        match self.peek() {
            Some(quote @ ('\'' | '"')) => {
                self.pos += 1;
                let raw = self.quoted(quote, line)?;
                self.skip_line();
                if quote == '"' {
                    let unescaped: Vec<char> = unescape(&raw).chars().collect();
                    self.interpolate(&unescaped, line, 0)
                } else {
                    Ok(raw)
                }
            }
            _ => {
                let start = self.pos;
                self.skip_line();
                let raw = &self.chars[start..self.pos];
                let comment = raw
                    .iter()
                    .enumerate()
                    .position(|(i, c)| *c == '#' && if i == 0 { after_blank } else { raw[i - 1].is_whitespace() });
                let mut value = &raw[..comment.unwrap_or(raw.len())];
                while let [rest @ .., last] = value {
                    if !last.is_whitespace() {
                        break;
                    }
                    value = rest;
                }
                self.interpolate(value, line, 0)
            }
        }
    }

    /// Reads up to the closing quote, after the opening one. Mirrors compose: a backslash before
    /// the quote character hides it (and is dropped), any other backslash is kept for `unescape`.
    fn quoted(&mut self, quote: char, line: usize) -> Result<String, LineError> {
        let mut out = String::new();
        let mut escaped = false;
        while let Some(c) = self.peek() {
            self.pos += 1;
            if c == '\n' {
                self.line += 1;
            }
            if c == quote {
                if escaped {
                    escaped = false;
                    out.push(c);
                    continue;
                }
                return Ok(out);
            }
            if !escaped && c == '\\' {
                escaped = true;
                continue;
            }
            if escaped {
                escaped = false;
                out.push('\\');
            }
            out.push(c);
        }
        let kind = if quote == '"' { "double" } else { "single" };
        Err(error(line, format!("unterminated {kind} quote")))
    }

    fn resolve(&self, name: &str) -> Option<String> {
        self.env.get(name).map(str::to_string).or_else(|| (self.lookup)(name))
    }

    fn interpolate(&self, s: &[char], line: usize, depth: usize) -> Result<String, LineError> {
        if depth > MAX_NESTING {
            return Err(error(line, "`${...}` nested too deeply"));
        }
        let mut out = String::new();
        let mut i = 0;
        while let Some(&c) = s.get(i) {
            if c != '$' {
                out.push(c);
                i += 1;
                continue;
            }
            match s.get(i + 1) {
                Some('$') => {
                    out.push('$');
                    i += 2;
                }
                Some(&n) if is_name_start(n) => {
                    let end = name_end(s, i + 1);
                    let name: String = s[i + 1..end].iter().collect();
                    out.push_str(&self.resolve(&name).unwrap_or_default());
                    i = end;
                }
                Some('{') => {
                    let close = matching_brace(s, i + 2).ok_or_else(|| error(line, "`${` without its `}`"))?;
                    out.push_str(&self.braced(&s[i + 2..close], line, depth)?);
                    i = close + 1;
                }
                // compose rejects these too ("Invalid template"), so SeaTable cannot be running with one.
                _ => return Err(error(line, "`$` must start `$NAME` or `${NAME}`; write `$$` for a literal `$`")),
            }
        }
        Ok(out)
    }

    /// The inside of `${...}`: a name, then optionally a modifier and its (interpolated) argument.
    fn braced(&self, inner: &[char], line: usize, depth: usize) -> Result<String, LineError> {
        let name_len = if inner.first().copied().is_some_and(is_name_start) { name_end(inner, 0) } else { 0 };
        if name_len == 0 {
            return Err(error(line, "`${...}` must start with a variable name"));
        }
        let name: String = inner[..name_len].iter().collect();
        let (colon, op, arg) = match &inner[name_len..] {
            [] => return Ok(self.resolve(&name).unwrap_or_default()),
            [':', op @ ('-' | '?' | '+'), arg @ ..] => (true, *op, arg),
            [op @ ('-' | '?' | '+'), arg @ ..] => (false, *op, arg),
            _ => return Err(error(line, format!("unknown modifier in `${{{name}...}}`"))),
        };
        // compose expands the argument even when it is not used; so do we, errors included.
        let arg = self.interpolate(arg, line, depth + 1)?;
        // With `:` an empty value counts as unset.
        let value = self.resolve(&name).filter(|v| !(colon && v.is_empty()));
        match (op, value) {
            ('-', Some(v)) => Ok(v),
            ('-', None) => Ok(arg),
            ('+', Some(_)) => Ok(arg),
            ('+', None) => Ok(String::new()),
            (_, Some(v)) => Ok(v),
            (_, None) if arg.is_empty() => Err(error(line, format!("required variable {name} is not set"))),
            (_, None) => Err(error(line, format!("required variable {name} is missing a value: {arg}"))),
        }
    }
}

/// Index of the `}` closing a `${` whose body starts at `from`.
fn matching_brace(s: &[char], from: usize) -> Option<usize> {
    let mut depth = 1usize;
    let mut i = from;
    while let Some(&c) = s.get(i) {
        match (c, s.get(i + 1)) {
            ('$', Some('$')) => i += 2,
            ('$', Some('{')) => {
                depth += 1;
                i += 2;
            }
            ('}', _) => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
                i += 1;
            }
            _ => i += 1,
        }
    }
    None
}

/// Escape sequences of double-quoted values, as compose expands them: Go's `\a \b \f \n \r \t \v
/// \" \\`, octal `\0NNN`; `\$` becomes `$$` so that interpolation then yields a literal `$`. Any
/// other backslash stays as it is.
fn unescape(raw: &str) -> String {
    let chars: Vec<char> = raw.chars().collect();
    let mut out = String::with_capacity(raw.len());
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        if c != '\\' {
            out.push(c);
            i += 1;
            continue;
        }
        let simple = match chars.get(i + 1) {
            Some('a') => Some("\x07"),
            Some('b') => Some("\x08"),
            Some('f') => Some("\x0c"),
            Some('n') => Some("\n"),
            Some('r') => Some("\r"),
            Some('t') => Some("\t"),
            Some('v') => Some("\x0b"),
            Some('$') => Some("$$"),
            Some('"') => Some("\""),
            Some('\\') => Some("\\"),
            _ => None,
        };
        if let Some(s) = simple {
            out.push_str(s);
            i += 2;
        } else if chars.get(i + 1) == Some(&'0') {
            // compose matches `\0` plus up to three digits, and only exactly three octal digits
            // (a byte) turn into a character; otherwise the text stays as written.
            let digits: Vec<char> =
                chars.iter().skip(i + 2).take(3).take_while(|d| d.is_ascii_digit()).copied().collect();
            let len = 2 + digits.len();
            match octal_byte(&digits) {
                Some(ch) => out.push(ch),
                None => out.extend(chars.iter().skip(i).take(len)),
            }
            i += len;
        } else {
            out.push('\\');
            i += 1;
        }
    }
    out
}

fn octal_byte(digits: &[char]) -> Option<char> {
    if digits.len() != 3 {
        return None;
    }
    let mut value = 0u32;
    for d in digits {
        value = value * 8 + d.to_digit(8)?;
    }
    u8::try_from(value).ok().map(char::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> DotEnv {
        match DotEnv::parse(text) {
            Ok(env) => env,
            Err(e) => panic!("{text:?}: {e}"),
        }
    }

    fn parse_err(text: &str) -> LineError {
        match DotEnv::parse(text) {
            Ok(env) => panic!("{text:?} parsed: {env:?}"),
            Err(e) => e,
        }
    }

    fn one(text: &str) -> String {
        let env = parse(text);
        let key = env.keys().next().map(str::to_string).unwrap_or_default();
        env.get(&key).map(str::to_string).unwrap_or_else(|| panic!("{text:?}: nothing set"))
    }

    #[test]
    fn realistic_seatable_env() {
        let text = r#"# SeaTable 5.x
COMPOSE_FILE='caddy.yml,seatable-server.yml'
COMPOSE_PATH_SEPARATOR=','
SEATABLE_IMAGE='seatable/seatable-enterprise:5.2.7'
SEATABLE_SERVER_HOSTNAME=seatable.example.com
SEATABLE_SERVER_PROTOCOL=https
SEATABLE_MYSQL_ROOT_PASSWORD="p@ss w\"rd#1"   # root
TIME_ZONE='Europe/Berlin'
export SEATABLE_MYSQL_DB_DTABLE_DB_NAME=dtable_db
URL=${SEATABLE_SERVER_PROTOCOL}://${SEATABLE_SERVER_HOSTNAME}
"#;
        let env = parse(text);
        assert_eq!(env.get("COMPOSE_FILE"), Some("caddy.yml,seatable-server.yml"));
        assert_eq!(env.get("COMPOSE_PATH_SEPARATOR"), Some(","));
        assert_eq!(env.get("SEATABLE_IMAGE"), Some("seatable/seatable-enterprise:5.2.7"));
        assert_eq!(env.get("SEATABLE_SERVER_HOSTNAME"), Some("seatable.example.com"));
        assert_eq!(env.get("SEATABLE_MYSQL_ROOT_PASSWORD"), Some("p@ss w\"rd#1"));
        assert_eq!(env.get("TIME_ZONE"), Some("Europe/Berlin"));
        assert_eq!(env.get("SEATABLE_MYSQL_DB_DTABLE_DB_NAME"), Some("dtable_db"));
        assert_eq!(env.get("URL"), Some("https://seatable.example.com"));
        assert_eq!(env.keys().count(), 9);
        assert_eq!(env.keys().last(), Some("URL"));
    }

    #[test]
    fn whitespace_around_equals_and_export() {
        let env = parse("A = 1\n  B=  two words  \nexport C=3\nexport\tD = 4\nexport=5\nE: yaml\n");
        assert_eq!(env.get("A"), Some("1"));
        assert_eq!(env.get("B"), Some("two words"));
        assert_eq!(env.get("C"), Some("3"));
        assert_eq!(env.get("D"), Some("4"));
        assert_eq!(env.get("export"), Some("5"));
        assert_eq!(env.get("E"), Some("yaml"));
    }

    #[test]
    fn comments_and_blank_lines() {
        let env = parse("# top\n\n   # indented comment\nA=1\n\t\n#B=2\n");
        assert_eq!(env.keys().collect::<Vec<_>>(), ["A"]);
        assert_eq!(env.get("B"), None);
    }

    #[test]
    fn unquoted_inline_comments() {
        assert_eq!(one("A=value # comment"), "value");
        assert_eq!(one("A=value\t# comment"), "value");
        assert_eq!(one("A=a#b"), "a#b");
        assert_eq!(one("A=#b"), "#b");
        assert_eq!(one("A= # only a comment"), "");
        assert_eq!(one("A=trailing   "), "trailing");
    }

    #[test]
    fn empty_values() {
        let env = parse("A=\nB=''\nC=\"\"\nD=   \n");
        for key in ["A", "B", "C", "D"] {
            assert_eq!(env.get(key), Some(""), "{key}");
            assert_eq!(env.get_nonempty(key), None, "{key}");
        }
        assert_eq!(parse("W='  '").get_nonempty("W"), None);
        assert_eq!(env.get("MISSING"), None);
    }

    #[test]
    fn single_quotes_are_literal() {
        assert_eq!(one(r"A='$HOME ${X} \n \\ # not a comment'"), r"$HOME ${X} \n \\ # not a comment");
        assert_eq!(one("A='C:\\path\\to'"), "C:\\path\\to");
        // compose's one exception: a backslash hides a quote of the same kind.
        assert_eq!(one(r"A='it\'s'"), "it's");
        assert_eq!(one("A='value' trailing junk # and a comment"), "value");
    }

    #[test]
    fn double_quote_escapes() {
        assert_eq!(one(r#"A="a\nb\tc\rd""#), "a\nb\tc\rd");
        assert_eq!(one(r#"A="q\"q \\ back""#), "q\"q \\ back");
        assert_eq!(one(r#"A="cost \$5 and $$6""#), "cost $5 and $6");
        assert_eq!(one(r#"A="\q stays""#), r"\q stays");
        assert_eq!(one(r#"A="\0101\08""#), "A\\08");
        assert_eq!(one(r##"A="# not a comment" # comment"##), "# not a comment");
    }

    #[test]
    fn multi_line_values() {
        let env = parse("A='line 1\nline 2'\nB=\"x\n  y $A\"\nC=after\n");
        assert_eq!(env.get("A"), Some("line 1\nline 2"));
        assert_eq!(env.get("B"), Some("x\n  y line 1\nline 2"));
        assert_eq!(env.get("C"), Some("after"));
    }

    #[test]
    fn interpolation_forms() {
        let env = parse(concat!(
            "SET=v\nEMPTY=\n",
            "A=$SET-${SET}\n",
            "B=${UNSET:-d1}|${EMPTY:-d2}|${SET:-d3}\n",
            "C=${UNSET-d1}|${EMPTY-d2}|${SET-d3}\n",
            "D=${SET:+alt}|${EMPTY:+alt}|${EMPTY+alt}|${UNSET+alt}\n",
            "E=${UNSET:-${SET}x}\n",
            "F=$UNKNOWN.${UNKNOWN}.\n",
            "G=$$SET\n",
            "H=${SET:?boom}\n",
        ));
        assert_eq!(env.get("A"), Some("v-v"));
        assert_eq!(env.get("B"), Some("d1|d2|v"));
        assert_eq!(env.get("C"), Some("d1||v"));
        assert_eq!(env.get("D"), Some("alt||alt|"));
        assert_eq!(env.get("E"), Some("vx"));
        assert_eq!(env.get("F"), Some(".."));
        assert_eq!(env.get("G"), Some("$SET"));
        assert_eq!(env.get("H"), Some("v"));
    }

    #[test]
    fn required_variables() {
        let e = parse_err("A=1\n\nB=${MISSING:?set MISSING first}\n");
        assert_eq!(e.line, 3);
        assert_eq!(e.to_string(), "line 3: required variable MISSING is missing a value: set MISSING first");
        assert!(parse_err("E=\nB=${E:?}").message.contains("E is not set"));
        assert_eq!(parse("E=\nB=${E?}").get("B"), Some(""));
        assert!(DotEnv::parse("B=\"${NOPE?gone}\"").is_err());
    }

    #[test]
    fn earlier_keys_then_lookup() {
        let lookup = |k: &str| match k {
            "HOME" => Some("/root".to_string()),
            "A" => Some("from-env".to_string()),
            _ => None,
        };
        let env = DotEnv::parse_with("B=$A\nA=file\nC=$A\nD=$HOME\nE=${NONE:-x}", &lookup).unwrap_or_default();
        // `B` comes before the file defines `A`, so it falls back to the lookup.
        assert_eq!(env.get("B"), Some("from-env"));
        assert_eq!(env.get("C"), Some("file"));
        assert_eq!(env.get("D"), Some("/root"));
        assert_eq!(env.get("E"), Some("x"));
    }

    #[test]
    fn later_definitions_win_and_keep_first_position() {
        let env = parse("A=1\nB=2\nA=3\nA=${A}4\n");
        assert_eq!(env.get("A"), Some("34"));
        assert_eq!(env.keys().collect::<Vec<_>>(), ["A", "B"]);
    }

    #[test]
    fn bare_keys_are_skipped() {
        let env = parse("BARE\nexport ALSO_BARE\nA=1\nTRAILING");
        assert_eq!(env.keys().collect::<Vec<_>>(), ["A"]);
        assert_eq!(env.get("BARE"), None);
    }

    #[test]
    fn key_characters() {
        let env = parse("a.b-c_D9=1\nÜber=2\nARR[0]=3\n");
        assert_eq!(env.get("a.b-c_D9"), Some("1"));
        assert_eq!(env.get("Über"), Some("2"));
        assert_eq!(env.get("ARR[0]"), Some("3"));
    }

    #[test]
    fn bad_lines_name_their_line() {
        let e = parse_err("A=1\n# ok\nthis is not a setting\n");
        assert_eq!((e.line, e.message.as_str()), (3, "expected `KEY=VALUE`"));
        assert_eq!(parse_err("A=1\nMY KEY=2").line, 2);
        assert_eq!(parse_err("=x").message, "missing key before `=`");
        assert!(parse_err("A!=1").message.contains("'!'"));
    }

    #[test]
    fn unterminated_quotes() {
        let e = parse_err("A=1\nB=\"open\n\nC=2\n");
        assert_eq!(e.to_string(), "line 2: unterminated double quote");
        assert_eq!(parse_err("X='no end").to_string(), "line 1: unterminated single quote");
        assert_eq!(parse_err("X=\"esc\\\"").message, "unterminated double quote");
    }

    #[test]
    fn bad_interpolation() {
        for text in ["A=$", "A=cost$ 5", "A=${", "A=${}", "A=${1}", "A=${X:x}", "A=$1", "A=\"${X\""] {
            assert!(DotEnv::parse(text).is_err(), "{text}");
        }
        assert!(DotEnv::parse("A='$'").is_ok());
    }

    #[test]
    fn line_numbers_after_multi_line_values() {
        let e = parse_err("A=\"1\n2\n3\"\nB='x\ny'\nbroken line\n");
        assert_eq!(e.line, 6);
    }

    #[test]
    fn crlf_and_bom() {
        let env = parse("\u{feff}A=1\r\nB='x'\r\nC=\"l1\r\nl2\"\r\n# c\r\nD=4 # c\r\n");
        assert_eq!(env.get("A"), Some("1"));
        assert_eq!(env.get("B"), Some("x"));
        assert_eq!(env.get("C"), Some("l1\nl2"));
        assert_eq!(env.get("D"), Some("4"));
    }

    #[test]
    fn booleans() {
        let env = parse("A=true\nB=OFF\nC=1\nD=No\nE=maybe\nF=\nG=' yes '");
        assert_eq!(env.bool("A"), Some(true));
        assert_eq!(env.bool("B"), Some(false));
        assert_eq!(env.bool("C"), Some(true));
        assert_eq!(env.bool("D"), Some(false));
        assert_eq!(env.bool("E"), None);
        assert_eq!(env.bool("F"), None);
        assert_eq!(env.bool("G"), Some(true));
        assert_eq!(env.bool("MISSING"), None);
    }

    #[test]
    fn debug_hides_values() {
        let env = parse("PASSWORD=hunter2");
        let shown = format!("{env:?}");
        assert!(shown.contains("PASSWORD") && !shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let text = format!("A={}x{}", "${B:-".repeat(10_000), "}".repeat(10_000));
        assert!(parse_err(&text).message.contains("nested"));
    }

    #[test]
    fn garbage_never_panics() {
        const ALPHABET: &[char] = &[
            'A', 'b', '_', '0', '.', '-', '=', ':', ' ', '\t', '\n', '\r', '#', '\'', '"', '\\', '$', '{', '}', '?',
            '+', '[', ']', 'é', '\u{feff}', '\0', 'e', 'x', 'p', 'o', 'r', 't',
        ];
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..20_000 {
            let len = (next() % 40) as usize;
            let text: String = (0..len).map(|_| ALPHABET[(next() % ALPHABET.len() as u64) as usize]).collect();
            let _ = DotEnv::parse(&text);
            let _ = DotEnv::parse_with(&text, &|k| Some(k.to_string()));
        }
        let realistic = "A=1\nB=\"${A:-x}\\n\"\nC='y'\nexport D=$B # c\n";
        for end in 0..=realistic.len() {
            if let Some(prefix) = realistic.get(..end) {
                let _ = DotEnv::parse(prefix);
            }
        }
    }
}
