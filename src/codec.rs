//! Compression and stream-watching adaptors between a producer and the uploader.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_compression::tokio::bufread::{GzipEncoder, ZstdEncoder};
use async_compression::Level;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use tokio::io::{AsyncBufRead, AsyncRead};
use tokio_util::io::StreamReader;

use crate::config::{Algorithm, CompressionConfig};

/// Wraps `input` in the configured compressor, which reads straight from `input`'s buffers.
pub fn compress<R: AsyncBufRead + Send + 'static>(input: R, c: &CompressionConfig) -> Pin<Box<dyn AsyncRead + Send>> {
    let buffered = input;
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
    /// Records bytes that passed.
    pub fn observe(&self, new: &[u8]) {
        if new.is_empty() {
            return;
        }
        self.bytes.fetch_add(new.len() as u64, Ordering::Relaxed);
        if let Ok(mut tail) = self.tail.lock() {
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

    /// The last (up to) 512 bytes seen.
    pub fn tail(&self) -> Vec<u8> {
        self.tail.lock().map(|t| t.clone()).unwrap_or_default()
    }
    pub fn count(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
}

/// Reads a stream of chunks as a buffered reader (the compressor reads the chunks in place),
/// counting the bytes and keeping the tail (for the `-- Dump completed` check) as they pass.
pub fn tapped<S>(chunks: S) -> (Pin<Box<dyn AsyncBufRead + Send>>, Arc<TapState>)
where
    S: Stream<Item = std::io::Result<Bytes>> + Send + 'static,
{
    let state = Arc::new(TapState::default());
    let seen = state.clone();
    let stream = chunks.inspect(move |chunk| {
        if let Ok(b) = chunk {
            seen.observe(b);
        }
    });
    (Box::pin(StreamReader::new(stream)), state)
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
            decompress(tokio::io::BufReader::new(std::io::Cursor::new(compressed)), algorithm)
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
        let chunks: Vec<std::io::Result<Bytes>> = data.chunks(7000).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
        let (mut tap, state) = tapped(futures::stream::iter(chunks));
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

    proptest! {
        /// However the stream is cut into chunks, the tap counts every byte and keeps exactly
        /// the stream's last bytes (what the `-- Dump completed` check relies on), and the
        /// reader yields the stream unchanged.
        #[test]
        fn tap_is_independent_of_chunking(data in proptest::collection::vec(any::<u8>(), 0..5000),
                                          sizes in proptest::collection::vec(1usize..1200, 1..8)) {
            let mut chunks = Vec::new();
            let (mut pos, mut turn) = (0, 0);
            while pos < data.len() {
                let n = sizes[turn % sizes.len()].min(data.len() - pos);
                chunks.push(Ok::<Bytes, std::io::Error>(Bytes::copy_from_slice(&data[pos..pos + n])));
                pos += n;
                turn += 1;
            }
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let (mut reader, state) = tapped(futures::stream::iter(chunks));
            let mut out = Vec::new();
            rt.block_on(reader.read_to_end(&mut out)).unwrap();
            prop_assert_eq!(&out, &data);
            prop_assert_eq!(state.count(), data.len() as u64);
            prop_assert_eq!(state.tail(), data[data.len().saturating_sub(TAIL)..].to_vec());
        }
    }
}
