//! Creating, opening and recovering a store.

use std::fs::{File, OpenOptions};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use super::{Generation, LiveSet, RecoveryReport, Store, View, Writer};
use crate::error::{Error, ErrorKind, Result};
use crate::storage::format::{
    FileKind, SlotState, Superblock, FILE_HEADER_LEN, LOCK_FILE, PAGE, STORE_FLAG_DROP_RAW,
    SUPERBLOCK_FILE, SUPERBLOCK_FILE_LEN, SUPERBLOCK_TMP, TOMB_RECORD_LEN,
};
use crate::storage::fsutil::{self, WriterLock};
use crate::ids::table::IdIndex;
use crate::index::InvertedLists;
use crate::options::{Metric, Options};

pub(super) fn open(dir: &Path, options: &Options, verify_all: bool) -> Result<(Store, RecoveryReport)> {
    if options.dim > crate::options::MAX_DIM {
        return Err(Error::invalid(format!("dim {} exceeds the maximum {}", options.dim, crate::options::MAX_DIM)));
    }
    super::check_threads(options.threads, "threads")?;
    let creating = options.create && !options.read_only;
    if creating && !Store::exists(dir) {
        // Bad options fail before anything is created.
        options.validate_for_create()?;
    }
    match std::fs::metadata(dir) {
        Ok(m) if !m.is_dir() => {
            return Err(Error::invalid(format!("{} exists and is not a directory", dir.display())))
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && creating => {
            fsutil::create_dir(dir).map_err(|e| Error::io(format!("create directory {}", dir.display()), e))?;
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                fsutil::sync_dir(parent)?;
            }
        }
        Err(e) => return Err(Error::io(format!("no store at {}", dir.display()), e)),
    }
    let superblock_path = dir.join(SUPERBLOCK_FILE);
    let exists = || {
        // Not `Path::exists`, which calls a directory the caller may not
        // search "no store": that is EACCES, and the caller must hear it.
        superblock_path.try_exists().map_err(|e| Error::io(format!("look for a store in {}", dir.display()), e))
    };
    if !exists()? && !creating {
        return Err(Error::new(ErrorKind::NotFound, format!("no omendb store in {}", dir.display())));
    }
    if !exists()? {
        // Refuse before the lock file is written into someone else's directory.
        refuse_foreign_files(dir)?;
    }
    let lock = if options.read_only { None } else { Some(WriterLock::acquire(&dir.join(LOCK_FILE))?) };
    // Checked again under the lock: another process may have created it.
    if !exists()? {
        create(dir, options)?;
    }
    if options.read_only {
        return open_read_only(dir, options, verify_all);
    }
    open_existing(dir, options, lock, verify_all)
}

/// A read-only open takes no lock, so a writer in another process may
/// commit a compaction or a retraining (which delete the files of the
/// checkpoint this open started from) while it runs, and the open fails.
/// When the superblock changed meanwhile, the open starts again from the
/// new one (a bounded number of times). So does an open that found the
/// search index damaged: index files a retraining deleted read as damage
/// (the store opens without its index), not as a failed open.
fn open_read_only(dir: &Path, options: &Options, verify_all: bool) -> Result<(Store, RecoveryReport)> {
    const ATTEMPTS: u32 = 100;
    let superblock_path = dir.join(SUPERBLOCK_FILE);
    let mut attempt = 0;
    loop {
        let before = std::fs::read(&superblock_path).ok();
        let result = open_existing(dir, options, None, verify_all);
        let failed = match &result {
            Err(_) => true,
            Ok((store, _)) => store.index_damage.is_some(),
        };
        if failed && attempt < ATTEMPTS && std::fs::read(&superblock_path).ok() != before {
            attempt += 1;
            continue;
        }
        return result;
    }
}

