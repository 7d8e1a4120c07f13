//! Memory-mapped data files: the only module that touches mapped memory
//! through raw pointers.
//!
//! A file is a header page followed by a data area. The data area is mapped
//! in chunks of doubling size (chunk i covers data bytes
//! `[base * (2^i - 1), base * (2^(i+1) - 1))`), each mapped once and never
//! moved or unmapped while the `MappedFile` lives. Growing a file therefore
//! only adds chunks, and every slice handed out stays valid: the zero-copy ID
//! pointers of `omen_key_id` and slices that concurrent readers hold.
//! `base` is a multiple of the page size and of the record size, so fixed-size
//! records never straddle two chunks.
//!
//! The mappings are read-only: data reaches a file only through `pwrite`
//! (`FileWriter::write_at`, `RangeWriter`), which the shared page cache
//! makes visible through the mappings. A write that finds no space (a full
//! disk under a sparse file, a file size limit) is then an error the write
//! returns, never a SIGBUS at a store into the mapping, and every write
//! passes the I/O seam (`faults::io`).
//!
//! Soundness rests on one split: readers (`&MappedFile`) may only read below
//! `published`, the single `FileWriter` (`&mut`) may only write at or above
//! it, and `published` only moves forward (with Release/Acquire ordering).
//! Other processes are assumed not to modify the files of an open store
//! (they may read them: read-only opens in other processes only read
//! committed, published bytes). One that truncates a file under an open
//! handle makes the next read of a cut page raise SIGBUS, as with any
//! mapped database (docs/durability.md).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use memmap2::{MmapOptions, MmapRaw};

use crate::error::{Error, Result};
use crate::storage::faults::{self, Op};
use crate::storage::format::{FILE_HEADER_LEN, PAGE};

/// Chunk 0 is at least this big; chunk i is `base << i`.
const BASE_TARGET: u64 = 8 << 20;
/// 40 doublings of >= 8 MiB cover any file a 64-bit address space can map.
const MAX_CHUNKS: usize = 40;
/// Smallest and largest growth steps of the data area.
const MIN_GROW: u64 = 64 << 10;
const MAX_GROW: u64 = 256 << 20;

pub struct MappedFile {
    file: File,
    path: PathBuf,
    base: u64,
    chunks: [OnceLock<MmapRaw>; MAX_CHUNKS],
    /// Data bytes readers may read.
    published: AtomicU64,
    /// Data bytes the file holds past its header (allocated, maybe unwritten).
    capacity: AtomicU64,
    /// Whether chunks are advised for huge pages (`advise_huge_pages`).
    huge_reads: AtomicBool,
}

/// The one handle allowed to write a `MappedFile`.
pub struct FileWriter {
    file: Arc<MappedFile>,
    /// Data bytes known to be on stable storage: what was published at the
    /// last successful sync, or at open (a committed prefix was synced
    /// before the checkpoint that committed it; a new file's header was
    /// synced when it was created). Committed bytes never change, so a file
    /// with nothing published past this has nothing a checkpoint needs flushed.
    synced: u64,
    /// Whether appends pad their last huge page (`RangeWriter::write_last`).
    pad_huge_pages: bool,
}

/// A reserved, unpublished range of a file, written with `pwrite` (see
/// `FileWriter::range_writer`). `Sync`: threads write disjoint parts of it.
pub struct RangeWriter<'a> {
    file: &'a MappedFile,
    start: u64,
    end: u64,
    pad_huge_pages: bool,
}

