//! Plumbing shared by every exported function: the panic boundary, the
//! thread-local last error, handle and pointer checks. All raw-pointer
//! dereferences of host memory happen here, each behind one check.

use std::cell::RefCell;
use std::ffi::CString;
use std::panic::{catch_unwind, AssertUnwindSafe};

use super::types::{omen_cursor, omen_status, omen_store};
use omendb::{Error, ErrorKind, Result};
use omendb::Store;

/// "OMENSTOR": a live handle. Overwritten on close so a use after close
/// from a garbage-collected host is caught (best effort: the memory is freed).
const LIVE_TAG: u64 = u64::from_le_bytes(*b"OMENSTOR");
const DEAD_TAG: u64 = u64::from_le_bytes(*b"omendead");
/// "OMENCURS": a live cursor (overwritten with DEAD_TAG on close).
const CURSOR_TAG: u64 = u64::from_le_bytes(*b"OMENCURS");

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

pub fn status_of(kind: ErrorKind) -> omen_status {
    match kind {
        ErrorKind::InvalidArgument => omen_status::OMEN_ERR_INVALID_ARGUMENT,
        ErrorKind::Dimension => omen_status::OMEN_ERR_DIMENSION,
        ErrorKind::NotFound => omen_status::OMEN_ERR_NOT_FOUND,
        ErrorKind::Io => omen_status::OMEN_ERR_IO,
        ErrorKind::Corrupt => omen_status::OMEN_ERR_CORRUPT,
        ErrorKind::Locked => omen_status::OMEN_ERR_LOCKED,
        ErrorKind::Version => omen_status::OMEN_ERR_VERSION,
        ErrorKind::ReadOnly => omen_status::OMEN_ERR_READ_ONLY,
        ErrorKind::NotTrained => omen_status::OMEN_ERR_NOT_TRAINED,
        ErrorKind::BufferTooSmall => omen_status::OMEN_ERR_BUFFER_TOO_SMALL,
        ErrorKind::Internal => omen_status::OMEN_ERR_INTERNAL,
    }
}

pub fn set_last_error(message: &str) {
    let c = CString::new(message.replace('\0', "\\0")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = c);
}

/// Pointer to this thread's last message; valid until its next failing call.
pub fn last_error_ptr() -> *const std::os::raw::c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

/// Runs an exported function's body: errors become a status plus the
/// thread's last message, and a panic becomes OMEN_ERR_INTERNAL instead of
/// unwinding into the host.
pub fn guard(function: &str, body: impl FnOnce() -> Result<()>) -> omen_status {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => omen_status::OMEN_OK,
        Ok(Err(e)) => {
            set_last_error(&format!("{function}: {}", e.message()));
            status_of(e.kind())
        }
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            set_last_error(&format!("{function}: internal error (caught panic: {what})"));
            omen_status::OMEN_ERR_INTERNAL
        }
    }
}

pub fn null_error(what: &str) -> Error {
    Error::invalid(format!("{what} is NULL"))
}

/// Addresses of the handles that are open. `omen_close` consults it before
/// touching the memory, so a second close of the same handle (a finalizer
/// after an explicit close, in a garbage-collected host) is refused without
/// reading freed memory. Other calls check the handle's tag only (cheaper,
/// best effort).
static LIVE_HANDLES: parking_lot::Mutex<Option<std::collections::HashSet<usize>>> = parking_lot::Mutex::new(None);

/// Boxes a store into a tagged handle.
pub fn into_handle(store: Store) -> *mut omen_store {
    let handle = Box::into_raw(Box::new(omen_store { tag: LIVE_TAG, store }));
    LIVE_HANDLES.lock().get_or_insert_with(Default::default).insert(handle as usize);
    handle
}

