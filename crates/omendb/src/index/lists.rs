//! The inverted lists, in memory: per list, the PQ codes of its vectors
//! (a two-stage index's: their first bytes, what stage one scans) in
//! byte-planar blocks of 64 (`quantization::planar`: what the fast-scan
//! kernel reads without transposing) and their slots, both in slot order;
//! and per slot, its raw vector's checksum.

use crate::quantization::planar;

/// One list: `slots.len()` codes of `code_size` bytes, in planar blocks.
#[derive(Debug, Default)]
struct List {
    blocks: Blocks,
    slots: Vec<u32>,
}

/// Where a list's planar blocks are.
#[derive(Debug)]
enum Blocks {
    /// `len` bytes at `start` in the arena, in a room of `room` bytes;
    /// the room's bytes past `len` are zero.
    Arena { start: usize, len: usize, room: usize },
    /// Its own allocation: a list that outgrew its room, or whose
    /// lists have no arena (it could not be mapped; the tests' lists).
    Own(Vec<u8>),
}

impl Default for Blocks {
    fn default() -> Blocks {
        Blocks::Own(Vec::new())
    }
}

/// The lists of an IVF index. Holds live vectors only: a put appends, a
/// delete or replacement removes.
#[derive(Debug)]
pub struct InvertedLists {
    code_size: usize,
    lists: Vec<List>,
    len: usize,
    /// The blocks of lists built in bulk (open, training,
    /// compaction), one room a list, in anonymous memory advised to use
    /// huge pages once filled: a search reads about a fifth of the lists
    /// at 1M x 768, and in 4 KiB pages each 100 KiB list is 25 TLB misses
    /// (the arena: +10% / +9% / +13% queries/s at target 0.9 / 0.95 /
    /// 0.99 there).
    arena: Option<memmap2::MmapMut>,
    /// Per slot pushed, its raw vector's checksum (the slot record's
    /// `vector_crc`): the re-rank verifies a candidate's vector against it
    /// instead of reading the slot record, which was a second random read
    /// per candidate and, through the mapped slots file, brought a
    /// fault-around window of it into the process each time (24 MB after
    /// one search at 1M vectors).
    vector_crcs: Vec<u32>,
}

impl InvertedLists {
    /// Empty lists, each to grow its own buffer (the tests' reference
    /// for the arena's lists).
    #[cfg(test)]
    pub fn new(nlist: usize, code_size: usize) -> InvertedLists {
        let lists = (0..nlist).map(|_| List::default()).collect();
        InvertedLists { code_size, lists, len: 0, arena: None, vector_crcs: Vec::new() }
    }

    /// Empty lists with rooms in one arena for `sizes[i]` codes in list
    /// `i` and a sixteenth more (later puts), and for checksums of slots
    /// below `slots`.
    pub fn with_sizes(sizes: &[usize], code_size: usize, slots: usize) -> InvertedLists {
        let rooms: Vec<usize> = sizes.iter().map(|&n| planar::blocks_len(n + n / 16, code_size)).collect();
        let arena = arena(rooms.iter().sum());
        let mut start = 0;
        let lists = sizes
            .iter()
            .zip(&rooms)
            .map(|(&n, &room)| {
                let blocks = match arena {
                    Some(_) => Blocks::Arena { start, len: 0, room },
                    None => Blocks::Own(Vec::with_capacity(room)),
                };
                start += room;
                List { blocks, slots: Vec::with_capacity(n) }
            })
            .collect();
        InvertedLists { code_size, lists, len: 0, arena, vector_crcs: Vec::with_capacity(slots) }
    }

    pub fn nlist(&self) -> usize {
        self.lists.len()
    }

    /// Vectors in all lists.
    pub fn len(&self) -> usize {
        self.len
    }

