//! One way to run a command, wherever it runs (inside a container through the Docker Engine
//! API, see [`super::docker::Docker::spawn`], or as a child of this process, [`spawn_local`]):
//! the shape of ripgrep's `CommandReader`.
//!
//! A [`Process`] is an optional stdin writer, its stdout as a stream of owned chunks, and an
//! [`Exit`]. Stderr is drained concurrently into a bounded tail, so the command can never block
//! on a full stderr pipe and an error can quote the end of it. A command is done only when its
//! stdout was read to its end AND its exit status is known: [`Exit::finish`] is awaited after
//! the stream ended, and turns a non-zero exit into [`ProcessError::Failed`].
//!
//! Secrets reach a command through its environment (or its stdin), never its arguments; a
//! [`Command`] has no `Debug` and no error quotes its environment.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite};

use super::Chunks;
use crate::error::{Class, Failure};

/// A command's stdin.
pub type Stdin = Pin<Box<dyn AsyncWrite + Send>>;

/// Resolves to the exit code once the command has exited.
type ExitCode = Pin<Box<dyn Future<Output = Result<i64, ProcessError>> + Send>>;

/// The stderr tail of most commands; [`Command::stderr_tail`] changes it.
const STDERR_TAIL: usize = 64 * 1024;

/// The stdout [`capture`] keeps at most (it reads the rest, so the command can finish).
const CAPTURE_LIMIT: usize = 64 * 1024 * 1024;

/// What to run. The environment holds the secrets; nothing here is ever printed but `name`.
pub struct Command {
    pub(crate) argv: Vec<String>,
    /// `KEY=value`, as the Docker Engine API takes it.
    pub(crate) env: Vec<String>,
    pub(crate) stdin: bool,
    /// Stdout is gathered into blocks of this size before it is handed on (0: as it comes).
    pub(crate) block: usize,
    pub(crate) tail: usize,
    /// What the command is, for messages (`mariadb-dump`, `dump of database `x` in ...`).
    pub(crate) name: String,
}

impl Command {
    /// Runs `argv` (program first), stdin closed, stdout handed on as it comes.
    pub fn new(argv: Vec<String>) -> Command {
        let name = format!("`{}`", argv.first().map(String::as_str).unwrap_or(""));
        Command { argv, env: Vec::new(), stdin: false, block: 0, tail: STDERR_TAIL, name }
    }

    /// Puts `args` in front of the argument vector (a wrapper such as `stdbuf` or `sh -c`);
    /// the command keeps its name.
    pub fn prefixed<'a>(mut self, args: impl IntoIterator<Item = &'a str>) -> Command {
        let mut argv: Vec<String> = args.into_iter().map(str::to_string).collect();
        argv.append(&mut self.argv);
        self.argv = argv;
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Command {
        self.env.push(format!("{key}={value}"));
        self
    }

    /// Gives the command a stdin to write to ([`Process::stdin`]).
    pub fn with_stdin(mut self) -> Command {
        self.stdin = true;
        self
    }

    /// Hands stdout on in blocks of `size` bytes (a compressor is much faster fed large
    /// contiguous blocks than the command's small writes).
    pub fn blocks(mut self, size: usize) -> Command {
        self.block = size;
        self
    }

    pub fn stderr_tail(mut self, bytes: usize) -> Command {
        self.tail = bytes;
        self
    }

    /// Names the command in messages: `{name} failed (exit code N): ...`.
    pub fn named(mut self, name: impl Into<String>) -> Command {
        self.name = name.into();
        self
    }

    pub(crate) fn program(&self) -> &str {
        self.argv.first().map(String::as_str).unwrap_or("")
    }
}

/// Why a command failed. Every variant is a failure of the source (exit code 3): see the
/// `From` conversion into [`Failure`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProcessError {
    /// The program could not be started on this host.
    #[error("cannot run `{program}`: {source}")]
    Spawn { program: String, source: std::io::Error },
    /// The Docker Engine API refused the command, broke its output, or lost its exit status;
    /// the message names the container.
    #[error("{0}")]
    Engine(String),
    /// Waiting for a child of this process failed.
    #[error("waiting for `{program}`: {source}")]
    Wait { program: String, source: std::io::Error },
    /// Reading the command's stdout failed.
    #[error("{0}")]
    Output(std::io::Error),
    /// It ran and exited non-zero.
    #[error("{command} failed (exit code {code}): {}", or_none(stderr))]
    Failed { command: String, code: i64, stderr: String },
}

impl crate::error::Classify for ProcessError {
    fn class(&self) -> Class {
        Class::Source
    }
}

impl From<ProcessError> for Failure {
    fn from(e: ProcessError) -> Failure {
        Failure::new(Class::Source, e.to_string())
    }
}

/// `stderr`, or words saying there was none.
pub fn or_none(stderr: &str) -> &str {
    if stderr.is_empty() {
        "no error output"
    } else {
        stderr
    }
}