/// Writes an empty store. The superblock is renamed into place last, so an
/// interrupted creation leaves no superblock and counts as "no store".
fn create(dir: &Path, options: &Options) -> Result<()> {
    options.validate_for_create()?;
    refuse_foreign_files(dir)?;
    remove_stale_files(dir, None)?;
    Generation::create_files(dir, 1, options.dim as usize, true)?;
    let pq = options.pq.unwrap_or(crate::options::PqSettings { m: 0, bits: 0, train_size: 0 });
    let superblock = Superblock {
        store_flags: if options.drop_raw { STORE_FLAG_DROP_RAW } else { 0 }
            | if options.ivf_lists.is_some() { crate::storage::format::STORE_FLAG_IVF } else { 0 },
        ivf_lists: options.ivf_lists.unwrap_or(0),
        seq: 1,
        dim: options.dim,
        metric: options.metric.code(),
        pq_m: pq.m,
        pq_bits: if pq.m == 0 { 0 } else { pq.bits },
        pq_train_size: pq.train_size,
        generation: 1,
        ..Superblock::default()
    };
    let tmp = dir.join(SUPERBLOCK_TMP);
    let file = fsutil::create_file(&tmp).map_err(|e| Error::io(format!("create {}", tmp.display()), e))?;
    crate::storage::faults::io(crate::storage::faults::Op::Grow, &tmp, None, || file.set_len(SUPERBLOCK_FILE_LEN))
        .map_err(|e| Error::io(format!("size {}", tmp.display()), e))?;
    write_superblock(&file, &tmp, &superblock)?;
    // The data files' entries must be durable before the superblock that
    // names them can be: a file's fdatasync does not sync its directory.
    fsutil::sync_dir(dir)?;
    fsutil::rename(&tmp, &dir.join(SUPERBLOCK_FILE))
        .map_err(|e| Error::io(format!("rename {} into place", tmp.display()), e))?;
    fsutil::sync_dir(dir)
}

/// A store is created only in an empty directory, or one holding nothing
/// but the leftovers of an interrupted creation: never among a user's files.
fn refuse_foreign_files(dir: &Path) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(format!("list {}", dir.display()), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(format!("list {}", dir.display()), e))?;
        let name = entry.file_name();
        let ours = name
            .to_str()
            .is_some_and(|n| n == LOCK_FILE || n == SUPERBLOCK_TMP || FileKind::parse_file_name(n).is_some());
        if !ours {
            return Err(Error::invalid(format!(
                "{} is not empty and holds no omendb store (found {:?}); create stores in a new or empty directory",
                dir.display(),
                name
            )));
        }
    }
    Ok(())
}

/// Commits `superblock`: written to slot `seq % 2` and synced (from here
/// on the checkpoint is durable), then mirrored into the other slot and
/// synced. With both slots holding the newest record, damage to either one
/// loses nothing; the only way back to an older checkpoint is a torn first
/// write, and then the checkpoint call never returned.
pub(super) fn write_superblock(file: &File, path: &Path, superblock: &Superblock) -> Result<()> {
    let mut page = vec![0u8; PAGE as usize];
    page[..crate::storage::format::SUPERBLOCK_LEN].copy_from_slice(&superblock.encode());
    let first = superblock.seq % crate::storage::format::SUPERBLOCK_SLOTS;
    for slot in [first, 1 - first] {
        fsutil::write_at(file, path, &page, slot * PAGE)
            .map_err(|e| Error::io(format!("write checkpoint {} to {}", superblock.seq, path.display()), e))?;
        fsutil::sync_data(file, path).map_err(|e| e.context(format!("checkpoint {}", superblock.seq)))?;
    }
    Ok(())
}

