//! One error type for the whole crate. Its `kind` maps one-to-one onto the C
//! ABI's `omen_status`; the message carries the context (which id, which file,
//! which OS error) that the host sees through `omen_last_error`.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    InvalidArgument,
    Dimension,
    NotFound,
    Io,
    Corrupt,
    Locked,
    Version,
    ReadOnly,
    NotTrained,
    BufferTooSmall,
    Internal,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    /// An fsync/fdatasync failed: the writer must not retry (see `Writer::failed_sync`).
    sync_failed: bool,
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error { kind, message: message.into(), sync_failed: false }
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn invalid(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::InvalidArgument, message)
    }

    pub fn corrupt(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Corrupt, message)
    }

    /// An OS error with what we were doing when it happened, e.g.
    /// "fdatasync /data/s/vectors.0001: No space left on device (os error 28)".
    pub fn io(context: impl fmt::Display, err: std::io::Error) -> Error {
        let kind = match err.kind() {
            std::io::ErrorKind::NotFound => ErrorKind::NotFound,
            _ => ErrorKind::Io,
        };
        Error::new(kind, format!("{context}: {err}"))
    }

    /// A failed fsync/fdatasync: an `Io` error after which the writer refuses
    /// to go on (a retried sync can succeed although the data never reached
    /// the disk; see docs/durability.md).
    pub fn sync(context: impl fmt::Display, err: std::io::Error) -> Error {
        Error { sync_failed: true, ..Error::io(context, err) }
    }

    pub(crate) fn is_sync_failure(&self) -> bool {
        self.sync_failed
    }

    /// Like `io`, but a missing file is damage to the store, not a missing store.
    pub fn io_in_store(context: impl fmt::Display, err: std::io::Error) -> Error {
        if err.kind() == std::io::ErrorKind::NotFound {
            Error::corrupt(format!("{context}: file missing from the store ({err})"))
        } else {
            Error::io(context, err)
        }
    }

    /// Prefixes the message with more context, keeping the kind.
    pub fn context(mut self, context: impl fmt::Display) -> Error {
        self.message = format!("{context}: {}", self.message);
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.message)
    }
}

impl std::error::Error for Error {}