/// How a command ended: its exit code and the end of its stderr, on one line.
#[derive(Debug, Clone)]
pub struct Status {
    pub exit_code: i64,
    pub stderr: String,
}

/// A finished command with its (small) stdout.
#[derive(Debug, Clone)]
pub struct Output {
    pub status: Status,
    pub stdout: Vec<u8>,
}

/// A running command. Read `stdout` to its end, then await `exit`.
pub struct Process {
    /// Present when the command was made [`Command::with_stdin`].
    pub stdin: Option<Stdin>,
    pub stdout: Chunks,
    pub exit: Exit,
}

impl Process {
    pub(crate) fn new(stdin: Option<Stdin>, stdout: Chunks, name: String, stderr: StderrTail, code: ExitCode) -> Self {
        Process { stdin, stdout, exit: Exit { name, stderr, code } }
    }

    /// Closes stdin, then [`capture`]s the command's output.
    pub async fn capture(self) -> Result<Output, ProcessError> {
        drop(self.stdin);
        capture(self.stdout, self.exit).await
    }
}

/// Reads `stdout` whole (it is small: up to 64 MiB are kept), then waits for `exit`, whatever
/// its code.
pub async fn capture(stdout: Chunks, exit: Exit) -> Result<Output, ProcessError> {
    let mut out = Vec::new();
    read_to_end(stdout, |b| keep(&mut out, b, CAPTURE_LIMIT)).await.map_err(ProcessError::Output)?;
    Ok(Output { status: exit.wait().await?, stdout: out })
}

fn keep(out: &mut Vec<u8>, bytes: &[u8], limit: usize) {
    if out.len() < limit {
        out.extend_from_slice(bytes);
    }
}

async fn read_to_end(mut stdout: Chunks, mut sink: impl FnMut(&[u8])) -> std::io::Result<()> {
    while let Some(chunk) = stdout.next().await {
        sink(&chunk?);
    }
    Ok(())
}

/// A command's stdout kept as it arrives (a client's small answers, read while it is fed).
pub struct Collected {
    pub bytes: Arc<Mutex<Vec<u8>>>,
    /// Turns true once stdout ended (the command exited, or its output broke).
    pub ended: tokio::sync::watch::Receiver<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Collected {
    /// Reads `stdout` in a task of its own, keeping up to `limit` bytes.
    pub fn spawn(stdout: Chunks, limit: usize) -> Collected {
        let bytes = Arc::new(Mutex::new(Vec::new()));
        let (done, ended) = tokio::sync::watch::channel(false);
        let sink = bytes.clone();
        let task = tokio::spawn(async move {
            // A broken stream ends the output; the exit status says what happened.
            let _ = read_to_end(stdout, |b| {
                if let Ok(mut out) = sink.lock() {
                    keep(&mut out, b, limit);
                }
            })
            .await;
            let _ = done.send(true);
        });
        Collected { bytes, ended, task }
    }

    /// Everything kept, once stdout ended.
    pub async fn all(self) -> Vec<u8> {
        let _ = self.task.await;
        self.bytes.lock().map(|b| b.clone()).unwrap_or_default()
    }
}

/// The end of a running command.
pub struct Exit {
    name: String,
    stderr: StderrTail,
    code: ExitCode,
}

impl Exit {
    /// Waits until the command exited; Ok whatever its exit code.
    pub async fn wait(self) -> Result<Status, ProcessError> {
        let exit_code = self.code.await?;
        Ok(Status { exit_code, stderr: self.stderr.one_line() })
    }

