//! Compression and stream-watching adaptors between a producer and the uploader.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use async_compression::codecs::{EncodeV2, GzipEncoder, ZstdEncoder};
use async_compression::core::util::{PartialBuffer, WriteBuffer};
use async_compression::Level;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use tokio::io::{AsyncBufRead, AsyncRead, ReadBuf};
use tokio_util::io::StreamReader;

use crate::config::{Algorithm, CompressionConfig};

/// Wraps `input` in the configured compressor, which reads straight from `input`'s buffers.
pub fn compress<R: AsyncBufRead + Send + Unpin + 'static>(
    input: R,
    c: &CompressionConfig,
) -> Pin<Box<dyn AsyncRead + Send>> {
    let codec: Box<dyn EncodeV2 + Send> = match c.algorithm {
        Algorithm::Zstd => {
            let mut params = Vec::new();
            if c.threads > 0 {
                params.push(async_compression::zstd::CParameter::nb_workers(c.threads));
            }
            let level = async_compression::zstd::CParameter::quality(Level::Precise(c.level));
            Box::new(ZstdEncoder::new_with_params(level, &params))
        }
        Algorithm::Gzip => {
            let params = async_compression::codecs::flate::params::FlateEncoderParams::from(Level::Precise(c.level));
            Box::new(GzipEncoder::new(params))
        }
    };
    Box::pin(Compressor { input, codec, phase: Phase::Encoding })
}

/// A compressor that reads from a buffered reader and ends blocks only where the codec chooses.
///
/// async-compression's own bufread encoders (0.4) flush the codec whenever the reader is not
/// ready: for zstd that ends the current block early each time the producer lags, which costs
/// ratio and CPU, stalls zstd's worker threads, and makes the output depend on timing (the same
/// tree gave different bytes on every run, so a deduplicating store like Garage could never
/// reuse a block). This one waits for input instead; the output is a function of the input.
struct Compressor<R> {
    input: R,
    codec: Box<dyn EncodeV2 + Send>,
    phase: Phase,
}

enum Phase {
    Encoding,
    Finishing,
    Done,
    Failed,
}

impl<R: AsyncBufRead + Unpin> AsyncRead for Compressor<R> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        let mut output = WriteBuffer::new_initialized(buf.initialize_unfilled());
        let result = this.fill(cx, &mut output);
        let written = output.written_len();
        buf.advance(written);
        if result.is_ready() || written == 0 {
            result
        } else {
            Poll::Ready(Ok(()))
        }
    }
}

impl<R: AsyncBufRead + Unpin> Compressor<R> {
    /// Encodes until `output` is full, the input is not ready, or the stream has ended.
    fn fill(&mut self, cx: &mut Context<'_>, output: &mut WriteBuffer<'_>) -> Poll<io::Result<()>> {
        while !output.has_no_spare_space() {
            match self.phase {
                Phase::Encoding => {
                    let data = match Pin::new(&mut self.input).poll_fill_buf(cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                        Poll::Ready(Ok(data)) => data,
                    };
                    if data.is_empty() {
                        self.phase = Phase::Finishing;
                        continue;
                    }
                    let before = output.written_len();
                    let mut input = PartialBuffer::new(data);
                    let encoded = self.codec.encode(&mut input, output);
                    let consumed = input.written_len();
                    Pin::new(&mut self.input).consume(consumed);
                    if let Err(e) = encoded {
                        self.phase = Phase::Failed;
                        return Poll::Ready(Err(e));
                    }
                    if consumed == 0 && output.written_len() == before {
                        self.phase = Phase::Failed;
                        return Poll::Ready(Err(io::Error::other("the compressor made no progress")));
                    }
                }
                Phase::Finishing => match self.codec.finish(output) {
                    Ok(true) => self.phase = Phase::Done,
                    Ok(false) => {}
                    Err(e) => {
                        self.phase = Phase::Failed;
                        return Poll::Ready(Err(e));
                    }
                },
                Phase::Done => break,
                Phase::Failed => return Poll::Ready(Err(io::Error::other("the compressor failed earlier"))),
            }
        }
        Poll::Ready(Ok(()))
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
            let c = CompressionConfig { algorithm, level: 3, threads: 0, dump_threads: 0 };
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

    /// A stream whose chunks arrive one by one, each after the reader found it not ready.
    fn trickle(data: &[u8], chunk: usize) -> impl Stream<Item = std::io::Result<Bytes>> + Send + 'static {
        let chunks: Vec<Bytes> = data.chunks(chunk).map(Bytes::copy_from_slice).collect();
        futures::stream::iter(chunks).then(|c| async move {
            tokio::task::yield_now().await;
            Ok(c)
        })
    }

