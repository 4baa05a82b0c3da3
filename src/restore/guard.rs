//! Refuses client commands in a dump, for a `mysql`/`mariadb` client too old for `--sandbox`.
//!
//! The client acts on some input itself instead of sending it to the server: a backslash
//! command anywhere outside strings and comments (`\!` runs a shell command, `\.` reads a
//! file), and a named command (`system`, `source`, `tee`, ...) at the start of a statement.
//! A dump that mysqldump or mariadb-dump wrote holds none of them but `DELIMITER` (around
//! triggers and routines); anything else is refused before the client reads it. The scanner
//! follows the client's own lexing: quotes (`'`, `"`, `` ` ``) with backslash escapes,
//! `#` and `-- ` line comments, `/* */` comments (but not `/*! */`, whose content the client
//! reads as SQL, commands included), and the current delimiter. It keeps a few bytes of state
//! between chunks, so a command split across two chunks is still seen.

/// Named client commands that may start a statement: everything else the client knows by name
/// is refused. (`use` is also an SQL statement; `delimiter` is how dumps wrap routines.)
const ALLOWED_COMMANDS: [&str; 2] = ["delimiter", "use"];

/// Named commands of the mysql/mariadb client (`help` in the client lists them).
const NAMED_COMMANDS: [&str; 26] = [
    "?",
    "charset",
    "clear",
    "connect",
    "delimiter",
    "edit",
    "ego",
    "exit",
    "go",
    "help",
    "nopager",
    "notee",
    "nowarning",
    "pager",
    "print",
    "prompt",
    "query_attributes",
    "quit",
    "rehash",
    "resetconnection",
    "sandbox",
    "source",
    "status",
    "system",
    "tee",
    "warnings",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Normal,
    Quoted(u8),
    /// Just after a backslash inside a quoted string.
    Escaped(u8),
    LineComment,
    BlockComment,
}

/// The first byte of a two-byte opener, waiting for the second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    None,
    Dash,
    DashDash,
    Slash,
    SlashStar,
}

/// The scanner; feed it every byte of the stream in order with [`ClientCommandGuard::scan`].
#[derive(Debug)]
pub struct ClientCommandGuard {
    state: State,
    pending: Pending,
    /// The previous byte inside a block comment, for `*/`.
    prev: u8,
    delimiter: Vec<u8>,
    /// How many bytes of the delimiter the latest input ended with.
    matched: usize,
    /// At the start of a statement: gathering its first word.
    at_start: bool,
    word: Vec<u8>,
    /// After `DELIMITER `: gathering the new delimiter up to the end of the line.
    new_delimiter: Option<Vec<u8>>,
    /// Bytes seen (for messages).
    offset: u64,
}

impl Default for ClientCommandGuard {
    fn default() -> Self {
        Self::new()
    }
}

impl ClientCommandGuard {
    pub fn new() -> Self {
        ClientCommandGuard {
            state: State::Normal,
            pending: Pending::None,
            prev: 0,
            delimiter: b";".to_vec(),
            matched: 0,
            at_start: true,
            word: Vec::new(),
            new_delimiter: None,
            offset: 0,
        }
    }

    /// Scans the next piece of the stream; `Err` names the refused command and where it is.
    pub fn scan(&mut self, bytes: &[u8]) -> Result<(), String> {
        for &b in bytes {
            self.byte(b)?;
            self.offset += 1;
        }
        Ok(())
    }

    fn refuse(&self, what: &str) -> Result<(), String> {
        Err(format!(
            "the dump holds the client command `{what}` (near byte {}); this client has no `--sandbox`, so the dump is refused",
            self.offset
        ))
    }

    fn byte(&mut self, b: u8) -> Result<(), String> {
        if let Some(d) = self.new_delimiter.as_mut() {
            if b == b'\n' {
                let text = String::from_utf8_lossy(d).trim().to_string();
                self.new_delimiter = None;
                let token = text.split_whitespace().next().unwrap_or("").to_string();
                if token.is_empty() || token.contains('\\') {
                    return self.refuse(&format!("delimiter {text}"));
                }
                self.delimiter = token.into_bytes();
                self.matched = 0;
                self.at_start = true;
            } else if d.len() < 64 {
                d.push(b);
            } else {
                return self.refuse("delimiter (too long)");
            }
            return Ok(());
        }
        match self.state {
            State::Quoted(q) => {
                if b == b'\\' && q != b'`' {
                    self.state = State::Escaped(q);
                } else if b == q {
                    self.state = State::Normal;
                }
                Ok(())
            }
            State::Escaped(q) => {
                self.state = State::Quoted(q);
                Ok(())
            }
            State::LineComment => {
                if b == b'\n' {
                    self.state = State::Normal;
                }
                Ok(())
            }
            State::BlockComment => {
                if self.prev == b'*' && b == b'/' {
                    self.state = State::Normal;
                    self.prev = 0;
                } else {
                    self.prev = b;
                }
                Ok(())
            }
            State::Normal => self.normal(b),
        }
    }

