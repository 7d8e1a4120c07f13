//! Small file-system helpers: the writer lock, directory sync, data-file creation.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::io::AsRawFd;
use std::path::Path;

use crate::error::{Error, ErrorKind, Result};
use crate::format::FileHeader;

/// Holds the store's writer lock until dropped. `flock` locks belong to the
/// open file description, so a second open of the same store in this process
/// conflicts too (POSIX record locks would not, and would be dropped when any
/// descriptor of the file closes).
pub struct WriterLock {
    _file: File,
}

impl WriterLock {
    pub fn acquire(path: &Path) -> Result<WriterLock> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| Error::io(format!("open lock file {}", path.display()), e))?;
        // SAFETY: flock takes an fd we own and integer flags.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let err = std::io::Error::last_os_error();
            return Err(if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                Error::new(
                    ErrorKind::Locked,
                    format!("{} is held by another writer (this or another process)", path.display()),
                )
            } else {
                Error::io(format!("flock {}", path.display()), err)
            });
        }
        Ok(WriterLock { _file: file })
    }
}

/// Makes a directory's entries (created, renamed, removed files) durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(format!("fsync directory {}", dir.display()), e))
}

/// Creates (or replaces) a data file holding only its header, synced.
pub fn create_data_file(path: &Path, header: &FileHeader) -> Result<File> {
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(|e| Error::io(format!("create {}", path.display()), e))?;
    file.write_all(&header.encode())
        .and_then(|_| file.sync_data())
        .map_err(|e| Error::io(format!("write header of {}", path.display()), e))?;
    Ok(file)
}

pub fn open_data_file(path: &Path, writable: bool) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(writable)
        .open(path)
        .map_err(|e| Error::io_in_store(format!("open {}", path.display()), e))
}

/// Apparent size of a file; 0 if it is gone.
pub fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}
