//! Compression and stream-watching adaptors between a producer and the uploader.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use async_compression::tokio::bufread::{GzipEncoder, ZstdEncoder};
use async_compression::Level;
use tokio::io::{AsyncBufRead, AsyncRead, BufReader, ReadBuf};

use crate::config::{Algorithm, CompressionConfig};

/// Buffer between the producer and the compressor.
const READ_BUF: usize = 256 * 1024;

/// Wraps `input` in the configured compressor.
pub fn compress<R: AsyncRead + Send + 'static>(input: R, c: &CompressionConfig) -> Pin<Box<dyn AsyncRead + Send>> {
    let buffered = BufReader::with_capacity(READ_BUF, input);
    match c.algorithm {
        Algorithm::Zstd => {
            let mut params = Vec::new();
            if c.threads > 0 {
                params.push(async_compression::zstd::CParameter::nb_workers(c.threads));
            }
            Box::pin(ZstdEncoder::with_quality_and_params(buffered, Level::Precise(c.level), &params))
        }
        Algorithm::Gzip => Box::pin(GzipEncoder::with_quality(buffered, Level::Precise(c.level))),
    }
}

/// Wraps `input` in the matching decompressor.
pub fn decompress<R: AsyncBufRead + Send + 'static>(input: R, algorithm: Algorithm) -> Pin<Box<dyn AsyncRead + Send>> {
    match algorithm {
        Algorithm::Zstd => {
            let mut d = async_compression::tokio::bufread::ZstdDecoder::new(input);
            d.multiple_members(true);
            Box::pin(d)
        }
        Algorithm::Gzip => {
            let mut d = async_compression::tokio::bufread::GzipDecoder::new(input);
            d.multiple_members(true);
            Box::pin(d)
        }
    }
}

/// What a [`Tap`] saw: the byte count and the last bytes of the stream.
#[derive(Debug, Default)]
pub struct TapState {
    pub bytes: AtomicU64,
    tail: Mutex<Vec<u8>>,
}

const TAIL: usize = 512;

impl TapState {
    /// The last (up to) 512 bytes seen.
    pub fn tail(&self) -> Vec<u8> {
        self.tail.lock().map(|t| t.clone()).unwrap_or_default()
    }
    pub fn count(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
}

/// Passes bytes through, counting them and keeping the tail (for the `-- Dump completed` check).
pub struct Tap<R> {
    inner: R,
    state: Arc<TapState>,
}

impl<R> Tap<R> {
    pub fn new(inner: R) -> (Self, Arc<TapState>) {
        let state = Arc::new(TapState::default());
        (Tap { inner, state: state.clone() }, state)
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for Tap<R> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &res {
            let new = &buf.filled()[before..];
            if !new.is_empty() {
                self.state.bytes.fetch_add(new.len() as u64, Ordering::Relaxed);
                if let Ok(mut tail) = self.state.tail.lock() {
                    if new.len() >= TAIL {
                        tail.clear();
                        tail.extend_from_slice(&new[new.len() - TAIL..]);
                    } else {
                        tail.extend_from_slice(new);
                        let excess = tail.len().saturating_sub(TAIL);
                        tail.drain(..excess);
                    }
                }
            }
        }
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn compress_then_decompress_is_identity() {
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
        for algorithm in [Algorithm::Zstd, Algorithm::Gzip] {
            let c = CompressionConfig { algorithm, level: 3, threads: 0 };
            let mut compressed = Vec::new();
            compress(std::io::Cursor::new(data.clone()), &c).read_to_end(&mut compressed).await.unwrap();
            let mut back = Vec::new();
            decompress(BufReader::new(std::io::Cursor::new(compressed)), algorithm)
                .read_to_end(&mut back)
                .await
                .unwrap();
            assert_eq!(back, data, "{algorithm:?}");
        }
    }

    #[tokio::test]
    async fn tap_counts_and_keeps_the_tail() {
        let mut data = vec![b'x'; 100_000];
        data.extend_from_slice(b"\n-- Dump completed on 2026-11-29 16:00:00\n");
        let (mut tap, state) = Tap::new(std::io::Cursor::new(data.clone()));
        let mut out = Vec::new();
        tap.read_to_end(&mut out).await.unwrap();
        assert_eq!(state.count(), data.len() as u64);
        assert!(state.tail().ends_with(b"-- Dump completed on 2026-11-29 16:00:00\n"));
        assert_eq!(state.tail().len(), TAIL);
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;
    use tokio::io::AsyncReadExt;

    /// Yields its data in the given chunk sizes, like a socket or pipe would.
    struct Chunked {
        data: Vec<u8>,
        pos: usize,
        sizes: Vec<usize>,
        turn: usize,
    }

    impl AsyncRead for Chunked {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            let want = self.sizes[self.turn % self.sizes.len()].max(1);
            self.turn += 1;
            let n = want.min(buf.remaining()).min(self.data.len() - self.pos);
            let pos = self.pos;
            buf.put_slice(&self.data[pos..pos + n]);
            self.pos += n;
            Poll::Ready(Ok(()))
        }
    }

    proptest! {
        /// However the stream is cut into reads, the Tap counts every byte and keeps exactly
        /// the stream's last bytes (what the `-- Dump completed` check relies on).
        #[test]
        fn tap_is_independent_of_chunking(data in proptest::collection::vec(any::<u8>(), 0..5000),
                                          sizes in proptest::collection::vec(1usize..1200, 1..8)) {
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let (mut tap, state) = Tap::new(Chunked { data: data.clone(), pos: 0, sizes, turn: 0 });
            let mut out = Vec::new();
            rt.block_on(tap.read_to_end(&mut out)).unwrap();
            prop_assert_eq!(&out, &data);
            prop_assert_eq!(state.count(), data.len() as u64);
            prop_assert_eq!(state.tail(), data[data.len().saturating_sub(TAIL)..].to_vec());
        }
    }
}
