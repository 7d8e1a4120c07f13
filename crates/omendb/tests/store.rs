//! The safe Rust core API: semantics of the contract, exercised directly.

mod common;

use common::*;
use omendb::{ErrorKind, IdBuf, Metric, Options, SearchParams, Store};

#[test]
fn create_put_get_reopen() {
    let dir = TempDir::new("basic");
    let path = dir.store();
    let mut rng = Rng(1);
    let v = rng.vectors(100, 16);
    {
        let store = create(&path, 16);
        assert_eq!(store.checkpoint_seq(), 1, "creation is checkpoint 1");
        put(&store, &ids(0..100), &v);
        assert_eq!(store.get(b"id-7").unwrap(), &v[7 * 16..8 * 16]);
        assert_eq!(store.get(b"nope").unwrap_err().kind(), ErrorKind::NotFound);
        let seq = store.checkpoint().unwrap();
        assert_eq!(seq, 2);
        assert_eq!(store.checkpoint().unwrap(), 2, "nothing to commit keeps the number");
        store.close().unwrap();
    }
    let store = Store::open(&path, &Options::default()).unwrap();
    assert_eq!(store.dim(), 16);
    for i in 0..100 {
        let got = store.get(format!("id-{i}").as_bytes()).unwrap();
        assert_eq!(got, &v[i * 16..(i + 1) * 16]);
    }
    let stats = store.stats().unwrap();
    assert_eq!((stats.live_vectors, stats.dead_slots), (100, 0));
}

#[test]
fn upsert_last_occurrence_wins_and_delete() {
    let dir = TempDir::new("upsert");
    let store = create(&dir.store(), 4);
    let ids = IdBuf::new(["a", "b", "a"]);
    put(&store, &ids, &[1., 1., 1., 1., 2., 2., 2., 2., 3., 3., 3., 3.]);
    assert_eq!(store.get(b"a").unwrap(), vec![3.0; 4]);
    let stats = store.stats().unwrap();
    assert_eq!((stats.live_vectors, stats.dead_slots), (2, 1));
    put(&store, &IdBuf::new(["b"]), &[9.0; 4]);
    assert_eq!(store.get(b"b").unwrap(), vec![9.0; 4]);
    let deleted = store.delete_batch(&IdBuf::new(["a", "a", "zz"]).batch().unwrap()).unwrap();
    assert_eq!(deleted, 1);
    assert_eq!(store.get(b"a").unwrap_err().kind(), ErrorKind::NotFound);
    put(&store, &IdBuf::new(["a"]), &[5.0; 4]);
    let path = dir.store();
    store.close().unwrap();
    let store = Store::open(&path, &Options::default()).unwrap();
    assert_eq!(store.get(b"a").unwrap(), vec![5.0; 4]);
    assert_eq!(store.get(b"b").unwrap(), vec![9.0; 4]);
    let stats = store.stats().unwrap();
    assert_eq!((stats.live_vectors, stats.dead_slots), (2, 3));
}

#[test]
fn bad_batches_apply_nothing() {
    let dir = TempDir::new("allornothing");
    let store = create(&dir.store(), 3);
    put(&store, &IdBuf::new(["keep"]), &[1.0, 2.0, 3.0]);
    let before = store.stats().unwrap();
    let mut v = vec![0.5f32; 3 * 50];
    v[3 * 40 + 1] = f32::NAN;
    let err = store.put_batch(&ids(0..50).batch().unwrap(), &v).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(err.message().contains("id-40"), "{}", err.message());
    v[3 * 40 + 1] = f32::INFINITY;
    assert!(store.put_batch(&ids(0..50).batch().unwrap(), &v).is_err());
    assert_eq!(store.get(b"id-0").unwrap_err().kind(), ErrorKind::NotFound);
    assert_eq!(store.stats().unwrap(), before);
    let err = store.put_batch(&ids(0..2).batch().unwrap(), &[0.0; 5]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Dimension);
    // A good batch after the failed ones lands where expected.
    put(&store, &ids(0..2), &[7.0; 6]);
    assert_eq!(store.get(b"id-1").unwrap(), vec![7.0; 3]);
    assert_eq!(store.get(b"keep").unwrap(), vec![1.0, 2.0, 3.0]);
}

