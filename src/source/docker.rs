//! The Docker Engine API (Docker or Podman's compatible service) through bollard: finding the
//! DB container and running commands in it ([`Docker::spawn`], the Docker-exec implementation
//! of [`Process`]), with their output streamed and no TTY.
//!
//! A TTY would merge stderr into stdout and, from cron, yield an empty dump; we never ask for
//! one. Secrets reach a command through the exec's environment, never its arguments.

use std::pin::Pin;
use std::time::Duration;

use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};

use super::process::{Command, Output, Process, ProcessError, StderrTail};
use crate::error::{source, Class, Failure};

pub const DEFAULT_DOCKER_HOST: &str = "unix:///var/run/docker.sock";

#[derive(Clone)]
pub struct Docker {
    api: bollard::Docker,
    /// The address, for messages.
    pub host: String,
}

/// What `inspect` says of a container.
#[derive(Debug, Clone)]
pub struct ContainerInfo {
    pub running: bool,
    /// The image name it was created from.
    pub image: String,
    /// The image's `org.opencontainers.image.version` label, if any.
    pub version_label: Option<String>,
}

impl Docker {
    /// Connects to `docker_host`, else `DOCKER_HOST`, else the default unix socket.
    pub fn connect(docker_host: Option<&str>) -> anyhow::Result<Docker> {
        let host = docker_host
            .map(str::to_string)
            .or_else(|| std::env::var("DOCKER_HOST").ok().filter(|s| !s.is_empty()))
            .unwrap_or_else(|| DEFAULT_DOCKER_HOST.to_string());
        let api = bollard::Docker::connect_with_host(&host).map_err(|e| {
            Failure::new(Class::Source, format!("cannot reach the Docker Engine API at `{host}`: {e}"))
                .with_hint("is Docker (or `podman system service`) running? set `database.docker_host` or DOCKER_HOST")
        })?;
        Ok(Docker { api, host })
    }

    /// Checks that the API answers.
    pub async fn ping(&self) -> anyhow::Result<()> {
        match tokio::time::timeout(Duration::from_secs(15), self.api.ping()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => {
                Err(Failure::new(Class::Source, format!("cannot reach the Docker Engine API at `{}`: {e}", self.host))
                    .with_hint(
                        "is Docker (or `podman system service`) running? set `database.docker_host` or DOCKER_HOST",
                    )
                    .into())
            }
            Err(_) => Err(source(format!("the Docker Engine API at `{}` did not answer within 15 s", self.host))),
        }
    }

    /// `Some(running)` if the container exists.
    pub async fn container_state(&self, name: &str) -> anyhow::Result<Option<bool>> {
        match self.api.inspect_container(name, None).await {
            Ok(c) => Ok(Some(c.state.and_then(|s| s.running).unwrap_or(false))),
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => Ok(None),
            Err(e) => Err(source(format!("cannot inspect container `{name}` at `{}`: {e}", self.host))),
        }
    }

    /// The container's state and image, or `None` if it does not exist.
    pub async fn container_info(&self, name: &str) -> anyhow::Result<Option<ContainerInfo>> {
        match self.api.inspect_container(name, None).await {
            Ok(c) => {
                let config = c.config.unwrap_or_default();
                let version_label =
                    config.labels.as_ref().and_then(|l| l.get("org.opencontainers.image.version")).cloned();
                Ok(Some(ContainerInfo {
                    running: c.state.and_then(|s| s.running).unwrap_or(false),
                    image: config.image.or(c.image).unwrap_or_default(),
                    version_label,
                }))
            }
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => Ok(None),
            Err(e) => Err(source(format!("cannot inspect container `{name}` at `{}`: {e}", self.host))),
        }
    }

    /// The named container, or the first existing of `candidates`; it must be running.
    pub async fn find_container(&self, named: Option<&str>, candidates: &[&str]) -> anyhow::Result<String> {
        let list: Vec<&str> = match named {
            Some(n) => vec![n],
            None => candidates.to_vec(),
        };
        for name in &list {
            match self.container_state(name).await? {
                Some(true) => return Ok(name.to_string()),
                Some(false) => return Err(source(format!("container `{name}` exists but is not running"))),
                None => continue,
            }
        }
        Err(Failure::new(
            Class::Source,
            match named {
                Some(n) => format!("container `{n}` not found at `{}`", self.host),
                None => format!(
                    "no database container found at `{}` (looked for {})",
                    self.host,
                    list.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
                ),
            },
        )
        .with_hint("set `database.container` to the name `docker ps` shows for the MariaDB container")
        .into())
    }

    /// Read buffer of an exec's output stream. bollard (0.21) zero-fills the buffer's whole
    /// unused part before every read of the connection, and a read returns only what the socket
    /// holds (tens of KiB): with 1 MiB, that zeroing cost about a tenth of the backup's CPU
    /// during a dump. Frames larger than this still fit: the buffer grows for them.
    const OUTPUT_CAPACITY: usize = 64 * 1024;

