//! Runs the `omendb` binary on small generated files: every command, and the
//! error paths with their exit codes (docs/cli.md).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use omendb::{ErrorKind, IdBuf, Options, Store};

// ------------------------------------------------------------ helpers

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("omendb-cli-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn omendb<I, S>(args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let out: Output = Command::new(env!("CARGO_BIN_EXE_omendb")).args(args).output().expect("run omendb");
    Run {
        code: out.status.code().expect("exited, not killed"),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs and insists on exit code 0.
fn ok<I, S>(args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let run = omendb(args);
    assert_eq!(run.code, 0, "stdout:\n{}\nstderr:\n{}", run.stdout, run.stderr);
    assert!(run.stderr.is_empty(), "no progress bars or noise when stderr is not a terminal: {}", run.stderr);
    run
}

/// Runs and insists on exit code 0 and stderr of exactly `stderr` (what a
/// flag asked to have printed there).
fn ok_saying<I, S>(stderr: &str, args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let run = omendb(args);
    assert_eq!(run.code, 0, "stdout:\n{}\nstderr:\n{}", run.stdout, run.stderr);
    assert_eq!(run.stderr, stderr);
    run
}

/// Runs and insists on exit code `code` and a message containing `want`.
fn fails<I, S>(code: i32, want: &str, args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let run = omendb(args);
    assert_eq!(run.code, code, "stdout:\n{}\nstderr:\n{}", run.stdout, run.stderr);
    assert!(run.stderr.contains(want), "stderr lacks {want:?}:\n{}", run.stderr);
    run
}

/// Deterministic pseudo-random vectors in [-1, 1).
fn vectors(n: usize, dim: usize, seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n * dim)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

fn write_fvecs(path: &Path, data: &[f32], dim: usize) {
    let mut bytes = Vec::new();
    for row in data.chunks_exact(dim) {
        bytes.extend_from_slice(&(dim as i32).to_le_bytes());
        row.iter().for_each(|x| bytes.extend_from_slice(&x.to_le_bytes()));
    }
    std::fs::write(path, bytes).unwrap();
}

fn write_npy(path: &Path, data: &[f32], dim: usize) {
    write_npy_shaped(path, data, &format!("({}, {dim})", data.len() / dim));
}

fn write_npy_shaped(path: &Path, data: &[f32], shape: &str) {
    let dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
    let mut header = dict.into_bytes();
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(b' ');
    }
    header.push(b'\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(&header);
    data.iter().for_each(|x| bytes.extend_from_slice(&x.to_le_bytes()));
    std::fs::write(path, bytes).unwrap();
}

fn read_fvecs(path: &Path) -> (usize, Vec<f32>) {
    let bytes = std::fs::read(path).unwrap();
    let dim = i32::from_le_bytes(bytes[..4].try_into().unwrap()) as usize;
    let mut out = Vec::new();
    for row in bytes.chunks_exact(4 * (dim + 1)) {
        assert_eq!(i32::from_le_bytes(row[..4].try_into().unwrap()) as usize, dim);
        out.extend(row[4..].chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())));
    }
    (dim, out)
}

/// The data of a .npy file the tool wrote (header length from the file).
fn read_npy(path: &Path) -> (String, Vec<f32>) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = String::from_utf8(bytes[10..10 + header_len].to_vec()).unwrap();
    assert_eq!((10 + header_len) % 64, 0, "data aligned to 64 bytes");
    let data = bytes[10 + header_len..].chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
    (header, data)
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path).unwrap().lines().map(str::to_string).collect()
}

/// (query, rank, id, distance) of each line `search` printed.
fn hits(stdout: &str) -> Vec<(usize, usize, String, f32)> {
    stdout
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            assert_eq!(f.len(), 4, "line {l:?}");
            (f[0].parse().unwrap(), f[1].parse().unwrap(), f[2].to_string(), f[3].parse().unwrap())
        })
        .collect()
}

// ------------------------------------------------------------ commands

#[test]
fn import_fvecs_info_verify_export_round_trip() {
    let t = TempDir::new("roundtrip");
    let (store, input) = (t.path("store"), t.path("in.fvecs"));
    let data = vectors(300, 16, 1);
    write_fvecs(&input, &data, 16);

    let run = ok([
        "import".as_ref(),
        store.as_os_str(),
        input.as_os_str(),
        "--create".as_ref(),
        "--batch-size".as_ref(),
        "64".as_ref(),
    ]);
    assert!(run.stdout.contains("imported 300 vectors (dim 16)"), "{}", run.stdout);

    let info = ok(["info".as_ref(), store.as_os_str()]).stdout;
    for want in ["dim             16", "metric          l2", "live vectors    300", "dead slots      0", "pq              none"] {
        assert!(info.contains(want), "{want:?} in\n{info}");
    }
    assert!(!info.contains("calibration"), "no index, no calibration:\n{info}");
    let json = ok(["info".as_ref(), store.as_os_str(), "--json".as_ref()]).stdout;
    for want in ["\"dim\": 16", "\"metric\": \"l2\"", "\"live_vectors\": 300", "\"pq\": null", "\"raw_kept\": true", "\"calibration\": []"] {
        assert!(json.contains(want), "{want:?} in {json}");
    }

    let verify = ok(["verify".as_ref(), store.as_os_str()]).stdout;
    assert!(verify.starts_with("ok: every checksum"), "{verify}");
    assert!(verify.contains("live vectors     300"), "{verify}");

    // Export to both formats: bit-exact, in import order, IDs from row numbers.
    let out = t.path("out.fvecs");
    let run = ok(["export".as_ref(), store.as_os_str(), out.as_os_str()]);
    assert!(run.stdout.contains("exported 300 vectors"), "{}", run.stdout);
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&input).unwrap());
    let ids = lines(&t.path("out.ids"));
    assert_eq!(ids, (0..300).map(|i| i.to_string()).collect::<Vec<_>>());

    let npy = t.path("out.npy");
    let ids_path = t.path("npy-ids.txt");
    ok(["export".as_ref(), store.as_os_str(), npy.as_os_str(), "--ids".as_ref(), ids_path.as_os_str()]);
    let (header, exported) = read_npy(&npy);
    assert!(header.contains("'shape': (300, 16)") && header.contains("'<f4'"), "{header}");
    assert_eq!(exported, data);
    assert_eq!(lines(&ids_path).len(), 300);
    assert!(!t.path("out.npy.tmp").exists(), "no temporary file left");

    // The store is untouched by the read-only commands.
    assert!(ok(["info".as_ref(), store.as_os_str()]).stdout.contains("checkpoint seq  2"));
}