/// Borrows the store behind a handle.
///
/// # Safety
/// `handle` is NULL or a pointer returned by `into_handle` that has not been
/// passed to `take_handle` (checked by tag as far as possible).
pub unsafe fn store_ref<'a>(handle: *const omen_store) -> Result<&'a Store> {
    if handle.is_null() {
        return Err(null_error("store"));
    }
    // SAFETY: per this function's contract the pointer came from into_handle.
    let h = unsafe { &*handle };
    if h.tag != LIVE_TAG {
        return Err(Error::invalid("store handle is not a live omen_store (closed, or not a handle)"));
    }
    Ok(&h.store)
}

/// Takes back ownership of a handle for `caller` (the closing function,
/// named in the refusal), marking it dead.
///
/// # Safety
/// `handle` is any pointer (it is looked up before it is read); no other
/// call on this handle may be running.
pub unsafe fn take_handle(handle: *mut omen_store, caller: &str) -> Result<Box<omen_store>> {
    let mut registry = LIVE_HANDLES.lock();
    let Some(live) = registry.as_mut().filter(|live| live.contains(&(handle as usize))) else {
        return Err(Error::invalid("store handle is not open (already closed, or not a handle)"));
    };
    // SAFETY: the registry says it came from into_handle and is not closed.
    let store = unsafe { store_ref(handle)? };
    if store.in_writer_callback() {
        // Freeing it would pull the store from under the training that is
        // running this callback: the handle stays open.
        return Err(Error::invalid(format!(
            "{caller} called from inside this store's progress callback; the handle stays open (close it after omen_train_pq returns)"
        )));
    }
    live.remove(&(handle as usize));
    drop(registry);
    // SAFETY: it was in the registry (so it came from into_handle) and is
    // now removed from it, so no other close can free it.
    let mut boxed = unsafe { Box::from_raw(handle) };
    boxed.tag = DEAD_TAG;
    Ok(boxed)
}

/// Addresses of the cursors that are open, so that a second
/// `omen_cursor_close` of one is a no-op instead of a double free.
static LIVE_CURSORS: parking_lot::Mutex<Option<std::collections::HashSet<usize>>> = parking_lot::Mutex::new(None);

/// Boxes a cursor into a tagged handle.
pub fn into_cursor_handle(cursor: omendb::Cursor) -> *mut omen_cursor {
    let handle = Box::into_raw(Box::new(omen_cursor { tag: CURSOR_TAG, cursor }));
    LIVE_CURSORS.lock().get_or_insert_with(Default::default).insert(handle as usize);
    handle
}

/// Borrows the cursor behind a handle, exclusively.
///
/// # Safety
/// `handle` is NULL or a pointer returned by `into_cursor_handle` that has
/// not been passed to `take_cursor` (checked by tag as far as possible),
/// and no other call uses it meanwhile.
pub unsafe fn cursor_mut<'a>(handle: *mut omen_cursor) -> Result<&'a mut omendb::Cursor> {
    if handle.is_null() {
        return Err(null_error("cursor"));
    }
    // SAFETY: per this function's contract the pointer came from into_cursor_handle.
    let h = unsafe { &mut *handle };
    if h.tag != CURSOR_TAG {
        return Err(Error::invalid("cursor handle is not a live omen_cursor (closed, or not a cursor)"));
    }
    Ok(&mut h.cursor)
}

/// Takes back ownership of an open cursor handle; None when `handle` is not
/// one (NULL, already closed, or not a cursor).
///
/// # Safety
/// `handle` is any pointer (it is looked up before it is read); no other
/// call on this cursor may be running.
pub unsafe fn take_cursor(handle: *mut omen_cursor) -> Option<Box<omen_cursor>> {
    if !LIVE_CURSORS.lock().as_mut()?.remove(&(handle as usize)) {
        return None;
    }
    // SAFETY: it was in the registry (so it came from into_cursor_handle)
    // and is now removed from it, so no other close can free it.
    let mut boxed = unsafe { Box::from_raw(handle) };
    boxed.tag = DEAD_TAG;
    Some(boxed)
}

