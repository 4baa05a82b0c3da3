//! Byte producers: database dumps (inside the DB container through the Docker Engine API, or
//! with a dump binary on this host) and the tar of the data directory.
//!
//! A producer is a stream plus a `finish` future. The stream may end early when the producer
//! fails; only `finish` says whether it succeeded, and it must be awaited AFTER the stream was
//! read to its end (a child is done only when its output is drained and its status is known).

pub mod data;
pub mod docker;
pub mod dump;
pub mod tar;

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use futures::Stream;
use tokio::io::AsyncBufRead;

/// A producer's output as owned chunks (handed on without copying).
pub type Chunks = Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>;

/// Resolves when the producer has finished; only then is its success known.
pub type Finish<T> = Pin<Box<dyn Future<Output = anyhow::Result<T>> + Send>>;

pub struct Produced<T> {
    pub reader: Pin<Box<dyn AsyncBufRead + Send>>,
    pub finish: Finish<T>,
}

/// A stream over a bounded channel's receiver.
pub fn receiver_stream<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl Stream<Item = T> + Send + 'static {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// Reads `pipe` to its end, handing each piece to `sink` (a child's output, drained so that the
/// child never blocks on a full pipe).
pub async fn drain<R: tokio::io::AsyncRead + Unpin>(mut pipe: R, mut sink: impl FnMut(&[u8])) {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 8192];
    while let Ok(n) = pipe.read(&mut buf).await {
        if n == 0 {
            break;
        }
        sink(&buf[..n]);
    }
}

/// Keeps the last `cap` bytes written to it (a child's stderr, for error messages).
#[derive(Debug, Default, Clone)]
pub struct TailBuffer {
    buf: Vec<u8>,
    cap: usize,
}

impl TailBuffer {
    pub fn new(cap: usize) -> Self {
        TailBuffer { buf: Vec::new(), cap }
    }
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
        if self.buf.len() > self.cap {
            let excess = self.buf.len() - self.cap;
            self.buf.drain(..excess);
        }
    }
    /// The text, trimmed, on one line (lines joined with ` | `).
    pub fn one_line(&self) -> String {
        String::from_utf8_lossy(&self.buf)
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(" | ")
    }
}