    /// List `l`'s blocks resized for `codes` codes (new bytes zero), moved
    /// out of the arena when its room is too small.
    fn blocks_for(&mut self, l: usize, codes: usize) -> &mut [u8] {
        let want = planar::blocks_len(codes, self.code_size);
        let blocks = &mut self.lists[l].blocks;
        if let Blocks::Arena { start, len, room } = *blocks {
            if want > room {
                let arena = self.arena.as_ref().expect("arena lists have an arena");
                let mut own = Vec::with_capacity(want.max(2 * room));
                own.extend_from_slice(&arena[start..start + len]);
                *blocks = Blocks::Own(own);
            }
        }
        match blocks {
            Blocks::Arena { start, len, .. } => {
                // Shrinking leaves zeros behind (`planar::remove` zeroes what it frees).
                *len = want;
                &mut self.arena.as_mut().expect("arena lists have an arena")[*start..*start + want]
            }
            Blocks::Own(v) => {
                v.resize(want, 0);
                v
            }
        }
    }

    /// Appends `slot` (greater than every slot in the list) with its code
    /// and its raw vector's checksum (the tests' reference for `push_batch`).
    #[cfg(test)]
    pub fn push(&mut self, list: u32, slot: u32, code: &[u8], vector_crc: u32) {
        self.push_many(list, &[slot], code);
        self.set_vector_crc(slot, vector_crc);
    }

    /// Appends `(list, slot, code, vector_crc)` entries, each slot
    /// greater than every slot already in its list, as `push` each would.
    /// List by list, each list's codes written as one run: pushed one by
    /// one, a code's bytes go to `code_size` cache lines of its list's last
    /// block, and with many lists those blocks do not stay in cache (a
    /// 10,000-vector put at 768-d, PQ128x4, 1,024 lists spent 2.25 ms so,
    /// against 1.33 ms by runs).
    pub fn push_batch<'c>(&mut self, entries: impl IntoIterator<Item = (u32, u32, &'c [u8], u32)>) {
        let mut entries: Vec<_> = entries.into_iter().collect();
        entries.sort_unstable_by_key(|&(list, slot, ..)| (list, slot));
        let (mut slots, mut codes) = (Vec::new(), Vec::new());
        for run in entries.chunk_by(|a, b| a.0 == b.0) {
            slots.clear();
            codes.clear();
            for &(_, slot, code, vector_crc) in run {
                slots.push(slot);
                codes.extend_from_slice(code);
                self.set_vector_crc(slot, vector_crc);
            }
            self.push_many(run[0].0, &slots, &codes);
        }
    }

    fn set_vector_crc(&mut self, slot: u32, vector_crc: u32) {
        let slot = slot as usize;
        if slot >= self.vector_crcs.len() {
            self.vector_crcs.resize(slot + 1, 0);
        }
        self.vector_crcs[slot] = vector_crc;
    }

    /// Starts loading `vector_crc(slot)` into cache.
    pub fn prefetch_vector_crc(&self, slot: u64) {
        if let Some(crc) = self.vector_crcs.get(slot as usize) {
            crate::storage::prefetch::prefetch_line((crc as *const u32).cast::<u8>());
        }
    }

    /// The raw vector checksum pushed with `slot` (0 for a slot never pushed).
    pub fn vector_crc(&self, slot: u64) -> u32 {
        self.vector_crcs.get(slot as usize).copied().unwrap_or(0)
    }

    /// Appends `slots` (each greater than every slot in the list, their
    /// checksums already set) with their `codes`, one after another.
    fn push_many(&mut self, list: u32, slots: &[u32], codes: &[u8]) {
        let (l, cs) = (list as usize, self.code_size);
        let n = self.lists[l].slots.len();
        debug_assert!(slots.first().is_none_or(|&s| self.lists[l].slots.last().is_none_or(|&last| last < s)), "IVF list appended out of slot order");
        debug_assert_eq!(codes.len(), slots.len() * cs);
        planar::write_rows(self.blocks_for(l, n + slots.len()), n, codes, cs);
        self.lists[l].slots.extend_from_slice(slots);
        self.len += slots.len();
    }

    /// Removes `slot` from `list`; false if it is not there.
    pub fn remove(&mut self, list: u32, slot: u32) -> bool {
        let Some(l) = self.lists.get(list as usize) else { return false };
        let Ok(i) = l.slots.binary_search(&slot) else { return false };
        let (l, n, cs) = (list as usize, l.slots.len(), self.code_size);
        planar::remove(self.blocks_for(l, n), n, i, cs);
        self.blocks_for(l, n - 1);
        self.lists[l].slots.remove(i);
        self.len -= 1;
        true
    }

    /// Bytes of each code the lists hold.
    pub fn code_size(&self) -> usize {
        self.code_size
    }

    /// The slot of entry `position & 0xFFFF_FFFF` of list `position >> 32`
    /// (a scan's position).
    pub fn slot_at(&self, position: u64) -> u64 {
        self.lists[(position >> 32) as usize].slots[(position & 0xFFFF_FFFF) as usize] as u64
    }

    /// The codes (planar blocks) and slots of `list`.
    pub fn list(&self, list: u32) -> (&[u8], &[u32]) {
        let l = &self.lists[list as usize];
        let blocks = match &l.blocks {
            Blocks::Arena { start, len, .. } => &self.arena.as_ref().expect("arena lists have an arena")[*start..*start + *len],
            Blocks::Own(v) => &v[..],
        };
        (blocks, &l.slots)
    }

    /// Heap bytes held (the arena's included).
    pub fn heap_bytes(&self) -> u64 {
        let per_list = std::mem::size_of::<List>() as u64;
        let own = |b: &Blocks| match b {
            Blocks::Arena { .. } => 0,
            Blocks::Own(v) => v.capacity() as u64,
        };
        let lists: u64 = self.lists.iter().map(|l| per_list + own(&l.blocks) + 4 * l.slots.capacity() as u64).sum();
        lists + self.arena.as_ref().map_or(0, |a| a.len() as u64) + 4 * self.vector_crcs.capacity() as u64
    }
}

