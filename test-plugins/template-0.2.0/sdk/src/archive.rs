//! Archive extraction with attune's rules, shared by every fetcher that
//! receives an archive (the built-in `archive` and `http` fetchers, and any
//! third-party plugin that downloads one).
//!
//! Formats are detected from the bytes: tar, tar.gz, tar.zst, tar.xz, zip.
//! Everything streams: no whole archive or entry is held in memory. Entries
//! are written through the host's staging interface, which enforces the path
//! rules (no `..`, no absolute paths, no escaping symlinks, no writes through
//! symlinks, no duplicates or case collisions) and the byte and file limits;
//! this module adds the rules only an archive reader can check: entry types
//! (devices and FIFOs are refused), hard links, and corrupt input.

use std::io::{self, BufReader, Read, Seek, SeekFrom};

use crate::bindings::attune::fetcher::blobs::Blob;
use crate::{FetchError, Staging, StagingError, staging_error};

/// The archive formats attune reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Tar,
    TarGz,
    TarZst,
    TarXz,
    Zip,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Tar => "tar",
            Format::TarGz => "tar.gz",
            Format::TarZst => "tar.zst",
            Format::TarXz => "tar.xz",
            Format::Zip => "zip",
        }
    }
}

/// What an extraction wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Extracted {
    pub entries: u64,
    pub bytes: u64,
}

/// Bytes a decoder may keep for its window (xz, zstd); beyond it the archive
/// is refused rather than the fetcher running out of memory.
const MAX_WINDOW_KIB: u32 = 128 * 1024;

/// Detects the format from the first bytes (at least 512 for tar's magic).
/// `name` (the file name, if any) only words the error.
pub fn detect(head: &[u8], name: &str) -> Result<Format, FetchError> {
    if head.is_empty() {
        return Err(FetchError::InvalidContent(format!("{name}: the archive is empty (0 bytes)")));
    }
    let starts = |magic: &[u8]| head.starts_with(magic);
    Ok(if starts(&[0x1f, 0x8b]) {
        Format::TarGz
    } else if starts(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Format::TarZst
    } else if starts(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        Format::TarXz
    } else if starts(b"PK\x03\x04") || starts(b"PK\x05\x06") {
        Format::Zip
    } else if head.len() >= 262 && &head[257..262] == b"ustar" {
        Format::Tar
    } else if head.len() >= 512 && head[..512].iter().all(|b| *b == 0) {
        // An end-of-archive block first: a tar with nothing in it (said so later).
        Format::Tar
    } else if starts(b"BZh") {
        return Err(FetchError::InvalidContent(format!(
            "{name}: bzip2 archives are not supported; use tar.gz, tar.zst, tar.xz or zip"
        )));
    } else {
        return Err(FetchError::InvalidContent(format!(
            "{name}: not a supported archive (tar, tar.gz, tar.zst, tar.xz or zip, detected from its bytes)"
        )));
    })
}

/// Reads a host blob as a seekable stream.
pub struct BlobReader<'a> {
    blob: &'a Blob,
    pos: u64,
    size: u64,
}

impl<'a> BlobReader<'a> {
    pub fn new(blob: &'a Blob) -> Self {
        BlobReader { blob, pos: 0, size: blob.size() }
    }
}

impl Read for BlobReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.size || buf.is_empty() {
            return Ok(0);
        }
        let len = buf.len().min(4 << 20) as u32;
        let data = self.blob.read(self.pos, len).map_err(io::Error::other)?;
        buf[..data.len()].copy_from_slice(&data);
        self.pos += data.len() as u64;
        Ok(data.len())
    }
}

impl Seek for BlobReader<'_> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let pos = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => self.size.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = pos.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start"))?;
        Ok(self.pos)
    }
}

/// Extracts the archive in `blob` into staging. `name` words errors.
pub fn extract_blob(blob: &Blob, name: &str) -> Result<(Format, Extracted), FetchError> {
    let head = blob.read(0, 512).map_err(FetchError::Other)?;
    let format = detect(&head, name)?;
    let reader = BufReader::with_capacity(1 << 20, BlobReader::new(blob));
    let extracted = extract(reader, format, name)?;
    Ok((format, extracted))
}

