//! The Docker Engine API (Docker or Podman's compatible service) through bollard: finding the
//! DB container and running commands in it, with their output streamed and no TTY.
//!
//! A TTY would merge stderr into stdout and, from cron, yield an empty dump; we never ask for
//! one. Secrets reach a command through the exec's environment, never its arguments.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use bytes::Bytes;
use futures::StreamExt;

use super::{Chunks, Finish, TailBuffer};
use crate::error::{source, Class, Failure};

pub const DEFAULT_DOCKER_HOST: &str = "unix:///var/run/docker.sock";

#[derive(Clone)]
pub struct Docker {
    api: bollard::Docker,
    /// The address, for messages.
    pub host: String,
}

/// What a finished command left: its exit code and the end of its stderr.
#[derive(Debug, Clone)]
pub struct ExecStatus {
    pub exit_code: i64,
    pub stderr: String,
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

/// A finished command with its (small) stdout.
#[derive(Debug, Clone)]
pub struct ExecOutput {
    pub status: ExecStatus,
    pub stdout: Vec<u8>,
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

    async fn start(
        &self,
        container: &str,
        cmd: Vec<String>,
        env: Vec<String>,
    ) -> anyhow::Result<(String, StartExecResults)> {
        self.start_with(container, cmd, env, false).await
    }

    /// Read buffer of an exec's output stream. bollard (0.21) zero-fills the buffer's whole
    /// unused part before every read of the connection, and a read returns only what the socket
    /// holds (tens of KiB): with 1 MiB, that zeroing cost about a tenth of the backup's CPU
    /// during a dump. Frames larger than this still fit: the buffer grows for them.
    const OUTPUT_CAPACITY: usize = 64 * 1024;

