//! The cursor over live entries, search by a stored ID and range search.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};

use common::*;
use omendb::{ErrorKind, Filter, IdBuf, Metric, Options, PqSettings, SearchParams, Store};

/// Every entry of a cursor, read in pages of `page` (vectors too when the
/// store keeps them).
fn drain(cursor: &mut omendb::Cursor, page: usize) -> Vec<(Vec<u8>, Vec<f32>)> {
    let dim = cursor.dim();
    let with_vectors = cursor.has_vectors();
    let mut out = Vec::new();
    loop {
        let p = cursor.next_page(page, with_vectors).unwrap();
        if p.ids.is_empty() {
            return out;
        }
        assert!(p.ids.len() <= page);
        for i in 0..p.ids.len() {
            let v = if with_vectors { p.vectors[i * dim..(i + 1) * dim].to_vec() } else { Vec::new() };
            out.push((p.ids.get(i).to_vec(), v));
        }
    }
}

#[test]
fn cursor_sees_one_moment_whatever_follows() {
    let dir = TempDir::new("cursor-moment");
    let store = create(&dir.store(), 8);
    let v = Rng(3).vectors(300, 8);
    put(&store, &ids(0..300), &v);
    store.delete_batch(&IdBuf::new(["id-5", "id-6"]).batch().unwrap()).unwrap();
    let mut cursor = store.cursor().unwrap();
    assert_eq!(cursor.remaining(), 298);
    // After the moment: new IDs, replaced and deleted ones, a compaction.
    put(&store, &ids(300..400), &Rng(4).vectors(100, 8));
    put(&store, &IdBuf::new(["id-7"]), &[9.0; 8]);
    store.delete_batch(&IdBuf::new(["id-8"]).batch().unwrap()).unwrap();
    let first = cursor.next_page(7, true).unwrap();
    store.compact().unwrap();
    assert_eq!(first.ids.len(), 7);
    let mut got: Vec<(Vec<u8>, Vec<f32>)> =
        (0..7).map(|i| (first.ids.get(i).to_vec(), first.vectors[i * 8..(i + 1) * 8].to_vec())).collect();
    got.extend(drain(&mut cursor, 7));
    let want: Vec<(Vec<u8>, Vec<f32>)> = (0..300)
        .filter(|i| *i != 5 && *i != 6)
        .map(|i| (format!("id-{i}").into_bytes(), v[i * 8..(i + 1) * 8].to_vec()))
        .collect();
    assert_eq!(got, want, "slot order, the vectors as of the moment");
    assert_eq!(cursor.remaining(), 0);
    assert!(cursor.next_page(7, true).unwrap().ids.is_empty(), "the end stays the end");
    // A new cursor sees the changes.
    let now = drain(&mut store.cursor().unwrap(), 1000);
    assert_eq!(now.len(), 397);
    assert!(now.contains(&(b"id-7".to_vec(), vec![9.0; 8])));
    assert!(!now.iter().any(|(id, _)| id == b"id-8"));
}

/// Batches of a writer running beside cursors are in a cursor whole or
/// not at all.
#[test]
fn cursor_never_sees_a_torn_batch() {
    const BATCH: usize = 40;
    let dir = TempDir::new("cursor-torn");
    let store = create(&dir.store(), 4);
    let done = AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            for round in 0..200usize {
                let batch = IdBuf::new((0..BATCH).map(|i| format!("r{round}-{i}")));
                store.put_batch(&batch.batch().unwrap(), &vec![round as f32; BATCH * 4]).unwrap();
                if round >= 2 {
                    let old = IdBuf::new((0..BATCH).map(|i| format!("r{}-{i}", round - 2)));
                    store.delete_batch(&old.batch().unwrap()).unwrap();
                }
            }
            done.store(true, Ordering::SeqCst);
        });
        let mut checked = 0;
        while !done.load(Ordering::SeqCst) || checked < 3 {
            let mut counts = std::collections::HashMap::new();
            for (id, vector) in drain(&mut store.cursor().unwrap(), 13) {
                let id = String::from_utf8(id).unwrap();
                let round: usize = id[1..id.find('-').unwrap()].parse().unwrap();
                assert_eq!(vector, vec![round as f32; 4], "{id}");
                *counts.entry(round).or_insert(0) += 1;
            }
            for (round, n) in counts {
                assert_eq!(n, BATCH, "round {round}: a batch is in a cursor whole");
            }
            checked += 1;
        }
    });
}

