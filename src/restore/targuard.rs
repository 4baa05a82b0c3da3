//! A reader between a tar byte stream and the `tar` crate that bounds the metadata the crate
//! buffers.
//!
//! The `tar` crate reads a GNU long-name or long-link record (`L`, `K`) and a PAX record (`x`)
//! whole into memory, whatever size its header announces: a record declaring 1 GiB (an object
//! of a few KB once compressed) would take GBs. [`Guard`] follows the archive's block structure
//! itself, exactly as the crate walks it, and fails the read that completes a header of type
//! `L`, `K`, `x` or `g` announcing more than [`MAX_RECORD`] bytes, so the crate never sees such
//! a header. It also fails on a header whose checksum is wrong (the crate would too): the guard
//! must never take data for a header, or it would lose track of where the next header starts.
//!
//! The structure followed: 512-byte headers (the first all-zero block ends the archive, after
//! which everything passes unchecked); the size field in octal or GNU base-256, overridden for
//! the next member by the `size` key of a PAX `x` record (which is why `x` records are read
//! here too, at most [`MAX_RECORD`] bytes); GNU sparse members followed by extension blocks
//! while their `isextended` flag is set; data padded to 512 bytes. Where the crate's own header
//! accessors exist they are used, so that both read the same numbers.
//!
//! Memory: one 512-byte block and at most one PAX record of [`MAX_RECORD`] bytes.

use std::io::{self, Read};

use ::tar::{EntryType, GnuExtSparseHeader, Header, PaxExtensions};

/// Largest GNU long-name/long-link or PAX record accepted (names of real trees are at most a
/// few KiB: PATH_MAX is 4 KiB).
pub const MAX_RECORD: u64 = 64 * 1024;

const BLOCK: usize = 512;

/// Passes the bytes of `inner` through unchanged and fails the read that completes a header
/// the `tar` crate must not see (see the module documentation). Its errors have the kind
/// [`io::ErrorKind::InvalidData`] and say what was wrong.
pub struct Guard<R> {
    inner: R,
    walk: Walk,
    /// The message of the first failure; every later read fails with it too.
    failed: Option<String>,
}

impl<R> Guard<R> {
    pub fn new(inner: R) -> Self {
        Guard { inner, walk: Walk::new(), failed: None }
    }
}

impl<R: Read> Read for Guard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(msg) = &self.failed {
            return Err(io::Error::new(io::ErrorKind::InvalidData, msg.clone()));
        }
        let n = self.inner.read(buf)?;
        if let Err(msg) = self.walk.feed(&buf[..n]) {
            self.failed = Some(msg.clone());
            return Err(io::Error::new(io::ErrorKind::InvalidData, msg));
        }
        Ok(n)
    }
}

/// Where the walk is in the archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Collecting a header block.
    Header,
    /// Collecting a GNU sparse extension block; `data` bytes of the member follow the last one.
    Extension { data: u64 },
    /// Collecting the contents of a PAX `x` record (`left` bytes), then skipping `pad` bytes.
    Pax { left: u64, pad: u64 },
    /// Skipping member data and padding.
    Skip(u64),
    /// After the end-of-archive marker.
    Done,
}

/// The block walk: fed with every byte of the stream in order.
struct Walk {
    step: Step,
    block: [u8; BLOCK],
    filled: usize,
    pax: Vec<u8>,
    /// The value of the `size` key of a PAX record waiting for its member (`Some(None)`: a
    /// record without a usable one).
    pax_size: Option<Option<u64>>,
}

impl Walk {
    fn new() -> Self {
        Walk { step: Step::Header, block: [0; BLOCK], filled: 0, pax: Vec::new(), pax_size: None }
    }