/// A host buffer of `len` elements as a slice; NULL is allowed only when `len` is 0.
///
/// # Safety
/// A non-NULL `ptr` points to `len` initialized, properly aligned elements
/// that stay valid and unmodified for `'a` (the host's side of the contract).
pub unsafe fn host_slice<'a, T>(ptr: *const T, len: usize, what: &str) -> Result<&'a [T]> {
    if len == 0 {
        return Ok(&[]);
    }
    check_buffer(ptr, len, what)?;
    // SAFETY: non-NULL, aligned (checked), and valid for len elements per the contract.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// A writable host buffer of `len` elements; NULL only when `len` is 0.
///
/// # Safety
/// As for `host_slice`, and nothing else reads or writes the buffer during the call.
pub unsafe fn host_slice_mut<'a, T>(ptr: *mut T, len: usize, what: &str) -> Result<&'a mut [T]> {
    if len == 0 {
        return Ok(&mut []);
    }
    check_buffer(ptr, len, what)?;
    // SAFETY: as above, and exclusive for the call per the contract.
    Ok(unsafe { std::slice::from_raw_parts_mut(ptr, len) })
}

fn check_buffer<T>(ptr: *const T, len: usize, what: &str) -> Result<()> {
    if ptr.is_null() {
        return Err(null_error(what));
    }
    if !(ptr as usize).is_multiple_of(std::mem::align_of::<T>()) {
        return Err(Error::invalid(format!("{what} is not aligned for its element type")));
    }
    if len.checked_mul(std::mem::size_of::<T>()).is_none_or(|b| b > isize::MAX as usize) {
        return Err(Error::invalid(format!("{what}: length {len} is too large")));
    }
    Ok(())
}

/// A writable out-parameter.
///
/// # Safety
/// A non-NULL `ptr` points to a valid, writable `T`.
pub unsafe fn out_param<'a, T>(ptr: *mut T, what: &str) -> Result<&'a mut T> {
    // SAFETY: per the contract; NULL is refused.
    unsafe { ptr.as_mut() }.ok_or_else(|| null_error(what))
}

/// Checks a caller-declared `struct_size` against the size this build knows.
pub fn check_struct_size(declared: u32, known: usize, what: &str) -> Result<()> {
    if (declared as usize) < known {
        return Err(Error::invalid(format!(
            "{what}.struct_size is {declared}, smaller than {known} (set it to sizeof({what}))"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn last_error() -> String {
        // SAFETY: last_error_ptr is a valid NUL-terminated thread-local string.
        unsafe { std::ffi::CStr::from_ptr(last_error_ptr()) }.to_string_lossy().into_owned()
    }

    #[test]
    fn a_panic_becomes_internal_with_a_message() {
        let status = guard("omen_test", || panic!("boom {}", 7));
        assert_eq!(status, omen_status::OMEN_ERR_INTERNAL);
        assert!(last_error().contains("omen_test") && last_error().contains("boom 7"), "{}", last_error());
        assert_eq!(guard("omen_test", || Ok(())), omen_status::OMEN_OK);
        let status = guard("omen_test", || Err(Error::new(ErrorKind::Corrupt, "bad \0 byte")));
        assert_eq!(status, omen_status::OMEN_ERR_CORRUPT);
        assert_eq!(last_error(), "omen_test: bad \\0 byte");
    }

    #[test]
    fn last_error_is_per_thread() {
        guard("omen_a", || Err(Error::invalid("on the main thread")));
        std::thread::spawn(|| assert_eq!(last_error(), "")).join().unwrap();
        assert!(last_error().contains("main thread"));
    }

    #[test]
    fn host_slices_refuse_null_and_misalignment() {
        // SAFETY: NULL and misaligned pointers are refused before any access.
        unsafe {
            assert!(host_slice::<f32>(std::ptr::null(), 0, "v").is_ok());
            assert!(host_slice::<f32>(std::ptr::null(), 1, "v").is_err());
            let buf = [0u32; 4];
            let misaligned = (buf.as_ptr() as *const u8).add(1) as *const f32;
            assert!(host_slice(misaligned, 1, "v").is_err());
            assert!(host_slice::<u64>(std::ptr::dangling::<u64>(), usize::MAX, "v").is_err());
        }
    }
}
