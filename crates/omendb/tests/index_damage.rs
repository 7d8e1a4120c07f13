//! A damaged search index (the PQ generation: codebooks file, IVF centroids
//! and calibration, codes file) in a store that keeps its raw vectors: open
//! (also read-only) opens it without the index and says so (which file,
//! what), recover answers Corrupt saying the vectors are intact,
//! every vector is intact, searches are exact, compaction is refused, puts
//! work, a reopen still reports it; `rebuild_index` restores the index and
//! its recall without losing a vector. In a DROP_RAW store the codes are the
//! vectors: the same damage is Corrupt.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use common::*;
use omendb::storage::format::{SlotState, Superblock};
use omendb::{ErrorKind, Metric, Options, PqSettings, SearchParams, Store};

const DIM: usize = 32;
const N: usize = 6000;
const K: usize = 10;
const PAGE: usize = 4096;

fn clustered(rng: &mut Rng, n: usize) -> Vec<f32> {
    common::clustered(rng, n, DIM, 48)
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Pq,
    Ivf,
}

fn options(kind: Kind) -> Options {
    let pq = Some(PqSettings { m: 16, bits: 4, train_size: 0 });
    let ivf_lists = (kind == Kind::Ivf).then_some(0);
    Options { metric: Metric::L2, pq, ivf_lists, ..Options::create(DIM as u32) }
}

/// A trained store with puts after training, deletes and upserts; returns
/// its content (ID -> vector) and queries.
fn build(path: &Path, kind: Kind) -> (BTreeMap<String, Vec<f32>>, Vec<f32>) {
    let mut rng = Rng(21);
    let store = Store::open(path, &options(kind)).unwrap();
    let mut content = BTreeMap::new();
    let mut put_all = |store: &Store, range: std::ops::Range<usize>, vectors: Vec<f32>| {
        put(store, &ids(range.clone()), &vectors);
        for (i, v) in range.zip(vectors.chunks_exact(DIM)) {
            content.insert(format!("id-{i}"), v.to_vec());
        }
    };
    put_all(&store, 0..N, clustered(&mut rng, N));
    store.train_pq(&mut |_, _| {}).unwrap();
    put_all(&store, N..N + 200, clustered(&mut rng, 200));
    put_all(&store, 0..100, clustered(&mut rng, 100)); // upserts
    store.delete_batch(&ids(100..150).batch().unwrap()).unwrap();
    for i in 100..150 {
        content.remove(&format!("id-{i}"));
    }
    store.close().unwrap();
    (content, clustered(&mut rng, 100))
}

fn superblock(path: &Path) -> Superblock {
    let bytes = std::fs::read(path.join("superblock")).unwrap();
    (0..2)
        .filter_map(|i| match Superblock::decode(&bytes[i * PAGE..(i + 1) * PAGE]) {
            SlotState::Valid(sb) => Some(sb),
            _ => None,
        })
        .max_by_key(|sb| sb.seq)
        .unwrap()
}

fn codebooks_file(path: &Path) -> PathBuf {
    path.join(format!("codebooks.{:016x}", superblock(path).pq_generation))
}

fn codes_file(path: &Path) -> PathBuf {
    path.join(format!("codes.{:016x}", superblock(path).pq_generation))
}

fn flip(file: &Path, at: usize) {
    let mut bytes = std::fs::read(file).unwrap();
    bytes[at] ^= 0x10;
    std::fs::write(file, bytes).unwrap();
}

/// A damage: its name, what the report must name, and the damage done.
type Damage = (&'static str, &'static str, fn(&Path));

