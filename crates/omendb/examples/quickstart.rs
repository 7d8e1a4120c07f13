//! The engine from Rust: create a store, put a batch, checkpoint, search
//! exactly, train PQ, search through the codes with re-ranking, reopen.
//!
//!     cargo run -p omendb --example quickstart [DIR]
//!
//! DIR (default: a fresh directory under the system temp dir) must not
//! hold a store yet; the example removes it at the end.

use std::path::PathBuf;

use omendb::{IdBuf, Options, PqSettings, SearchParams, Store};

const DIM: usize = 16;
const N: usize = 2_000;

fn main() -> omendb::Result<()> {
    let dir = std::env::args_os().nth(1).map(PathBuf::from).unwrap_or_else(|| {
        std::env::temp_dir().join(format!("omendb-quickstart-{}", std::process::id()))
    });

    // A new store of DIM-dimensional vectors with 4 x 8-bit PQ codes.
    let options = Options { pq: Some(PqSettings { m: 4, bits: 8, train_size: 0 }), ..Options::create(DIM as u32) };
    let store = Store::open(&dir, &options)?;

    // One call for the whole batch: N IDs and N * DIM floats, row-major.
    let ids = IdBuf::new((0..N).map(|i| format!("doc-{i}")));
    let mut state = 0x9e37_79b9_7f4a_7c15_u64; // xorshift: distinct pseudo-random vectors
    let vectors: Vec<f32> = (0..N * DIM)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32
        })
        .collect();
    store.put_batch(&ids.batch()?, &vectors)?;
    let seq = store.checkpoint()?; // durable from here on
    println!("stored {N} vectors, checkpoint {seq}");

    // Exact search for the vector of doc-42: it is its own nearest neighbour.
    let query = store.get(b"doc-42")?;
    let show = |what: &str, hits: &[omendb::Hit]| -> omendb::Result<()> {
        let names = hits
            .iter()
            .map(|h| Ok(format!("{} ({:.4})", String::from_utf8_lossy(&store.key_id(h.key)?), h.distance)))
            .collect::<omendb::Result<Vec<_>>>()?;
        println!("{what}: {}", names.join(", "));
        Ok(())
    };
    let exact = store.search(&query, 3, &SearchParams { exact: true, ..Default::default() })?;
    show("exact", &exact)?;

    // Train the PQ codebooks, then search the codes and re-rank 50 candidates.
    store.train_pq(&mut |done, total| {
        if done == total {
            println!("trained PQ ({total} steps)");
        }
    })?;
    let pq = store.search(&query, 3, &SearchParams { rerank: 50, ..Default::default() })?;
    show("PQ + rerank", &pq)?;
    assert_eq!(store.key_id(pq[0].key)?, b"doc-42");

    let stats = store.stats()?;
    println!("{} live vectors, {} bytes on disk, PQ trained: {}", stats.live_vectors, stats.disk_bytes, stats.pq_trained);
    store.close()?;

    // Reopen: dimension, metric and PQ come from the store itself.
    let store = Store::open(&dir, &Options::default())?;
    println!("reopened: dim {}, {} vectors", store.dim(), store.stats()?.live_vectors);
    store.close()?;
    std::fs::remove_dir_all(&dir).map_err(|e| omendb::Error::io(dir.display(), e))?;
    Ok(())
}