    async fn start_with(
        &self,
        container: &str,
        cmd: Vec<String>,
        env: Vec<String>,
        stdin: bool,
    ) -> anyhow::Result<(String, StartExecResults)> {
        let exec = self
            .api
            .create_exec(
                container,
                CreateExecOptions {
                    cmd: Some(cmd),
                    env: Some(env),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    attach_stdin: Some(stdin),
                    tty: Some(false),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| source(format!("cannot run a command in container `{container}`: {e}")))?;
        let started = self
            .api
            .start_exec(
                &exec.id,
                Some(StartExecOptions { detach: false, tty: false, output_capacity: Some(Self::OUTPUT_CAPACITY) }),
            )
            .await
            .map_err(|e| source(format!("cannot start a command in container `{container}`: {e}")))?;
        Ok((exec.id, started))
    }

    /// Waits until the exec has exited and returns its exit code.
    async fn exit_code(&self, container: &str, exec_id: &str) -> anyhow::Result<i64> {
        // The output stream can end a moment before the engine records the exit (Podman).
        for attempt in 0..200 {
            let info = self
                .api
                .inspect_exec(exec_id)
                .await
                .map_err(|e| source(format!("cannot inspect a command in container `{container}`: {e}")))?;
            if info.running != Some(true) {
                if let Some(code) = info.exit_code {
                    return Ok(code);
                }
            }
            tokio::time::sleep(Duration::from_millis(if attempt < 20 { 25 } else { 100 })).await;
        }
        Err(source(format!("a command in container `{container}` did not report its exit status")))
    }

    /// Runs a command with small output and returns it whole.
    pub async fn exec_capture(
        &self,
        container: &str,
        cmd: Vec<String>,
        env: Vec<String>,
    ) -> anyhow::Result<ExecOutput> {
        let (id, started) = self.start(container, cmd, env).await?;
        let StartExecResults::Attached { mut output, .. } = started else {
            anyhow::bail!("the Docker Engine API detached a command we attached to");
        };
        let mut stdout = Vec::new();
        let mut stderr = TailBuffer::new(16 * 1024);
        while let Some(item) = output.next().await {
            match item.map_err(|e| source(format!("reading a command's output from container `{container}`: {e}")))? {
                LogOutput::StdOut { message } | LogOutput::Console { message } => {
                    if stdout.len() < 64 * 1024 * 1024 {
                        stdout.extend_from_slice(&message)
                    }
                }
                LogOutput::StdErr { message } => stderr.push(&message),
                LogOutput::StdIn { .. } => {}
            }
        }
        let exit_code = self.exit_code(container, &id).await?;
        Ok(ExecOutput { status: ExecStatus { exit_code, stderr: stderr.one_line() }, stdout })
    }

    /// Runs a command whose stdout is streamed; `finish` yields its status after the stream ends.
    pub async fn exec_stream(
        &self,
        container: &str,
        cmd: Vec<String>,
        env: Vec<String>,
    ) -> anyhow::Result<(Chunks, Finish<ExecStatus>)> {
        let (id, started) = self.start(container, cmd, env).await?;
        let StartExecResults::Attached { output, .. } = started else {
            anyhow::bail!("the Docker Engine API detached a command we attached to");
        };
        let stderr = Arc::new(Mutex::new(TailBuffer::new(64 * 1024)));
        let sink = stderr.clone();
        let name = container.to_string();
        // A pump task reads and demultiplexes the connection while the pipeline compresses:
        // two cores work at once. The channel is bounded (backpressure reaches the socket).
        let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(8);
        let mut output = output;
        let pump = tokio::spawn(async move {
            // Frames are as small as the command's writes; zstd compresses much faster when
            // fed large contiguous blocks, so frames are gathered into blocks of `BLOCK`.
            const BLOCK: usize = 256 * 1024;
            let mut block = bytes::BytesMut::new();
            while let Some(item) = output.next().await {
                let out = match item {
                    Ok(LogOutput::StdOut { message }) | Ok(LogOutput::Console { message }) => {
                        if block.is_empty() && message.len() >= BLOCK {
                            Ok(message)
                        } else {
                            if block.capacity() == 0 {
                                block.reserve(BLOCK);
                            }
                            block.extend_from_slice(&message);
                            if block.len() < BLOCK {
                                continue;
                            }
                            Ok(block.split().freeze())
                        }
                    }
                    Ok(LogOutput::StdErr { message }) => {
                        if let Ok(mut s) = sink.lock() {
                            s.push(&message);
                        }
                        continue;
                    }
                    Ok(LogOutput::StdIn { .. }) => continue,
                    Err(e) => Err(std::io::Error::other(format!("reading output from container `{name}`: {e}"))),
                };
                let failed = out.is_err();
                if failed && !block.is_empty() {
                    let _ = tx.send(Ok(block.split().freeze())).await;
                }
                if tx.send(out).await.is_err() || failed {
                    return; // the pipeline stopped reading (it failed), or the stream broke
                }
            }
            if !block.is_empty() {
                let _ = tx.send(Ok(block.freeze())).await;
            }
        });
        let stdout = super::receiver_stream(rx);
        let this = self.clone();
        let container = container.to_string();
        let finish = async move {
            let _ = pump.await;
            let exit_code = this.exit_code(&container, &id).await.context("waiting for the command to exit")?;
            let stderr = stderr.lock().map(|s| s.one_line()).unwrap_or_default();
            Ok(ExecStatus { exit_code, stderr })
        };
        Ok((Box::pin(stdout), Box::pin(finish)))
    }

    /// Runs a command that reads its stdin from us: returns the writer, the command's stdout as
    /// it arrives (kept whole up to 1 MiB, for small answers), and `finish`, which resolves
    /// after the command exited. `exited` turns true as soon as the output stream ended, so a
    /// writer can stop feeding a command that already died.
    pub async fn exec_stdin(&self, container: &str, cmd: Vec<String>, env: Vec<String>) -> anyhow::Result<StdinExec> {
        let (id, started) = self.start_with(container, cmd, env, true).await?;
        let StartExecResults::Attached { mut output, input } = started else {
            anyhow::bail!("the Docker Engine API detached a command we attached to");
        };
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(TailBuffer::new(64 * 1024)));
        let (out_sink, err_sink) = (stdout.clone(), stderr.clone());
        let (exited_tx, exited) = tokio::sync::watch::channel(false);
        let name = container.to_string();
        let pump = tokio::spawn(async move {
            let mut broken = None;
            while let Some(item) = output.next().await {
                match item {
                    Ok(LogOutput::StdOut { message }) | Ok(LogOutput::Console { message }) => {
                        if let Ok(mut o) = out_sink.lock() {
                            if o.len() < (1 << 20) {
                                o.extend_from_slice(&message);
                            }
                        }
                    }
                    Ok(LogOutput::StdErr { message }) => {
                        if let Ok(mut e) = err_sink.lock() {
                            e.push(&message);
                        }
                    }
                    Ok(LogOutput::StdIn { .. }) => {}
                    Err(e) => {
                        broken = Some(format!("reading output from container `{name}`: {e}"));
                        break;
                    }
                }
            }
            let _ = exited_tx.send(true);
            broken
        });
        let this = self.clone();
        let container = container.to_string();
        let out = stdout.clone();
        let finish = async move {
            let broken = pump.await.ok().flatten();
            let exit_code = match this.exit_code(&container, &id).await {
                Ok(c) => c,
                Err(e) => {
                    return Err(match broken {
                        Some(b) => source(b),
                        None => e.context("waiting for the command to exit"),
                    })
                }
            };
            let stderr = stderr.lock().map(|s| s.one_line()).unwrap_or_default();
            let stdout = out.lock().map(|o| o.clone()).unwrap_or_default();
            Ok(ExecOutput { status: ExecStatus { exit_code, stderr }, stdout })
        };
        Ok(StdinExec { input, stdout, exited, finish: Box::pin(finish) })
    }
}

/// A running command fed through its stdin (see [`Docker::exec_stdin`]).
pub struct StdinExec {
    pub input: std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>,
    /// Its stdout so far.
    pub stdout: Arc<Mutex<Vec<u8>>>,
    /// True once its output ended (it exited, or the connection broke).
    pub exited: tokio::sync::watch::Receiver<bool>,
    pub finish: Finish<ExecOutput>,
}