    fn feed(&mut self, mut bytes: &[u8]) -> Result<(), String> {
        while !bytes.is_empty() {
            match self.step {
                Step::Done => return Ok(()),
                Step::Skip(left) => {
                    let n = left.min(bytes.len() as u64);
                    bytes = &bytes[n as usize..];
                    self.step = if n == left { Step::Header } else { Step::Skip(left - n) };
                }
                Step::Pax { left, pad } => {
                    let n = left.min(bytes.len() as u64);
                    self.pax.extend_from_slice(&bytes[..n as usize]);
                    bytes = &bytes[n as usize..];
                    if n == left {
                        self.pax_size = Some(pax_size(&self.pax));
                        self.pax = Vec::new();
                        self.step = skip(pad);
                    } else {
                        self.step = Step::Pax { left: left - n, pad };
                    }
                }
                Step::Header | Step::Extension { .. } => {
                    let n = (BLOCK - self.filled).min(bytes.len());
                    self.block[self.filled..self.filled + n].copy_from_slice(&bytes[..n]);
                    self.filled += n;
                    bytes = &bytes[n..];
                    if self.filled == BLOCK {
                        self.filled = 0;
                        self.step = match self.step {
                            Step::Extension { data } => self.extension(data)?,
                            _ => self.header()?,
                        };
                    }
                }
            }
        }
        Ok(())
    }

    /// A full header block: what follows it. Mirrors `tar::Archive`'s `next_entry_raw`,
    /// `next_entry` and `parse_sparse_header`.
    fn header(&mut self) -> Result<Step, String> {
        if self.block.iter().all(|b| *b == 0) {
            return Ok(Step::Done);
        }
        let header = Header::from_byte_slice(&self.block);
        let sum = self.block[..148].iter().chain(&self.block[156..]).fold(0u32, |a, b| a + u32::from(*b)) + 8 * 32;
        let cksum = header.cksum().map_err(|e| e.to_string())?;
        if sum != cksum {
            return Err("archive header checksum mismatch".to_owned());
        }
        let kind = header.entry_type();
        let size = header.entry_size().map_err(|e| e.to_string())?;
        let extension = matches!(
            kind,
            EntryType::GNULongName | EntryType::GNULongLink | EntryType::XHeader | EntryType::XGlobalHeader
        );
        if extension && size > MAX_RECORD {
            return Err(format!(
                "{} announces {size} bytes, more than the {MAX_RECORD} accepted (a corrupt or forged archive)",
                record_name(kind)
            ));
        }
        // The crate treats `L`, `K` and `x` as records of the next member only in GNU and
        // ustar headers; anything else is a member of its own.
        let recognized = header.as_gnu().is_some() || header.as_ustar().is_some();
        if recognized && matches!(kind, EntryType::GNULongName | EntryType::GNULongLink) {
            return padded(size).map(skip);
        }
        if recognized && kind == EntryType::XHeader {
            let pad = padded(size)? - size;
            self.pax = Vec::with_capacity(size as usize);
            if size == 0 {
                self.pax_size = Some(None);
                return Ok(skip(pad));
            }
            return Ok(Step::Pax { left: size, pad });
        }
        // A member: a PAX `size` replaces the header's, except for extension headers.
        let size = match self.pax_size.take() {
            Some(Some(pax)) if !extension => pax,
            _ => size,
        };
        if kind.is_gnu_sparse() && header.as_gnu().is_some_and(|gnu| gnu.is_extended()) {
            return Ok(Step::Extension { data: size });
        }
        padded(size).map(skip)
    }

    /// A full GNU sparse extension block of a member with `data` bytes of contents.
    fn extension(&mut self, data: u64) -> Result<Step, String> {
        let mut ext = GnuExtSparseHeader::new();
        ext.as_mut_bytes().copy_from_slice(&self.block);
        if ext.is_extended() {
            Ok(Step::Extension { data })
        } else {
            padded(data).map(skip)
        }
    }
}

fn skip(n: u64) -> Step {
    if n == 0 {
        Step::Header
    } else {
        Step::Skip(n)
    }
}

/// `size` rounded up to whole blocks.
fn padded(size: u64) -> Result<u64, String> {
    size.checked_add(BLOCK as u64 - 1).map(|s| s & !(BLOCK as u64 - 1)).ok_or_else(|| "size overflow".to_owned())
}

/// The `size` value of a PAX record, read as `tar`'s `pax_extensions_value` reads it.
fn pax_size(record: &[u8]) -> Option<u64> {
    for extension in PaxExtensions::new(record) {
        let extension = extension.ok()?;
        if extension.key() != Ok("size") {
            continue;
        }
        return extension.value().ok()?.parse::<u64>().ok();
    }
    None
}