    /// Waits until the command exited; a non-zero exit is [`ProcessError::Failed`], named as
    /// the command was ([`Command::named`]).
    pub async fn finish(self) -> Result<Status, ProcessError> {
        let name = self.name.clone();
        let status = self.wait().await?;
        if status.exit_code != 0 {
            return Err(ProcessError::Failed { command: name, code: status.exit_code, stderr: status.stderr });
        }
        Ok(status)
    }
}

/// Starts `cmd` as a child of this process. It is killed if its [`Exit`] is dropped first.
pub fn spawn_local(cmd: Command) -> Result<Process, ProcessError> {
    use std::process::Stdio;
    let program = cmd.program().to_string();
    let mut c = tokio::process::Command::new(&program);
    c.args(&cmd.argv[1..])
        .envs(cmd.env.iter().filter_map(|kv| kv.split_once('=')))
        .stdin(if cmd.stdin { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = c.spawn().map_err(|source| ProcessError::Spawn { program: program.clone(), source })?;
    let stdin = child.stdin.take().map(|s| Box::pin(s) as Stdin);
    let missing = || ProcessError::Spawn { program: program.clone(), source: std::io::Error::other("no pipe") };
    let stdout = child.stdout.take().ok_or_else(missing)?;
    let stderr_pipe = child.stderr.take().ok_or_else(missing)?;
    let stderr = StderrTail::new(cmd.tail);
    let drained = tokio::spawn(drain(stderr_pipe, stderr.clone()));
    let code = async move {
        let status = child.wait().await.map_err(|source| ProcessError::Wait { program, source })?;
        let _ = drained.await;
        Ok(status.code().map(i64::from).unwrap_or(-1))
    };
    let stdout = tokio_util::io::ReaderStream::with_capacity(stdout, cmd.block.max(8 * 1024));
    Ok(Process::new(stdin, Box::pin(stdout), cmd.name, stderr, Box::pin(code)))
}

/// Reads `pipe` to its end into `tail`.
async fn drain<R: AsyncRead + Unpin>(mut pipe: R, tail: StderrTail) {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 8192];
    while let Ok(n) = pipe.read(&mut buf).await {
        if n == 0 {
            break;
        }
        tail.push(&buf[..n]);
    }
}

/// The last bytes of a command's stderr, shared by what drains it and what reports its exit.
#[derive(Debug, Clone, Default)]
pub struct StderrTail(Arc<Mutex<TailBuffer>>);

impl StderrTail {
    pub fn new(cap: usize) -> StderrTail {
        StderrTail(Arc::new(Mutex::new(TailBuffer::new(cap))))
    }
    pub fn push(&self, bytes: &[u8]) {
        if let Ok(mut t) = self.0.lock() {
            t.push(bytes);
        }
    }
    pub fn one_line(&self) -> String {
        self.0.lock().map(|t| t.one_line()).unwrap_or_default()
    }
}

/// Keeps the last `cap` bytes written to it.
#[derive(Debug, Default, Clone)]
struct TailBuffer {
    buf: Vec<u8>,
    cap: usize,
}

impl TailBuffer {
    fn new(cap: usize) -> Self {
        TailBuffer { buf: Vec::new(), cap }
    }
    fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
        if self.buf.len() > self.cap {
            let excess = self.buf.len() - self.cap;
            self.buf.drain(..excess);
        }
    }
    /// The text, trimmed, on one line (lines joined with ` | `).
    fn one_line(&self) -> String {
        String::from_utf8_lossy(&self.buf)
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(" | ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        Command::new(vec!["sh".into(), "-c".into(), script.into()])
    }

    #[test]
    fn the_tail_keeps_the_last_bytes_on_one_line() {
        let t = StderrTail::new(9);
        t.push(b"first line\n");
        t.push(b"ab\n  cd \n");
        assert_eq!(t.one_line(), "ab | cd");
    }

    #[tokio::test]
    async fn capture_reads_stdout_and_the_stderr_tail() {
        let out = spawn_local(sh("echo out; echo err >&2; exit 3")).unwrap().capture().await.unwrap();
        assert_eq!(out.stdout, b"out\n");
        assert_eq!(out.status.exit_code, 3);
        assert_eq!(out.status.stderr, "err");
    }

    #[tokio::test]
    async fn finish_names_a_failed_command_but_not_its_environment() {
        let cmd =
            sh("echo \"$SECRET\" >/dev/null; echo broken >&2; exit 2").env("SECRET", "hunter2").named("the probe");
        let p = spawn_local(cmd).unwrap();
        read_to_end(p.stdout, |_| {}).await.unwrap();
        let err = p.exit.finish().await.unwrap_err();
        assert_eq!(err.to_string(), "the probe failed (exit code 2): broken");
        assert!(!format!("{err:?}").contains("hunter2"));
        assert_eq!(Failure::from(err).class, Class::Source);
    }

    /// Megabytes on stderr while stdout is still being read: the child never blocks on it.
    #[tokio::test]
    async fn a_flood_on_stderr_does_not_block_the_command() {
        let script = "head -c 4000000 /dev/zero >&2; head -c 3000000 /dev/zero";
        let p = spawn_local(sh(script).blocks(256 * 1024).stderr_tail(16)).unwrap();
        let mut n = 0;
        read_to_end(p.stdout, |b| n += b.len()).await.unwrap();
        assert_eq!(n, 3_000_000);
        p.exit.finish().await.unwrap();
    }

    #[tokio::test]
    async fn stdin_reaches_the_command_and_its_answers_are_collected() {
        use tokio::io::AsyncWriteExt;
        let Process { stdin, stdout, exit } = spawn_local(sh("cat").with_stdin()).unwrap();
        let collected = Collected::spawn(stdout, 1 << 20);
        let mut stdin = stdin.unwrap();
        stdin.write_all(b"hello\n").await.unwrap();
        drop(stdin);
        assert_eq!(exit.finish().await.unwrap().exit_code, 0);
        assert_eq!(collected.all().await, b"hello\n");
    }

    #[tokio::test]
    async fn a_missing_program_is_named() {
        let err = spawn_local(Command::new(vec!["/no/such/tool".into()])).err().unwrap();
        assert!(err.to_string().starts_with("cannot run `/no/such/tool`: "), "{err}");
    }
}