fn damages() -> Vec<Damage> {
    vec![
        ("codebooks bit flip", "codebooks.", |p| {
            let file = codebooks_file(p);
            let len = std::fs::metadata(&file).unwrap().len() as usize;
            flip(&file, PAGE + (len - PAGE) / 2)
        }),
        ("codebooks file missing", "codebooks.", |p| std::fs::remove_file(codebooks_file(p)).unwrap()),
        ("codebooks truncated", "codebooks.", |p| {
            let file = codebooks_file(p);
            let len = std::fs::metadata(&file).unwrap().len();
            std::fs::OpenOptions::new().write(true).open(&file).unwrap().set_len(len - 100).unwrap()
        }),
        ("code record bit flip", "codes.", |p| flip(&codes_file(p), PAGE + 5 * 20 + 3)),
        ("codes file truncated", "codes.", |p| {
            std::fs::OpenOptions::new().write(true).open(codes_file(p)).unwrap().set_len(PAGE as u64 + 100).unwrap()
        }),
    ]
}

/// Every ID of `content` gives its vector, bit for bit, and nothing else is live.
fn assert_content(store: &Store, content: &BTreeMap<String, Vec<f32>>, case: &str) {
    assert_eq!(store.stats().unwrap().live_vectors, content.len() as u64, "{case}");
    for (id, v) in content {
        let got = store.get(id.as_bytes()).unwrap_or_else(|e| panic!("{case}: {id}: {e}"));
        assert!(got.iter().map(|x| x.to_bits()).eq(v.iter().map(|x| x.to_bits())), "{case}: {id} differs");
    }
}

fn exact(store: &Store, q: &[f32]) -> Vec<omendb::Hit> {
    store.search(q, K, &SearchParams { exact: true, ..Default::default() }).unwrap()
}

/// recall@K of the default search against exact search.
fn recall(store: &Store, queries: &[f32]) -> f64 {
    let mut found = 0;
    for q in queries.chunks_exact(DIM) {
        let truth: HashSet<u64> = exact(store, q).iter().map(|h| h.key).collect();
        found += store.search(q, K, &SearchParams::default()).unwrap().iter().filter(|h| truth.contains(&h.key)).count();
    }
    found as f64 / (queries.len() / DIM * K) as f64
}

/// Opened without its index: says so, every vector is intact, searches
/// give the exact results (whatever the parameters ask of the index).
fn assert_opened_without_index(store: &Store, content: &BTreeMap<String, Vec<f32>>, queries: &[f32], names: &str, case: &str) {
    let stats = store.stats().unwrap();
    assert_eq!(stats.index_damage, Some(ErrorKind::Corrupt), "{case}");
    assert!(!stats.pq_trained && stats.ivf_lists == 0 && stats.ivf_stages == 0 && stats.ivf_list_code_bytes == 0 && stats.raw_kept, "{case}: {stats:?}");
    let damage = store.index_damage().unwrap_or_else(|| panic!("{case}: no damage reported"));
    assert_eq!(damage.kind(), ErrorKind::Corrupt, "{case}");
    assert!(damage.message().contains(names), "{case}: the report does not name {names}: {damage}");
    assert!(damage.message().contains("search index"), "{case}: {damage}");
    assert_content(store, content, case);
    for q in queries.chunks_exact(DIM).take(10) {
        for params in [SearchParams::default(), SearchParams { nprobe: 1, ..Default::default() }] {
            assert_eq!(store.search(q, K, &params).unwrap(), exact(store, q), "{case}: not exact");
        }
    }
}

