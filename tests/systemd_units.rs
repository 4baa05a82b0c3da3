//! The files that run the tool unattended: `scripts/systemd/seatable-backup.{service,timer}` and
//! `scripts/cron/seatable-backup`.
//!
//! Needs the `systemd-analyze` binary (Debian package `systemd`; on PATH, in /usr/bin or /bin,
//! or named by `SYSTEMD_ANALYZE`); without it these tests FAIL. No systemd needs to be running:
//! `systemd-analyze verify` and `calendar` work offline, without PID 1 being systemd. The units
//! are verified as copies in a temporary directory, with the binary's path rewritten to this
//! build's binary (verify checks that ExecStart's program exists); nothing is installed.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use clap::Parser;
use seatable_backup::cli::{Cli, Command as Sub, LogFormat};

const INSTALLED_BIN: &str = "/usr/local/bin/seatable-backup";
const SERVICE: &str = "seatable-backup.service";
const TIMER: &str = "seatable-backup.timer";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn service_path() -> PathBuf {
    repo().join("scripts/systemd").join(SERVICE)
}

fn timer_path() -> PathBuf {
    repo().join("scripts/systemd").join(TIMER)
}

fn cron_path() -> PathBuf {
    repo().join("scripts/cron/seatable-backup")
}

fn read(p: &Path) -> String {
    fs::read_to_string(p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
}

// ---------------------------------------------------------------------------------------------
// systemd-analyze

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(p).map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false)
}

/// `SYSTEMD_ANALYZE`, else the first on PATH, else /usr/bin or /bin. Missing, the test fails:
/// these checks are the only proof that the shipped units load.
fn systemd_analyze() -> PathBuf {
    if let Some(p) = std::env::var_os("SYSTEMD_ANALYZE").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        assert!(is_executable(&p), "SYSTEMD_ANALYZE={} is not an executable file", p.display());
        return p;
    }
    let on_path = std::env::var_os("PATH")
        .and_then(|path| std::env::split_paths(&path).map(|d| d.join("systemd-analyze")).find(|p| is_executable(p)));
    if let Some(p) = on_path {
        return p;
    }
    for p in ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"] {
        if is_executable(Path::new(p)) {
            return PathBuf::from(p);
        }
    }
    panic!(
        "the `systemd-analyze` binary was not found (not on PATH, not in /usr/bin or /bin, SYSTEMD_ANALYZE not set). \
         These tests check scripts/systemd/seatable-backup.{{service,timer}} with `systemd-analyze verify` and need it: \
         install it (Debian/Ubuntu: `apt-get install systemd`; no running systemd is needed), \
         or set SYSTEMD_ANALYZE=/path/to/systemd-analyze."
    );
}

fn analyze(args: &[&str]) -> Output {
    Command::new(systemd_analyze())
        .args(args)
        .env("SYSTEMD_LOG_COLOR", "0")
        .env("SYSTEMD_PAGER", "")
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("starting systemd-analyze {args:?}: {e}"))
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

// ---------------------------------------------------------------------------------------------
// Unit files: `Key=Value` lines in `[Section]`s, `#`/`;` comments. Ours use no continuations.

#[derive(Debug)]
struct Entry {
    section: String,
    key: String,
    value: String,
}

fn parse_unit(src: &str) -> Vec<Entry> {
    let mut section = String::new();
    let mut out = Vec::new();
    for (n, line) in src.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        assert!(!line.ends_with('\\'), "line {}: no continuation lines expected: {line}", n + 1);
        if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = s.to_string();
            continue;
        }
        let (k, v) = line.split_once('=').unwrap_or_else(|| panic!("line {}: not `Key=Value`: {line}", n + 1));
        assert!(!section.is_empty(), "line {}: `{line}` before any [Section]", n + 1);
        out.push(Entry { section: section.clone(), key: k.trim().to_string(), value: v.trim().to_string() });
    }
    out
}