/// Extracts an archive of a known format from a seekable stream.
pub fn extract<R: Read + Seek>(reader: R, format: Format, name: &str) -> Result<Extracted, FetchError> {
    match format {
        Format::Zip => extract_zip(reader, name),
        _ => extract_stream(reader, format, name),
    }
}

/// Extracts a tar (plain or compressed) as it is read, e.g. while it
/// downloads. A zip cannot be: its index is at its end (use [`extract`]).
pub fn extract_stream<R: Read>(reader: R, format: Format, name: &str) -> Result<Extracted, FetchError> {
    match format {
        Format::Tar => extract_tar(reader, name),
        Format::TarGz => extract_tar(flate2::read::MultiGzDecoder::new(reader), name),
        Format::TarZst => {
            let dec = ruzstd::decoding::StreamingDecoder::new(reader)
                .map_err(|e| FetchError::InvalidContent(format!("{name}: corrupt zstd data: {e}")))?;
            extract_tar(dec, name)
        }
        Format::TarXz => extract_tar(lzma_rust2::XzReader::new_mem_limit(reader, true, MAX_WINDOW_KIB), name),
        Format::Zip => Err(FetchError::Other(format!("{name}: a zip archive cannot be extracted as a stream"))),
    }
}

fn corrupt(name: &str, what: &str, e: impl std::fmt::Display) -> FetchError {
    FetchError::InvalidContent(format!("{name}: {what}: {e}"))
}

/// An io error from copying an entry: the host's refusal, or bad input.
fn copy_error(name: &str, entry: &str, e: io::Error) -> FetchError {
    match staging_error(&e) {
        StagingError::Io(_) => corrupt(name, &format!("entry {entry:?}"), format!("corrupt or truncated data ({e})")),
        s => FetchError::Staging(s),
    }
}

/// Tar paths often start with `./`, and folders end in `/`: neither is part
/// of the name. The root entry `./` itself names nothing.
fn tidy(path: &str) -> &str {
    let mut p = path;
    while let Some(rest) = p.strip_prefix("./") {
        p = rest;
    }
    let p = p.trim_end_matches('/');
    if p == "." { "" } else { p }
}

fn utf8<'a>(name: &str, bytes: &'a [u8]) -> Result<&'a str, FetchError> {
    std::str::from_utf8(bytes).map_err(|_| {
        FetchError::InvalidContent(format!("{name}: entry {:?} is not UTF-8", String::from_utf8_lossy(bytes)))
    })
}

/// Notes whether the stream ended, to tell a tar that was cut short from one
/// that ends with its end-of-archive marker.
struct EofWatch<R> {
    inner: R,
    eof: bool,
}

impl<R: Read> Read for EofWatch<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.eof = true;
        }
        Ok(n)
    }
}

/// Data a tar may carry after its end-of-archive marker (padding to the
/// record size, usually a few KiB of zeros) that is still read, so that the
/// compressor's own checksum (gzip CRC, xz and zstd checks) gets verified.
const MAX_TRAILING: u64 = 1 << 20;