#[test]
fn exact_search_all_metrics() {
    let dir = TempDir::new("search");
    let mut rng = Rng(3);
    let (n, dim) = (500, 24);
    let v = rng.vectors(n, dim);
    for metric in [Metric::L2, Metric::InnerProduct, Metric::Cosine] {
        let path = dir.path().join(format!("{metric:?}"));
        let store = Store::open(&path, &Options { metric, ..Options::create(dim as u32) }).unwrap();
        put(&store, &ids(0..n), &v);
        store.delete_batch(&IdBuf::new(["id-3"]).batch().unwrap()).unwrap();
        let q = &v[3 * dim..4 * dim];
        let hits = store.search(q, 10, &SearchParams::default()).unwrap();
        let mut truth: Vec<(f32, usize)> = (0..n)
            .filter(|&i| i != 3)
            .map(|i| {
                let x = &v[i * dim..(i + 1) * dim];
                let dot: f32 = q.iter().zip(x).map(|(a, b)| a * b).sum();
                let d = match metric {
                    Metric::L2 => q.iter().zip(x).map(|(a, b)| (a - b) * (a - b)).sum(),
                    Metric::InnerProduct => -dot,
                    Metric::Cosine => {
                        let nq: f32 = q.iter().map(|a| a * a).sum::<f32>().sqrt();
                        let nx: f32 = x.iter().map(|a| a * a).sum::<f32>().sqrt();
                        1.0 - dot / (nq * nx)
                    }
                };
                (d, i)
            })
            .collect();
        truth.sort_by(|a, b| a.0.total_cmp(&b.0));
        assert_eq!(hits.len(), 10);
        for (hit, (d, i)) in hits.iter().zip(&truth) {
            assert_eq!(store.key_id(hit.key).unwrap(), format!("id-{i}").into_bytes(), "{metric:?}");
            assert!((hit.distance - d).abs() < 1e-4, "{metric:?} {} vs {d}", hit.distance);
        }
        let batch = store.search_batch(&v[..dim * 5], 7, &SearchParams { threads: 2, ..Default::default() }).unwrap();
        for (qi, hits) in batch.iter().enumerate() {
            assert_eq!(hits, &store.search(&v[qi * dim..(qi + 1) * dim], 7, &SearchParams::default()).unwrap());
        }
        let all = store.search(q, 10_000, &SearchParams::default()).unwrap();
        assert_eq!(all.len(), n - 1);
    }
}

#[test]
fn compaction_reclaims_and_persists() {
    let dir = TempDir::new("compact");
    let path = dir.store();
    let mut rng = Rng(5);
    let v = rng.vectors(1000, 8);
    let store = create(&path, 8);
    put(&store, &ids(0..1000), &v);
    put(&store, &ids(0..500), &v[..500 * 8]);
    store.delete_batch(&ids(900..1000).batch().unwrap()).unwrap();
    assert_eq!(store.stats().unwrap().dead_slots, 600);
    let seq = store.checkpoint_seq();
    store.compact().unwrap();
    let stats = store.stats().unwrap();
    assert_eq!((stats.live_vectors, stats.dead_slots), (900, 0));
    assert!(store.checkpoint_seq() > seq);
    for i in 0..900 {
        assert_eq!(store.get(format!("id-{i}").as_bytes()).unwrap(), &v[i * 8..(i + 1) * 8]);
    }
    put(&store, &ids(2000..2001), &v[..8]);
    store.close().unwrap();
    let store = Store::open(&path, &Options::default()).unwrap();
    assert_eq!(store.stats().unwrap().live_vectors, 901);
    assert_eq!(store.get(b"id-899").unwrap(), &v[899 * 8..900 * 8]);
    let names: Vec<String> =
        std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert!(!names.iter().any(|n| n.ends_with("0000000000000001")), "old generation removed: {names:?}");
}

