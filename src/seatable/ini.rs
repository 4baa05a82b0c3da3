//! SeaTable's `.conf` files (`conf/dtable-storage-server.conf`, `conf/seafile.conf`, ...), read
//! the way Python's `configparser` reads them with its default settings.
//!
//! That means: `[section]` headers (case-sensitive names, spaces allowed); `key = value` or
//! `key: value` split at the first `=` or `:`; keys case-insensitive; values trimmed; whole-line
//! comments start with `#` or `;` and inline ones are not recognised (`a = b # c` is `b # c`);
//! a line indented deeper than its key continues the value (joined with `\n`, blank lines inside
//! kept, trailing ones dropped).
//!
//! It is hand-written on purpose: general INI crates have rules of their own for comments,
//! continuation lines and key case, and any rule that differs from configparser's reads another
//! value than the one SeaTable runs with.
//!
//! Where we differ from configparser, for the sake of reading what is there rather than refusing:
//! keys before any header land in a section named `""`; a repeated key or section merges (last
//! value wins) instead of failing; `[DEFAULT]` is an ordinary section; no `%(name)s`
//! interpolation (the Go and C programs that read these files do not have it either).
//!
//! Error messages never quote the offending line: it may hold a secret.

use std::fmt;

use super::dotenv::{parse_bool, LineError};

#[derive(Clone, Default, PartialEq, Eq)]
pub struct Ini {
    sections: Vec<Section>,
}

#[derive(Clone, PartialEq, Eq)]
struct Section {
    name: String,
    /// Keys lowercased, in first-seen order.
    entries: Vec<(String, String)>,
}

/// Values are left out: these files carry S3 keys.
impl fmt::Debug for Ini {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for s in &self.sections {
            map.entry(&s.name, &s.entries.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>());
        }
        map.finish()
    }
}

/// A value still being read: configparser collects its lines and joins them at the end.
struct Pending {
    name: String,
    entries: Vec<(String, Vec<String>)>,
}

impl Ini {
    pub fn parse(text: &str) -> Result<Ini, LineError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut sections: Vec<Pending> = Vec::new();
        let mut current: Option<usize> = None;
        // The option whose value continuation lines extend, within `current`.
        let mut option: Option<usize> = None;
        let mut indent_level = 0usize;

        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let stripped = raw.trim();
            if stripped.starts_with('#') || stripped.starts_with(';') {
                continue;
            }
            if stripped.is_empty() {
                // configparser keeps blank lines inside a multi-line value; the final join trims
                // the trailing ones.
                if let (Some(s), Some(o)) = (current, option) {
                    if let Some(entry) = sections.get_mut(s).and_then(|s| s.entries.get_mut(o)) {
                        entry.1.push(String::new());
                    }
                }
                continue;
            }
            let indent = raw.chars().take_while(|c| c.is_whitespace()).count();
            if let (Some(s), Some(o), true) = (current, option, indent > indent_level) {
                if let Some(entry) = sections.get_mut(s).and_then(|s| s.entries.get_mut(o)) {
                    entry.1.push(stripped.to_string());
                }
                continue;
            }
            indent_level = indent;

            if let Some(name) = section_header(stripped) {
                current = Some(section_index(&mut sections, name));
                option = None;
                continue;
            }
            let Some((key, value)) = split_option(stripped) else {
                return Err(LineError {
                    line,
                    message: "expected `[section]`, `key = value`, `key: value` or a comment".into(),
                });
            };
            let s = match current {
                Some(s) => s,
                None => {
                    let s = section_index(&mut sections, "");
                    current = Some(s);
                    s
                }
            };
            let Some(section) = sections.get_mut(s) else { continue };
            let key = key.to_lowercase();
            let lines = vec![value.to_string()];
            option = Some(match section.entries.iter().position(|(k, _)| *k == key) {
                Some(o) => {
                    section.entries[o].1 = lines;
                    o
                }
                None => {
                    section.entries.push((key, lines));
                    section.entries.len() - 1
                }
            });
        }

        let sections = sections
            .into_iter()
            .map(|p| Section {
                name: p.name,
                entries: p.entries.into_iter().map(|(k, lines)| (k, lines.join("\n").trim_end().to_string())).collect(),
            })
            .collect();
        Ok(Ini { sections })
    }

    /// `section` matches exactly, `key` in any case.
    pub fn get(&self, section: &str, key: &str) -> Option<&str> {
        let key = key.to_lowercase();
        self.section(section)?.entries.iter().find(|(k, _)| *k == key).map(|(_, v)| v.as_str())
    }

    pub fn has_section(&self, section: &str) -> bool {
        self.section(section).is_some()
    }

    /// In file order; `""` when keys came before the first header.
    pub fn sections(&self) -> impl Iterator<Item = &str> {
        self.sections.iter().map(|s| s.name.as_str())
    }

    /// The keys of a section (lowercased), in file order; empty when there is no such section.
    pub fn keys(&self, section: &str) -> impl Iterator<Item = &str> {
        self.section(section).into_iter().flat_map(|s| s.entries.iter().map(|(k, _)| k.as_str()))
    }

    /// configparser's `getboolean` spellings: `true/false/1/0/yes/no/on/off`, any case. `None`
    /// when missing or anything else.
    pub fn bool(&self, section: &str, key: &str) -> Option<bool> {
        self.get(section, key).and_then(parse_bool)
    }

    fn section(&self, name: &str) -> Option<&Section> {
        self.sections.iter().find(|s| s.name == name)
    }
}