pub fn extract_tar<R: Read>(reader: R, name: &str) -> Result<Extracted, FetchError> {
    use tar::EntryType;
    let mut archive = tar::Archive::new(EofWatch { inner: reader, eof: false });
    let mut out = Extracted::default();
    let entries = archive.entries().map_err(|e| corrupt(name, "not a readable tar archive", e))?;
    let mut saw_entry = false;
    for entry in entries {
        let mut entry = entry.map_err(|e| corrupt(name, "corrupt or truncated tar data", e))?;
        let header = entry.header();
        let kind = header.entry_type();
        let mode = header.mode().map_err(|e| corrupt(name, "bad mode in a tar header", e))?;
        let raw = entry.path_bytes().into_owned();
        let path = utf8(name, &raw)?;
        let path = tidy(path).to_string();
        match kind {
            EntryType::XGlobalHeader | EntryType::XHeader | EntryType::GNULongName | EntryType::GNULongLink => continue,
            _ if path.is_empty() && kind == EntryType::Directory => continue,
            EntryType::Directory => Staging::create_dir(&path)?,
            EntryType::Regular | EntryType::Continuous => {
                let mut to = Staging::create_file(&path, mode & 0o111 != 0)?;
                out.bytes += io::copy(&mut entry, &mut to).map_err(|e| copy_error(name, &path, e))?;
                to.finish()?;
            }
            EntryType::Symlink => {
                let target = entry.link_name_bytes().map(|t| t.into_owned()).unwrap_or_default();
                Staging::create_symlink(&path, utf8(name, &target)?)?;
            }
            EntryType::Link => {
                let target = entry.link_name_bytes().map(|t| t.into_owned()).unwrap_or_default();
                let target = tidy(utf8(name, &target)?).to_string();
                Staging::link_file(&path, &target)?;
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let what = match kind {
                    EntryType::Char => "a character device",
                    EntryType::Block => "a block device",
                    _ => "a FIFO",
                };
                return Err(FetchError::InvalidContent(format!(
                    "{name}: entry {path:?} is {what}; packs may hold only files, folders and symlinks"
                )));
            }
            other => {
                return Err(FetchError::InvalidContent(format!(
                    "{name}: entry {path:?} has an unsupported tar type ({other:?})"
                )));
            }
        }
        out.entries += 1;
        saw_entry = true;
    }
    if !saw_entry {
        return Err(FetchError::InvalidContent(format!("{name}: the archive has no entries")));
    }
    let mut rest = archive.into_inner();
    if rest.eof {
        return Err(FetchError::InvalidContent(format!(
            "{name}: truncated: the tar data ends without its end-of-archive marker"
        )));
    }
    let drained = io::copy(&mut (&mut rest).take(MAX_TRAILING), &mut io::sink())
        .map_err(|e| corrupt(name, "corrupt or truncated data after the last entry (checksum or stream error)", e))?;
    if drained == MAX_TRAILING && !rest.eof {
        return Err(FetchError::InvalidContent(format!(
            "{name}: more than {MAX_TRAILING} bytes of data after the end of the archive"
        )));
    }
    Ok(out)
}

/// The names in the zip's central directory, read directly, when the
/// classic end record describes it (not zip64).
fn central_directory_names<R: Read + Seek>(reader: &mut R) -> io::Result<Option<Vec<String>>> {
    let size = reader.seek(SeekFrom::End(0))?;
    let tail_len = size.min(22 + 65535);
    reader.seek(SeekFrom::Start(size - tail_len))?;
    let mut tail = vec![0u8; tail_len as usize];
    reader.read_exact(&mut tail)?;
    reader.seek(SeekFrom::Start(0))?;
    let Some(at) = (0..tail.len().saturating_sub(21)).rev().find(|&i| tail[i..i + 4] == [0x50, 0x4b, 0x05, 0x06])
    else {
        return Ok(None);
    };
    let le16 = |b: &[u8], i: usize| u16::from_le_bytes([b[i], b[i + 1]]) as usize;
    let le32 = |b: &[u8], i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]) as u64;
    let (total, cd_size, cd_offset) = (le16(&tail, at + 10), le32(&tail, at + 12), le32(&tail, at + 16));
    if total == 0xffff
        || cd_size == 0xffff_ffff
        || cd_offset == 0xffff_ffff
        || cd_offset + cd_size > size
        || cd_size > 64 << 20
    {
        return Ok(None);
    }
    let mut cd = vec![0u8; cd_size as usize];
    reader.seek(SeekFrom::Start(cd_offset))?;
    reader.read_exact(&mut cd)?;
    reader.seek(SeekFrom::Start(0))?;
    let mut names = Vec::with_capacity(total);
    let mut i = 0;
    while i + 46 <= cd.len() && cd[i..i + 4] == [0x50, 0x4b, 0x01, 0x02] {
        let (n, x, c) = (le16(&cd, i + 28), le16(&cd, i + 30), le16(&cd, i + 32));
        let end = (i + 46 + n).min(cd.len());
        names.push(String::from_utf8_lossy(&cd[i + 46..end]).into_owned());
        i += 46 + n + x + c;
    }
    Ok(Some(names))
}