#[test]
fn unclosed_writes_are_lost_checkpointed_ones_kept() {
    let dir = TempDir::new("lost");
    let path = dir.store();
    let store = create(&path, 2);
    put(&store, &ids(0..10), &[1.0; 20]);
    store.checkpoint().unwrap();
    put(&store, &ids(10..20), &[2.0; 20]);
    // Simulate a crash: skip close and Drop's checkpoint.
    std::mem::forget(store);
    // The forgotten store still holds the writer lock (flock on its fd); a
    // read-only open does not need it.
    let (store, report) =
        Store::recover(&path, &Options { read_only: true, ..Options::default() }).unwrap();
    assert_eq!(report.checkpoint_seq, 2);
    assert_eq!(report.live_vectors, 10);
    assert!(report.discarded_bytes > 0);
    assert!(report.verified_bytes >= 10 * 8);
    assert_eq!(store.get(b"id-10").unwrap_err().kind(), ErrorKind::NotFound);
}

#[test]
fn writer_lock_and_read_only() {
    let dir = TempDir::new("lock");
    let path = dir.store();
    let store = create(&path, 2);
    put(&store, &ids(0..3), &[1.0; 6]);
    store.checkpoint().unwrap();
    assert_eq!(Store::open(&path, &Options::default()).unwrap_err().kind(), ErrorKind::Locked);
    let ro = Store::open(&path, &Options { read_only: true, ..Options::default() }).unwrap();
    let ro2 = Store::open(&path, &Options { read_only: true, ..Options::default() }).unwrap();
    assert_eq!(ro.get(b"id-1").unwrap(), vec![1.0; 2]);
    assert_eq!(ro2.put_batch(&ids(5..6).batch().unwrap(), &[0.0; 2]).unwrap_err().kind(), ErrorKind::ReadOnly);
    drop(store);
    let store = Store::open(&path, &Options::default()).unwrap();
    drop(store);
}

#[test]
fn open_errors() {
    let dir = TempDir::new("openerr");
    let missing = dir.path().join("missing");
    assert_eq!(Store::open(&missing, &Options::default()).unwrap_err().kind(), ErrorKind::NotFound);
    let orphan = dir.path().join("no-parent").join("store");
    assert_eq!(Store::open(&orphan, &Options::create(4)).unwrap_err().kind(), ErrorKind::NotFound);
    assert_eq!(Store::open(&missing, &Options::create(0)).unwrap_err().kind(), ErrorKind::InvalidArgument);
    let store = create(&missing, 4);
    drop(store);
    assert_eq!(Store::open(&missing, &Options::create(5)).unwrap_err().kind(), ErrorKind::Dimension);
    let foreign = dir.path().join("foreign");
    std::fs::create_dir(&foreign).unwrap();
    std::fs::write(foreign.join("notes.txt"), b"mine").unwrap();
    assert_eq!(Store::open(&foreign, &Options::create(4)).unwrap_err().kind(), ErrorKind::InvalidArgument);
    assert_eq!(std::fs::read_dir(&foreign).unwrap().count(), 1, "nothing written beside the user's file");
    let opened = Store::open(&missing, &Options { metric: Metric::Cosine, ..Options::create(4) }).unwrap();
    assert_eq!(opened.metric(), Metric::L2, "an existing store keeps its own metric");
}

#[test]
fn size_stays_close_to_payload() {
    let dir = TempDir::new("size");
    for n in [100usize, 100_000] {
        let path = dir.path().join(format!("s{n}"));
        let store = create(&path, 768);
        let mut rng = Rng(n as u64);
        for start in (0..n).step_by(1000) {
            let end = (start + 1000).min(n);
            put(&store, &ids(start..end), &rng.vectors(end - start, 768));
        }
        let payload = store.stats().unwrap().payload_bytes;
        store.close().unwrap();
        let disk = dir_bytes(&path);
        assert!(
            disk as f64 <= payload as f64 * 1.01 + 65536.0,
            "n={n}: disk {disk} vs payload {payload}"
        );
    }
}