impl RangeWriter<'_> {
    /// Writes `data` at data offset `offset`, which must lie in the range.
    fn write(&self, offset: u64, data: &[u8]) -> Result<()> {
        self.write_padded(offset, data, 0)
    }

    /// Writes `data` at `offset`, ending the range. Where the writer pads
    /// (`FileWriter::pad_huge_pages`) and the write fills the
    /// range's last huge page from its start but stops inside it, the rest
    /// of that huge page is written with zeros in the same call. The kernel
    /// then caches the whole huge page as one folio (`HUGE_PAGE`) instead of
    /// small ones, and the next append overwrites the zeros in place. The
    /// zeros lie past the published end, so no reader sees them, and a
    /// checkpoint never commits them.
    fn write_last(&self, offset: u64, data: &[u8]) -> Result<()> {
        let end = offset + data.len() as u64;
        let last_page = huge_page_floor(end);
        let pad = if offset <= last_page && last_page < end { padded_end(self.pad_huge_pages, end) - end } else { 0 };
        self.write_padded(offset, data, pad)
    }

    /// Writes `data` at `offset` in pieces that end at huge-page boundaries,
    /// one `pwrite` each, so that every whole huge page it covers is written
    /// by one call (and cached as one folio); the piece that reaches the
    /// range's end is padded as by `write_last`.
    pub fn write_huge_pages(&self, offset: u64, data: &[u8]) -> Result<()> {
        let end = offset.saturating_add(data.len() as u64);
        let mut at = offset;
        while at < end {
            let to = (huge_page_floor(at) + HUGE_PAGE).min(end);
            let piece = &data[(at - offset) as usize..(to - offset) as usize];
            if to == self.end {
                self.write_last(at, piece)?;
            } else {
                self.write(at, piece)?;
            }
            at = to;
        }
        Ok(())
    }

    fn write_padded(&self, offset: u64, data: &[u8], zeros: u64) -> Result<()> {
        let f = self.file;
        let end = offset.saturating_add(data.len() as u64);
        if offset < self.start || end > self.end || end + zeros > padded_end(self.pad_huge_pages, self.end) {
            return Err(Error::new(
                crate::ErrorKind::Internal,
                format!("{}: write at {offset}+{} outside the range {}..{}", f.path.display(), data.len(), self.start, self.end),
            ));
        }
        crate::storage::fsutil::write_at_padded(&f.file, &f.path, data, zeros as usize, FILE_HEADER_LEN + offset)
            .map_err(|e| Error::io(format!("write {}", f.path.display()), e))
    }
}

/// Size and file alignment of the page-cache folios the kernel can map
/// with one TLB entry (a PMD: 2 MiB with 4 KiB pages, on x86_64 and on
/// aarch64's default configuration). It gets such folios for a file range
/// written by one `pwrite` that covers the whole aligned range, on a
/// filesystem with large folios (ext4 since Linux 6.16, XFS).
pub const HUGE_PAGE: u64 = 2 << 20;

/// The data offset at or below `offset` where a huge page of the file
/// begins (0 when none does: the first one starts past the header).
pub fn huge_page_floor(offset: u64) -> u64 {
    ((FILE_HEADER_LEN + offset) / HUGE_PAGE * HUGE_PAGE).saturating_sub(FILE_HEADER_LEN)
}

/// Files smaller than this are not padded to huge pages (`write_last`):
/// the TLB covers them with small pages anyway (1,536 entries or more of
/// 4 KiB on current x86_64 cores), and a tiny store should not grow by 2 MiB.
const PAD_FROM: u64 = 8 << 20;

/// Whether appends ending at data offset `end` are padded to huge pages, by
/// a writer that pads (`FileWriter::pad_huge_pages`).
fn pads(pad_huge_pages: bool, end: u64) -> bool {
    pad_huge_pages && end >= PAD_FROM
}