fn damaged_index_opens_and_rebuilds(kind: Kind) {
    let tmp = TempDir::new(&format!("index-damage-{kind:?}"));
    let pristine = tmp.path().join("pristine");
    let (content, queries) = build(&pristine, kind);
    let baseline = {
        let store = Store::open(&pristine, &Options { read_only: true, ..Options::default() }).unwrap();
        assert_eq!(store.index_damage(), None);
        assert_eq!(store.stats().unwrap().index_damage, None);
        recall(&store, &queries)
    };
    for (name, names, damage) in damages() {
        let case = format!("{kind:?}, {name}");
        let dir = tmp.path().join(name.replace(' ', "-"));
        copy_dir(&pristine, &dir);
        damage(&dir);
        let old_pq = superblock(&dir).pq_generation;

        // Read-only open and read-only recover: nothing changes on disk.
        let read_only = Options { read_only: true, ..Options::default() };
        let store = Store::open(&dir, &read_only).unwrap_or_else(|e| panic!("{case}: read-only open: {e}"));
        assert_opened_without_index(&store, &content, &queries, names, &format!("{case}, read-only"));
        drop(store);
        // Recover verifies everything: damage is Corrupt, and it says the
        // vectors are intact and what to do.
        for options in [&read_only, &Options::default()] {
            let err = Store::recover(&dir, options).err().unwrap_or_else(|| panic!("{case}: recover opened it"));
            assert_eq!(err.kind(), ErrorKind::Corrupt, "{case}: {err}");
            let says = format!("every vector ({} live) was verified", content.len());
            assert!(err.message().contains(names) && err.message().contains(&says), "{case}: {err}");
            assert!(err.message().contains("rebuild_index"), "{case}: {err}");
        }

        // Writable: compaction refused, puts work; the damage is reported
        // again after a reopen until the index is rebuilt.
        let store = Store::open(&dir, &Options::default()).unwrap_or_else(|e| panic!("{case}: open: {e}"));
        assert_opened_without_index(&store, &content, &queries, names, &case);
        // The damaged files are still on disk, and counted.
        assert_eq!(store.stats().unwrap().disk_bytes, dir_bytes(&dir), "{case}");
        let err = store.compact().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt, "{case}: compact: {err}");
        assert!(err.message().contains("rebuild"), "{case}: {err}");
        let mut content = content.clone();
        let mut rng = Rng(99);
        let fresh = clustered(&mut rng, 20);
        put(&store, &ids(N + 1000..N + 1020), &fresh);
        for (i, v) in (N + 1000..N + 1020).zip(fresh.chunks_exact(DIM)) {
            content.insert(format!("id-{i}"), v.to_vec());
        }
        store.close().unwrap();
        let store = Store::open(&dir, &Options::default()).unwrap();
        assert_eq!(store.stats().unwrap().index_damage, Some(ErrorKind::Corrupt), "{case}: reopen forgot the damage");
        assert_content(&store, &content, &case);

        let mut last = (0, 0);
        store.rebuild_index(&mut |done, total| last = (done, total)).unwrap_or_else(|e| panic!("{case}: rebuild: {e}"));
        assert!(last.0 == last.1 && last.1 > 0, "{case}: progress {last:?}");
        let stats = store.stats().unwrap();
        assert_eq!((stats.index_damage, stats.pq_trained), (None, true), "{case}");
        assert_eq!(store.index_damage(), None, "{case}");
        assert_eq!(stats.ivf_lists > 0, kind == Kind::Ivf, "{case}");
        // The damaged generation's files went with the rebuild's commit.
        let files: Vec<String> =
            std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        let old = format!("{old_pq:016x}");
        assert!(!files.iter().any(|n| (n.starts_with("codes.") || n.starts_with("codebooks.")) && n.ends_with(&old)), "{case}: {files:?}");
        assert_eq!(store.stats().unwrap().disk_bytes, dir_bytes(&dir), "{case}");
        let rebuilt = recall(&store, &queries);
        assert!(rebuilt >= baseline - 0.02, "{case}: recall {rebuilt} after the rebuild, {baseline} before the damage");
        store.compact().unwrap();
        store.close().unwrap();

        // Reopened: the new index, no damage, every vector.
        let store = Store::open(&dir, &Options::default()).unwrap();
        assert_eq!(store.stats().unwrap().index_damage, None, "{case}");
        assert_content(&store, &content, &case);
        assert!((recall(&store, &queries) - rebuilt).abs() < 1e-9, "{case}: reopen changed the recall");
        store.close().unwrap();
    }
}

#[test]
fn damaged_pq_index_opens_without_it_and_rebuilds() {
    damaged_index_opens_and_rebuilds(Kind::Pq);
}