/// Zeroed anonymous memory of `len` bytes for lists, its small pages
/// faulted in by one call (MADV_POPULATE_WRITE: one fault a 4 KiB page
/// cost about 35 ms more at 1M x 768) and advised to use huge pages once
/// filled (`ListsBuilder::finish`); `None` when empty or when it cannot
/// be mapped (the lists then use their own allocations).
fn arena(len: usize) -> Option<memmap2::MmapMut> {
    if len == 0 {
        return None;
    }
    let arena = memmap2::MmapMut::map_anon(len).ok()?;
    #[cfg(target_os = "linux")]
    let _ = arena.advise(memmap2::Advice::PopulateWrite);
    Some(arena)
}

/// Fills lists sized ahead (`InvertedLists::with_sizes`) from entries in
/// slot order: each list's codes wait in a small staging area, as whole
/// codes, and go into its planar blocks a block row at a time. (Pushed
/// one by one, a code's bytes go to `code_size` cache lines, one a row:
/// at 1M x 768, PQ192x4, that was 40% of an open.)
pub struct ListsBuilder {
    lists: InvertedLists,
    /// Codes a list stages (at most a block).
    stage: usize,
    /// Per list, room for `stage` codes and their slots, and how many are there.
    codes: Vec<u8>,
    slots: Vec<u32>,
    staged: Vec<u8>,
}

/// Bytes of staged codes a builder may hold.
const STAGE_BYTES: usize = 8 << 20;

impl ListsBuilder {
    pub fn new(lists: InvertedLists) -> ListsBuilder {
        let stage = STAGE_BYTES / (lists.nlist() * lists.code_size).max(1);
        ListsBuilder::with_stage(lists, stage.clamp(1, planar::BLOCK))
    }