/// How far a range ending at `end` is reserved, and its last write may pad:
/// the end of the huge page holding `end` where appends pad, else `end`.
fn padded_end(pad_huge_pages: bool, end: u64) -> u64 {
    if pads(pad_huge_pages, end) {
        huge_page_floor(end) + HUGE_PAGE
    } else {
        end
    }
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

fn chunk_base(record_size: u64) -> u64 {
    let unit = record_size / gcd(record_size, PAGE) * PAGE; // lcm(record, page)
    unit * BASE_TARGET.div_ceil(unit)
}

impl MappedFile {
    /// Maps an existing file whose data area is `data_len` bytes (the file may
    /// be longer: a tail past `data_len` is neither read nor kept by writers).
    /// Returns the writer too when `writable`.
    pub fn open(
        path: &Path,
        file: File,
        record_size: u64,
        data_len: u64,
        writable: bool,
    ) -> Result<(Arc<MappedFile>, Option<FileWriter>)> {
        let file_len = file
            .metadata()
            .map_err(|e| Error::io_in_store(format!("stat {}", path.display()), e))?
            .len();
        if file_len < FILE_HEADER_LEN + data_len {
            return Err(Error::corrupt(format!(
                "{}: file is {file_len} bytes, the last checkpoint needs {}",
                path.display(),
                FILE_HEADER_LEN + data_len
            )));
        }
        let mapped = Arc::new(MappedFile {
            file,
            path: path.to_path_buf(),
            base: chunk_base(record_size.max(1)),
            chunks: [const { OnceLock::new() }; MAX_CHUNKS],
            published: AtomicU64::new(data_len),
            capacity: AtomicU64::new(file_len - FILE_HEADER_LEN),
            huge_reads: AtomicBool::new(false),
        });
        mapped.map_through(data_len)?;
        let writer = writable.then(|| FileWriter { file: mapped.clone(), synced: data_len, pad_huge_pages: false });
        Ok((mapped, writer))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Data bytes visible to readers.
    pub fn published(&self) -> u64 {
        self.published.load(Ordering::Acquire)
    }

    /// Bytes the file occupies (header included), as `stat` would report.
    pub fn file_len(&self) -> u64 {
        FILE_HEADER_LEN + self.capacity.load(Ordering::Acquire)
    }

    /// Chunk index, start and length of the chunk holding data offset `offset`.
    fn chunk_of(&self, offset: u64) -> (usize, u64, u64) {
        let q = offset / self.base + 1;
        let i = (63 - q.leading_zeros()) as usize;
        (i, self.base * ((1u64 << i) - 1), self.base << i)
    }

    /// Whether `[offset, offset + len)` lies within one chunk.
    pub fn fits_in_chunk(&self, offset: u64, len: u64) -> bool {
        let (_, start, size) = self.chunk_of(offset);
        offset + len <= start + size
    }

    /// Start of the chunk after the one holding `offset`.
    pub fn next_chunk_start(&self, offset: u64) -> u64 {
        let (_, start, size) = self.chunk_of(offset);
        start + size
    }

    /// Maps every chunk that holds a byte below `end`.
    fn map_through(&self, end: u64) -> Result<()> {
        if end == 0 {
            return Ok(());
        }
        let (last, _, _) = self.chunk_of(end - 1);
        if last >= MAX_CHUNKS {
            return Err(Error::invalid(format!("{}: file too large to map", self.path.display())));
        }
        for i in 0..=last {
            if self.chunks[i].get().is_some() {
                continue;
            }
            let start = self.base * ((1u64 << i) - 1);
            let mut options = MmapOptions::new();
            options.offset(FILE_HEADER_LEN + start).len((self.base << i) as usize);
            // Mapping past the end of the file is allowed; those pages are
            // never touched until the file has grown over them. Read-only
            // even for the writer: see the module comment.
            let map = options
                .map_raw_read_only(&self.file)
                .map_err(|e| Error::io(format!("mmap {}", self.path.display()), e))?;
            let _ = self.chunks[i].set(map);
            // After the chunk is in place, so that this or a concurrent
            // `advise_huge_pages` (flag first, then the chunks) advises it.
            if self.huge_reads.load(Ordering::SeqCst) {
                if let Some(chunk) = self.chunks[i].get() {
                    let _ = chunk.advise(memmap2::Advice::HugePage);
                }
            }
        }
        Ok(())
    }

    /// Advises the kernel to map this file's data in 2 MiB pages
    /// (`MADV_HUGEPAGE`): the chunks mapped so far and every later one.
    /// Where the page cache holds a 2 MiB folio, a read maps it with one
    /// TLB entry; a read that faults reads a 2 MiB folio (and the next)
    /// instead of 4 KiB pages, so that data read after an eviction, or
    /// first read in another process, comes back in 2 MiB pages too (the
    /// padded writes of `FileWriter::pad_huge_pages` only make the folios
    /// that writes leave in the cache). False where the kernel refuses the
    /// advice (no transparent huge pages): nothing changes then.
    pub fn advise_huge_pages(&self) -> bool {
        self.huge_reads.store(true, Ordering::SeqCst);
        let mut accepted = true;
        for chunk in self.chunks.iter().filter_map(|c| c.get()) {
            accepted &= chunk.advise(memmap2::Advice::HugePage).is_ok();
        }
        accepted
    }

    /// Grows the file from `from` to `to` data bytes: `fallocate`, so that
    /// a full disk is an error here. Where the filesystem cannot allocate
    /// (EOPNOTSUPP, ENOSYS: ext2, ext4 files without extents, NFSv3), the
    /// file is extended sparsely by `ftruncate` instead (its own seam call,
    /// `Op::Truncate`). That is safe because data reaches the file only
    /// through `pwrite` (see the module comment): a disk that fills up
    /// under the sparse file fails that write with ENOSPC. On error,
    /// returns the size the failed call asked for.
    fn grow(&self, from: u64, to: u64) -> std::result::Result<(), (u64, std::io::Error)> {
        let (offset, size) = (FILE_HEADER_LEN + from, FILE_HEADER_LEN + to);
        let allocated = faults::resize(Op::Grow, &self.path, size, || {
            // SAFETY: fallocate takes an fd we own and plain integers.
            let rc = unsafe { libc::fallocate(self.file.as_raw_fd(), 0, offset as libc::off_t, (to - from) as libc::off_t) };
            if rc == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
        match allocated {
            Err(e) if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::ENOSYS)) => {
                crate::storage::fsutil::truncate(&self.file, &self.path, size)
            }
            r => r,
        }
        .map_err(|e| (size, e))
    }

    /// Reads published bytes `[offset, offset + len)`. Offsets that come from
    /// disk are checked here too, so a damaged record yields an error, never
    /// an out-of-bounds read.
    pub fn read(&self, offset: u64, len: u64) -> Result<&[u8]> {
        let end = offset.checked_add(len).filter(|&e| e <= self.published());
        let Some(end) = end else {
            return Err(Error::corrupt(format!(
                "{}: range {offset}+{len} lies past the committed data",
                self.path.display()
            )));
        };
        if len == 0 {
            return Ok(&[]);
        }
        let (i, start, size) = self.chunk_of(offset);
        if end > start + size {
            return Err(Error::corrupt(format!(
                "{}: range {offset}+{len} straddles a mapping chunk",
                self.path.display()
            )));
        }
        let chunk = self.chunks[i].get().ok_or_else(|| {
            Error::new(crate::ErrorKind::Internal, format!("{}: chunk {i} not mapped", self.path.display()))
        })?;
        // SAFETY: the chunk maps `size` bytes from `start` and
        // `[offset, end)` lies inside it. Those bytes are below `published`,
        // which the writer never writes again and never moves backwards, and
        // the mapping lives as long as `self`, so the shared slice is valid
        // and immutable for the borrow's lifetime.
        Ok(unsafe {
            std::slice::from_raw_parts(chunk.as_ptr().add((offset - start) as usize), len as usize)
        })
    }

    /// Hints the CPU to start loading published bytes `[offset, offset + len)`
    /// into cache. Does nothing for a range that is not published or not in
    /// one chunk.
    #[inline]
    pub fn prefetch(&self, offset: u64, len: u64) {
        if let Some(base) = self.prefetchable(offset, len) {
            crate::storage::prefetch::prefetch_range(base, len as usize);
        }
    }

    /// `prefetch` for bytes read once, soon (`prefetch::prefetch_range_once`).
    #[inline]
    pub fn prefetch_once(&self, offset: u64, len: u64) {
        if let Some(base) = self.prefetchable(offset, len) {
            crate::storage::prefetch::prefetch_range_once(base, len as usize);
        }
    }

    /// Where published bytes `[offset, offset + len)` lie in one chunk: their
    /// address, for a prefetch.
    #[inline]
    fn prefetchable(&self, offset: u64, len: u64) -> Option<*const u8> {
        let (i, start, size) = self.chunk_of(offset);
        let end = offset.saturating_add(len);
        if end > self.published() || end > start + size {
            return None;
        }
        let chunk = self.chunks[i].get()?;
        Some(chunk.as_ptr().wrapping_add((offset - start) as usize))
    }

    /// Calls `f(offset, bytes)` for published bytes `[start, end)`, one
    /// contiguous piece per mapping chunk.
    pub fn for_each_piece(&self, start: u64, end: u64, mut f: impl FnMut(u64, &[u8]) -> Result<()>) -> Result<()> {
        let mut at = start;
        while at < end {
            let stop = self.next_chunk_start(at).min(end);
            f(at, self.read(at, stop - at)?)?;
            at = stop;
        }
        Ok(())
    }

    /// crc32c of published bytes `[start, end)`.
    pub fn crc32c(&self, start: u64, end: u64) -> Result<u32> {
        let mut crc = 0;
        self.for_each_piece(start, end, |_, bytes| {
            crc = crate::storage::checksum::crc32c_append(crc, bytes);
            Ok(())
        })?;
        Ok(crc)
    }

    /// Advises the kernel that published data will not be needed soon, so
    /// resident memory drops after a scan at open (the pages stay cached).
    pub fn release_resident(&self) {
        for chunk in self.chunks.iter().filter_map(|c| c.get()) {
            // SAFETY: DONTNEED on a MAP_SHARED file mapping only drops this
            // process's page-table entries; the contents stay in the page
            // cache (dirty pages are written back as usual) and are faulted
            // in again on the next access. No slice observes a change.
            // Failure only means the pages stay resident.
            let _ = unsafe { chunk.unchecked_advise(memmap2::UncheckedAdvice::DontNeed) };
        }
    }
}

pub fn read_header(file: &File, path: &Path) -> Result<Vec<u8>> {
    let mut header = vec![0u8; FILE_HEADER_LEN as usize];
    file.read_exact_at(&mut header, 0).map_err(|e| {
        let context = format!("read header of {}", path.display());
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            Error::corrupt(format!("{context}: file shorter than its header"))
        } else {
            Error::io_in_store(context, e)
        }
    })?;
    Ok(header)
}

impl FileWriter {
    pub fn mapped(&self) -> &Arc<MappedFile> {
        &self.file
    }

    pub fn published(&self) -> u64 {
        self.file.published()
    }

    /// Whether each append pads the huge page its data ends in with zeros
    /// (`RangeWriter::write_last`), so that the kernel caches the whole file
    /// in 2 MiB folios, which readers map with one TLB entry each: random
    /// reads get faster, and an append of `b` bytes writes up to 2 MiB more
    /// (its next neighbour writes over the zeros). Off by default.
    pub fn pad_huge_pages(&mut self, on: bool) {
        self.pad_huge_pages = on;
    }

    /// Makes sure the file can hold data bytes below `end`, growing it in
    /// large steps (`MappedFile::grow`) and mapping new chunks. Where a
    /// step does not fit (ENOSPC, or EFBIG under a file size limit), the
    /// file grows by just what `end` needs: a put needing 0.3 MB must not
    /// fail on a disk with 3 MB free because the step would take 4.
    pub fn reserve(&mut self, end: u64) -> Result<()> {
        let f = &self.file;
        let capacity = f.capacity.load(Ordering::Acquire);
        if end > capacity {
            let needed = end.next_multiple_of(PAGE);
            let step = capacity.clamp(MIN_GROW, MAX_GROW);
            let target = end.max(capacity + step).next_multiple_of(PAGE);
            let grown = match f.grow(capacity, target) {
                Err((_, e)) if target > needed && matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EFBIG)) => {
                    f.grow(capacity, needed).map(|()| needed)
                }
                r => r.map(|()| target),
            };
            let grown = grown.map_err(|(size, e)| Error::io(format!("grow {} to {size} bytes", f.path.display()), e))?;
            f.capacity.store(grown, Ordering::Release);
        }
        f.map_through(end)
    }

    /// Reserves the unpublished range `[start, end)` and returns a writer
    /// confined to it, which several threads may share: `pwrite` into
    /// disjoint parts of one file needs no coordination, and no reader looks
    /// past `published`. Writing with `pwrite` beats copying through the
    /// mapping for bulk appends: the kernel fills whole page-cache pages
    /// directly, where a store through the mapping takes a fault per new
    /// page that first zero-fills it. Readers see the same pages through
    /// the mapping once the range is published.
    pub fn range_writer(&mut self, start: u64, end: u64) -> Result<RangeWriter<'_>> {
        if start < self.file.published() || end < start {
            return Err(Error::new(
                crate::ErrorKind::Internal,
                format!("{}: write range {start}..{end} reaches below the published end", self.file.path.display()),
            ));
        }
        self.reserve(padded_end(self.pad_huge_pages, end))?;
        Ok(RangeWriter { file: &self.file, start, end, pad_huge_pages: self.pad_huge_pages })
    }

    /// Starts writing back the whole pages of data bytes `[offset, offset +
    /// len)` without waiting for them (`sync_file_range` with
    /// `SYNC_FILE_RANGE_WRITE` only), so that the next checkpoint's
    /// `fdatasync` finds them on their way instead of starting them all at
    /// once. Only a hint: it promises nothing durable (the checkpoint still
    /// syncs), and its result is ignored because a failed writeback is
    /// reported by that sync: without the WAIT flags this call does not
    /// consume the file's writeback error state, and they are never passed.
    #[cfg(target_os = "linux")]
    pub fn start_writeback(&self, offset: u64, len: u64) {
        if let Some((start, end)) = whole_pages(self.pad_huge_pages, offset, len) {
            // SAFETY: sync_file_range takes an fd we own and plain integers;
            // it reads and writes no memory of this process.
            let _ = unsafe {
                libc::sync_file_range(
                    self.file.file.as_raw_fd(),
                    start as libc::off64_t,
                    (end - start) as libc::off64_t,
                    libc::SYNC_FILE_RANGE_WRITE,
                )
            };
        }
    }

    #[cfg(not(target_os = "linux"))]
    pub fn start_writeback(&self, _offset: u64, _len: u64) {}

    /// Writes `data` at unpublished data offset `offset` with one `pwrite`,
    /// reserving space first. Writers gather their records so that a run of
    /// them costs one call.
    pub fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        if offset < self.file.published() {
            return Err(Error::new(
                crate::ErrorKind::Internal,
                format!("{}: write at {offset}+{} below the published end", self.file.path.display(), data.len()),
            ));
        }
        if data.is_empty() {
            return Ok(());
        }
        self.reserve(offset + data.len() as u64)?;
        let f = &self.file;
        crate::storage::fsutil::write_at(&f.file, &f.path, data, FILE_HEADER_LEN + offset)
            .map_err(|e| Error::io(format!("write {}", f.path.display()), e))
    }

    /// Makes data bytes below `len` visible to readers.
    pub fn publish(&mut self, len: u64) {
        debug_assert!(len >= self.file.published() && len <= self.file.capacity.load(Ordering::Acquire));
        self.file.published.store(len, Ordering::Release);
    }

    /// Cuts the file to `data_len` data bytes (never below what is published).
    pub fn truncate(&mut self, data_len: u64) -> Result<()> {
        let f = &self.file;
        let data_len = data_len.max(f.published());
        let size = FILE_HEADER_LEN + data_len;
        crate::storage::fsutil::truncate(&f.file, &f.path, size).map_err(|e| Error::io(format!("truncate {}", f.path.display()), e))?;
        f.capacity.store(data_len, Ordering::Release);
        Ok(())
    }
}