#[test]
fn import_npy_with_id_file_then_search() {
    let t = TempDir::new("npy");
    let (store, input, ids) = (t.path("store"), t.path("in.npy"), t.path("ids.txt"));
    let dim = 8;
    let data = vectors(60, dim, 2);
    write_npy(&input, &data, dim);
    let names: Vec<String> = (0..60).map(|i| format!("doc-{i:03}")).collect();
    // CRLF line ends are accepted.
    std::fs::write(&ids, names.iter().map(|n| format!("{n}\r\n")).collect::<String>()).unwrap();
    ok([
        "import".as_ref(),
        store.as_os_str(),
        input.as_os_str(),
        "--ids".as_ref(),
        ids.as_os_str(),
        "--create".as_ref(),
        "--metric".as_ref(),
        "cosine".as_ref(),
    ]);
    assert!(ok(["info".as_ref(), store.as_os_str()]).stdout.contains("metric          cosine"));

    // Query with rows 5, 17 and 42 of the data: each finds itself first.
    let queries = t.path("q.fvecs");
    let picked: Vec<f32> = [5, 17, 42].iter().flat_map(|&r| data[r * dim..(r + 1) * dim].to_vec()).collect();
    write_fvecs(&queries, &picked, dim);
    // (`--huge-pages` maps the vectors for 2 MiB pages: the same answers.)
    for extra in [None, Some("--exact"), Some("--huge-pages")] {
        let mut args: Vec<&std::ffi::OsStr> = vec!["search".as_ref(), store.as_os_str(), queries.as_os_str(), "-k".as_ref(), "4".as_ref()];
        args.extend(extra.map(std::ffi::OsStr::new));
        let found = hits(&ok(args).stdout);
        assert_eq!(found.len(), 12);
        for (q, row) in [5, 17, 42].into_iter().enumerate() {
            let mine: Vec<_> = found.iter().filter(|h| h.0 == q).collect();
            assert_eq!(mine.iter().map(|h| h.1).collect::<Vec<_>>(), vec![1, 2, 3, 4]);
            assert_eq!(mine[0].2, names[row]);
            assert!(mine[0].3.abs() < 1e-5, "cosine distance to itself: {}", mine[0].3);
            assert!(mine.windows(2).all(|w| w[0].3 <= w[1].3), "ascending distances");
        }
    }
    // A single 1-D .npy vector is one query.
    let one = t.path("one.npy");
    write_npy_shaped(&one, &data[..dim], "(8,)");
    let found = hits(&ok(["search".as_ref(), store.as_os_str(), one.as_os_str(), "-k".as_ref(), "1".as_ref()]).stdout);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].2, "doc-000");
}

#[test]
fn search_with_filter_ids_returns_only_listed_ids() {
    let t = TempDir::new("filter");
    let (store, input) = (t.path("store"), t.path("in.fvecs"));
    let dim = 8;
    let data = vectors(200, dim, 21);
    write_fvecs(&input, &data, dim);
    ok(["import".as_ref(), store.as_os_str(), input.as_os_str(), "--create".as_ref()]);
    // The allow-list is an export's ID file, cut to every 7th ID, plus an ID
    // the store lacks (ignored).
    let out = t.path("all.fvecs");
    ok(["export".as_ref(), store.as_os_str(), out.as_os_str()]);
    let allowed: Vec<String> = lines(&t.path("all.ids")).into_iter().filter(|id| id.parse::<usize>().unwrap() % 7 == 0).collect();
    let list = t.path("allowed.txt");
    std::fs::write(&list, allowed.iter().map(|id| format!("{id}\n")).collect::<String>() + "not-in-store\n").unwrap();

    let queries = t.path("q.fvecs");
    let picked: Vec<f32> = [3, 14, 100].iter().flat_map(|&r| data[r * dim..(r + 1) * dim].to_vec()).collect();
    write_fvecs(&queries, &picked, dim);
    let k = 5;
    for extra in [None, Some("--exact")] {
        let mut args: Vec<&std::ffi::OsStr> =
            vec!["search".as_ref(), store.as_os_str(), queries.as_os_str(), "-k".as_ref(), "5".as_ref(), "--filter-ids".as_ref(), list.as_os_str()];
        args.extend(extra.map(std::ffi::OsStr::new));
        let found = hits(&ok(args).stdout);
        for q in 0..3 {
            // Brute force over the allowed rows: the same IDs in the same order.
            let query = &picked[q * dim..(q + 1) * dim];
            let mut want: Vec<(f32, String)> = allowed
                .iter()
                .map(|id| {
                    let r: usize = id.parse().unwrap();
                    (data[r * dim..(r + 1) * dim].iter().zip(query).map(|(a, b)| (a - b) * (a - b)).sum(), id.clone())
                })
                .collect();
            want.sort_by(|a, b| a.0.total_cmp(&b.0));
            let got: Vec<String> = found.iter().filter(|h| h.0 == q).map(|h| h.2.clone()).collect();
            assert_eq!(got, want[..k].iter().map(|w| w.1.clone()).collect::<Vec<_>>(), "query {q}");
        }
    }
    // Row 14 is allowed and finds itself; row 3 is not and does not.
    let found = hits(&ok(["search".as_ref(), store.as_os_str(), queries.as_os_str(), "-k".as_ref(), "200".as_ref(), "--filter-ids".as_ref(), list.as_os_str()]).stdout);
    assert_eq!(found.iter().filter(|h| h.0 == 0).count(), allowed.len(), "every allowed ID, no other");
    assert!(found.iter().all(|h| allowed.contains(&h.2)));
    assert_eq!(found.iter().find(|h| h.0 == 1).unwrap().2, "14");

    // An empty list allows nothing; a malformed one is a file error.
    std::fs::write(&list, "").unwrap();
    let run = ok(["search".as_ref(), store.as_os_str(), queries.as_os_str(), "--filter-ids".as_ref(), list.as_os_str()]);
    assert_eq!(run.stdout, "", "an empty allow-list finds nothing");
    std::fs::write(&list, "0\n\n7\n").unwrap();
    fails(3, "line 2", ["search", store.to_str().unwrap(), queries.to_str().unwrap(), "--filter-ids", list.to_str().unwrap()]);
    fails(3, "No such file", ["search", store.to_str().unwrap(), queries.to_str().unwrap(), "--filter-ids", t.path("absent").to_str().unwrap()]);
}