fn record_name(kind: EntryType) -> &'static str {
    match kind {
        EntryType::GNULongName => "a GNU long-name record (type 'L')",
        EntryType::GNULongLink => "a GNU long-link record (type 'K')",
        EntryType::XHeader => "a PAX record (type 'x')",
        _ => "a PAX global record (type 'g')",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ::tar::Builder;

    /// Counts the bytes read from the inner reader.
    struct Counted<R> {
        inner: R,
        n: u64,
    }

    impl<R: Read> Read for Counted<R> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.inner.read(buf)?;
            self.n += n as u64;
            Ok(n)
        }
    }

    fn record_header(kind: EntryType, size: u64) -> Header {
        let mut header = Header::new_gnu();
        header.as_old_mut().name[..13].copy_from_slice(b"././@LongLink");
        header.set_mode(0o644);
        header.set_size(size);
        header.set_entry_type(kind);
        header.set_cksum();
        header
    }

    #[test]
    fn a_huge_record_fails_before_it_is_buffered() {
        for kind in [EntryType::GNULongName, EntryType::GNULongLink, EntryType::XHeader, EntryType::XGlobalHeader] {
            let header = record_header(kind, 1 << 30);
            let stream = header.as_bytes().to_vec();
            let mut source = Counted { inner: (&stream[..]).chain(io::repeat(b'a')), n: 0 };
            let mut archive = ::tar::Archive::new(Guard::new(&mut source));
            let err = archive.entries().unwrap().find_map(Result::err).expect("an error");
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
            assert!(err.to_string().contains("announces 1073741824 bytes, more than the 65536"), "{err}");
            drop(archive);
            assert!(source.n < 1 << 20, "{kind:?}: read {} bytes", source.n);
        }
    }

    #[test]
    fn records_up_to_the_limit_pass() {
        let name = format!("dir/{}", "n".repeat(60 * 1024));
        let mut builder = Builder::new(Vec::new());
        let mut header = Header::new_gnu();
        header.set_mode(0o644);
        header.set_size(3);
        builder.append_data(&mut header, &name, &b"abc"[..]).unwrap();
        let data = builder.into_inner().unwrap();
        let mut archive = ::tar::Archive::new(Guard::new(&data[..]));
        let entries: Vec<_> = archive.entries().unwrap().map(|e| e.unwrap().path_bytes().into_owned()).collect();
        assert_eq!(entries, [name.into_bytes()]);
    }

    #[test]
    fn a_pax_size_moves_the_next_header() {
        // A PAX record says the member holds 1000 bytes while its header says 0: the guard
        // must look for the next header where the crate does, after 1024 bytes of data.
        let mut builder = Builder::new(Vec::new());
        let mut pax = Header::new_ustar();
        pax.set_entry_type(EntryType::XHeader);
        let record = b"13 size=1000\n";
        pax.set_size(record.len() as u64);
        pax.set_cksum();
        builder.append(&pax, &record[..]).unwrap();
        let mut member = Header::new_ustar();
        member.set_path("a").unwrap();
        member.set_size(0);
        member.set_mode(0o644);
        member.set_cksum();
        builder.append(&member, &[][..]).unwrap();
        let mut data = builder.into_inner().unwrap();
        // Drop the end marker, then 1000 bytes of data with a huge `L` header inside, padding,
        // and a huge `L` header where the next header really is.
        data.truncate(data.len() - 1024);
        let mut contents = record_header(EntryType::GNULongName, 1 << 30).as_bytes().to_vec();
        contents.resize(1024, 0);
        data.extend(&contents);
        data.extend(record_header(EntryType::GNULongName, 1 << 30).as_bytes());
        let mut archive = ::tar::Archive::new(Guard::new(&data[..]));
        let mut entries = archive.entries().unwrap();
        let first = entries.next().unwrap().unwrap();
        assert_eq!((first.path_bytes().as_ref(), first.size()), (&b"a"[..], 1000));
        drop(first);
        let Some(Err(err)) = entries.next() else { panic!("expected an error") };
        assert!(err.to_string().contains("GNU long-name record"), "{err}");
    }

    #[test]
    fn a_bad_checksum_fails() {
        let mut block = record_header(EntryType::Regular, 0).as_bytes().to_vec();
        block[0] = b'x';
        let mut guard = Guard::new(&block[..]);
        let err = io::copy(&mut guard, &mut io::sink()).unwrap_err();
        assert_eq!(err.to_string(), "archive header checksum mismatch");
    }
}