    fn with_stage(lists: InvertedLists, stage: usize) -> ListsBuilder {
        let (nlist, cs) = (lists.nlist(), lists.code_size);
        debug_assert!((1..=planar::BLOCK).contains(&stage));
        ListsBuilder { lists, stage, codes: vec![0; nlist * stage * cs], slots: vec![0; nlist * stage], staged: vec![0; nlist] }
    }

    /// Appends `slot` (greater than every slot pushed to `list`) with its
    /// code and its raw vector's checksum.
    pub fn push(&mut self, list: u32, slot: u32, code: &[u8], vector_crc: u32) {
        self.lists.set_vector_crc(slot, vector_crc);
        let (l, cs, stage) = (list as usize, self.lists.code_size, self.stage);
        let n = self.staged[l] as usize;
        self.codes[(l * stage + n) * cs..][..cs].copy_from_slice(code);
        self.slots[l * stage + n] = slot;
        if n + 1 == stage {
            self.flush(l, stage);
        } else {
            self.staged[l] = (n + 1) as u8;
        }
    }

    fn flush(&mut self, l: usize, n: usize) {
        let (cs, stage) = (self.lists.code_size, self.stage);
        let slots = &self.slots[l * stage..l * stage + n];
        self.lists.push_many(l as u32, slots, &self.codes[l * stage * cs..(l * stage + n) * cs]);
        self.staged[l] = 0;
    }

    /// The lists, every staged code in them.
    pub fn finish(mut self) -> InvertedLists {
        for l in 0..self.lists.nlist() {
            let n = self.staged[l] as usize;
            self.flush(l, n);
        }
        // Huge pages once the codes are in place: advised before, every
        // fault asks the kernel for a free 2 MiB page, and where memory is
        // fragmented it compacts for each one (96 MB/s on this machine
        // against 2.8 GB/s for small pages: fresh opens of a 1M x 768
        // store took 390-1,380 ms against 251-292). Advised now, khugepaged
        // merges the filled pages in the background (here all 100 MB in
        // 90 s; searches until then ran 7-8% slower). Only advice: without
        // transparent huge pages it changes nothing.
        #[cfg(target_os = "linux")]
        if let Some(arena) = &self.lists.arena {
            let _ = arena.advise(memmap2::Advice::HugePage);
        }
        self.lists
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether the mapping holding `addr` is advised for huge pages
    /// (`hg` among its VmFlags in /proc/self/smaps).
    #[cfg(target_os = "linux")]
    fn advised_huge(addr: usize) -> bool {
        let smaps = std::fs::read_to_string("/proc/self/smaps").expect("smaps");
        let mut inside = false;
        for line in smaps.lines() {
            let range = line.split_whitespace().next().and_then(|r| r.split_once('-'));
            if let Some((Ok(start), Ok(end))) = range.map(|(a, b)| (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16))) {
                inside = (start..end).contains(&addr);
            } else if let (true, Some(flags)) = (inside, line.strip_prefix("VmFlags:")) {
                return flags.split_whitespace().any(|f| f == "hg");
            }
        }
        panic!("no mapping holds {addr:#x}");
    }

    /// The arena is advised to use huge pages only once the builder has
    /// filled it: faults in an advised region make the kernel compact
    /// memory for each huge page, which on fragmented memory made opens
    /// several times slower.
    #[cfg(target_os = "linux")]
    #[test]
    fn the_arena_takes_huge_pages_once_filled() {
        let sizes = [5000usize, 7000];
        let cs = 16;
        let mut builder = ListsBuilder::new(InvertedLists::with_sizes(&sizes, cs, sizes.iter().sum()));
        let addr = builder.lists.arena.as_ref().expect("an arena").as_ptr() as usize;
        let mut slot = 0u32;
        for (list, &n) in sizes.iter().enumerate() {
            for _ in 0..n {
                builder.push(list as u32, slot, &[slot as u8; 16], slot);
                slot += 1;
            }
            assert!(!advised_huge(addr), "advised while filling");
        }
        let lists = builder.finish();
        // A kernel without transparent huge pages refuses the advice.
        let thp = std::path::Path::new("/sys/kernel/mm/transparent_hugepage").exists();
        assert_eq!(advised_huge(addr), thp, "advised once filled (transparent huge pages: {thp})");
        assert_eq!(lists.len(), 12_000);
    }