#[test]
fn export_after_upserts_and_deletes_writes_each_live_vector_once() {
    let t = TempDir::new("upsert");
    let (store, first, second) = (t.path("store"), t.path("a.fvecs"), t.path("b.fvecs"));
    let dim = 4;
    let a = vectors(100, dim, 3);
    let b = vectors(40, dim, 4);
    write_fvecs(&first, &a, dim);
    write_fvecs(&second, &b, dim);
    let import = |file: &Path, extra: &[&str]| {
        let mut args = vec!["import".to_string(), store.display().to_string(), file.display().to_string()];
        args.extend(extra.iter().map(|s| s.to_string()));
        ok(args)
    };
    import(&first, &["--create", "--id-prefix", "v"]);
    // --create on an existing store keeps its settings, and says so when they differ.
    let again = omendb([
        "import".as_ref(),
        store.as_os_str(),
        t.path("none.fvecs").as_os_str(),
        "--create".as_ref(),
        "--metric".as_ref(),
        "ip".as_ref(),
    ]);
    assert_eq!(again.code, 3, "the missing file is found first: {}", again.stderr);
    write_fvecs(&t.path("one.fvecs"), &a[..dim], dim);
    let run = omendb([
        "import".as_ref(),
        store.as_os_str(),
        t.path("one.fvecs").as_os_str(),
        "--create".as_ref(),
        "--metric".as_ref(),
        "ip".as_ref(),
        "--id-prefix".as_ref(),
        "v".as_ref(),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("already exists (metric l2, pq_m 0)"), "{}", run.stderr);
    // Rows 0..40 of `b` replace v30..v69.
    import(&second, &["--id-prefix", "v", "--id-offset", "30"]);
    {
        let s = Store::open(&store, &Options::default()).unwrap();
        let deleted = s.delete_batch(&IdBuf::new(["v0", "v31", "v99", "missing"]).batch().unwrap()).unwrap();
        assert_eq!(deleted, 3);
        s.close().unwrap();
    }
    let info = ok(["info".as_ref(), store.as_os_str()]).stdout;
    // Dead: v30..v69 replaced, v0 replaced by the same vector, v0, v31, v99 deleted.
    assert!(info.contains("live vectors    97") && info.contains("dead slots      44"), "{info}");

    let out = t.path("all.fvecs");
    ok(["export".as_ref(), store.as_os_str(), out.as_os_str()]);
    let (d, exported) = read_fvecs(&out);
    assert_eq!(d, dim);
    let ids = lines(&t.path("all.ids"));
    assert_eq!(ids.len(), 97);
    let unique: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), 97, "each ID once");
    for (id, row) in ids.iter().zip(exported.chunks_exact(dim)) {
        let n: usize = id[1..].parse().unwrap();
        assert!(!["v0", "v31", "v99"].contains(&id.as_str()));
        let want = if (30..70).contains(&n) { &b[(n - 30) * dim..(n - 29) * dim] } else { &a[n * dim..(n + 1) * dim] };
        assert_eq!(row, want, "{id} holds its latest vector");
    }

    // Re-importing the export into a new store gives the same live set.
    let copy = t.path("copy");
    ok([
        "import".as_ref(),
        copy.as_os_str(),
        out.as_os_str(),
        "--ids".as_ref(),
        t.path("all.ids").as_os_str(),
        "--create".as_ref(),
    ]);
    let s = Store::open(&copy, &Options { read_only: true, ..Options::default() }).unwrap();
    assert_eq!(s.stats().unwrap().live_vectors, 97);
    assert_eq!(s.get(b"v45").unwrap(), b[15 * dim..16 * dim]);
}