/// get_batch looks IDs up in groups, taking the first slot with a matching
/// hash tag as a candidate and falling back to a full lookup when it is not
/// the ID: with 20,000 IDs (and upserts, deletes, missing IDs) tag
/// collisions are common, and every row must still equal a one-by-one get.
#[test]
fn get_batch_matches_get_under_tag_collisions() {
    let dir = TempDir::new("get-batch-groups");
    let store = create(&dir.store(), 3);
    let mut rng = Rng(9);
    let n = 20_000;
    put(&store, &ids(0..n), &rng.vectors(n, 3));
    put(&store, &ids(0..n / 4), &rng.vectors(n / 4, 3)); // upserts: dead slots of the same IDs
    store.delete_batch(&ids(n / 2..n / 2 + 500).batch().unwrap()).unwrap();
    let wanted: Vec<String> = (0..3_001).map(|i| format!("id-{}", (i * 7919) % (n + 1_000))).collect();
    let batch = IdBuf::new(wanted.iter().map(String::as_str));
    let mut out = vec![7.0f32; wanted.len() * 3];
    let mut found = vec![9u8; wanted.len()];
    store.get_batch_into(&batch.batch().unwrap(), &mut out, Some(&mut found)).unwrap();
    let mut missing = 0;
    for (i, id) in wanted.iter().enumerate() {
        match store.get(id.as_bytes()) {
            Ok(v) => assert_eq!((found[i], &out[i * 3..i * 3 + 3]), (1, &v[..]), "{id}"),
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::NotFound);
                assert_eq!((found[i], &out[i * 3..i * 3 + 3]), (0, &[0.0f32; 3][..]), "{id}");
                missing += 1;
            }
        }
    }
    assert!(missing > 100 && missing < 1_000, "{missing} missing");
}

/// Open applies the tombstones in one sweep over the index (the entries
/// whose final slot is tombstoned), not in log order: deletes followed by
/// re-puts, deletes of an upserted ID, and repeated delete/put cycles must
/// reopen exactly as the live store had them, with the same payload bytes.
#[test]
fn reopen_applies_tombstones_to_final_slots_only() {
    let dir = TempDir::new("tomb-sweep");
    let path = dir.store();
    let store = create(&path, 2);
    let one = |s: &Store, id: &str, x: f32| put(s, &IdBuf::new([id]), &[x, x]);
    let del = |s: &Store, id: &str| s.delete_batch(&IdBuf::new([id]).batch().unwrap()).unwrap();
    one(&store, "again", 1.0); // deleted, then put again: live with the new vector
    del(&store, "again");
    one(&store, "again", 2.0);
    one(&store, "upserted", 3.0); // upserted, then deleted: gone (the older slot must not come back)
    one(&store, "upserted", 4.0);
    del(&store, "upserted");
    for x in 0..3 {
        one(&store, "cycled", 5.0 + x as f32); // put/delete three times: gone
        del(&store, "cycled");
    }
    one(&store, "kept-long-id-xxxxxxxxxxxxxxxx", 9.0);
    put(&store, &ids(0..300), &Rng(4).vectors(300, 2));
    store.delete_batch(&ids(100..250).batch().unwrap()).unwrap();
    put(&store, &ids(200..220), &Rng(5).vectors(20, 2));
    let before = store.stats().unwrap();
    let expect: Vec<(String, Option<Vec<f32>>)> = ["again", "upserted", "cycled", "kept-long-id-xxxxxxxxxxxxxxxx"]
        .into_iter()
        .map(String::from)
        .chain((0..300).map(|i| format!("id-{i}")))
        .map(|id| {
            let v = store.get(id.as_bytes()).ok();
            (id, v)
        })
        .collect();
    assert_eq!(expect[0].1.as_deref(), Some(&[2.0f32, 2.0][..]));
    assert!(expect[1].1.is_none() && expect[2].1.is_none());
    store.close().unwrap();
    let store = Store::open(&path, &Options::default()).unwrap();
    let after = store.stats().unwrap();
    assert_eq!((after.live_vectors, after.dead_slots, after.payload_bytes), (before.live_vectors, before.dead_slots, before.payload_bytes));
    assert_eq!(after.live_vectors, 2 + 150 + 20);
    for (id, v) in &expect {
        assert_eq!(store.get(id.as_bytes()).ok().as_ref(), v.as_ref(), "{id}");
    }
}