    #[test]
    fn lists_sized_ahead_never_grow() {
        let sizes = [0usize, 1, 64, 65, 200];
        let mut lists = InvertedLists::with_sizes(&sizes, 16, sizes.iter().sum());
        let before = lists.heap_bytes();
        let mut slot = 0;
        for (list, &n) in sizes.iter().enumerate() {
            for _ in 0..n {
                lists.push(list as u32, slot, &[slot as u8; 16], slot);
                slot += 1;
            }
        }
        assert_eq!(lists.heap_bytes(), before, "a list outgrew the size it was given");
        assert_eq!(lists.len(), sizes.iter().sum::<usize>());
    }

    #[test]
    fn push_remove_keep_slot_order() {
        let mut lists = InvertedLists::new(2, 2);
        lists.push(0, 1, &[1, 1], 11);
        lists.push(1, 2, &[2, 2], 12);
        lists.push(0, 3, &[3, 3], 13);
        lists.push(0, 7, &[7, 7], 17);
        assert_eq!(lists.len(), 4);
        assert!(lists.remove(0, 3));
        assert!(!lists.remove(0, 3));
        assert!(!lists.remove(1, 7));
        assert!(!lists.remove(9, 1));
        let codes = |list: u32| {
            let (blocks, slots) = lists.list(list);
            let mut out = vec![0u8; 2];
            (0..slots.len()).map(|i| { planar::get(blocks, i, &mut out); out.clone() }).collect::<Vec<_>>()
        };
        assert_eq!(codes(0), vec![vec![1u8, 1], vec![7, 7]]);
        assert_eq!(lists.list(0).1, &[1u32, 7][..]);
        assert_eq!(codes(1), vec![vec![2u8, 2]]);
        assert_eq!(lists.list(1).1, &[2u32][..]);
        assert_eq!(lists.len(), 3);
        assert_eq!([1, 2, 7, 4, 1000].map(|slot| lists.vector_crc(slot)), [11, 12, 17, 0, 0]);
    }

    #[test]
    fn arena_lists_behave_as_own_lists() {
        // Lists in an arena (rooms for 3 and 100 codes) against the same
        // operations on lists of their own: pushes within the room,
        // removes (which must leave zero padding for later pushes), and a
        // push past the room (the list moves out).
        let cs = 3;
        let mut arena = InvertedLists::with_sizes(&[3, 100], cs, 0);
        assert!(arena.arena.is_some());
        let mut own = InvertedLists::new(2, cs);
        let same = |a: &InvertedLists, b: &InvertedLists, what: &str| {
            for list in 0..2 {
                assert_eq!(a.list(list), b.list(list), "list {list} after {what}");
            }
            assert_eq!(a.len(), b.len());
        };
        let mut next = 0u32;
        let mut both_push = |a: &mut InvertedLists, b: &mut InvertedLists, list: u32, count: usize| {
            for _ in 0..count {
                next += 1;
                let code = [next as u8, (next >> 8) as u8 | 1, 0xA5];
                a.push(list, next, &code, next);
                b.push(list, next, &code, next);
            }
        };
        both_push(&mut arena, &mut own, 0, 3);
        both_push(&mut arena, &mut own, 1, 100);
        same(&arena, &own, "filling the rooms");
        let removed: Vec<u32> = own.list(1).1.iter().copied().step_by(7).collect();
        for &s in &removed {
            assert_eq!(arena.remove(1, s), own.remove(1, s));
        }
        same(&arena, &own, "removes");
        both_push(&mut arena, &mut own, 1, 10);
        same(&arena, &own, "pushes into freed room");
        assert!(matches!(arena.lists[1].blocks, Blocks::Arena { .. }));
        both_push(&mut arena, &mut own, 0, 70);
        same(&arena, &own, "a list outgrowing its room");
        assert!(matches!(arena.lists[0].blocks, Blocks::Own(_)));
        both_push(&mut arena, &mut own, 0, 5);
        assert!(own.remove(1, own.list(1).1[0]) && arena.remove(1, arena.list(1).1[0]));
        same(&arena, &own, "pushes and removes after a list moved out");
    }