#[test]
fn train_then_pq_search_with_rerank() {
    let t = TempDir::new("train");
    let (store, input) = (t.path("store"), t.path("in.fvecs"));
    let dim = 16;
    let data = vectors(600, dim, 5);
    write_fvecs(&input, &data, dim);
    ok([
        "import".as_ref(),
        store.as_os_str(),
        input.as_os_str(),
        "--create".as_ref(),
        "--pq-m".as_ref(),
        "4".as_ref(),
        "--pq-bits".as_ref(),
        "8".as_ref(),
    ]);
    let info = ok(["info".as_ref(), store.as_os_str()]).stdout;
    assert!(info.contains("pq              m=4 bits=8 train_size=0 drop_raw=no trained=no"), "{info}");

    let run = ok(["train".as_ref(), store.as_os_str(), "--threads".as_ref(), "2".as_ref()]);
    assert!(run.stdout.contains("trained PQ (m=4, bits=8) on 600 vectors"), "{}", run.stdout);
    let info = ok(["info".as_ref(), store.as_os_str()]).stdout;
    assert!(info.contains("trained=yes"), "{info}");
    assert!(ok(["verify".as_ref(), store.as_os_str()]).stdout.starts_with("ok"));

    let queries = t.path("q.npy");
    write_npy(&queries, &data[..10 * dim], dim);
    let found = hits(
        &ok(["search".as_ref(), store.as_os_str(), queries.as_os_str(), "-k".as_ref(), "3".as_ref(), "--rerank".as_ref(), "50".as_ref()])
            .stdout,
    );
    assert_eq!(found.len(), 30);
    for q in 0..10 {
        let top = found.iter().find(|h| h.0 == q && h.1 == 1).unwrap();
        assert_eq!(top.2, q.to_string(), "re-ranked search finds the query itself");
        assert!(top.3.abs() < 1e-4);
    }
    // Plain ADC search runs too (approximate distances).
    let adc = hits(&ok(["search".as_ref(), store.as_os_str(), queries.as_os_str(), "-k".as_ref(), "5".as_ref()]).stdout);
    assert_eq!(adc.len(), 50);
}

#[test]
fn compressed_store_trains_but_cannot_export() {
    let t = TempDir::new("dropraw");
    let (store, input) = (t.path("store"), t.path("in.fvecs"));
    write_fvecs(&input, &vectors(300, 8, 6), 8);
    ok([
        "import",
        store.to_str().unwrap(),
        input.to_str().unwrap(),
        "--create",
        "--pq-m",
        "2",
        "--pq-bits",
        "4",
        "--drop-raw",
    ]);
    ok(["train", store.to_str().unwrap()]);
    let info = ok(["info", store.to_str().unwrap()]).stdout;
    assert!(info.contains("raw vectors     dropped"), "{info}");
    assert!(info.contains("bits=4") && info.contains("drop_raw=yes"), "{info}");
    fails(11, "keeps only PQ codes", ["export", store.to_str().unwrap(), t.path("x.npy").to_str().unwrap()]);
    let q = t.path("q.fvecs");
    write_fvecs(&q, &vectors(1, 8, 7), 8);
    fails(11, "OMEN_ERR_INVALID_ARGUMENT", ["search", store.to_str().unwrap(), q.to_str().unwrap(), "--exact"]);
    assert_eq!(hits(&ok(["search", store.to_str().unwrap(), q.to_str().unwrap(), "-k", "2"]).stdout).len(), 2);
}

/// `n` vectors around 40 centres (each value +-0.1): the shape IVF is for.
fn clustered(n: usize, dim: usize, seed: u64) -> Vec<f32> {
    let centres = vectors(40, dim, 100);
    let noise = vectors(n, dim, seed);
    let mut out = Vec::with_capacity(n * dim);
    for (i, row) in noise.chunks_exact(dim).enumerate() {
        let c = (i * 17 + seed as usize) % 40;
        out.extend(row.iter().zip(&centres[c * dim..(c + 1) * dim]).map(|(x, m)| m + 0.1 * x));
    }
    out
}

/// recall@10 of `found` against `exact`, both as `hits` parses them.
fn recall(found: &[(usize, usize, String, f32)], exact: &[(usize, usize, String, f32)]) -> f64 {
    let got: std::collections::HashSet<(usize, &str)> = found.iter().map(|h| (h.0, h.2.as_str())).collect();
    exact.iter().filter(|h| got.contains(&(h.0, h.2.as_str()))).count() as f64 / exact.len() as f64
}