fn section_index(sections: &mut Vec<Pending>, name: &str) -> usize {
    match sections.iter().position(|s| s.name == name) {
        Some(i) => i,
        None => {
            sections.push(Pending { name: name.to_string(), entries: Vec::new() });
            sections.len() - 1
        }
    }
}

/// configparser's `\[(?P<header>.+)\]`, matched at the start: the name runs to the last `]`, and
/// anything after it is ignored.
fn section_header(stripped: &str) -> Option<&str> {
    let rest = stripped.strip_prefix('[')?;
    let close = rest.rfind(']')?;
    rest.get(..close).filter(|name| !name.is_empty())
}

/// Splits at the first `=` or `:`; `None` without one or without a key before it.
fn split_option(stripped: &str) -> Option<(&str, &str)> {
    let at = stripped.find(['=', ':'])?;
    let key = stripped.get(..at)?.trim_end();
    let value = stripped.get(at + 1..)?.trim();
    (!key.is_empty()).then_some((key, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Ini {
        match Ini::parse(text) {
            Ok(ini) => ini,
            Err(e) => panic!("{text:?}: {e}"),
        }
    }

    const STORAGE_CONF: &str = "\
[general]
log_dir = /opt/seatable/logs
temp_file_dir = /tmp/tmp-storage-data

[storage backend]
type = s3
bucket = seatable-storage
key_id = AKIAEXAMPLE
key = secretEXAMPLE
use_v4_signature = true
aws_region = eu-central-1
host = s3.eu-central-1.amazonaws.com
path_style_request = false
use_https = true
sse_c_key = XXXEXAMPLE
";

    #[test]
    fn storage_server_conf() {
        let ini = parse(STORAGE_CONF);
        assert_eq!(ini.sections().collect::<Vec<_>>(), ["general", "storage backend"]);
        assert_eq!(ini.get("general", "log_dir"), Some("/opt/seatable/logs"));
        assert_eq!(ini.get("storage backend", "type"), Some("s3"));
        assert_eq!(ini.get("storage backend", "host"), Some("s3.eu-central-1.amazonaws.com"));
        assert_eq!(ini.get("storage backend", "sse_c_key"), Some("XXXEXAMPLE"));
        assert_eq!(ini.bool("storage backend", "use_https"), Some(true));
        assert_eq!(ini.bool("storage backend", "path_style_request"), Some(false));
        assert_eq!(ini.bool("storage backend", "bucket"), None);
        assert_eq!(ini.get("storage backend", "missing"), None);
        assert_eq!(ini.keys("general").collect::<Vec<_>>(), ["log_dir", "temp_file_dir"]);
    }

    #[test]
    fn sections_are_case_sensitive_keys_are_not() {
        let ini = parse("[Block_Backend]\nName = S3\n");
        assert!(ini.has_section("Block_Backend"));
        assert!(!ini.has_section("block_backend"));
        assert_eq!(ini.get("Block_Backend", "name"), Some("S3"));
        assert_eq!(ini.get("Block_Backend", "NAME"), Some("S3"));
        assert_eq!(ini.get("block_backend", "name"), None);
    }

    #[test]
    fn separators_and_whitespace() {
        let ini =
            parse("[s]\na=1\nb : 2\nc   =   spaced value   \nd = x = y\ne: http://h:9000\nf =\nkey with spaces = ok\n");
        assert_eq!(ini.get("s", "a"), Some("1"));
        assert_eq!(ini.get("s", "b"), Some("2"));
        assert_eq!(ini.get("s", "c"), Some("spaced value"));
        assert_eq!(ini.get("s", "d"), Some("x = y"));
        assert_eq!(ini.get("s", "e"), Some("http://h:9000"));
        assert_eq!(ini.get("s", "f"), Some(""));
        assert_eq!(ini.get("s", "key with spaces"), Some("ok"));
    }

    #[test]
    fn comments() {
        let ini = parse("# top\n; also\n[s]\n  # indented\nk = v # not a comment ; nor this\n");
        assert_eq!(ini.get("s", "k"), Some("v # not a comment ; nor this"));
        assert_eq!(ini.keys("s").count(), 1);
    }

    #[test]
    fn continuation_lines() {
        let ini = parse("[s]\nk = first\n  second\n\n\tthird\n# comment inside\n  fourth\n\nnext = 1\n");
        assert_eq!(ini.get("s", "k"), Some("first\nsecond\n\nthird\nfourth"));
        assert_eq!(ini.get("s", "next"), Some("1"));
        let ini = parse("[s]\n  k = v\n    more\n  other = w\n");
        assert_eq!(ini.get("s", "k"), Some("v\nmore"));
        assert_eq!(ini.get("s", "other"), Some("w"));
        assert_eq!(parse("[s]\nk =\n  a\n  b\n").get("s", "k"), Some("\na\nb"));
    }

    #[test]
    fn duplicates_last_wins() {
        let ini = parse("[s]\nk = 1\nK = 2\n[t]\nx = 1\n[s]\nk = 3\n  cont\n");
        assert_eq!(ini.get("s", "k"), Some("3\ncont"));
        assert_eq!(ini.sections().collect::<Vec<_>>(), ["s", "t"]);
    }

    #[test]
    fn keys_before_any_section() {
        let ini = parse("top = level\n[s]\nk = v\n");
        assert_eq!(ini.get("", "top"), Some("level"));
        assert!(ini.has_section(""));
        assert_eq!(ini.sections().collect::<Vec<_>>(), ["", "s"]);
    }

    #[test]
    fn section_headers() {
        let ini = parse("[storage backend]\n[ spaced ]\n[a]b]\n[c] # trailing\n");
        assert_eq!(ini.sections().collect::<Vec<_>>(), ["storage backend", " spaced ", "a]b", "c"]);
    }

    #[test]
    fn bad_lines_name_their_line() {
        let e = Ini::parse("[s]\nk = v\n\njust words\n").err();
        assert_eq!(e.as_ref().map(|e| e.line), Some(4));
        assert_eq!(
            e.map(|e| e.to_string()).as_deref(),
            Some("line 4: expected `[section]`, `key = value`, `key: value` or a comment")
        );
        assert_eq!(Ini::parse("[s]\n= no key\n").err().map(|e| e.line), Some(2));
        assert_eq!(Ini::parse("[]\n").err().map(|e| e.line), Some(1));
    }

    #[test]
    fn crlf_and_bom() {
        let ini = parse("\u{feff}[s]\r\nk = v\r\n  more\r\n");
        assert_eq!(ini.get("s", "k"), Some("v\nmore"));
    }

    #[test]
    fn debug_hides_values() {
        let shown = format!("{:?}", parse(STORAGE_CONF));
        assert!(shown.contains("sse_c_key") && !shown.contains("XXXEXAMPLE") && !shown.contains("secretEXAMPLE"));
    }

    #[test]
    fn garbage_never_panics() {
        const ALPHABET: &[char] =
            &['[', ']', '=', ':', '#', ';', ' ', '\t', '\n', '\r', 'a', 'K', 'é', '\u{feff}', '\u{a0}', '\0'];
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..20_000 {
            let len = (next() % 40) as usize;
            let text: String = (0..len).map(|_| ALPHABET[(next() % ALPHABET.len() as u64) as usize]).collect();
            if let Ok(ini) = Ini::parse(&text) {
                for s in ini.sections() {
                    let _ = ini.get(s, "a");
                }
            }
        }
    }
}
