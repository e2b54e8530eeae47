//! File I/O: atomic writes, and readers that turn every bad input into a clear error.
use protocell_core::error::{Error, Result};
use protocell_core::record::{Checkpoint, Limits};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Largest data file accepted (the whole text is tokenised in memory).
pub const MAX_TEXT_BYTES: u64 = 4 << 30;

fn io_err(what: &str, path: &Path, e: std::io::Error) -> Error {
    Error::Io(format!("{what} {}: {e}", path.display()))
}

/// Writes `bytes` to `path` atomically: a temporary file in the same directory is written,
/// flushed to disk and renamed over `path`, so a reader never sees a partial file and an
/// interrupted write leaves the previous file intact.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(|e| io_err("cannot create directory", dir, e))?;
    let name = path.file_name().ok_or_else(|| Error::Io(format!("{} is not a file path", path.display())))?;
    let tmp: PathBuf = dir.join(format!(
        ".{}.tmp.{}.{}",
        name.to_string_lossy(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut f = fs::File::create(&tmp).map_err(|e| io_err("cannot create", &tmp, e))?;
        f.write_all(bytes).map_err(|e| io_err("cannot write", &tmp, e))?;
        f.sync_all().map_err(|e| io_err("cannot sync", &tmp, e))?;
        drop(f);
        fs::rename(&tmp, path).map_err(|e| io_err("cannot rename into", path, e))?;
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Reads a UTF-8 text file for training or evaluation. Missing, unreadable, empty,
/// oversized, binary (NUL bytes) and non-UTF-8 files are errors that say which.
pub fn read_text(path: &Path) -> Result<String> {
    let meta = fs::metadata(path).map_err(|e| Error::Data(format!("cannot open data file {}: {e}", path.display())))?;
    if meta.is_dir() {
        return Err(Error::Data(format!("{} is a directory, not a text file", path.display())));
    }
    if meta.len() > MAX_TEXT_BYTES {
        return Err(Error::Data(format!("{} is {} bytes; the limit is {MAX_TEXT_BYTES}", path.display(), meta.len())));
    }
    let bytes = fs::read(path).map_err(|e| Error::Data(format!("cannot read {}: {e}", path.display())))?;
    if bytes.is_empty() {
        return Err(Error::Data(format!("data file {} is empty", path.display())));
    }
    if let Some(pos) = bytes.iter().position(|&b| b == 0) {
        return Err(Error::Data(format!(
            "{} looks binary (NUL byte at offset {pos}); expected UTF-8 text",
            path.display()
        )));
    }
    String::from_utf8(bytes).map_err(|e| {
        Error::Data(format!(
            "{} is not valid UTF-8 (first bad byte at offset {})",
            path.display(),
            e.utf8_error().valid_up_to()
        ))
    })
}

/// Reads and decodes a checkpoint file.
pub fn read_checkpoint(path: &Path) -> Result<Checkpoint> {
    let bytes = fs::read(path).map_err(|e| Error::Checkpoint(format!("cannot read {}: {e}", path.display())))?;
    Checkpoint::decode_with(&bytes, &Limits::default())
        .map_err(|e| Error::Checkpoint(format!("{}: {}", path.display(), strip_prefix(&e))))
}

fn strip_prefix(e: &Error) -> String {
    match e {
        Error::Checkpoint(m) => m.clone(),
        other => other.to_string(),
    }
}

/// Encodes and writes a checkpoint atomically.
pub fn write_checkpoint(path: &Path, ckpt: &Checkpoint) -> Result<()> {
    write_atomic(path, &ckpt.encode()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let dir = std::env::temp_dir().join(format!("protocell-io-{}", std::process::id()));
        let p = dir.join("f.bin");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 1, "{names:?}");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn text_reader_rejects_bad_files() {
        let dir = std::env::temp_dir().join(format!("protocell-text-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.txt");
        fs::write(&empty, b"").unwrap();
        assert!(read_text(&empty).unwrap_err().to_string().contains("empty"));
        let bin = dir.join("bin.dat");
        fs::write(&bin, [1u8, 0, 2]).unwrap();
        assert!(read_text(&bin).unwrap_err().to_string().contains("binary"));
        let bad = dir.join("bad.txt");
        fs::write(&bad, [b'a', 0xff, b'b']).unwrap();
        assert!(read_text(&bad).unwrap_err().to_string().contains("UTF-8"));
        assert!(read_text(&dir.join("missing.txt")).unwrap_err().to_string().contains("cannot open"));
        fs::remove_dir_all(dir).unwrap();
    }
}