#[test]
fn cursor_refuses_after_close_and_pages_into_buffers() {
    let dir = TempDir::new("cursor-close");
    let store = create(&dir.store(), 2);
    let long = "x".repeat(30);
    let batch = IdBuf::new(["ab", "cde", long.as_str(), "f"]);
    put(&store, &batch, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]);
    let mut cursor = store.cursor().unwrap();
    assert_eq!(cursor.next_page(0, false).unwrap_err().kind(), ErrorKind::InvalidArgument);
    let (mut bytes, mut offsets, mut vectors) = ([0u8; 6], [7u64; 4], [0f32; 6]);
    // "ab" and "cde" fit in 6 bytes, the 30-byte ID does not: the page stops before it.
    let n = cursor.next_into(3, &mut bytes, &mut offsets, Some(&mut vectors)).unwrap();
    assert_eq!((n, &bytes[..5], &offsets[..3]), (2, &b"abcde"[..], &[0, 2, 5][..]));
    assert_eq!(&vectors[..4], &[1.0, 2.0, 3.0, 4.0]);
    let err = cursor.next_into(3, &mut bytes, &mut offsets, None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BufferTooSmall);
    assert!(err.to_string().contains("30 bytes"), "{err}");
    assert_eq!(offsets[1], 30, "the size the next ID needs");
    assert_eq!(cursor.remaining(), 2, "a refused page does not move the cursor");
    let mut big = [0u8; 64];
    let mut short = [0u64; 2];
    assert_eq!(cursor.next_into(3, &mut big, &mut short, None).unwrap_err().kind(), ErrorKind::BufferTooSmall);
    assert_eq!(cursor.next_into(1, &mut big, &mut short, None).unwrap(), 1);
    assert_eq!(&big[..30], long.as_bytes());
    store.close().unwrap();
    let err = cursor.next_page(10, true).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(err.to_string().contains("closed"), "{err}");
    // A cursor whose store was dropped refuses the same way.
    let store = Store::open(dir.store(), &Options::default()).unwrap();
    let mut cursor = store.cursor().unwrap();
    drop(store);
    assert_eq!(cursor.next_page(10, false).unwrap_err().kind(), ErrorKind::InvalidArgument);
}

fn drop_raw_store(path: &std::path::Path, n: usize, dim: usize, metric: Metric) -> (Store, Vec<f32>) {
    let options = Options {
        drop_raw: true,
        metric,
        pq: Some(PqSettings { m: 4, bits: 8, train_size: 0 }),
        ..Options::create(dim as u32)
    };
    let store = Store::open(path, &options).unwrap();
    let v = Rng(9).vectors(n, dim);
    put(&store, &ids(0..n), &v);
    store.train_pq(&mut |_, _| {}).unwrap();
    (store, v)
}

#[test]
fn cursor_of_a_compressed_store_lists_ids_only() {
    let dir = TempDir::new("cursor-droppraw");
    let (store, _) = drop_raw_store(&dir.store(), 300, 8, Metric::L2);
    let mut cursor = store.cursor().unwrap();
    assert!(!cursor.has_vectors());
    let err = cursor.next_page(10, true).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(err.to_string().contains("IDs only"), "{err}");
    let mut got: Vec<Vec<u8>> = drain(&mut cursor, 64).into_iter().map(|(id, _)| id).collect();
    got.sort();
    let mut want: Vec<Vec<u8>> = (0..300).map(|i| format!("id-{i}").into_bytes()).collect();
    want.sort();
    assert_eq!(got, want);
}

#[test]
fn cursor_verifies_vectors() {
    use std::os::unix::fs::FileExt;
    let dir = TempDir::new("cursor-flip");
    let path = dir.store();
    let store = create(&path, 4);
    put(&store, &ids(0..20), &Rng(5).vectors(20, 4));
    store.close().unwrap();
    let vectors = std::fs::read_dir(&path)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_str().unwrap().contains("vectors"))
        .unwrap();
    // Slot 10's vector: past the 4096-byte header, 16 bytes a vector.
    let f = std::fs::OpenOptions::new().read(true).write(true).open(&vectors).unwrap();
    let mut b = [0u8];
    f.read_exact_at(&mut b, 4096 + 10 * 16 + 2).unwrap();
    f.write_all_at(&[b[0] ^ 0x10], 4096 + 10 * 16 + 2).unwrap();
    let store = Store::open(&path, &Options::default()).unwrap();
    let mut cursor = store.cursor().unwrap();
    assert_eq!(cursor.next_page(8, true).unwrap().ids.len(), 8);
    assert_eq!(cursor.next_page(8, true).unwrap_err().kind(), ErrorKind::Corrupt);
    assert_eq!(cursor.remaining(), 12, "the failed page did not move it");
    assert_eq!(cursor.next_page(8, false).unwrap().ids.len(), 8, "IDs need no vector");
}

