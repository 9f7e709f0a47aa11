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
        Format::Tar => extract_tar(reader, name),
        Format::TarGz => extract_tar(flate2::read::MultiGzDecoder::new(reader), name),
        Format::TarZst => {
            let dec = ruzstd::decoding::StreamingDecoder::new(reader)
                .map_err(|e| FetchError::InvalidContent(format!("{name}: corrupt zstd data: {e}")))?;
            extract_tar(dec, name)
        }
        Format::TarXz => extract_tar(lzma_rust2::XzReader::new_mem_limit(reader, true, MAX_WINDOW_KIB), name),
        Format::Zip => extract_zip(reader, name),
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

pub fn extract_tar<R: Read>(reader: R, name: &str) -> Result<Extracted, FetchError> {
    use tar::EntryType;
    let mut archive = tar::Archive::new(reader);
    let mut out = Extracted::default();
    let entries = archive.entries().map_err(|e| corrupt(name, "not a readable tar archive", e))?;
    let mut saw_end = false;
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
        saw_end = true;
    }
    if !saw_end {
        return Err(FetchError::InvalidContent(format!("{name}: the archive has no entries")));
    }
    Ok(out)
}

pub fn extract_zip<R: Read + Seek>(reader: R, name: &str) -> Result<Extracted, FetchError> {
    const S_IFMT: u32 = 0o170000;
    const S_IFLNK: u32 = 0o120000;
    const S_IFREG: u32 = 0o100000;
    const S_IFDIR: u32 = 0o040000;
    let mut archive = zip::ZipArchive::new(reader).map_err(|e| corrupt(name, "not a readable zip archive", e))?;
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