    /// Runs `cmd` in `container` (the Docker-exec implementation of [`Process`]).
    pub async fn spawn(&self, container: &str, cmd: Command) -> Result<Process, ProcessError> {
        let (id, started) = self.start(container, &cmd).await?;
        let StartExecResults::Attached { output, input } = started else {
            return Err(ProcessError::Engine("the Docker Engine API detached a command we attached to".into()));
        };
        let stderr = StderrTail::new(cmd.tail);
        // A pump task reads and demultiplexes the connection while the consumer works (a
        // dump's compressor: two cores at once). The channel is bounded: backpressure reaches
        // the socket.
        let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(8);
        let pump = tokio::spawn(pump(output, tx, stderr.clone(), cmd.block, container.to_string()));
        let this = self.clone();
        let container = container.to_string();
        let code = async move {
            let broken = pump.await.ok().flatten();
            // A broken output stream is the cause when the exit status is lost with it.
            this.exit_code(&container, &id).await.map_err(|e| broken.map(ProcessError::Engine).unwrap_or(e))
        };
        let stdin = cmd.stdin.then_some(input);
        Ok(Process::new(stdin, Box::pin(super::receiver_stream(rx)), cmd.name, stderr, Box::pin(code)))
    }

    /// Runs a command with small output and returns it whole, whatever its exit code.
    pub async fn exec_capture(&self, container: &str, cmd: Vec<String>, env: Vec<String>) -> anyhow::Result<Output> {
        let cmd = Command { env, ..Command::new(cmd).stderr_tail(16 * 1024) };
        Ok(self.spawn(container, cmd).await.map_err(Failure::from)?.capture().await.map_err(Failure::from)?)
    }

    async fn start(&self, container: &str, cmd: &Command) -> Result<(String, StartExecResults), ProcessError> {
        let exec = self
            .api
            .create_exec(
                container,
                CreateExecOptions {
                    cmd: Some(cmd.argv.clone()),
                    env: Some(cmd.env.clone()),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    attach_stdin: Some(cmd.stdin),
                    tty: Some(false),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| ProcessError::Engine(format!("cannot run a command in container `{container}`: {e}")))?;
        let started = self
            .api
            .start_exec(
                &exec.id,
                Some(StartExecOptions { detach: false, tty: false, output_capacity: Some(Self::OUTPUT_CAPACITY) }),
            )
            .await
            .map_err(|e| ProcessError::Engine(format!("cannot start a command in container `{container}`: {e}")))?;
        Ok((exec.id, started))
    }

    /// Waits until the exec has exited and returns its exit code.
    async fn exit_code(&self, container: &str, exec_id: &str) -> Result<i64, ProcessError> {
        // The output stream can end a moment before the engine records the exit (Podman).
        for attempt in 0..200 {
            let info = self.api.inspect_exec(exec_id).await.map_err(|e| {
                ProcessError::Engine(format!(
                    "waiting for the command to exit: cannot inspect a command in container `{container}`: {e}"
                ))
            })?;
            if info.running != Some(true) {
                if let Some(code) = info.exit_code {
                    return Ok(code);
                }
            }
            tokio::time::sleep(Duration::from_millis(if attempt < 20 { 25 } else { 100 })).await;
        }
        Err(ProcessError::Engine(format!(
            "waiting for the command to exit: a command in container `{container}` did not report its exit status"
        )))
    }
}

/// Demultiplexes an exec's output: stdout into `tx` (gathered into blocks of `block` bytes,
/// see [`Command::blocks`]), stderr into its tail. Returns what broke the stream, if it broke.
/// Stops when the consumer stops reading (it failed; the exit status tells the rest).
async fn pump(
    mut output: Pin<Box<dyn Stream<Item = Result<LogOutput, bollard::errors::Error>> + Send>>,
    tx: tokio::sync::mpsc::Sender<std::io::Result<Bytes>>,
    stderr: StderrTail,
    block: usize,
    container: String,
) -> Option<String> {
    let mut gathered = BytesMut::new();
    while let Some(item) = output.next().await {
        let message = match item {
            Ok(LogOutput::StdOut { message }) | Ok(LogOutput::Console { message }) => message,
            Ok(LogOutput::StdErr { message }) => {
                stderr.push(&message);
                continue;
            }
            Ok(LogOutput::StdIn { .. }) => continue,
            Err(e) => {
                let broken = format!("reading output from container `{container}`: {e}");
                if !gathered.is_empty() {
                    let _ = tx.send(Ok(gathered.split().freeze())).await;
                }
                let _ = tx.send(Err(std::io::Error::other(broken.clone()))).await;
                return Some(broken);
            }
        };
        let Some(chunk) = gather(&mut gathered, message, block) else { continue };
        if tx.send(Ok(chunk)).await.is_err() {
            return None;
        }
    }
    if !gathered.is_empty() {
        let _ = tx.send(Ok(gathered.freeze())).await;
    }
    None
}

/// Adds a frame to the block being gathered; returns the block once it holds `block` bytes
/// (a frame at least that large, arriving while nothing is gathered, passes as it is).
fn gather(gathered: &mut BytesMut, message: Bytes, block: usize) -> Option<Bytes> {
    if gathered.is_empty() && message.len() >= block {
        return Some(message);
    }
    if gathered.capacity() == 0 {
        gathered.reserve(block);
    }
    gathered.extend_from_slice(&message);
    (gathered.len() >= block).then(|| gathered.split().freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_gathered_into_blocks_or_passed_on() {
        let mut gathered = BytesMut::new();
        assert_eq!(gather(&mut gathered, Bytes::from_static(b"abc"), 0).as_deref(), Some(&b"abc"[..]));
        assert!(gather(&mut gathered, Bytes::from_static(b"abc"), 5).is_none());
        assert_eq!(gather(&mut gathered, Bytes::from_static(b"def"), 5).as_deref(), Some(&b"abcdef"[..]));
        assert!(gathered.is_empty());
        // A frame as large as a block, with nothing gathered, is handed on as it is.
        assert_eq!(gather(&mut gathered, Bytes::from_static(b"12345"), 5).as_deref(), Some(&b"12345"[..]));
    }
}
