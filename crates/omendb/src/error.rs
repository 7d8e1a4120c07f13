//! One error type for the whole crate. Its `kind` maps one-to-one onto the C
//! ABI's `omen_status`; the message carries the context (which id, which file,
//! which OS error) that the host sees through `omen_last_error`.

use std::fmt;

/// What went wrong, in the terms a caller acts on. Each kind is one
/// `omen_status` of the C ABI (docs/api.md lists when each occurs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A bad argument or option, or a call the store's state does not allow
    /// (a closed store, a re-entrant call from a progress callback).
    InvalidArgument,
    /// A vector or query whose length is not the store's dimension.
    Dimension,
    /// No such ID, or no store where one was expected.
    NotFound,
    /// The operating system refused a file operation (the message has the OS error).
    Io,
    /// A file of the store is damaged: a checksum, magic number or size is wrong.
    Corrupt,
    /// Another writer (in this process or another) holds the store.
    Locked,
    /// The store was written by a format version this build does not read.
    Version,
    /// A change to a store opened read-only.
    ReadOnly,
    /// A PQ search or setting that needs trained codebooks before training.
    NotTrained,
    /// An output buffer is too small for the result.
    BufferTooSmall,
    /// A broken invariant inside the engine (a bug); also a caught panic.
    Internal,
}

/// An error: its [`ErrorKind`] and a message with the context (which ID,
/// which file, which OS error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    /// An fsync/fdatasync failed: the writer must not retry (see `Writer::failed_sync`).
    sync_failed: bool,
}

/// The result of every fallible call of the engine.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// An error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error { kind, message: message.into(), sync_failed: false }
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message, without the kind.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// An [`ErrorKind::InvalidArgument`] error.
    pub fn invalid(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::InvalidArgument, message)
    }

    /// An [`ErrorKind::Corrupt`] error.
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