fn values<'a>(entries: &'a [Entry], section: &str, key: &str) -> Vec<&'a str> {
    entries.iter().filter(|e| e.section == section && e.key == key).map(|e| e.value.as_str()).collect()
}

fn one<'a>(entries: &'a [Entry], section: &str, key: &str) -> &'a str {
    match values(entries, section, key).as_slice() {
        [v] => v,
        other => panic!("expected exactly one {key}= in [{section}], found {other:?}"),
    }
}

/// The ExecStart= command lines, including commented-out ones (`#ExecStart=...`).
fn exec_starts(src: &str, commented: bool) -> Vec<String> {
    src.lines()
        .map(str::trim)
        .filter_map(|l| {
            let l = if commented { l.strip_prefix('#')? } else { l };
            l.strip_prefix("ExecStart=").map(|v| v.trim().to_string())
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The argument lists the units and the cron file pass to the tool

const SHELL_STOP: &[char] = &[';', '|', '&', '>', '<', '}', ')', '(', '{', '`', '$', '"', '\''];

/// Every run of the tool in `command` (`seatable-backup ARGS...` or `/path/seatable-backup
/// ARGS...`), with its arguments up to the first shell operator (`backup;` ends at `backup`).
/// The name as an option's value (`logger -t seatable-backup`) or inside a quoted string is
/// not a run.
fn invocations(command: &str) -> Vec<Vec<String>> {
    let words: Vec<&str> = command.split_whitespace().collect();
    let mut out = Vec::new();
    for (i, w) in words.iter().enumerate() {
        let is_tool = *w == "seatable-backup" || (w.starts_with('/') && w.ends_with("/seatable-backup"));
        let is_option_value = i > 0 && words[i - 1].starts_with('-');
        if !is_tool || is_option_value {
            continue;
        }
        let mut args = Vec::new();
        for a in &words[i + 1..] {
            match a.find(SHELL_STOP) {
                None => args.push(a.to_string()),
                Some(at) => {
                    if at > 0 {
                        args.push(a[..at].to_string());
                    }
                    break;
                }
            }
        }
        out.push(args);
    }
    out
}

/// The cron file's job lines: active ones, or (with `commented`) the documented alternatives,
/// commented out by a `#` right before the time fields (`#30 2 * * * root ...`; prose
/// comments have a space after the `#`).
fn cron_jobs(src: &str, commented: bool) -> Vec<String> {
    src.lines()
        .map(str::trim)
        .filter_map(|l| {
            if commented {
                let l = l.strip_prefix('#')?;
                l.starts_with(|c: char| c.is_ascii_digit() || c == '*' || c == '@').then(|| l.to_string())
            } else {
                (!l.is_empty() && !l.starts_with('#') && !is_cron_variable(l)).then(|| l.to_string())
            }
        })
        .collect()
}

fn is_cron_variable(line: &str) -> bool {
    match line.split_once('=') {
        Some((name, _)) => {
            let name = name.trim();
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        }
        None => false,
    }
}

/// Every argument list used to run the tool: service ExecStart= lines (active and commented)
/// and cron jobs (active and commented).
fn all_invocations() -> Vec<(String, Vec<String>)> {
    let service = read(&service_path());
    let cron = read(&cron_path());
    let mut out = Vec::new();
    for (what, cmd) in exec_starts(&service, false)
        .into_iter()
        .map(|c| ("ExecStart=", c))
        .chain(exec_starts(&service, true).into_iter().map(|c| ("#ExecStart=", c)))
        .chain(cron_jobs(&cron, false).into_iter().map(|c| ("cron", c)))
        .chain(cron_jobs(&cron, true).into_iter().map(|c| ("#cron", c)))
    {
        let found = invocations(&cmd);
        assert!(!found.is_empty(), "{what} line runs no seatable-backup: {cmd}");
        out.extend(found.into_iter().map(|args| (format!("{what} {cmd}"), args)));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Tests

/// Output lines of `systemd-analyze verify` about units that are not ours (a broken unit of
/// the host that our dependencies pull in): these are tolerated and printed, nothing else is.
fn foreign_unit_line(line: &str, tmp: &Path) -> bool {
    let tmp = tmp.to_string_lossy();
    if line.contains("seatable-backup") || line.contains(tmp.as_ref()) {
        return false;
    }
    let unit_suffixes =
        [".service", ".socket", ".target", ".timer", ".mount", ".path", ".slice", ".scope", ".device", ".swap"];
    line.split(|c: char| c.is_whitespace() || c == ':' || c == '\'' || c == '"' || c == ',')
        .any(|w| unit_suffixes.iter().any(|s| w.ends_with(s) && w.len() > s.len()))
}

#[test]
fn units_pass_systemd_analyze_verify() {
    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_seatable-backup");
    for (src, name) in [(service_path(), SERVICE), (timer_path(), TIMER)] {
        let text = read(&src).replace(INSTALLED_BIN, bin);
        fs::write(dir.path().join(name), text).unwrap();
    }
    let service_copy = read(&dir.path().join(SERVICE));
    assert!(
        exec_starts(&service_copy, false).iter().all(|c| c.starts_with(bin)),
        "every ExecStart= should run {INSTALLED_BIN} (rewritten to {bin} for the check): {:?}",
        exec_starts(&service_copy, false)
    );

    let svc = dir.path().join(SERVICE);
    let tmr = dir.path().join(TIMER);
    // --man=no: verify would otherwise run `man` for man: Documentation= links (we have none,
    // and a machine without man pages must not fail the check).
    let args = ["verify", "--man=no", svc.to_str().unwrap(), tmr.to_str().unwrap()];
    let out = analyze(&args);
    let all = text(&out);
    let (foreign, ours): (Vec<&str>, Vec<&str>) =
        all.lines().filter(|l| !l.trim().is_empty()).partition(|l| foreign_unit_line(l, dir.path()));
    if !foreign.is_empty() {
        eprintln!("systemd-analyze verify: ignoring lines about units of this machine, not ours:");
        for l in &foreign {
            eprintln!("    {l}");
        }
    }
    assert!(
        out.status.success() && ours.is_empty(),
        "`systemd-analyze {}` failed ({}) or complained about our units:\n{all}",
        args.join(" "),
        out.status
    );
}

#[test]
fn timer_runs_the_service_nightly() {
    let timer = parse_unit(&read(&timer_path()));
    let on_calendar = one(&timer, "Timer", "OnCalendar");
    assert_eq!(on_calendar, "*-*-* 02:30:00");
    let out = analyze(&["calendar", on_calendar]);
    assert!(out.status.success(), "systemd-analyze calendar '{on_calendar}' rejects it:\n{}", text(&out));
    assert!(
        text(&out).contains("Next elapse:"),
        "systemd-analyze calendar '{on_calendar}' names no next run:\n{}",
        text(&out)
    );

    let unit = one(&timer, "Timer", "Unit");
    assert_eq!(unit, SERVICE, "the timer must start the service");
    assert!(service_path().is_file(), "Unit={unit} but there is no {}", service_path().display());
    assert_eq!(one(&timer, "Timer", "Persistent"), "true", "a run missed while the machine was off must be caught up");
    assert_eq!(one(&timer, "Timer", "RandomizedDelaySec"), "30min");
    assert_eq!(one(&timer, "Timer", "AccuracySec"), "1min");
    assert_eq!(one(&timer, "Install", "WantedBy"), "timers.target");
}

#[test]
fn service_is_a_oneshot_backup_with_secrets_from_an_optional_file() {
    let src = read(&service_path());
    let svc = parse_unit(&src);
    assert_eq!(one(&svc, "Service", "Type"), "oneshot");

    let env_files = values(&svc, "Service", "EnvironmentFile");
    assert!(
        !env_files.is_empty() && env_files.iter().all(|f| f.starts_with("-/")),
        "secrets come from an optional (`-`) EnvironmentFile=: {env_files:?}"
    );
    assert!(env_files.contains(&"-/etc/seatable-backup/env"), "{env_files:?}");
    for v in values(&svc, "Service", "Environment") {
        assert!(
            !v.to_ascii_uppercase().contains("SECRET") && !v.to_ascii_uppercase().contains("PASSWORD"),
            "secret in Environment={v}"
        );
    }

    let starts = exec_starts(&src, false);
    assert!(!starts.is_empty(), "no ExecStart=");
    assert_eq!(starts[0], format!("{INSTALLED_BIN} --log-format json backup"), "the first ExecStart= runs the backup");
    let commented = exec_starts(&src, true);
    assert!(
        commented.contains(&format!("{INSTALLED_BIN} --log-format json prune")),
        "a commented prune ExecStart= for stores without lifecycle rules: {commented:?}"
    );

    // What the tool writes must be writable under ProtectSystem=strict: the lock directory
    // above all (else the lock would land in the private /tmp and not keep runs apart).
    assert_eq!(one(&svc, "Service", "ProtectSystem"), "strict");
    let rw: BTreeSet<&str> =
        values(&svc, "Service", "ReadWritePaths").iter().flat_map(|v| v.split_whitespace()).collect();
    let destination = seatable_backup::config::DEFAULT_DESTINATION.strip_prefix("file://").unwrap();
    for want in ["/run/lock".to_string(), format!("-{destination}"), "-/var/lib/prometheus/node-exporter".to_string()] {
        assert!(rw.contains(want.as_str()), "ReadWritePaths= lacks {want}: {rw:?}");
    }
    // Docker is ordered before, never required.
    for key in ["Requires", "Requisite", "BindsTo"] {
        for v in values(&svc, "Unit", key) {
            assert!(!v.contains("docker") && !v.contains("podman"), "{key}={v}: the engine must not be required");
        }
    }
    let after: Vec<&str> = values(&svc, "Unit", "After").iter().flat_map(|v| v.split_whitespace()).collect();
    for want in ["network-online.target", "docker.service", "podman.socket"] {
        assert!(after.contains(&want), "After= lacks {want}: {after:?}");
    }
    assert!(values(&svc, "Unit", "Wants").iter().any(|v| v.split_whitespace().any(|w| w == "network-online.target")));
}

/// No file here holds a secret: no `AWS_SECRET_ACCESS_KEY=value` and the like. The README may
/// show the env file's format with placeholders only.
#[test]
fn no_secret_values_in_the_files() {
    let secret_names =
        ["AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "AWS_SESSION_TOKEN", "SEATABLE_BACKUP_DB_PASSWORD"];
    let placeholders = ["", "...", "'...'", "\"...\"", "AKIA..."];
    let files = [service_path(), timer_path(), cron_path(), repo().join("scripts/systemd/README.md")];
    for f in &files {
        let src = read(f);
        let is_readme = f.extension().is_some_and(|e| e == "md");
        for (n, line) in src.lines().enumerate() {
            for name in secret_names {
                let mut rest = line;
                while let Some(at) = rest.find(name) {
                    let after = &rest[at + name.len()..];
                    if let Some(value) = after.strip_prefix('=') {
                        let value = value.split_whitespace().next().unwrap_or("");
                        assert!(
                            is_readme && placeholders.contains(&value),
                            "{}:{}: assigns {name}= in the file (secrets belong in /etc/seatable-backup/env): {line}",
                            f.display(),
                            n + 1
                        );
                    }
                    rest = after;
                }
            }
            // No secret-looking flag on a command line either.
            for flag in ["--password", "--secret", "--access-key", "--secret-access-key"] {
                assert!(!line.contains(flag), "{}:{}: {flag} on a command line: {line}", f.display(), n + 1);
            }
        }
    }
}

#[test]
fn cron_lines_are_well_formed() {
    let src = read(&cron_path());
    let fields_ok =
        |f: &str| !f.is_empty() && f.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '*' | ',' | '-' | '/'));
    let active = cron_jobs(&src, false);
    assert_eq!(active.len(), 1, "one active job line: {active:?}");
    let alternatives = cron_jobs(&src, true);
    assert!(!alternatives.is_empty(), "a commented prune line");
    for line in active.iter().chain(&alternatives) {
        let words: Vec<&str> = line.split_whitespace().collect();
        assert!(words.len() >= 7, "5 time fields, a user and a command: {line}");
        for f in &words[..5] {
            assert!(fields_ok(f), "time field `{f}` in: {line}");
        }
        assert_eq!(words[5], "root", "cron.d lines name the user: {line}");
        let command = words[6..].join(" ");
        assert!(command.contains("seatable-backup") && invocations(&command).iter().all(|a| a.len() >= 3));
        assert!(invocations(&command).iter().any(|a| a.last().is_some_and(|s| s == "backup")), "runs `backup`: {line}");
        // cron turns an unescaped % into a newline.
        assert!(!command.contains('%'), "unescaped % in a cron command: {line}");
    }
    assert_eq!(&active[0].split_whitespace().take(5).collect::<Vec<_>>(), &["30", "2", "*", "*", "*"], "02:30 daily");
    assert!(
        alternatives.iter().any(|l| invocations(l).iter().any(|a| a.last().is_some_and(|s| s == "prune"))),
        "the commented line runs prune: {alternatives:?}"
    );
    assert!(
        src.lines().any(|l| l.starts_with("PATH=") && l.split(['=', ':']).any(|d| d == "/usr/local/bin")),
        "PATH= must reach /usr/local/bin, where the binary is installed"
    );
    for line in src.lines().filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty()) {
        assert!(is_cron_variable(line) || active.contains(&line.trim().to_string()), "unexpected line: {line}");
    }
}

/// The exact argument lists of the units and the cron file are accepted: parsed in full by the
/// tool's own parser (values included), and by the built binary with `--help` appended (which
/// shows the flags and the subcommand exist without running anything). clap checks a flag's
/// value only after `--help` has been handled, hence both.
#[test]
fn binary_accepts_the_scheduled_argument_lists() {
    let lists = all_invocations();
    let distinct: BTreeSet<Vec<String>> = lists.iter().map(|(_, a)| a.clone()).collect();
    for want in [["--log-format", "json", "backup"], ["--log-format", "json", "prune"]] {
        assert!(
            distinct.iter().any(|a| a == &want),
            "{want:?} should be among the scheduled invocations: {distinct:?}"
        );
    }
    let bin = env!("CARGO_BIN_EXE_seatable-backup");
    for (origin, args) in &lists {
        let argv: Vec<&str> = std::iter::once("seatable-backup").chain(args.iter().map(String::as_str)).collect();
        let cli = Cli::try_parse_from(&argv).unwrap_or_else(|e| panic!("{origin}\n{argv:?} does not parse: {e}"));
        assert!(cli.global.log_format == LogFormat::Json, "{origin}: --log-format json");
        match (args.last().map(String::as_str), &cli.command) {
            (Some("backup"), Sub::Backup(_)) | (Some("prune"), Sub::Prune(_)) => {}
            (last, cmd) => panic!("{origin}: ends with {last:?} but parses as {cmd:?}"),
        }

        let mut cmd = Command::new(bin);
        cmd.args(args).arg("--help").stdin(Stdio::null());
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("SEATABLE_BACKUP_") {
                cmd.env_remove(&k);
            }
        }
        let out = cmd.output().unwrap_or_else(|e| panic!("running {bin}: {e}"));
        let sub = args.last().unwrap();
        assert!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains(&format!(" {sub} [OPTIONS]")),
            "{origin}\n`seatable-backup {} --help` exited {}:\n{}",
            args.join(" "),
            out.status,
            text(&out)
        );
    }
    // The check has teeth: a flag that does not exist fails even with --help.
    let out = Command::new(bin).args(["--log-formatx", "json", "backup", "--help"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "an unknown flag must be refused:\n{}", text(&out));
}