#[test]
fn ivf_store_searches_by_recall_target_or_nprobe() {
    let t = TempDir::new("ivf");
    let (store, input, queries) = (t.path("store"), t.path("in.fvecs"), t.path("q.fvecs"));
    let (s, q) = (store.to_str().unwrap(), queries.to_str().unwrap());
    let (n, dim) = (4000, 16);
    write_fvecs(&input, &clustered(n, dim, 40), dim);
    write_fvecs(&queries, &clustered(100, dim, 41), dim);
    ok(["import", s, input.to_str().unwrap(), "--create", "--pq-m", "8", "--pq-bits", "4", "--ivf-lists", "0"]);
    ok(["train", s]);
    let lists = |path: &Path| Store::open(path, &Options { read_only: true, ..Options::default() }).unwrap().stats().unwrap().ivf_lists;
    // About sqrt(n) (round(sqrt(4000)) = 63), at most n/64: 62.
    assert_eq!(lists(&store), 62, "--ivf-lists 0: about sqrt(n) lists");
    let info = ok(["info", s]).stdout;
    assert!(info.contains("ivf index       62 lists, one stage (the lists hold whole 4-byte codes)"), "{info}");
    // The calibration, a row a point, as the library keeps it.
    let points = Store::open(&store, &Options { read_only: true, ..Options::default() }).unwrap().calibration().unwrap();
    assert!(points.len() > 1);
    let table: Vec<&str> = info.lines().skip_while(|l| !l.starts_with("calibration")).skip(1).take(points.len()).collect();
    for (row, p) in table.iter().zip(&points) {
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cells, [format!("{:.4}", p.recall), p.nprobe.to_string(), p.rerank_per_k.to_string()], "{info}");
    }
    assert_eq!(table.len(), points.len(), "{info}");
    let info = ok(["info", s, "--json"]).stdout;
    assert!(info.contains("\"ivf_lists\": 62, \"ivf_stages\": 1, \"ivf_list_code_bytes\": 4}"), "{info}");
    let first = &points[0];
    let json_point = format!("\"calibration\": [{{\"recall\": {}, \"nprobe\": {}, \"rerank_per_k\": {}, \"cost\": {}}}", first.recall, first.nprobe, first.rerank_per_k, first.cost);
    assert!(info.contains(&json_point) && info.matches("\"rerank_per_k\"").count() == points.len(), "{info}");

    let search = |extra: &[&str]| {
        let mut args = vec!["search", s, q, "-k", "10"];
        args.extend(extra);
        hits(&ok(args).stdout)
    };
    let exact = search(&["--exact"]);
    assert_eq!(exact.len(), 1000);
    let default = recall(&search(&[]), &exact);
    assert!(default >= 0.9, "default recall@10 {default}");
    let one = recall(&search(&["--nprobe", "1"]), &exact);
    assert!(one < default, "--nprobe 1 gives {one}, the default {default}");
    let (low, high) = (recall(&search(&["--recall", "0.5"]), &exact), recall(&search(&["--recall", "0.99"]), &exact));
    assert!(low < high && high >= 0.95, "--recall 0.5 gives {low}, 0.99 {high}");
    let every = recall(&search(&["--nprobe", "100000", "--rerank", "1000"]), &exact);
    assert_eq!(every, 1.0, "every list and a deep re-rank");
    // --explain: the library's plan on stderr, the hits unchanged on stdout.
    let how = Store::open(&store, &Options { read_only: true, ..Options::default() })
        .unwrap()
        .search_plan(10, &omendb::SearchParams { target_recall: 0.9, ..Default::default() })
        .unwrap();
    let want = format!(
        "search: IVF, {} lists a query, {} candidates re-ranked exactly, calibrated recall@10 {:.4}\n",
        how.nprobe,
        how.rerank,
        how.calibrated_recall.unwrap()
    );
    let explained = ok_saying(&want, ["search", s, q, "-k", "10", "--recall", "0.9", "--explain"]);
    assert_eq!(hits(&explained.stdout), search(&["--recall", "0.9"]));
    ok_saying("search: IVF, 3 lists a query, ranked by the codes (no re-rank)\n", ["search", s, q, "--nprobe", "3", "--explain"]);
    ok_saying("search: exact distances\n", ["search", s, q, "--exact", "--explain"]);
    // With --filter-ids, the filtered plan: two IDs are searched exactly.
    let two = t.path("two.txt");
    std::fs::write(&two, "1\n2\n").unwrap();
    ok_saying("search: exact distances\n", ["search", s, q, "--filter-ids", two.to_str().unwrap(), "--explain"]);

    // --query-threads shares each query's work: the same hits.
    assert_eq!(search(&["--recall", "0.9", "--query-threads", "4"]), search(&["--recall", "0.9"]));
    fails(2, "invalid value '0' for '--query-threads <N>'", ["search", s, q, "--query-threads", "0"]);
    fails(2, "invalid value '1025' for '--query-threads <N>'", ["search", s, q, "--query-threads", "1025"]);

    // Refused before the store is touched: exit 2, saying why.
    fails(2, "\"1.5\" is not a recall in (0, 1]", ["search", s, q, "--recall", "1.5"]);
    fails(2, "\"0\" is not a recall in (0, 1]", ["search", s, q, "--recall", "0"]);
    fails(2, "is not a recall in (0, 1]", ["search", s, q, "--recall", "nan"]);
    fails(2, "cannot be used with", ["search", s, q, "--recall", "0.9", "--nprobe", "4"]);
    fails(2, "invalid value '-1' for '--nprobe <N>'", ["search", s, q, "--nprobe=-1"]);

    // --ivf-lists N is honoured; it needs --pq-m (usage); with --drop-raw the
    // codes alone are searched.
    let asked = t.path("asked");
    ok(["import", asked.to_str().unwrap(), input.to_str().unwrap(), "--create", "--pq-m", "8", "--pq-bits", "4", "--ivf-lists", "20"]);
    ok(["train", asked.to_str().unwrap()]);
    assert_eq!(lists(&asked), 20);
    let other = t.path("other");
    let o = other.to_str().unwrap();
    fails(2, "--pq-m", ["import", o, input.to_str().unwrap(), "--create", "--ivf-lists", "8"]);
    assert!(!other.exists(), "refused settings create nothing");
    ok(["import", o, input.to_str().unwrap(), "--create", "--pq-m", "16", "--drop-raw", "--ivf-lists", "8"]);
    ok(["train", o]);
    let info = ok(["info", o]).stdout;
    assert!(info.contains("ivf index       8 lists") && info.contains("dropped (PQ codes only)"), "{info}");
    let found = recall(&hits(&ok(["search", o, q, "-k", "10"]).stdout), &exact);
    assert!(found >= 0.8, "--drop-raw --ivf-lists: recall@10 {found}");
}