/// put_batch checks and writes in blocks of about 256 KiB: a bad row in a
/// late block, after earlier blocks were written, still fails the whole
/// batch with nothing visible (and names the first bad row), and the next
/// batch writes over that space, which full verification then accepts.
#[test]
fn bad_row_in_a_late_block_fails_the_whole_batch() {
    let dim = 768; // 85 rows per block
    // With 2 threads the 500 rows are checked and written in two runs of
    // blocks side by side (rows 0..255 and 255..500), with 3 in three runs
    // (0..170, 170..340, 340..500): bad rows in either run, or in both.
    for threads in [1, 2, 3] {
        for bad_rows in [&[400, 450][..], &[200, 400], &[499]] {
            let dir = TempDir::new("put-blocks");
            let path = dir.store();
            let store = Store::open(&path, &Options { threads, ..Options::create(dim as u32) }).unwrap();
            let mut rng = Rng(11);
            put(&store, &ids(0..10), &rng.vectors(10, dim));
            let mut bad = rng.vectors(500, dim);
            for (k, &row) in bad_rows.iter().enumerate() {
                bad[row * dim + 17] = if k == 0 { f32::INFINITY } else { f32::NAN };
            }
            let err = store.put_batch(&ids(10..510).batch().unwrap(), &bad).unwrap_err();
            let context = format!("{threads} threads, bad rows {bad_rows:?}: {err}");
            assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{context}");
            let first = format!("vector {}", bad_rows[0]);
            assert!(err.message().contains(&first) && err.message().contains("index 17"), "{context}");
            assert_eq!(store.stats().unwrap().live_vectors, 10, "{context}");
            assert_eq!(store.get(b"id-10").unwrap_err().kind(), ErrorKind::NotFound, "{context}");
            let good = rng.vectors(500, dim);
            put(&store, &ids(10..510), &good);
            store.close().unwrap();
            let (store, report) = Store::recover(&path, &Options { threads, ..Options::default() }).unwrap();
            assert_eq!(report.live_vectors, 510, "{context}");
            for i in [10, 94, 95, 96, 180, 264, 265, 266, 400, 509] {
                assert_eq!(store.get(format!("id-{i}").as_bytes()).unwrap(), &good[(i - 10) * dim..(i - 9) * dim], "id-{i}, {context}");
            }
        }
    }
}

/// Past 8 MiB of vectors, put_batch writes whole 2 MiB huge pages of the
/// file in one call each and, with `huge_pages`, pads a batch's last huge
/// page with zeros (so the kernel can cache it as one folio), the next batch
/// writing over the zeros. With and without padding, with 1 to 3 threads,
/// batches whose ends fall anywhere in a huge page, and a failed batch whose
/// rows (and padding) were written but never published, every vector reads
/// back exactly, after a reopen with full verification too.
#[test]
fn batches_past_the_padding_threshold_read_back_exactly() {
    let dim = 768; // 3 KiB rows: batch ends fall at every offset of a huge page
    for (threads, huge_pages) in [(1, true), (2, true), (3, true), (1, false), (2, false)] {
        let dir = TempDir::new("put-huge");
        let path = dir.store();
        let store = Store::open(&path, &Options { threads, huge_pages, ..Options::create(dim as u32) }).unwrap();
        let mut rng = Rng(12 + threads as u64);
        let mut want: Vec<f32> = Vec::new();
        for size in [1000, 1000, 1000, 777, 1, 1500, 333] {
            let start = want.len() / dim;
            let v = rng.vectors(size, dim);
            if size == 1500 {
                // Fails after its rows (and the padding) went to the file.
                let mut bad = v.clone();
                bad[1400 * dim + 3] = f32::NAN;
                let err = store.put_batch(&ids(start..start + size).batch().unwrap(), &bad).unwrap_err();
                assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{threads} threads, huge pages {huge_pages}: {err}");
                assert_eq!(store.stats().unwrap().live_vectors, start as u64);
            }
            put(&store, &ids(start..start + size), &v);
            want.extend(v);
        }
        let n = want.len() / dim;
        assert!((n * dim * 4) as u64 > 12 << 20, "well past the threshold (8 MiB)");
        let check = |store: &Store, when: &str| {
            for i in 0..n {
                let got = store.get(format!("id-{i}").as_bytes()).unwrap();
                assert!(got == want[i * dim..(i + 1) * dim], "id-{i}, {threads} threads, huge pages {huge_pages}, {when}");
            }
        };
        check(&store, "before the checkpoint");
        store.checkpoint().unwrap();
        store.close().unwrap();
        let (store, report) = Store::recover(&path, &Options { threads, huge_pages, ..Options::default() }).unwrap();
        assert_eq!(report.live_vectors, n as u64);
        check(&store, "after recover");
    }
}