    #[test]
    fn builder_fills_the_lists_one_by_one_pushes_do() {
        let (nlist, cs) = (5usize, 3usize);
        let mut rng = crate::quantization::kmeans::Rng::new(3);
        let entries: Vec<(u32, u32, [u8; 3])> = (0..400u32)
            .map(|slot| {
                let list = (rng.next_u64() % nlist as u64) as u32;
                (list, slot, [slot as u8, (slot >> 8) as u8, list as u8 ^ 0x5A])
            })
            .collect();
        let mut sizes = vec![0usize; nlist];
        let mut want = InvertedLists::new(nlist, cs);
        for &(list, slot, code) in &entries {
            sizes[list as usize] += 1;
            want.push(list, slot, &code, slot.wrapping_mul(0x9E37_79B9));
        }
        for stage in [1, 2, 7, 63, 64] {
            let mut builder = ListsBuilder::with_stage(InvertedLists::with_sizes(&sizes, cs, entries.len()), stage);
            for &(list, slot, code) in &entries {
                builder.push(list, slot, &code, slot.wrapping_mul(0x9E37_79B9));
            }
            let got = builder.finish();
            assert_eq!(got.len(), want.len());
            for list in 0..nlist as u32 {
                assert_eq!(got.list(list), want.list(list), "list {list}, staging {stage}");
            }
            assert!((0..entries.len() as u64).all(|slot| got.vector_crc(slot) == want.vector_crc(slot)));
        }
    }

    #[test]
    fn a_batch_pushes_what_one_by_one_pushes_do() {
        // Batches of 0-150 entries in random lists (slots ascending, as a
        // put gives them) onto lists that already hold codes, some in an
        // arena (one outgrowing its room), some of their own.
        let (nlist, cs) = (6usize, 3usize);
        let mut rng = crate::quantization::kmeans::Rng::new(11);
        let mut batched = InvertedLists::with_sizes(&[40, 0, 3, 10, 64, 1], cs, 0);
        let mut one_by_one = InvertedLists::new(nlist, cs);
        let mut slot = 0u32;
        for size in [40, 1, 0, 150, 7, 64] {
            let batch: Vec<(u32, u32, [u8; 3], u32)> = (0..size)
                .map(|_| {
                    slot += 1 + (rng.next_u64() % 3) as u32;
                    let list = (rng.next_u64() % nlist as u64) as u32;
                    (list, slot, [slot as u8, (slot >> 8) as u8 | 1, list as u8 ^ 0x5A], slot.wrapping_mul(0x9E37_79B9))
                })
                .collect();
            for &(list, slot, code, crc) in &batch {
                one_by_one.push(list, slot, &code, crc);
            }
            batched.push_batch(batch.iter().map(|(list, slot, code, crc)| (*list, *slot, &code[..], *crc)));
            assert_eq!(batched.len(), one_by_one.len());
            for list in 0..nlist as u32 {
                assert_eq!(batched.list(list), one_by_one.list(list), "list {list} after a batch of {size}");
            }
            assert!((0..=slot as u64).all(|s| batched.vector_crc(s) == one_by_one.vector_crc(s)));
        }
        assert!(matches!(batched.lists[1].blocks, Blocks::Own(_)), "a list outgrew its (empty) room");
        assert!(matches!(batched.lists[4].blocks, Blocks::Arena { .. }), "a list stayed in its room");
    }
}