/// `calibrate` measures the targets on the host's queries (here halfway
/// between stored vectors of two clusters, like none of them) and commits
/// them: it prints the library's new points, `info` then says they come from
/// those queries, and refusals (files, dimension, values, a store without
/// IVF) exit non-zero and leave the calibration in use.
#[test]
fn calibrate_on_host_queries_then_info_reports_them() {
    let t = TempDir::new("calibrate");
    let (store, input, queries) = (t.path("store"), t.path("in.fvecs"), t.path("q.npy"));
    let (s, q) = (store.to_str().unwrap(), queries.to_str().unwrap());
    let (n, dim, nq) = (4000, 16, 300);
    let data = clustered(n, dim, 60);
    write_fvecs(&input, &data, dim);
    // Rows i and i + 1 lie around different centres (see `clustered`).
    let halfway: Vec<f32> = (0..nq)
        .flat_map(|i| (0..dim).map(move |d| (i, d)))
        .map(|(i, d)| (data[i * dim + d] + data[(i + 1) * dim + d]) / 2.0)
        .collect();
    write_npy(&queries, &halfway, dim);
    ok(["import", s, input.to_str().unwrap(), "--create", "--pq-m", "8", "--pq-bits", "4", "--ivf-lists", "0"]);
    ok(["train", s]);
    let library = || {
        let store = Store::open(&store, &Options { read_only: true, ..Options::default() }).unwrap();
        (store.stats().unwrap().calibration_queries, store.calibration().unwrap())
    };
    let (queries_before, trained) = library();
    assert_eq!(queries_before, 0);
    let info = ok(["info", s]).stdout;
    assert!(info.contains("calibrated on   the store's own vectors (training)"), "{info}");
    assert!(ok(["info", s, "--json"]).stdout.contains("\"calibration_queries\": 0,"));

    let run = ok(["calibrate", s, "--queries", q]);
    let (used, points) = library();
    assert_eq!(used, nq as u32);
    assert_ne!(points, trained, "the calibration did not change");
    // The points, a row each as `info` prints them, then the summary.
    let rows = |text: &str| -> Vec<Vec<String>> {
        let lines: Vec<&str> = text.lines().skip_while(|l| !l.starts_with("calibration ")).skip(1).collect();
        lines.iter().take_while(|l| l.starts_with(' ')).map(|l| l.split_whitespace().map(str::to_string).collect()).collect()
    };
    let want: Vec<Vec<String>> =
        points.iter().map(|p| vec![format!("{:.4}", p.recall), p.nprobe.to_string(), p.rerank_per_k.to_string()]).collect();
    assert_eq!(rows(&run.stdout), want, "{}", run.stdout);
    let summary = run.stdout.lines().last().unwrap();
    assert!(summary.starts_with(&format!("calibrated the IVF recall targets of {s} on {nq} queries of {q} in ")), "{summary}");
    assert!(summary.ends_with(&format!(": {} settings kept; checkpoint 4", points.len())), "{summary}");

    let info = ok(["info", s]).stdout;
    assert!(info.contains(&format!("calibrated on   {nq} host queries (omendb calibrate)")), "{info}");
    assert_eq!(rows(&info), want, "{info}");
    let json = ok(["info", s, "--json"]).stdout;
    let json_points: Vec<String> = points
        .iter()
        .map(|p| format!("{{\"recall\": {}, \"nprobe\": {}, \"rerank_per_k\": {}, \"cost\": {}}}", p.recall, p.nprobe, p.rerank_per_k, p.cost))
        .collect();
    let json_points = format!("\"calibration\": [{}], \"calibration_queries\": {nq},", json_points.join(", "));
    assert!(json.contains(&json_points), "{json}");

    // --json; the same queries as .fvecs give the same calibration.
    let fvecs = t.path("q.fvecs");
    write_fvecs(&fvecs, &halfway, dim);
    let json = ok(["calibrate", s, "--queries", fvecs.to_str().unwrap(), "--json"]).stdout;
    assert!(json.starts_with(&format!("{{\"store\": \"{s}\", \"queries_file\": \"{}\", \"calibration_queries\": {nq}, \"checkpoint_seq\": 5, ", fvecs.display())), "{json}");
    assert!(json.trim_end().ends_with(&format!("{}}}", &json_points[..json_points.find("], ").unwrap() + 1])), "{json}");
    assert_eq!(library(), (nq as u32, points.clone()));

    // Refused: the calibration in use stays.
    fails(3, "No such file", ["calibrate", s, "--queries", t.path("absent.npy").to_str().unwrap()]);
    let garbage = t.path("garbage.npy");
    std::fs::write(&garbage, b"hello world, not numpy").unwrap();
    fails(3, "not a .npy file", ["calibrate", s, "--queries", garbage.to_str().unwrap()]);
    let text = t.path("q.csv");
    std::fs::write(&text, "1,2,3\n").unwrap();
    fails(3, "pass --format", ["calibrate", s, "--queries", text.to_str().unwrap()]);
    fails(2, "--queries <FILE>", ["calibrate", s]);
    let narrow = t.path("narrow.npy");
    write_npy(&narrow, &halfway[..nq * 8], 8);
    fails(12, "the queries in", ["calibrate", s, "--queries", narrow.to_str().unwrap()]);
    let mut bad = halfway.clone();
    bad[7 * dim + 3] = f32::NAN;
    let nan = t.path("nan.npy");
    write_npy(&nan, &bad, dim);
    fails(11, "OMEN_ERR_INVALID_ARGUMENT", ["calibrate", s, "--queries", nan.to_str().unwrap()]);
    let none = t.path("none.npy");
    write_npy_shaped(&none, &[], &format!("(0, {dim})"));
    fails(11, "0 queries", ["calibrate", s, "--queries", none.to_str().unwrap()]);
    let many = t.path("many.npy");
    write_npy(&many, &vec![0.5; 100_001 * dim], dim);
    fails(11, "holds 100001 queries; a calibration takes 1 to 100000", ["calibrate", s, "--queries", many.to_str().unwrap()]);
    assert_eq!(library(), (nq as u32, points));

    // A store without an IVF index has nothing to calibrate.
    let plain = t.path("plain");
    ok(["import", plain.to_str().unwrap(), input.to_str().unwrap(), "--create", "--pq-m", "8"]);
    ok(["train", plain.to_str().unwrap()]);
    fails(11, "without an IVF index", ["calibrate", plain.to_str().unwrap(), "--queries", q]);
    fails(13, "OMEN_ERR_NOT_FOUND", ["calibrate", t.path("nowhere").to_str().unwrap(), "--queries", q]);
}

// ------------------------------------------------------------ errors