/// Reads both superblock slots and picks the newest valid one.
fn read_superblock(path: &Path) -> Result<Superblock> {
    let bytes = std::fs::read(path).map_err(|e| Error::io_in_store(format!("read {}", path.display()), e))?;
    if bytes.len() as u64 != SUPERBLOCK_FILE_LEN {
        return Err(Error::corrupt(format!(
            "{}: {} bytes, expected {SUPERBLOCK_FILE_LEN}",
            path.display(),
            bytes.len()
        )));
    }
    let slots: Vec<SlotState> = bytes.chunks(PAGE as usize).map(Superblock::decode).collect();
    if let Some(version) = slots.iter().find_map(|s| match s {
        SlotState::UnknownVersion(v) => Some(*v),
        _ => None,
    }) {
        return Err(Error::new(
            ErrorKind::Version,
            format!(
                "{}: written in format version {version}; this build reads version {}",
                path.display(),
                crate::storage::format::FORMAT_VERSION
            ),
        ));
    }
    slots
        .into_iter()
        .filter_map(|s| match s {
            SlotState::Valid(sb) => Some(sb),
            _ => None,
        })
        .max_by_key(|sb| sb.seq)
        .ok_or_else(|| Error::corrupt(format!("{}: no valid checkpoint record", path.display())))
}

/// Removes files that belong to no committed state: other generations (an
/// interrupted or finished compaction) and a half-written superblock.
fn remove_stale_files(dir: &Path, keep: Option<&Superblock>) -> Result<bool> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(format!("list {}", dir.display()), e))?;
    let mut removed = false;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(format!("list {}", dir.display()), e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let stale = match (FileKind::parse_file_name(name), keep) {
            (Some(_), None) => true,
            (Some((kind, generation)), Some(sb)) => match kind {
                FileKind::Codes | FileKind::Codebooks => generation != sb.pq_generation,
                _ => generation != sb.generation,
            },
            (None, _) => name == SUPERBLOCK_TMP,
        };
        if stale {
            fsutil::remove_file(&entry.path())
                .map_err(|e| Error::io(format!("remove stale {}", entry.path().display()), e))?;
            removed = true;
        }
    }
    Ok(removed)
}

fn open_existing(
    dir: &Path,
    options: &Options,
    lock: Option<WriterLock>,
    verify_all: bool,
) -> Result<(Store, RecoveryReport)> {
    let superblock_path = dir.join(SUPERBLOCK_FILE);
    let sb = read_superblock(&superblock_path)?;
    if options.dim != 0 && options.dim != sb.dim {
        return Err(Error::new(
            ErrorKind::Dimension,
            format!("{} holds {}-dimensional vectors, not {}", dir.display(), sb.dim, options.dim),
        ));
    }
    let writable = !options.read_only;
    let (mut generation, mut files, mut index_damage) = Generation::open_tolerant(dir, &sb, writable)?;
    if options.huge_pages {
        generation.advise_huge_pages();
    }
    let mut report = RecoveryReport { checkpoint_seq: sb.seq, live_vectors: sb.live_count, ..Default::default() };

    // Everything open needs is checked: the metadata areas against their
    // checksums (the codes' when their generation opened), then every
    // record while the index is rebuilt.
    let metadata = [
        (&generation.slots, FileKind::Slots, sb.slots_crc),
        (&generation.ids, FileKind::Ids, sb.ids_crc),
        (&generation.tombs, FileKind::Tombs, sb.tombs_crc),
    ];
    for (file, kind, crc) in metadata {
        let len = sb.committed_len(kind)?;
        if file.crc32c(0, len)? != crc {
            return Err(Error::corrupt(format!("{}: checksum mismatch in committed data", file.path().display())));
        }
        report.verified_bytes += len;
    }
    let (index, live, live_id_bytes, lists) = rebuild_index_and_lists(&generation, &sb, options.worker_threads())?;
    let lists = match lists {
        Ok(lists) => lists,
        Err(e) => {
            // A list number out of range: the codes file is damaged.
            index_damage = Some(super::generation::index_damage(&sb, e)?);
            generation.pq = None;
            if let Some(files) = files.as_mut() {
                files.codes = None;
            }
            None
        }
    };
    if generation.pq.is_some() {
        // Its checksum was verified when the generation opened.
        report.verified_bytes += sb.committed_len(FileKind::Codes)?;
    }
    if index.len() as u64 != sb.live_count {
        return Err(Error::corrupt(format!(
            "{}: replaying the ids gives {} live vectors, the checkpoint recorded {}",
            dir.display(),
            index.len(),
            sb.live_count
        )));
    }
    if verify_all {
        report.verified_bytes += verify_vectors(&generation)?;
        if let Some(damage) = index_damage {
            // Recover verifies all committed data and answers Corrupt for
            // any damage (the C contract); it says that nothing is lost.
            return Err(Error::corrupt(format!(
                "{}; every vector ({} live) was verified: a plain open (not recover) opens the store without \
                 its index, and rebuild_index rebuilds it",
                damage.message(),
                index.len()
            )));
        }
    }
    for file in generation.files() {
        report.discarded_bytes += file.file_len() - FILE_HEADER_LEN - file.published();
        file.release_resident();
    }

    let writer = match files {
        Some(mut files) => {
            files.pad_huge_pages(options.huge_pages);
            let superblock_file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&superblock_path)
                .map_err(|e| Error::io(format!("open {}", superblock_path.display()), e))?;
            let mut writer = Writer {
                files,
                superblock_file,
                committed: sb,
                slots_crc: sb.slots_crc,
                ids_crc: sb.ids_crc,
                tombs_crc: sb.tombs_crc,
                codes_crc: sb.codes_crc,
                dirty: false,
                refused: None,
                auto_train_retry_at: 0,
            };
            writer.trim()?;
            if remove_stale_files(dir, Some(&sb))? {
                fsutil::sync_dir(dir)?;
            }
            Some(writer)
        }
        None => None,
    };
    let metric = Metric::from_code(sb.metric).ok_or_else(|| Error::corrupt("unknown metric in superblock"))?;
    let store = Store {
        dir: dir.to_path_buf(),
        dim: sb.dim as usize,
        metric,
        read_only: options.read_only,
        sync_writes: options.sync_writes,
        huge_pages: options.huge_pages,
        threads: options.worker_threads(),
        settings: sb,
        view: RwLock::new(View { generation: Arc::new(generation), index, live, live_id_bytes, lists }),
        retired: Mutex::new(Vec::new()),
        auto_train_failure: Mutex::new(None),
        writer: Mutex::new(writer),
        checkpoint_seq: AtomicU64::new(sb.seq),
        broken: AtomicBool::new(false),
        closed: Arc::new(AtomicBool::new(false)),
        fork_epoch: super::process::fork_epoch(),
        writer_thread: AtomicU64::new(0),
        index_damage: index_damage.map(|e| (e, pq_file_bytes(dir, sb.pq_generation))),
        _lock: lock,
    };
    Ok((store, report))
}