pub fn extract_zip<R: Read + Seek>(mut reader: R, name: &str) -> Result<Extracted, FetchError> {
    const S_IFMT: u32 = 0o170000;
    const S_IFLNK: u32 = 0o120000;
    const S_IFREG: u32 = 0o100000;
    const S_IFDIR: u32 = 0o040000;
    let listed = central_directory_names(&mut reader).map_err(|e| corrupt(name, "not a readable zip archive", e))?;
    let mut archive = zip::ZipArchive::new(reader).map_err(|e| corrupt(name, "not a readable zip archive", e))?;
    // The zip reader keys entries by name, so a repeated name would vanish
    // silently: look for repeats in the central directory itself.
    if let Some(names) = listed {
        let mut seen = std::collections::HashSet::new();
        if let Some(dup) = names.iter().find(|n| !seen.insert(tidy(n).to_string())) {
            return Err(FetchError::InvalidContent(format!(
                "{name}: entry {:?} appears twice; each path may be written once",
                tidy(dup)
            )));
        }
    }
    let mut out = Extracted::default();
    if archive.is_empty() {
        return Err(FetchError::InvalidContent(format!("{name}: the archive has no entries")));
    }
    for i in 0..archive.len() {
        let mut file = archive.by_index(i).map_err(|e| corrupt(name, &format!("entry #{i}"), e))?;
        let raw = file.name().map_err(|e| corrupt(name, &format!("entry #{i} has a bad name"), e))?.into_owned();
        let path = tidy(&raw).to_string();
        let mode = file.unix_mode();
        let kind = mode.map(|m| m & S_IFMT).filter(|k| *k != 0);
        if file.is_dir() || kind == Some(S_IFDIR) {
            if !path.is_empty() {
                Staging::create_dir(&path)?;
            }
        } else if kind == Some(S_IFLNK) {
            let mut target = Vec::new();
            (&mut file).take(4097).read_to_end(&mut target).map_err(|e| copy_error(name, &path, e))?;
            if target.len() > 4096 {
                return Err(FetchError::InvalidContent(format!(
                    "{name}: symlink {path:?} has a target over 4096 bytes"
                )));
            }
            Staging::create_symlink(&path, utf8(name, &target)?)?;
        } else if kind.is_none() || kind == Some(S_IFREG) {
            let exec = mode.is_some_and(|m| m & 0o111 != 0);
            let mut to = Staging::create_file(&path, exec)?;
            out.bytes += io::copy(&mut file, &mut to).map_err(|e| copy_error(name, &path, e))?;
            to.finish()?;
        } else {
            return Err(FetchError::InvalidContent(format!(
                "{name}: entry {path:?} is a device, FIFO or socket; packs may hold only files, folders and symlinks"
            )));
        }
        out.entries += 1;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_formats_from_bytes() {
        let mut tar = vec![0u8; 512];
        tar[257..262].copy_from_slice(b"ustar");
        assert_eq!(detect(&tar, "x").unwrap(), Format::Tar);
        assert_eq!(detect(&[0x1f, 0x8b, 8], "x").unwrap(), Format::TarGz);
        assert_eq!(detect(b"PK\x03\x04rest", "x").unwrap(), Format::Zip);
        assert_eq!(detect(&[0x28, 0xb5, 0x2f, 0xfd], "x").unwrap(), Format::TarZst);
        assert!(matches!(detect(b"", "x"), Err(FetchError::InvalidContent(_))));
        assert!(matches!(detect(b"BZh91AY", "x"), Err(FetchError::InvalidContent(m)) if m.contains("bzip2")));
        assert!(matches!(detect(b"hello", "x"), Err(FetchError::InvalidContent(_))));
    }

    #[test]
    fn tidies_tar_names() {
        assert_eq!(tidy("./pack.yaml"), "pack.yaml");
        assert_eq!(tidy("././a/"), "a");
        assert_eq!(tidy("./"), "");
        assert_eq!(tidy("."), "");
        assert_eq!(tidy("../x"), "../x");
    }
}