#[test]
fn verify_reports_damage_with_a_nonzero_exit() {
    let t = TempDir::new("damage");
    let (store, input) = (t.path("store"), t.path("in.fvecs"));
    write_fvecs(&input, &vectors(50, 8, 8), 8);
    ok(["import", store.to_str().unwrap(), input.to_str().unwrap(), "--create"]);
    let vectors_file = std::fs::read_dir(&store)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_str().unwrap().starts_with("vectors."))
        .expect("a vectors file");
    let mut bytes = std::fs::read(&vectors_file).unwrap();
    bytes[4096 + 40 * 32 + 5] ^= 0x10; // a bit of vector 40
    std::fs::write(&vectors_file, &bytes).unwrap();

    let run = fails(15, "OMEN_ERR_CORRUPT", ["verify", store.to_str().unwrap()]);
    assert!(run.stderr.contains("damaged"), "{}", run.stderr);
    assert!(run.stdout.is_empty());
    // Plain info opens without a full verification: it still works.
    ok(["info", store.to_str().unwrap()]);
    // Reading the damaged vector is refused, not returned.
    fails(15, "OMEN_ERR_CORRUPT", ["export", store.to_str().unwrap(), t.path("x.fvecs").to_str().unwrap()]);
    assert!(!t.path("x.fvecs").exists() && !t.path("x.fvecs.tmp").exists() && !t.path("x.ids").exists());
}

/// A damaged index file (an IVF store's codebooks): `verify` fails (15)
/// saying every vector is there and how to rebuild; `info` and `search`
/// still work (exact); `rebuild-index` restores it, and `verify` passes.
#[test]
fn damaged_index_is_reported_and_rebuilt() {
    let t = TempDir::new("index-damage");
    let (store, input, queries) = (t.path("store"), t.path("in.fvecs"), t.path("q.fvecs"));
    let (s, q) = (store.to_str().unwrap(), queries.to_str().unwrap());
    let (n, dim) = (3000, 16);
    write_fvecs(&input, &clustered(n, dim, 50), dim);
    write_fvecs(&queries, &clustered(50, dim, 51), dim);
    ok(["import", s, input.to_str().unwrap(), "--create", "--pq-m", "8", "--pq-bits", "4", "--ivf-lists", "0"]);
    ok(["train", s]);
    let exact = hits(&ok(["search", s, q, "-k", "10", "--exact"]).stdout);
    let codebooks = std::fs::read_dir(&store)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_str().unwrap().starts_with("codebooks."))
        .expect("a codebooks file");
    let mut bytes = std::fs::read(&codebooks).unwrap();
    let middle = 4096 + (bytes.len() - 4096) / 2;
    bytes[middle] ^= 0x10;
    std::fs::write(&codebooks, &bytes).unwrap();

    let run = fails(15, "OMEN_ERR_CORRUPT", ["verify", s]);
    assert!(run.stderr.contains("search index is damaged") && run.stderr.contains("codebooks."), "{}", run.stderr);
    assert!(run.stderr.contains(&format!("every vector ({n} live) was verified")), "{}", run.stderr);
    assert!(run.stderr.contains("omendb rebuild-index"), "{}", run.stderr);
    let info = ok(["info", s]).stdout;
    assert!(info.contains("index           DAMAGED") && info.contains("trained=no"), "{info}");
    let json = ok(["info", s, "--json"]).stdout;
    assert!(json.contains("\"index_damage\": \"") && json.contains("codebooks."), "{json}");
    // Searches are exact meanwhile, whatever they ask of the index.
    assert_eq!(hits(&ok(["search", s, q, "-k", "10", "--nprobe", "1"]).stdout), exact);

    let run = ok(["rebuild-index", s]);
    assert!(run.stdout.contains("replaced the damaged index") && run.stdout.contains("IVF lists"), "{}", run.stdout);
    ok(["verify", s]);
    let json = ok(["info", s, "--json"]).stdout;
    assert!(json.contains("\"index_damage\": null") && json.contains("\"trained\": true"), "{json}");
    let found = recall(&hits(&ok(["search", s, q, "-k", "10"]).stdout), &exact);
    assert!(found >= 0.9, "recall@10 {found} after the rebuild");
    assert!(!codebooks.exists(), "the damaged codebooks file is still there");
    // Without PQ settings there is no index to rebuild (11).
    let plain = t.path("plain");
    ok(["import", plain.to_str().unwrap(), input.to_str().unwrap(), "--create"]);
    fails(11, "without PQ settings", ["rebuild-index", plain.to_str().unwrap()]);
}

