//! Small file-system helpers: the writer lock, directory sync, data-file creation.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;

use crate::error::{Error, ErrorKind, Result};
use crate::storage::faults::{self, Op};
use crate::storage::format::FileHeader;

/// Holds the store's writer lock until dropped. `flock` locks belong to the
/// open file description, so a second open of the same store in this process
/// conflicts too (POSIX record locks would not, and would be dropped when any
/// descriptor of the file closes).
pub struct WriterLock {
    _file: File,
}

impl WriterLock {
    pub fn acquire(path: &Path) -> Result<WriterLock> {
        let file = faults::io(Op::Create, path, None, || {
            OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)
        })
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
    faults::sync(Op::SyncDir, dir, || File::open(dir).and_then(|d| d.sync_all()))
        .map_err(|e| Error::sync(format!("fsync directory {}", dir.display()), e))
}

/// Creates (or empties) a file for reading and writing.
pub fn create_file(path: &Path) -> std::io::Result<File> {
    faults::io(Op::Create, path, None, || {
        OpenOptions::new().read(true).write(true).create(true).truncate(true).open(path)
    })
}

/// Writes all of `bytes` at `offset`.
pub fn write_at(file: &File, path: &Path, bytes: &[u8], offset: u64) -> std::io::Result<()> {
    faults::io(Op::Write, path, None, || file.write_all_at(bytes, offset))
}

/// Writes all of `bytes` at `offset`, then `zeros` zero bytes after them,
/// in one `pwritev` (more only if the kernel writes short): the page cache
/// sizes the folios it creates by the length of a single call.
pub fn write_at_padded(file: &File, path: &Path, bytes: &[u8], zeros: usize, offset: u64) -> std::io::Result<()> {
    if zeros == 0 {
        return write_at(file, path, bytes, offset);
    }
    static ZEROS: [u8; 64 << 10] = [0; 64 << 10];
    let mut slices = vec![std::io::IoSlice::new(bytes)];
    slices.extend((0..zeros).step_by(ZEROS.len()).map(|at| std::io::IoSlice::new(&ZEROS[..(zeros - at).min(ZEROS.len())])));
    faults::io(Op::Write, path, None, || {
        let mut rest = &mut slices[..];
        let mut at = offset;
        while !rest.is_empty() {
            let count = rest.len().min(1024) as libc::c_int; // Linux's UIO_MAXIOV
            // SAFETY: `IoSlice` is ABI-compatible with `iovec` on Unix (a
            // documented guarantee), every slice borrows live memory for the
            // call, and pwritev only reads from them.
            let n = unsafe { libc::pwritev(file.as_raw_fd(), rest.as_ptr().cast(), count, at as libc::off_t) };
            if n < 0 {
                let err = std::io::Error::last_os_error();
                if err.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(err);
            }
            if n == 0 {
                return Err(std::io::Error::new(std::io::ErrorKind::WriteZero, "pwritev wrote nothing"));
            }
            at += n as u64;
            std::io::IoSlice::advance_slices(&mut rest, n as usize);
        }
        Ok(())
    })
}

/// Flushes a file's data (and size) to the medium. Its error is a sync
/// failure (`Error::sync`).
pub fn sync_data(file: &File, path: &Path) -> Result<()> {
    faults::sync(Op::Sync, path, || file.sync_data())
        .map_err(|e| Error::sync(format!("fdatasync {}", path.display()), e))
}

/// Sets a file's length (`ftruncate`; the seam sees the length asked for).
pub fn truncate(file: &File, path: &Path, len: u64) -> std::io::Result<()> {
    faults::resize(Op::Truncate, path, len, || file.set_len(len))
}

pub fn rename(from: &Path, to: &Path) -> std::io::Result<()> {
    faults::io(Op::Rename, from, Some(to), || std::fs::rename(from, to))
}

pub fn remove_file(path: &Path) -> std::io::Result<()> {
    faults::io(Op::Remove, path, None, || std::fs::remove_file(path))
}

pub fn create_dir(path: &Path) -> std::io::Result<()> {
    faults::io(Op::Mkdir, path, None, || std::fs::create_dir(path))
}

/// Creates (or replaces) a data file holding only its header, synced.
pub fn create_data_file(path: &Path, header: &FileHeader) -> Result<File> {
    let mut file = create_file(path).map_err(|e| Error::io(format!("create {}", path.display()), e))?;
    faults::io(Op::Write, path, None, || file.write_all(&header.encode()))
        .map_err(|e| Error::io(format!("write header of {}", path.display()), e))?;
    sync_data(&file, path)?;
    Ok(file)
}

pub fn open_data_file(path: &Path, writable: bool) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(writable)
        .open(path)
        .map_err(|e| Error::io_in_store(format!("open {}", path.display()), e))
}