#[test]
fn damaged_ivf_index_opens_without_it_and_rebuilds() {
    damaged_index_opens_and_rebuilds(Kind::Ivf);
}

/// With DROP_RAW the codes are the only copy of the vectors: their damage
/// is the store's, Corrupt in every open mode, and says why.
#[test]
fn damaged_codes_of_a_drop_raw_store_are_corrupt() {
    let tmp = TempDir::new("index-damage-drop-raw");
    let pristine = tmp.path().join("pristine");
    let store = Store::open(&pristine, &Options { drop_raw: true, ..options(Kind::Pq) }).unwrap();
    put(&store, &ids(0..2000), &clustered(&mut Rng(3), 2000));
    store.train_pq(&mut |_, _| {}).unwrap();
    store.close().unwrap();
    for (name, names, damage) in damages() {
        let dir = tmp.path().join(name.replace(' ', "-"));
        copy_dir(&pristine, &dir);
        damage(&dir);
        let read_only = Options { read_only: true, ..Options::default() };
        for (mode, opened) in [
            ("open", Store::open(&dir, &Options::default())),
            ("read-only open", Store::open(&dir, &read_only)),
            ("recover", Store::recover(&dir, &Options::default()).map(|(s, _)| s)),
        ] {
            let err = opened.err().unwrap_or_else(|| panic!("{name}: {mode} opened a DROP_RAW store without its codes"));
            assert_eq!(err.kind(), ErrorKind::Corrupt, "{name}: {mode}: {err}");
            assert!(err.message().contains(names) && err.message().contains("DROP_RAW"), "{name}: {mode}: {err}");
        }
    }
}

/// Rebuilding is training: refused with a clear error where there is
/// nothing to rebuild from or no index to build.
#[test]
fn rebuild_needs_pq_settings_and_raw_vectors() {
    let tmp = TempDir::new("index-rebuild-refused");
    let plain = Store::open(tmp.path().join("plain"), &Options::create(DIM as u32)).unwrap();
    put(&plain, &ids(0..10), &clustered(&mut Rng(1), 10));
    assert_eq!(plain.rebuild_index(&mut |_, _| {}).unwrap_err().kind(), ErrorKind::InvalidArgument);
    let compressed = Store::open(tmp.path().join("drop-raw"), &Options { drop_raw: true, ..options(Kind::Pq) }).unwrap();
    put(&compressed, &ids(0..500), &clustered(&mut Rng(2), 500));
    compressed.rebuild_index(&mut |_, _| {}).unwrap(); // the first training
    let err = compressed.rebuild_index(&mut |_, _| {}).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    assert!(err.message().contains("raw vectors"), "{err}");
}

/// A store that trains on its own (pq_train_size) rebuilds a damaged index
/// with its next put, as it would train an untrained one.
#[test]
fn automatic_training_rebuilds_a_damaged_index() {
    let tmp = TempDir::new("index-damage-auto");
    let path = tmp.store();
    let options = Options { pq: Some(PqSettings { m: 16, bits: 4, train_size: 500 }), ..options(Kind::Ivf) };
    let store = Store::open(&path, &options).unwrap();
    put(&store, &ids(0..600), &clustered(&mut Rng(5), 600));
    assert!(store.stats().unwrap().pq_trained);
    store.close().unwrap();
    flip(&codebooks_file(&path), PAGE + 40);
    let store = Store::open(&path, &Options::default()).unwrap();
    assert_eq!(store.stats().unwrap().index_damage, Some(ErrorKind::Corrupt));
    put(&store, &ids(600..601), &clustered(&mut Rng(6), 1));
    let stats = store.stats().unwrap();
    assert_eq!((stats.index_damage, stats.pq_trained, stats.live_vectors), (None, true, 601), "{stats:?}");
    assert!(stats.ivf_lists > 0 && store.auto_train_error().is_none());
}