/// The ID index (`rebuild_index`) and the IVF lists of the live slots
/// (`ivf::build_lists`), side by side on two threads: each was about a
/// third of a 1M x 768 open. The lists cannot wait for the live set, so
/// they take every slot no tombstone names; those a later put of their ID
/// replaced (known once the index is built) then leave them, or, where
/// they are more than a slot in `REPLACED_REMOVED_MAX`, the lists are
/// built again from the live set (as when the first build failed with
/// replaced slots among those it read: the damage may be theirs alone).
#[allow(clippy::type_complexity)]
fn rebuild_index_and_lists(
    generation: &Generation,
    sb: &Superblock,
    threads: usize,
) -> Result<(IdIndex, LiveSet, u64, Result<Option<InvertedLists>>)> {
    let tombstoned = read_tombstones(generation, sb)?;
    if !super::ivf::has_lists(generation) {
        let (index, live, live_id_bytes) = rebuild_index(generation, sb, &tombstoned)?;
        return Ok((index, live, live_id_bytes, Ok(None)));
    }
    let mut unnamed = LiveSet::default();
    unnamed.grow(sb.slot_count);
    (0..sb.slot_count).filter(|&slot| !tombstoned.contains(slot)).for_each(|slot| unnamed.set(slot));
    let (rebuilt, lists) = crate::parallel::both(
        threads,
        || rebuild_index(generation, sb, &tombstoned),
        || super::ivf::build_lists(generation, &unnamed),
    );
    let (index, live, live_id_bytes) = rebuilt?;
    let replaced = unnamed.count().saturating_sub(live.count());
    let lists = match lists {
        Ok(lists) if replaced == 0 => Ok(lists),
        Ok(Some(mut lists)) if replaced <= sb.slot_count / REPLACED_REMOVED_MAX => {
            unnamed.iter().filter(|&slot| !live.contains(slot)).for_each(|slot| super::ivf::remove_slot(&mut lists, generation, slot));
            Ok(Some(lists))
        }
        _ => super::ivf::build_lists(generation, &live),
    };
    Ok((index, live, live_id_bytes, lists))
}