#[test]
fn search_by_id_is_search_with_the_stored_vector() {
    let dir = TempDir::new("by-id");
    let store = create(&dir.store(), 8);
    let v = Rng(11).vectors(500, 8);
    put(&store, &ids(0..500), &v);
    // A duplicate of id-3's vector: excluding self must drop id-3, not it.
    put(&store, &IdBuf::new(["twin"]), &v[3 * 8..4 * 8]);
    let params = SearchParams::default();
    let query = store.get(b"id-3").unwrap();
    assert_eq!(store.search_by_id(b"id-3", 10, &params, false).unwrap(), store.search(&query, 10, &params).unwrap());
    let others = store.search_by_id_with_ids(b"id-3", 10, &params, true, &Filter::default()).unwrap();
    let plain = store.search_with_ids(&query, 11, &params, &Filter::default()).unwrap();
    let want: Vec<&[u8]> = (0..11).map(|i| plain.ids.get(i)).filter(|id| *id != b"id-3").collect();
    let got: Vec<&[u8]> = (0..others.ids.len()).map(|i| others.ids.get(i)).collect();
    assert_eq!(got, want);
    assert_eq!(got.len(), 10);
    assert!(got.contains(&&b"twin"[..]));
    assert_eq!(store.search_by_id(b"id-3", 0, &params, true).unwrap(), vec![]);
    // A filter that leaves only the ID itself, excluded: nothing.
    let only = IdBuf::new(["id-3"]);
    let filter = Filter { ids: Some(only.batch().unwrap()), accept: None };
    assert!(store.search_by_id_filtered(b"id-3", 5, &params, true, &filter).unwrap().is_empty());
    assert_eq!(store.search_by_id_filtered(b"id-3", 5, &params, false, &filter).unwrap().len(), 1);
    assert_eq!(store.search_by_id(b"nope", 5, &params, true).unwrap_err().kind(), ErrorKind::NotFound);
    assert_eq!(store.search_by_id(b"", 5, &params, true).unwrap_err().kind(), ErrorKind::InvalidArgument);
}

#[test]
fn search_by_id_in_a_compressed_store_uses_the_reconstruction() {
    let dir = TempDir::new("by-id-droppraw");
    let (store, _) = drop_raw_store(&dir.store(), 400, 8, Metric::Cosine);
    let params = SearchParams::default();
    let query = store.get(b"id-17").unwrap();
    assert_eq!(store.search_by_id(b"id-17", 5, &params, false).unwrap(), store.search(&query, 5, &params).unwrap());
    let others = store.search_by_id_with_ids(b"id-17", 5, &params, true, &Filter::default()).unwrap();
    assert_eq!(others.ids.len(), 5);
    assert!((0..5).all(|i| others.ids.get(i) != b"id-17"));
}

/// Every live vector and its exact distance, by brute force.
fn brute_force(store: &Store, n: usize, query: &[f32]) -> Vec<(f32, Vec<u8>)> {
    let mut all = Vec::new();
    for i in 0..n {
        let id = format!("id-{i}").into_bytes();
        let Ok(v) = store.get(&id) else { continue };
        let d = match store.metric() {
            Metric::L2 => v.iter().zip(query).map(|(a, b)| (a - b) * (a - b)).sum::<f32>(),
            Metric::InnerProduct => -v.iter().zip(query).map(|(a, b)| a * b).sum::<f32>(),
            Metric::Cosine => {
                let dot: f32 = v.iter().zip(query).map(|(a, b)| a * b).sum();
                let norm = |x: &[f32]| x.iter().map(|a| a * a).sum::<f32>().sqrt();
                1.0 - dot / (norm(&v) * norm(query))
            }
        };
        all.push((d, id));
    }
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    all
}