/// Compaction writes the kept vectors in whole huge pages, one call each
/// (each chunk's vectors up to the last huge page they fill; the rest is
/// carried into the next chunk's write), the last one padded with
/// `huge_pages`, and the file cut back to its data at the end: every kept
/// vector reads back exactly, after recover with full verification too, and
/// the new vectors file holds exactly the kept vectors.
#[test]
fn compaction_past_the_padding_threshold_keeps_every_vector_exactly() {
    for huge_pages in [false, true] {
        compaction_keeps_every_vector_exactly(huge_pages);
    }
}

fn compaction_keeps_every_vector_exactly(huge_pages: bool) {
    let dim = 768;
    let dir = TempDir::new("compact-huge");
    let path = dir.store();
    let store = Store::open(&path, &Options { huge_pages, ..Options::create(dim as u32) }).unwrap();
    let mut rng = Rng(21);
    let n = 10_000; // 29 MiB of vectors, 8,485 kept: three rewrite chunks (4,096 slots), the last partial
    let want = rng.vectors(n, dim);
    for start in (0..n).step_by(1000) {
        put(&store, &ids(start..start + 1000), &want[start * dim..(start + 1000) * dim]);
    }
    let dead: Vec<usize> = (0..n).filter(|i| i % 7 == 3 || (2000..2100).contains(i)).collect();
    store.delete_batch(&IdBuf::new(dead.iter().map(|i| format!("id-{i}"))).batch().unwrap()).unwrap();
    store.compact().unwrap();
    let kept = n - dead.len();
    let check = |store: &Store, when: &str| {
        for i in 0..n {
            let got = store.get(format!("id-{i}").as_bytes());
            if dead.contains(&i) {
                assert_eq!(got.unwrap_err().kind(), ErrorKind::NotFound, "id-{i}, huge pages {huge_pages}, {when}");
            } else {
                assert!(got.unwrap() == want[i * dim..(i + 1) * dim], "id-{i}, huge pages {huge_pages}, {when}");
            }
        }
    };
    check(&store, "after compaction");
    store.close().unwrap();
    let vector_files: Vec<u64> = std::fs::read_dir(&path)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().starts_with("vectors."))
        .map(|e| e.metadata().unwrap().len())
        .collect();
    assert_eq!(vector_files, [4096 + (kept * dim * 4) as u64], "one vectors file: header + the kept vectors");
    let (store, report) = Store::recover(&path, &Options::default()).unwrap();
    assert_eq!(report.live_vectors, kept as u64);
    check(&store, "after recover");
}

/// A write call from inside a training's progress callback (the thread
/// holds the writer) returns an error instead of waiting for itself
/// forever; reads work there.
#[test]
fn write_calls_from_a_progress_callback_are_refused() {
    let dir = TempDir::new("reentry");
    let options = Options { pq: Some(omendb::PqSettings { m: 4, bits: 8, train_size: 0 }), ..Options::create(16) };
    let store = Store::open(dir.store(), &options).unwrap();
    let mut rng = Rng(3);
    put(&store, &ids(0..600), &rng.vectors(600, 16));
    let extra = rng.vectors(1, 16);
    let mut calls = 0;
    let mut outcomes = Vec::new();
    store
        .train_pq(&mut |_, _| {
            calls += 1;
            if calls > 1 {
                return;
            }
            let one = IdBuf::new(["x"]);
            outcomes.push(("put", store.put_batch(&one.batch().unwrap(), &extra).map(|_| ())));
            outcomes.push(("delete", store.delete_batch(&ids(0..1).batch().unwrap()).map(|_| ())));
            outcomes.push(("checkpoint", store.checkpoint().map(|_| ())));
            outcomes.push(("train", store.train_pq(&mut |_, _| {})));
            outcomes.push(("compact", store.compact()));
            outcomes.push(("get", store.get(b"id-5").map(|_| ())));
            outcomes.push(("search", store.search(&extra, 3, &SearchParams::default()).map(|_| ())));
            outcomes.push(("stats", store.stats().map(|_| ())));
        })
        .unwrap();
    for (what, outcome) in outcomes {
        match what {
            "get" | "search" | "stats" => assert!(outcome.is_ok(), "{what}: {outcome:?}"),
            _ => {
                let err = outcome.expect_err(what);
                assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{what}: {err}");
                assert!(err.message().contains("progress callback"), "{what}: {err}");
            }
        }
    }
    assert_eq!(store.get(b"x").unwrap_err().kind(), ErrorKind::NotFound, "the refused put applied nothing");
    assert_eq!(store.stats().unwrap().live_vectors, 600);
    put(&store, &IdBuf::new(["x"]), &extra); // after the training, writes work again
    store.checkpoint().unwrap();
}