/// At most one slot in this many of the lists a reopen built is taken out
/// of them again (replaced by a later put of its ID); more, and the lists
/// are built anew (a removal shifts the rest of its list).
const REPLACED_REMOVED_MAX: u64 = 1024;

/// The slots the committed tombstones name.
fn read_tombstones(generation: &Generation, sb: &Superblock) -> Result<LiveSet> {
    let mut tombstoned = LiveSet::default();
    tombstoned.grow(sb.slot_count);
    for t in 0..sb.tomb_count {
        let bytes = generation.tombs.read(t * TOMB_RECORD_LEN, TOMB_RECORD_LEN)?;
        let slot = u64::from_le_bytes(bytes.try_into().expect("8 bytes"));
        if slot >= sb.slot_count {
            return Err(Error::corrupt(format!(
                "{}: tombstone {t} names slot {slot}, past the {} committed slots",
                generation.tombs.path().display(),
                sb.slot_count
            )));
        }
        tombstoned.set(slot);
    }
    Ok(tombstoned)
}

/// Replays the slots (a later slot of the same ID replaces an earlier one),
/// then the tombstones (`tombstoned`: each deletes the slot it names if
/// that slot is still the ID's current one).
///
/// The tombstones are applied in one sweep over the table rather than one
/// random lookup each: after the slots are replayed, an ID's entry holds its
/// last slot, and a tombstone deletes the ID exactly when it names that
/// slot (a tombstone always named the then-current slot; a later put of the
/// ID has a higher slot and is its current one). So the entries whose slot
/// is tombstoned are the deleted IDs, whatever order the tombstones came in.
fn rebuild_index(generation: &Generation, sb: &Superblock, tombstoned: &LiveSet) -> Result<(IdIndex, LiveSet, u64)> {
    let mut index = IdIndex::with_capacity(sb.live_count as usize);
    let mut live = LiveSet::default();
    live.grow(sb.slot_count);
    // Every slot's ID is read (and its record checked) once, in order.
    let mut ids = Vec::with_capacity(sb.slot_count as usize);
    for slot in 0..sb.slot_count {
        ids.push((slot as u32, generation.id(slot).map_err(|e| e.context(format!("slot {slot}")))?));
        live.set(slot);
    }
    index.bulk_load(ids.iter().copied(), generation, |old| live.clear(old as u64));
    index.retain(|slot| {
        let deleted = tombstoned.contains(slot as u64);
        if deleted {
            live.clear(slot as u64);
        }
        !deleted
    });
    // In slot order, from the IDs already read.
    let live_id_bytes = live.iter().map(|slot| ids[slot as usize].1.len() as u64).sum();
    Ok((index, live, live_id_bytes))
}

/// Checks every committed vector (live or dead) against its checksum.
fn verify_vectors(generation: &Generation) -> Result<u64> {
    if generation.vectors.is_none() {
        return Ok(0);
    }
    let slots = generation.slot_count();
    for slot in 0..slots {
        generation.vector(slot, &generation.slot_record(slot)?)?;
    }
    Ok(slots * super::generation::vector_record_len(generation.dim))
}

/// Bytes of the files of PQ generation `pq_generation` that exist (those of
/// a damaged index: still on disk, no longer mapped).
fn pq_file_bytes(dir: &Path, pq_generation: u64) -> u64 {
    [FileKind::Codes, FileKind::Codebooks]
        .iter()
        .filter_map(|k| std::fs::metadata(dir.join(k.file_name(pq_generation))).ok())
        .map(|m| m.len())
        .sum()
}