    #[tokio::test]
    async fn output_does_not_depend_on_when_input_arrives() {
        // Compressible and incompressible parts, as in a data directory.
        let mut data: Vec<u8> = (0..2_000_000u32).map(|i| (i % 251) as u8 ^ (i >> 12) as u8).collect();
        data.extend(crate::source::tar::tests::random_bytes(700_000, 3));
        for (algorithm, threads) in [(Algorithm::Zstd, 0), (Algorithm::Zstd, 2), (Algorithm::Gzip, 0)] {
            let c = CompressionConfig { algorithm, level: 3, threads, dump_threads: 0 };
            let mut whole = Vec::new();
            compress(std::io::Cursor::new(data.clone()), &c).read_to_end(&mut whole).await.unwrap();
            for chunk in [1000, 65_536, 1 << 20] {
                let mut pieces = Vec::new();
                compress(StreamReader::new(Box::pin(trickle(&data, chunk))), &c)
                    .read_to_end(&mut pieces)
                    .await
                    .unwrap();
                assert!(pieces == whole, "{algorithm:?} threads={threads}: chunks of {chunk} gave other bytes");
            }
            let mut back = Vec::new();
            decompress(tokio::io::BufReader::new(std::io::Cursor::new(whole)), algorithm)
                .read_to_end(&mut back)
                .await
                .unwrap();
            assert!(back == data, "{algorithm:?} threads={threads}: round trip");
        }
    }

    #[tokio::test]
    async fn small_reads_and_empty_input() {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i / 7) as u8).collect();
        for algorithm in [Algorithm::Zstd, Algorithm::Gzip] {
            let c = CompressionConfig { algorithm, level: 3, threads: 0, dump_threads: 0 };
            let mut whole = Vec::new();
            compress(std::io::Cursor::new(data.clone()), &c).read_to_end(&mut whole).await.unwrap();
            // Reads of 7 bytes at a time: the output buffer is full after almost every call.
            let mut reader = compress(std::io::Cursor::new(data.clone()), &c);
            let (mut small, mut buf) = (Vec::new(), [0u8; 7]);
            loop {
                let n = reader.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                small.extend_from_slice(&buf[..n]);
            }
            assert!(small == whole, "{algorithm:?}");
            // An empty input still gives a valid, empty stream.
            let mut empty = Vec::new();
            compress(std::io::Cursor::new(Vec::new()), &c).read_to_end(&mut empty).await.unwrap();
            assert!(!empty.is_empty());
            let mut back = Vec::new();
            decompress(tokio::io::BufReader::new(std::io::Cursor::new(empty)), algorithm)
                .read_to_end(&mut back)
                .await
                .unwrap();
            assert!(back.is_empty(), "{algorithm:?}");
        }
    }

    #[tokio::test]
    async fn a_reader_error_is_passed_on() {
        let c = CompressionConfig { algorithm: Algorithm::Zstd, level: 3, threads: 0, dump_threads: 0 };
        let chunks = vec![Ok(Bytes::from_static(b"some bytes")), Err(std::io::Error::other("the producer broke"))];
        let mut out = Vec::new();
        let err =
            compress(StreamReader::new(futures::stream::iter(chunks)), &c).read_to_end(&mut out).await.unwrap_err();
        assert!(err.to_string().contains("the producer broke"), "{err}");
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