#[test]
fn store_errors_map_to_status_exit_codes() {
    let t = TempDir::new("errors");
    let (store, input) = (t.path("store"), t.path("in.fvecs"));
    write_fvecs(&input, &vectors(20, 8, 9), 8);
    let s = store.to_str().unwrap();

    // 13: no store, without --create (with a hint).
    fails(13, "pass --create", ["import", s, input.to_str().unwrap()]);
    fails(13, "OMEN_ERR_NOT_FOUND", ["info", s]);
    fails(13, "OMEN_ERR_NOT_FOUND", ["verify", t.path("nowhere").to_str().unwrap()]);
    // 11: bad creation settings (pq_m must divide dim) create nothing.
    fails(11, "pq_m (3) must divide dim (8)", ["import", s, input.to_str().unwrap(), "--create", "--pq-m", "3"]);
    assert!(!store.join("superblock").exists());

    ok(["import", s, input.to_str().unwrap(), "--create"]);
    // 12: the file's dimension differs from the store's, or from --dim.
    let wide = t.path("wide.fvecs");
    write_fvecs(&wide, &vectors(3, 9, 10), 9);
    fails(12, "OMEN_ERR_DIMENSION", ["import", s, wide.to_str().unwrap()]);
    fails(12, "OMEN_ERR_DIMENSION", ["search", s, wide.to_str().unwrap()]);
    fails(12, "--dim is 4", ["import", t.path("other").to_str().unwrap(), input.to_str().unwrap(), "--create", "--dim", "4"]);
    // 11: training a store created without PQ.
    fails(11, "without PQ", ["train", s]);

    // 16: another writer holds the store; read-only commands still work.
    {
        let _writer = Store::open(&store, &Options::default()).unwrap();
        fails(16, "OMEN_ERR_LOCKED", ["import", s, input.to_str().unwrap()]);
        fails(16, "OMEN_ERR_LOCKED", ["train", s]);
        ok(["info", s]);
        ok(["verify", s]);
    }
    wait_for_writer_lock(&store);

    // 11: a non-finite value: nothing of the import is committed.
    let mut bad = vectors(2500, 8, 11);
    bad[1700 * 8 + 3] = f32::NAN;
    let nan = t.path("nan.fvecs");
    write_fvecs(&nan, &bad, 8);
    let run = fails(11, "NaN", ["import", s, nan.to_str().unwrap(), "--id-prefix", "n"]);
    assert!(run.stderr.contains("put rows 1000..2000"), "{}", run.stderr);
    let info = ok(["info", s]).stdout;
    assert!(info.contains("live vectors    20"), "the failed import left the store at its checkpoint:\n{info}");
    assert!(ok(["verify", s]).stdout.starts_with("ok"));
}

/// Waits until a writer can open `store`. A writer this process closed can
/// still hold the store's lock for an instant: a child process that another
/// test spawns inherits the lock's descriptor between its fork and its exec
/// (docs/durability.md, "Known limitations"); a CLI writer started then
/// would answer OMEN_ERR_LOCKED.
fn wait_for_writer_lock(store: &Path) {
    for _ in 0..500 {
        match Store::open(store, &Options::default()) {
            Ok(writer) => return writer.close().unwrap(),
            Err(e) if e.kind() == ErrorKind::Locked => std::thread::sleep(std::time::Duration::from_millis(10)),
            Err(e) => panic!("open {}: {e}", store.display()),
        }
    }
    panic!("{} stayed locked for 5 s", store.display());
}

#[test]
fn file_errors_exit_3_and_usage_errors_exit_2() {
    let t = TempDir::new("files");
    let store = t.path("store");
    let s = store.to_str().unwrap();
    let input = t.path("in.npy");
    write_npy(&input, &vectors(10, 4, 12), 4);

    // Malformed vector files.
    let truncated = t.path("cut.npy");
    let bytes = std::fs::read(&input).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() - 3]).unwrap();
    fails(3, "truncated", ["import", s, truncated.to_str().unwrap(), "--create"]);
    let garbage = t.path("garbage.npy");
    std::fs::write(&garbage, b"hello world, not numpy").unwrap();
    fails(3, "not a .npy file", ["import", s, garbage.to_str().unwrap(), "--create"]);
    let text = t.path("v.csv");
    std::fs::write(&text, "1,2,3\n").unwrap();
    fails(3, "pass --format", ["import", s, text.to_str().unwrap(), "--create"]);
    fails(3, "No such file", ["import", s, t.path("absent.fvecs").to_str().unwrap(), "--create"]);
    // An ID file that does not match the rows, or holds an empty line.
    let ids = t.path("ids.txt");
    std::fs::write(&ids, "a\nb\nc\n").unwrap();
    fails(3, "holds 3 IDs but the vector file has 10 rows", ["import", s, input.to_str().unwrap(), "--ids", ids.to_str().unwrap(), "--create"]);
    std::fs::write(&ids, "a\nb\n\nd\ne\nf\ng\nh\ni\nj\n").unwrap();
    fails(3, "line 3", ["import", s, input.to_str().unwrap(), "--ids", ids.to_str().unwrap(), "--create"]);
    assert!(!store.exists(), "file errors are found before the store is created");

    // Usage errors (clap): exit 2.
    fails(2, "--pq-m", ["import", s, input.to_str().unwrap(), "--create", "--pq-bits", "4"]);
    fails(2, "--create", ["import", s, input.to_str().unwrap(), "--dim", "4"]);
    fails(2, "cannot be used with", ["import", s, input.to_str().unwrap(), "--ids", "x", "--id-prefix", "p"]);
    fails(2, "Usage", ["frobnicate"]);
    fails(2, "Usage", ["search", s]);

    // Export to a directory that does not exist.
    ok(["import", s, input.to_str().unwrap(), "--create"]);
    fails(3, "create", ["export", s, t.path("no/such/dir/out.npy").to_str().unwrap()]);

    // --help documents the exit codes; --version prints the version.
    let help = omendb(["--help"]);
    assert_eq!(help.code, 0);
    assert!(help.stdout.contains("Exit codes") && help.stdout.contains("15 CORRUPT"), "{}", help.stdout);
    assert!(omendb(["--version"]).stdout.contains(env!("CARGO_PKG_VERSION")));
}

#[test]
fn closed_stdout_ends_search_quietly() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let t = TempDir::new("pipe");
    let (store, input) = (t.path("store"), t.path("in.fvecs"));
    let data = vectors(2000, 4, 13);
    write_fvecs(&input, &data, 4);
    ok(["import", store.to_str().unwrap(), input.to_str().unwrap(), "--create"]);
    // 2,000 queries x 10 hits: far more than a pipe buffer holds.
    let mut child = Command::new(env!("CARGO_BIN_EXE_omendb"))
        .args(["search", store.to_str().unwrap(), input.to_str().unwrap(), "-k", "10"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
    assert!(first.starts_with("0\t1\t0\t"), "{first:?}");
    // The reader is gone (like `| head -1`): the tool stops without an error.
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
}