#[test]
fn range_search_is_exact_and_capped() {
    for metric in [Metric::L2, Metric::InnerProduct, Metric::Cosine] {
        let dir = TempDir::new("range");
        let options = Options { metric, pq: Some(PqSettings { m: 4, bits: 8, train_size: 0 }), ..Options::create(8) };
        let store = Store::open(dir.store(), &options).unwrap();
        let n = 600;
        put(&store, &ids(0..n), &Rng(21).vectors(n, 8));
        store.delete_batch(&ids(0..50).batch().unwrap()).unwrap();
        // Trained: range search still reads the raw vectors, exactly.
        store.train_pq(&mut |_, _| {}).unwrap();
        let query = Rng(22).vectors(1, 8);
        let all = brute_force(&store, n, &query);
        let radius = all[all.len() / 5].0;
        let within: Vec<&(f32, Vec<u8>)> = all.iter().filter(|(d, _)| *d <= radius + 1e-5).collect();
        let params = SearchParams::default();
        let found = store.range_search(&query, radius, 1000, &params).unwrap();
        assert!(
            (found.total as usize).abs_diff(within.len()) <= 1,
            "{metric:?}: {} found, {} by brute force",
            found.total,
            within.len()
        );
        assert_eq!(found.hits.len() as u64, found.total, "{metric:?}: under the cap, every one");
        assert!(found.hits.windows(2).all(|w| w[0].distance <= w[1].distance));
        assert!(found.hits.iter().all(|h| h.distance <= radius));
        for (hit, (d, id)) in found.hits.iter().zip(&all) {
            assert!((hit.distance - d).abs() < 1e-4, "{metric:?}");
            if (hit.distance - d).abs() < 1e-6 {
                assert_eq!(&store.key_id(hit.key).unwrap(), id);
            }
        }
        let capped = store.range_search(&query, radius, 7, &params).unwrap();
        assert_eq!(capped.total, found.total, "{metric:?}: the total counts past the cap");
        assert_eq!(capped.hits, found.hits[..7], "{metric:?}");
        let none = store.range_search(&query, radius, 0, &params).unwrap();
        assert!(none.hits.is_empty() && none.total == found.total);
        let everything = store.range_search(&query, f32::INFINITY, usize::MAX, &params).unwrap();
        assert_eq!(everything.total, 550);
        let below = store.range_search(&query, all[0].0 - 1.0, 10, &params).unwrap();
        assert_eq!((below.hits.len(), below.total), (0, 0));
        let id = store.key_id(found.hits[0].key).unwrap();
        let only = IdBuf::new([id.as_slice(), b"id-1", b"missing"]);
        let filter = Filter { ids: Some(only.batch().unwrap()), accept: None };
        let filtered = store.range_search_with_ids(&query, radius, 10, &params, &filter).unwrap();
        assert_eq!((filtered.total, filtered.hits[0]), (1, found.hits[0]), "{metric:?}: id-1 is deleted");
        assert_eq!((filtered.ids.len(), filtered.ids.get(0)), (1, id.as_slice()));
        let named = store.range_search_with_ids(&query, radius, 7, &params, &Filter::default()).unwrap();
        assert_eq!((named.hits, named.total), (capped.hits.clone(), capped.total));
        for (i, hit) in capped.hits.iter().enumerate() {
            assert_eq!(named.ids.get(i), store.key_id(hit.key).unwrap());
        }
        assert_eq!(store.range_search(&query, f32::NAN, 10, &params).unwrap_err().kind(), ErrorKind::InvalidArgument);
        assert_eq!(store.range_search(&query[..4], 1.0, 10, &params).unwrap_err().kind(), ErrorKind::Dimension);
    }
}

#[test]
fn range_search_threads_agree() {
    let dir = TempDir::new("range-threads");
    let store = create(&dir.store(), 4);
    let n = 70_000;
    put(&store, &ids(0..n), &Rng(31).vectors(n, 4));
    let query = [0.1, -0.2, 0.3, 0.0];
    let one = store.range_search(&query, 0.3, 500, &SearchParams { threads: 1, ..Default::default() }).unwrap();
    let four = store.range_search(&query, 0.3, 500, &SearchParams { threads: 4, ..Default::default() }).unwrap();
    assert!(one.total > 500, "the cap applies: {}", one.total);
    assert_eq!((one.hits, one.total), (four.hits, four.total));
    let err = store.range_search(&query, 0.3, 5, &SearchParams { threads: 5000, ..Default::default() }).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
}

#[test]
fn range_search_refuses_a_compressed_store() {
    let dir = TempDir::new("range-droppraw");
    let (store, _) = drop_raw_store(&dir.store(), 300, 8, Metric::L2);
    let err = store.range_search(&[0.0; 8], 1.0, 10, &SearchParams::default()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(err.to_string().contains("raw vectors"), "{err}");
}