    fn normal(&mut self, b: u8) -> Result<(), String> {
        // The client looks for the delimiter before anything else.
        if self.delimiter_byte(b) {
            self.at_start = true;
            self.word.clear();
            self.pending = Pending::None;
            return Ok(());
        }
        match std::mem::replace(&mut self.pending, Pending::None) {
            Pending::DashDash if b.is_ascii_whitespace() || b.is_ascii_control() => {
                // `-- ` starts a comment only with white space (or a control byte) after it.
                if b != b'\n' {
                    self.state = State::LineComment;
                }
                return Ok(());
            }
            Pending::Dash if b == b'-' => {
                self.pending = Pending::DashDash;
                return Ok(());
            }
            Pending::Slash if b == b'*' => {
                self.pending = Pending::SlashStar;
                return Ok(());
            }
            Pending::SlashStar => {
                // `/*!` is read by the client as SQL (commands included); `/*` is a comment.
                if b != b'!' {
                    self.state = State::BlockComment;
                    self.prev = b;
                }
                return Ok(());
            }
            _ => {}
        }
        if self.at_start {
            if b.is_ascii_alphanumeric() || b == b'_' {
                if self.word.len() < 32 {
                    self.word.push(b.to_ascii_lowercase());
                }
                return Ok(());
            }
            if self.word.is_empty() {
                // White space and comments before the first word: the statement has not begun.
                self.at_start = b.is_ascii_whitespace() || matches!(b, b'-' | b'/' | b'#');
            } else {
                let word = String::from_utf8_lossy(&std::mem::take(&mut self.word)).into_owned();
                self.at_start = false;
                let ends = b.is_ascii_whitespace() || self.delimiter.first() == Some(&b);
                if word == "delimiter" && (b == b' ' || b == b'\t') {
                    self.new_delimiter = Some(Vec::new());
                    return Ok(());
                }
                if ends && NAMED_COMMANDS.contains(&word.as_str()) && !ALLOWED_COMMANDS.contains(&word.as_str()) {
                    return self.refuse(&word);
                }
            }
        }
        match b {
            b'\\' => return self.refuse("\\ (a backslash command)"),
            b'\'' | b'"' | b'`' => self.state = State::Quoted(b),
            b'#' => self.state = State::LineComment,
            b'-' => self.pending = Pending::Dash,
            b'/' => self.pending = Pending::Slash,
            _ => {}
        }
        Ok(())
    }

    /// Whether `b` completes the delimiter.
    fn delimiter_byte(&mut self, b: u8) -> bool {
        if self.delimiter.get(self.matched) == Some(&b) {
            self.matched += 1;
        } else {
            self.matched = usize::from(self.delimiter.first() == Some(&b));
        }
        if self.matched == self.delimiter.len() {
            self.matched = 0;
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(sql: &str) -> Result<(), String> {
        let mut g = ClientCommandGuard::new();
        g.scan(sql.as_bytes())
    }

    /// Fed one byte at a time, as chunks may split anything.
    fn check_trickled(sql: &str) -> Result<(), String> {
        let mut g = ClientCommandGuard::new();
        for b in sql.as_bytes() {
            g.scan(std::slice::from_ref(b))?;
        }
        Ok(())
    }

    const DUMP: &str = "-- MariaDB dump 10.19\n/*!40101 SET @OLD_CHARACTER_SET_CLIENT=@@CHARACTER_SET_CLIENT */;\n\
        DROP TABLE IF EXISTS `t`;\nCREATE TABLE `t` (`a` text) ENGINE=InnoDB;\n\
        INSERT INTO `t` VALUES ('it\\'s \\\\ a \\n string; system ls'),(\"\\\\! x\"),('-- not a comment');\n\
        /* a comment with \\! in it */\n# and \\. here\n\
        DELIMITER ;;\n/*!50003 CREATE*/ /*!50017 DEFINER=`root`@`localhost`*/ /*!50003 TRIGGER tr BEFORE INSERT ON t FOR EACH ROW BEGIN\n\
        SET NEW.a = 'x;'; SET NEW.a = concat(NEW.a, 'y'); END */;;\nDELIMITER ;\n\
        SELECT 1--1;\nuse other;\n-- Dump completed on 2026-12-05\n";

    #[test]
    fn a_real_dump_passes() {
        assert_eq!(check(DUMP), Ok(()));
        assert_eq!(check_trickled(DUMP), Ok(()));
    }

    #[test]
    fn client_commands_are_refused() {
        for bad in [
            "\\! rm -rf /\n",
            "SELECT 1;\n\\! id\n",
            "system id\n",
            "SELECT 1;\nsystem id;\n",
            "  SOURCE /etc/passwd\n",
            "SELECT 1;\n\\. /etc/passwd\n",
            "/*!50003 \\! id */;\n",
            "SELECT 1 -- x\n; tee /tmp/x\n",
            "SELECT 1--1 \\! id\n",
            "SELECT 'a' \\! id\n",
            "DELIMITER //\nsystem id//\n",
            "DELIMITER ;;\nSELECT 1;; pager less;;\n",
        ] {
            assert!(check(bad).is_err(), "not refused: {bad:?}");
            assert!(check_trickled(bad).is_err(), "not refused when trickled: {bad:?}");
        }
    }

    #[test]
    fn words_that_only_look_like_commands_pass() {
        for ok in [
            "INSERT INTO `system` VALUES (1);\n",
            "SELECT status FROM t;\n",
            "CREATE TABLE sourcefile (a int);\n",
            "SELECT '\\\\! not a command';\n",
            "SELECT \"it\\\"s; system x\";\n",
            "/* system x */ SELECT 1;\n",
        ] {
            assert_eq!(check(ok), Ok(()), "{ok:?}");
        }
    }
}
