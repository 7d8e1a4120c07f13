//! What a caller is told when a write fails part-way, through the I/O seam:
//! a SYNC_WRITES batch whose commit fails is not applied (readers never
//! see it, and reopening does not revive it), and a failed automatic
//! training is reported instead of dropped.

mod common;

use std::sync::{Arc, Mutex};

use common::*;
use omendb::storage::faults::{self, Call, Hook, Op as IoOp};
use omendb::{ErrorKind, IdBuf, Options, PqSettings, Store};

/// Which calls fail.
type Selector = Box<dyn Fn(&Call<'_>) -> bool + Send>;

/// Fails every call that `fails` selects with ENOSPC while it is set.
#[derive(Clone, Default)]
struct FailWhere(Arc<Mutex<Option<Selector>>>);

impl FailWhere {
    fn set(&self, fails: impl Fn(&Call<'_>) -> bool + Send + 'static) {
        *self.0.lock().unwrap() = Some(Box::new(fails));
    }
    fn clear(&self) {
        *self.0.lock().unwrap() = None;
    }
}

impl Hook for FailWhere {
    fn before(&mut self, call: &Call<'_>) -> std::io::Result<()> {
        match &*self.0.lock().unwrap() {
            Some(fails) if fails(call) => Err(std::io::Error::from_raw_os_error(libc::ENOSPC)),
            _ => Ok(()),
        }
    }
    fn after(&mut self, _: &Call<'_>, _: bool) {}
}

/// Runs `f` with `hook` installed on this thread.
fn hooked<T>(hook: &FailWhere, f: impl FnOnce() -> T) -> T {
    let previous = faults::set_hook(Some(Box::new(hook.clone())));
    let out = f();
    faults::set_hook(previous);
    out
}

fn superblock_write(call: &Call<'_>) -> bool {
    call.op == IoOp::Write && call.path.file_name().is_some_and(|n| n == "superblock")
}

#[test]
fn a_sync_writes_batch_whose_commit_fails_is_not_applied() {
    for delete in [false, true] {
        let dir = TempDir::new("sync-writes-fail");
        let path = dir.store();
        let options = Options { sync_writes: true, ..Options::create(4) };
        let hook = FailWhere::default();
        hooked(&hook, || {
            let store = Store::open(&path, &options).unwrap();
            put(&store, &IdBuf::new(["a", "b"]), &[1.0; 8]);
            let seq = store.checkpoint_seq();
            hook.set(superblock_write);
            let err = if delete {
                store.delete_batch(&IdBuf::new(["a"]).batch().unwrap()).unwrap_err()
            } else {
                store.put_batch(&IdBuf::new(["a", "c"]).batch().unwrap(), &[2.0; 8]).unwrap_err()
            };
            hook.clear();
            assert_eq!(err.kind(), ErrorKind::Io, "{err}");
            assert!(err.message().contains("No space left"), "{err}");
            // Readers never saw the batch.
            assert_eq!(store.get(b"a").unwrap(), vec![1.0; 4], "delete={delete}");
            assert_eq!(store.get(b"c").unwrap_err().kind(), ErrorKind::NotFound);
            assert_eq!(store.stats().unwrap().live_vectors, 2);
            assert_eq!(store.checkpoint_seq(), seq);
            // The handle refuses changes (a later commit would carry the
            // failed batch's slots), with the reason.
            let refused = store.put_batch(&IdBuf::new(["d"]).batch().unwrap(), &[3.0; 4]).unwrap_err();
            assert_eq!(refused.kind(), ErrorKind::Io);
            assert!(refused.message().contains("SYNC_WRITES batch could not be committed"), "{refused}");
            assert!(store.close().is_err(), "close cannot commit either");
        });
        let store = Store::open(&path, &Options::default()).unwrap();
        assert_eq!(store.get(b"a").unwrap(), vec![1.0; 4], "reopen does not revive the batch (delete={delete})");
        assert_eq!(store.get(b"c").unwrap_err().kind(), ErrorKind::NotFound);
        assert_eq!(store.stats().unwrap().live_vectors, 2);
    }
}

#[test]
fn a_failed_automatic_training_is_reported_and_retried_later() {
    let dir = TempDir::new("auto-train-fail");
    let options = Options { pq: Some(PqSettings { m: 4, bits: 8, train_size: 300 }), ..Options::create(16) };
    let hook = FailWhere::default();
    let mut rng = Rng(9);
    hooked(&hook, || {
        let store = Store::open(dir.store(), &options).unwrap();
        put(&store, &ids(0..299), &rng.vectors(299, 16));
        // Training creates the codebooks file of PQ generation 1 first.
        let attempts = Arc::new(Mutex::new(0));
        let counter = attempts.clone();
        hook.set(move |call| {
            let codebooks = call.op == IoOp::Create && call.path.to_string_lossy().contains("codebooks");
            if codebooks {
                *counter.lock().unwrap() += 1;
            }
            codebooks
        });
        put(&store, &ids(299..300), &rng.vectors(1, 16)); // the put succeeds: its batch is applied
        assert!(store.get(b"id-299").is_ok());
        let stats = store.stats().unwrap();
        assert!(!stats.pq_trained);
        assert_eq!(stats.auto_train_error, Some(ErrorKind::Io));
        let why = store.auto_train_error().unwrap();
        assert!(why.message().contains("automatic PQ training") && why.message().contains("No space left"), "{why}");
        assert_eq!(*attempts.lock().unwrap(), 1);
        // Not retried on every put ...
        put(&store, &ids(300..400), &rng.vectors(100, 16));
        assert_eq!(*attempts.lock().unwrap(), 1, "a lasting failure must not cost every put a training");
        // ... but after another pq_train_size vectors.
        hook.clear();
        put(&store, &ids(400..600), &rng.vectors(200, 16));
        let stats = store.stats().unwrap();
        assert!(stats.pq_trained, "retried once 600 vectors are stored");
        assert_eq!(stats.auto_train_error, None);
        assert!(store.auto_train_error().is_none());
        store.close().unwrap();
    });
}