/// `threads` is bounded: a million threads is refused at open and in a
/// batch search; the largest accepted count trains without starting a
/// thread per point.
#[test]
fn thread_counts_are_bounded() {
    let dir = TempDir::new("threads");
    let huge = Options { threads: 1_000_000, ..Options::create(16) };
    let err = Store::open(dir.store(), &huge).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    assert!(!dir.store().exists(), "nothing created");
    let options = Options {
        threads: omendb::MAX_THREADS,
        pq: Some(omendb::PqSettings { m: 4, bits: 8, train_size: 0 }),
        ..Options::create(16)
    };
    let store = Store::open(dir.store(), &options).unwrap();
    let v = Rng(5).vectors(600, 16);
    put(&store, &ids(0..600), &v);
    store.train_pq(&mut |_, _| {}).unwrap();
    let params = SearchParams { threads: 1_000_000, ..SearchParams::default() };
    let err = store.search_batch(&v[..32], 3, &params).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    let params = SearchParams { threads: omendb::MAX_THREADS, ..SearchParams::default() };
    assert_eq!(store.search_batch(&v[..32], 3, &params).unwrap().len(), 2);
}

/// get refuses the ID lengths that put refuses, with the same status.
#[test]
fn get_refuses_id_lengths_that_put_refuses() {
    let dir = TempDir::new("get-id-len");
    let store = create(&dir.store(), 4);
    let long = vec![b'a'; 1025];
    for id in [&b""[..], &long[..]] {
        let err = store.get(id).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{} bytes: {err}", id.len());
        assert!(err.message().contains("1 to 1024 bytes"), "{err}");
        let put_err = IdBuf::new([id]).batch().and_then(|b| store.put_batch(&b, &[0.0; 4])).unwrap_err();
        assert_eq!(put_err.kind(), err.kind());
    }
    assert_eq!(store.get(&long[..1024]).unwrap_err().kind(), ErrorKind::NotFound);
}

/// live_ids lists each live ID once, in the order first stored, and the
/// batch view's slices read back as the same IDs.
#[test]
fn live_ids_lists_each_live_id_once() {
    let dir = TempDir::new("live-ids");
    let store = create(&dir.store(), 4);
    put(&store, &IdBuf::new(["a", "b", "c", "d"]), &[1.0; 16]);
    put(&store, &IdBuf::new(["b", "e"]), &[2.0; 8]); // b moves to a later slot
    store.delete_batch(&IdBuf::new(["c"]).batch().unwrap()).unwrap();
    let ids = store.live_ids().unwrap();
    let batch = ids.batch().unwrap();
    let listed: Vec<&[u8]> = batch.iter().collect();
    assert_eq!(listed, [&b"a"[..], b"d", b"b", b"e"]);
    assert_eq!(ids.len() as u64, store.stats().unwrap().live_vectors);
    let tail: Vec<&[u8]> = batch.slice(1..3).iter().collect();
    assert_eq!(tail, [&b"d"[..], b"b"]);
    store.compact().unwrap();
    let after = store.live_ids().unwrap();
    assert_eq!(after.batch().unwrap().iter().collect::<Vec<_>>(), listed, "compaction keeps the order");
}