/// The file byte range of the pages within data bytes `[offset, offset +
/// len)` that the next append will not write again: a page that is only
/// partly covered is left out (the next append rewrites it, and a page
/// under writeback would make that wait). Where appends are padded to huge
/// pages (`RangeWriter::write_last`) a page is the huge page, one folio:
/// the rest of the one holding `offset` was written before, and the one
/// holding the end is left for the next append to finish.
fn whole_pages(pad_huge_pages: bool, offset: u64, len: u64) -> Option<(u64, u64)> {
    let end = offset + len;
    let (start, end) = if pads(pad_huge_pages, end) {
        (huge_page_floor(offset), huge_page_floor(end))
    } else {
        (offset, end)
    };
    let start = (FILE_HEADER_LEN + start).next_multiple_of(PAGE);
    let end = (FILE_HEADER_LEN + end) / PAGE * PAGE;
    (end > start).then_some((start, end))
}

/// Flushes the written pages and size of every file in `files` that holds
/// data published since its last sync (`fdatasync`, all at once: see
/// `faults::sync_files`); files with nothing new are left alone. The first
/// failure (in `files` order) is returned, as a sync failure.
pub fn sync_published<'a>(files: impl Iterator<Item = &'a mut FileWriter>) -> Result<()> {
    let mut dirty: Vec<(&mut FileWriter, u64)> = files
        .filter_map(|w| {
            let published = w.file.published();
            (published != w.synced).then_some((w, published))
        })
        .collect();
    let targets: Vec<(&Path, &File)> = dirty.iter().map(|(w, _)| (w.file.path.as_path(), &w.file.file)).collect();
    let results = faults::sync_files(&targets);
    let mut first_error = None;
    for ((writer, published), result) in dirty.iter_mut().zip(results) {
        match result {
            Ok(()) => writer.synced = *published,
            Err(e) if first_error.is_none() => {
                first_error = Some(Error::sync(format!("fdatasync {}", writer.file.path.display()), e))
            }
            Err(_) => {}
        }
    }
    first_error.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_file(dir: &Path, name: &str) -> (PathBuf, File) {
        let path = dir.join(name);
        let file = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path).unwrap();
        file.set_len(FILE_HEADER_LEN).unwrap();
        (path, file)
    }

    /// A new file of 1-byte records, mapped for writing.
    fn writable(dir: &Path) -> (PathBuf, Arc<MappedFile>, FileWriter) {
        let (path, file) = temp_file(dir, "f");
        let (m, w) = MappedFile::open(&path, file, 1, 0, true).unwrap();
        (path, m, w.unwrap())
    }

    /// `advise_huge_pages` marks the chunks mapped so far and those mapped
    /// later (`hg` in the mapping's VmFlags); a file not advised has none.
    /// Where the kernel has transparent huge pages the advice must be
    /// taken; where it is refused, it must be reported so.
    #[test]
    fn advised_files_map_for_huge_pages() {
        use crate::testutil::{advised_huge, thp_available, vm_flags_of};
        let dir = crate::testutil::TempDir::new("mmap-huge");
        let (path, m, mut w) = writable(dir.path());
        std::fs::create_dir(dir.path().join("plain")).unwrap();
        let (plain, _plain_map, mut plain_writer) = writable(&dir.path().join("plain"));
        plain_writer.write_at(0, b"x").unwrap();
        plain_writer.publish(1);
        w.write_at(0, b"first chunk").unwrap();
        w.publish(11);
        assert_eq!(vm_flags_of(&path).len(), 1, "one chunk mapped");
        let accepted = m.advise_huge_pages();
        assert!(accepted || !thp_available(), "the advice is taken where the kernel has transparent huge pages");
        // A chunk mapped after the advice.
        let far = m.base * 3 + 5;
        w.write_at(far, b"third chunk").unwrap();
        w.publish(far + 11);
        // (Chunks next to each other with the same flags may show as one
        // mapping; an unadvised later chunk would show apart, without `hg`.)
        let flags = vm_flags_of(&path);
        assert!(!flags.is_empty());
        for f in &flags {
            assert_eq!(advised_huge(f), accepted, "{f}");
        }
        let plain = vm_flags_of(&plain);
        assert!(!plain.is_empty() && plain.iter().all(|f| !advised_huge(f)), "{plain:?}");
        assert_eq!(m.read(far, 11).unwrap(), b"third chunk");
    }

    #[test]
    fn chunks_double_and_records_never_straddle() {
        let dir = crate::testutil::TempDir::new("mmap-chunks");
        let (path, file) = temp_file(dir.path(), "f");
        let (m, _) = MappedFile::open(&path, file, 3072, 0, true).unwrap();
        assert_eq!(m.base % 3072, 0);
        assert_eq!(m.base % PAGE, 0);
        assert_eq!(m.chunk_of(0), (0, 0, m.base));
        assert_eq!(m.chunk_of(m.base - 1).0, 0);
        assert_eq!(m.chunk_of(m.base), (1, m.base, 2 * m.base));
        assert_eq!(m.chunk_of(3 * m.base), (2, 3 * m.base, 4 * m.base));
        for slot in [0u64, 1, 2730, 2731, 8192, 100_000] {
            assert!(m.fits_in_chunk(slot * 3072, 3072), "slot {slot}");
        }
    }

    #[test]
    fn write_publish_read_across_chunks() {
        let dir = crate::testutil::TempDir::new("mmap-rw");
        let (path, m, mut w) = writable(dir.path());
        let far = m.base * 3 + 5; // inside chunk 2
        w.write_at(10, b"hello").unwrap();
        w.write_at(far, b"world").unwrap();
        // A write may cross a chunk boundary (records never do).
        w.write_at(m.base - 2, b"edge").unwrap();
        assert!(m.read(10, 5).is_err(), "unpublished bytes are not readable");
        w.publish(far + 5);
        assert_eq!(m.read(10, 5).unwrap(), b"hello");
        assert_eq!(m.read(far, 5).unwrap(), b"world");
        assert_eq!(m.read(m.base - 2, 2).unwrap(), b"ed");
        assert_eq!(m.read(m.base, 2).unwrap(), b"ge");
        assert!(w.write_at(0, b"x").is_err(), "published bytes are not writable");
        assert!(m.read(m.base - 2, 4).is_err(), "straddling read is refused");
        assert!(m.read(u64::MAX - 1, 4).is_err());
        assert!(m.file_len() >= FILE_HEADER_LEN + far + 5);
        w.truncate(far + 5).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), FILE_HEADER_LEN + far + 5);
    }

    #[test]
    fn writeback_covers_whole_pages_only() {
        let h = FILE_HEADER_LEN;
        for pad in [false, true] {
            assert_eq!(whole_pages(pad, 0, PAGE), Some((h, h + PAGE)));
            assert_eq!(whole_pages(pad, 0, PAGE - 1), None);
            assert_eq!(whole_pages(pad, 1, PAGE), None, "two partial pages");
            assert_eq!(whole_pages(pad, 100, 3 * PAGE), Some((h + PAGE, h + 3 * PAGE)));
            assert_eq!(whole_pages(pad, 3072 * 1000, 3072 * 1000), Some((h + 750 * PAGE, h + 1500 * PAGE)));
            assert_eq!(whole_pages(pad, 5, 0), None);
        }
        // Past PAD_FROM a padding writer's unit is the huge page (one folio):
        // from the one holding the start, up to the one holding the end,
        // which is left out. A writer that does not pad keeps small pages.
        let (mib, start) = (1 << 20, PAD_FROM + 3072 * 1000);
        let huge = |data: u64| huge_page_floor(data) + h;
        assert_eq!(whole_pages(true, start, 3 * mib), Some((huge(start), huge(start + 3 * mib))));
        assert_eq!(huge(start) % HUGE_PAGE, 0);
        assert!(huge(start) <= h + start && h + start + 3 * mib < huge(start + 3 * mib) + HUGE_PAGE);
        let inside = huge_page_floor(start) + 10;
        assert_eq!(whole_pages(true, inside, mib), None, "within one huge page");
        let (up, down) = (|data: u64| (h + data).next_multiple_of(PAGE), |data: u64| (h + data) / PAGE * PAGE);
        assert_eq!(whole_pages(false, start, 3 * mib), Some((up(start), down(start + 3 * mib))));
        assert_eq!(whole_pages(false, inside, mib), Some((up(inside), down(inside + mib))));
    }

    #[test]
    fn huge_page_boundaries_are_file_offsets() {
        assert_eq!(huge_page_floor(0), 0, "none below the first");
        assert_eq!(huge_page_floor(HUGE_PAGE - FILE_HEADER_LEN - 1), 0);
        assert_eq!(huge_page_floor(HUGE_PAGE - FILE_HEADER_LEN), HUGE_PAGE - FILE_HEADER_LEN);
        assert_eq!(huge_page_floor(5 * HUGE_PAGE), 5 * HUGE_PAGE - FILE_HEADER_LEN);
        for offset in [HUGE_PAGE, 7 * HUGE_PAGE + 12345, 1 << 40] {
            let floor = huge_page_floor(offset);
            assert_eq!((floor + FILE_HEADER_LEN) % HUGE_PAGE, 0);
            assert!(floor <= offset && offset < floor + HUGE_PAGE);
        }
    }

    /// The last write of a range past PAD_FROM that starts a huge page fills
    /// it with zeros, in the file and not in what readers see; the next
    /// range writes over them; a last write that starts inside a huge page
    /// (whose folio an earlier write made) pads nothing.
    #[test]
    fn last_write_pads_its_huge_page_with_zeros() {
        let dir = crate::testutil::TempDir::new("mmap-pad");
        let (path, m, mut w) = writable(dir.path());
        w.pad_huge_pages(true);
        let page_start = huge_page_floor(PAD_FROM) + HUGE_PAGE; // a huge page past PAD_FROM
        let end = page_start + 1000;
        let head = vec![7u8; page_start as usize];
        // Bytes a failed batch left past the published end: the padding
        // must replace them (fallocated space alone would read as zeros).
        w.reserve(page_start + HUGE_PAGE).unwrap();
        m.file.write_all_at(&vec![0xAA; HUGE_PAGE as usize], FILE_HEADER_LEN + page_start).unwrap();
        {
            let r = w.range_writer(0, end).unwrap();
            r.write(0, &head).unwrap();
            r.write_last(page_start, &[9u8; 1000]).unwrap();
            assert!(r.write_last(page_start, &[9u8; 1001]).is_err(), "past the range");
        }
        let on_disk = std::fs::read(&path).unwrap();
        let file_end = (FILE_HEADER_LEN + page_start + HUGE_PAGE) as usize;
        assert!(on_disk.len() >= file_end, "reserved through the huge page");
        assert!(on_disk[(FILE_HEADER_LEN + end) as usize..file_end].iter().all(|&b| b == 0));
        w.publish(end);
        assert!(m.read(end, 1).is_err(), "the padding is not published");
        assert_eq!(m.read(page_start, 1000).unwrap(), &[9u8; 1000][..]);

        {
            let r = w.range_writer(end, end + 500).unwrap();
            r.write_last(end, &[5u8; 500]).unwrap();
        }
        w.publish(end + 500);
        assert_eq!(m.read(end, 500).unwrap(), &[5u8; 500][..]);
        let on_disk = std::fs::read(&path).unwrap();
        let after = (FILE_HEADER_LEN + end + 500) as usize;
        assert!(on_disk[after..file_end].iter().all(|&b| b == 0));
        assert_eq!(on_disk[after - 1], 5);
    }

    /// A writer that does not pad (the default) writes only its data: the
    /// bytes past a range's end are left as they were, even where the last
    /// write starts a huge page past PAD_FROM.
    #[test]
    fn last_write_of_a_writer_that_does_not_pad_writes_only_its_data() {
        let dir = crate::testutil::TempDir::new("mmap-nopad");
        let (path, m, mut w) = writable(dir.path());
        let page_start = huge_page_floor(PAD_FROM) + HUGE_PAGE;
        let end = page_start + 1000;
        w.reserve(page_start + HUGE_PAGE).unwrap();
        m.file.write_all_at(&vec![0xAA; HUGE_PAGE as usize], FILE_HEADER_LEN + page_start).unwrap();
        {
            let r = w.range_writer(0, end).unwrap();
            r.write_huge_pages(0, &vec![7u8; end as usize]).unwrap();
        }
        let on_disk = std::fs::read(&path).unwrap();
        let after = (FILE_HEADER_LEN + end) as usize;
        assert_eq!(on_disk[after - 1], 7);
        assert!(on_disk[after..(FILE_HEADER_LEN + page_start + HUGE_PAGE) as usize].iter().all(|&b| b == 0xAA), "no padding written");
        w.publish(end);
        assert_eq!(m.read(page_start, 1000).unwrap(), &[7u8; 1000][..]);
    }

    #[test]
    fn short_file_is_corrupt() {
        let dir = crate::testutil::TempDir::new("mmap-short");
        let (path, file) = temp_file(dir.path(), "f");
        let err = MappedFile::open(&path, file, 1, 10, false).err().unwrap();
        assert_eq!(err.kind(), crate::ErrorKind::Corrupt);
    }
}