/// contains answers like get without copying: present, absent, deleted,
/// replaced, after compaction; IDs refused like get's.
#[test]
fn contains_agrees_with_get() {
    let dir = TempDir::new("contains");
    let store = create(&dir.store(), 4);
    put(&store, &IdBuf::new(["a", "b", "c"]), &[1.0; 12]);
    store.delete_batch(&IdBuf::new(["b"]).batch().unwrap()).unwrap();
    put(&store, &IdBuf::new(["c"]), &[2.0; 4]);
    let long = vec![b'x'; 1024];
    put(&store, &IdBuf::new([&long[..]]), &[3.0; 4]);
    let check = |store: &Store| {
        for id in [&b"a"[..], b"b", b"c", b"zz", &long[..], &long[..1023]] {
            let want = store.get(id).is_ok();
            assert_eq!(store.contains(id).unwrap(), want, "{:?}", String::from_utf8_lossy(&id[..id.len().min(8)]));
        }
    };
    assert!(store.contains(b"a").unwrap() && !store.contains(b"b").unwrap());
    check(&store);
    store.compact().unwrap();
    check(&store);
    let too_long = vec![b'x'; 1025];
    for id in [&b""[..], &too_long[..]] {
        let err = store.contains(id).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{} bytes: {err}", id.len());
        assert!(err.message().contains("1 to 1024 bytes"), "{err}");
    }
}

/// close_discard drops the puts and deletes since the last checkpoint,
/// releases the writer lock at once, and leaves a store that later writers
/// extend and close normally.
#[test]
fn close_discard_keeps_only_the_last_checkpoint() {
    let dir = TempDir::new("discard");
    let path = dir.store();
    let store = create(&path, 2);
    put(&store, &ids(0..10), &[1.0; 20]);
    let seq = store.checkpoint().unwrap();
    put(&store, &ids(10..20), &[2.0; 20]);
    put(&store, &ids(0..2), &[3.0; 4]);
    store.delete_batch(&ids(5..7).batch().unwrap()).unwrap();
    store.close_discard().unwrap();

    // The lock is free: a writer opens right away.
    let store = Store::open(&path, &Options::default()).unwrap();
    assert_eq!(store.checkpoint_seq(), seq);
    assert_eq!(store.stats().unwrap().live_vectors, 10);
    assert_eq!(store.get(b"id-0").unwrap(), vec![1.0; 2], "the replacement was discarded");
    assert!(store.contains(b"id-5").unwrap(), "the delete was discarded");
    assert!(!store.contains(b"id-10").unwrap(), "the put was discarded");

    // Deletes alone, then discard again.
    store.delete_batch(&ids(0..4).batch().unwrap()).unwrap();
    store.close_discard().unwrap();
    let store = Store::open(&path, &Options::default()).unwrap();
    assert_eq!(store.stats().unwrap().live_vectors, 10);

    // The space left past the checkpoint is reused cleanly.
    put(&store, &ids(20..25), &[4.0; 10]);
    store.close().unwrap();
    let (store, report) = Store::recover(&path, &Options::default()).unwrap();
    assert_eq!(report.live_vectors, 15);
    assert_eq!(store.get(b"id-24").unwrap(), vec![4.0; 2]);
    store.close().unwrap();
}

/// On a read-only handle close_discard just releases it; a writer that
/// opened meanwhile is unaffected.
#[test]
fn close_discard_of_a_read_only_handle() {
    let dir = TempDir::new("discard-ro");
    let path = dir.store();
    let store = create(&path, 2);
    put(&store, &ids(0..3), &[1.0; 6]);
    store.checkpoint().unwrap();
    let ro = Store::open(&path, &Options { read_only: true, ..Options::default() }).unwrap();
    assert!(ro.contains(b"id-2").unwrap());
    ro.close_discard().unwrap();
    put(&store, &ids(3..4), &[2.0; 2]);
    store.close().unwrap();
    let store = Store::open(&path, &Options::default()).unwrap();
    assert_eq!(store.stats().unwrap().live_vectors, 4);
}
