//! The commands. Each opens the store through the safe Rust API, does its
//! work, and returns a `Failure` that `main` turns into a message and an
//! exit code.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use omendb::{
    CalibrationPoint, Error, ErrorKind, Filter, IdBatch, Metric, Options, PqSettings, SearchParams, Stats, Store,
    MAX_CALIBRATION_QUERIES,
};

use crate::vecfile::{tmp_path, Format, VecReader, VecWriter};
use crate::{Failure, Global};

type Outcome = Result<(), Failure>;

/// Keys resolved and vectors fetched per step of an export.
const EXPORT_CHUNK: usize = 1024;
/// Queries per search_batch call.
const SEARCH_CHUNK: usize = 1024;

fn read_only(global: &Global) -> Options {
    Options { read_only: true, threads: global.threads, huge_pages: global.huge_pages, ..Options::default() }
}

fn open_read_only(global: &Global, path: &Path) -> Result<Store, Failure> {
    Store::open(path, &read_only(global)).map_err(Failure::store(format!("open {}", path.display())))
}

/// A progress bar on stderr.
fn progress(global: &Global, total: u64, what: &str) -> ProgressBar {
    if global.quiet {
        return ProgressBar::hidden();
    }
    // Drawn only when stderr is a terminal: piped or captured output stays clean.
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{msg:>7} {wide_bar} {human_pos}/{human_len} [{elapsed_precise}, eta {eta}] {rate}")
            .expect("a valid template")
            .with_key("rate", |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{:.0}/s", state.per_sec());
            })
            .progress_chars("=> "),
    );
    bar.set_message(what.to_string());
    bar
}

fn metric_name(code: u32) -> &'static str {
    match Metric::from_code(code) {
        Some(Metric::L2) => "l2",
        Some(Metric::InnerProduct) => "ip",
        Some(Metric::Cosine) => "cosine",
        None => "unknown",
    }
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn rate(n: u64, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64();
    if secs <= 0.0 {
        return String::new();
    }
    format!(", {:.0}/s", n as f64 / secs)
}

/// An ID as printed: the text itself when it is printable UTF-8 without
/// whitespace other than spaces, else `0x` and hex.
pub fn show_id(id: &[u8]) -> String {
    match std::str::from_utf8(id) {
        Ok(s) if !s.is_empty() && !s.starts_with("0x") && s.chars().all(|c| !c.is_control()) => s.to_string(),
        _ => {
            let mut out = String::with_capacity(2 + 2 * id.len());
            out.push_str("0x");
            for b in id {
                out.push_str(&format!("{b:02x}"));
            }
            out
        }
    }
}

// ---------------------------------------------------------------- info

pub fn info(global: &Global, path: &Path, json: bool) -> Outcome {
    let store = open_read_only(global, path)?;
    let stats = store.stats().map_err(Failure::store("read stats"))?;
    let calibration = store.calibration().map_err(Failure::store("read the calibration"))?;
    let mut out = std::io::stdout().lock();
    if json {
        let pq = match stats.pq_m {
            0 => "null".to_string(),
            m => format!(
                "{{\"m\": {m}, \"bits\": {}, \"train_size\": {}, \"trained\": {}, \"drop_raw\": {}, \"ivf_lists\": {}, \
                 \"ivf_stages\": {}, \"ivf_list_code_bytes\": {}}}",
                stats.pq_bits,
                stats.pq_train_size,
                stats.pq_trained,
                stats.drop_raw,
                stats.ivf_lists,
                stats.ivf_stages,
                stats.ivf_list_code_bytes
            ),
        };
        let path_json = json_string(&path.display().to_string());
        let damage = store.index_damage().map_or("null".to_string(), |e| json_string(e.message()));
        let calibration = calibration_json(&calibration);
        writeln!(
            out,
            "{{\"store\": {path_json}, \"dim\": {}, \"metric\": \"{}\", \"live_vectors\": {}, \"dead_slots\": {}, \
             \"checkpoint_seq\": {}, \"disk_bytes\": {}, \"payload_bytes\": {}, \"heap_bytes\": {}, \
             \"raw_kept\": {}, \"pq\": {pq}, \"index_damage\": {damage}, \"calibration\": [{calibration}], \
             \"calibration_queries\": {}, \"library_version\": \"{}\"}}",
            stats.dim,
            metric_name(stats.metric),
            stats.live_vectors,
            stats.dead_slots,
            stats.checkpoint_seq,
            stats.disk_bytes,
            stats.payload_bytes,
            stats.heap_bytes,
            stats.raw_kept,
            stats.calibration_queries,
            env!("CARGO_PKG_VERSION"),
        )?;
        return Ok(());
    }
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    writeln!(out, "store           {}", path.display())?;
    writeln!(out, "dim             {}", stats.dim)?;
    writeln!(out, "metric          {}", metric_name(stats.metric))?;
    writeln!(out, "live vectors    {}", stats.live_vectors)?;
    writeln!(out, "dead slots      {}", stats.dead_slots)?;
    writeln!(out, "checkpoint seq  {}", stats.checkpoint_seq)?;
    writeln!(out, "disk bytes      {} ({})", stats.disk_bytes, human_bytes(stats.disk_bytes))?;
    writeln!(out, "payload bytes   {} ({})", stats.payload_bytes, human_bytes(stats.payload_bytes))?;
    writeln!(out, "heap bytes      {} ({})", stats.heap_bytes, human_bytes(stats.heap_bytes))?;
    writeln!(out, "raw vectors     {}", if stats.raw_kept { "kept" } else { "dropped (PQ codes only)" })?;
    if stats.pq_m == 0 {
        writeln!(out, "pq              none")?;
    } else {
        writeln!(
            out,
            "pq              m={} bits={} train_size={} drop_raw={} trained={}",
            stats.pq_m,
            stats.pq_bits,
            stats.pq_train_size,
            yes_no(stats.drop_raw),
            yes_no(stats.pq_trained)
        )?;
    }
    if stats.ivf_lists > 0 {
        let bytes = stats.ivf_list_code_bytes;
        match stats.ivf_stages {
            2 => writeln!(out, "ivf index       {} lists, two stages (the lists hold {bytes} bytes of each code)", stats.ivf_lists)?,
            _ => writeln!(out, "ivf index       {} lists, one stage (the lists hold whole {bytes}-byte codes)", stats.ivf_lists)?,
        }
    }
    if !calibration.is_empty() {
        match stats.calibration_queries {
            0 => writeln!(out, "calibrated on   the store's own vectors (training)")?,
            n => writeln!(out, "calibrated on   {n} host queries (omendb calibrate)")?,
        }
        write_calibration(&mut out, &calibration)?;
    }
    if let Some(damage) = store.index_damage() {
        writeln!(out, "index           DAMAGED, searches are exact until `omendb rebuild-index`: {}", damage.message())?;
    }
    Ok(())
}

/// The calibration's points as `info` prints them, a row a point: what
/// `search --recall R` chooses from (the first row whose recall reaches R).
fn write_calibration(out: &mut impl Write, points: &[CalibrationPoint]) -> std::io::Result<()> {
    writeln!(out, "calibration     recall@10  lists  re-rank per result")?;
    for p in points {
        writeln!(out, "                {:<9.4}  {:<5}  {}", p.recall, p.nprobe, p.rerank_per_k)?;
    }
    Ok(())
}

/// The calibration's points as JSON objects, comma-separated (the list's inside).
fn calibration_json(points: &[CalibrationPoint]) -> String {
    let points: Vec<String> = points
        .iter()
        .map(|p| format!("{{\"recall\": {}, \"nprobe\": {}, \"rerank_per_k\": {}, \"cost\": {}}}", p.recall, p.nprobe, p.rerank_per_k, p.cost))
        .collect();
    points.join(", ")
}

fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

// ---------------------------------------------------------------- verify

pub fn verify(global: &Global, path: &Path) -> Outcome {
    let started = Instant::now();
    let spinner = if global.quiet { ProgressBar::hidden() } else { ProgressBar::new_spinner() };
    spinner.set_draw_target(if global.quiet { ProgressDrawTarget::hidden() } else { ProgressDrawTarget::stderr() });
    spinner.set_message(format!("verifying {}", path.display()));
    spinner.enable_steady_tick(Duration::from_millis(120));
    let result = Store::recover(path, &read_only(global));
    spinner.finish_and_clear();
    let (store, report) = result.map_err(|error| {
        // Damage to the search index alone: the store opens without it, and
        // the index can be rebuilt.
        let index_only = error.kind() == ErrorKind::Corrupt
            && Store::open(path, &read_only(global)).is_ok_and(|s| s.index_damage().is_some());
        let doing = if index_only {
            format!(
                "verify {}: the search index is damaged, the vectors are intact (rebuild the index with \
                 `omendb rebuild-index {}`)",
                path.display(),
                path.display()
            )
        } else {
            format!("verify {}: the store is damaged or unreadable", path.display())
        };
        Failure::Store { doing, error }
    })?;
    let stats = store.stats().map_err(Failure::store("read stats"))?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "ok: every checksum of {} verified", path.display())?;
    writeln!(out, "checkpoint seq   {}", report.checkpoint_seq)?;
    writeln!(out, "live vectors     {}", report.live_vectors)?;
    writeln!(out, "dead slots       {}", stats.dead_slots)?;
    writeln!(out, "verified bytes   {} ({})", report.verified_bytes, human_bytes(report.verified_bytes))?;
    writeln!(
        out,
        "uncommitted tail {} bytes{}",
        report.discarded_bytes,
        if report.discarded_bytes > 0 {
            " (written after the last checkpoint; ignored, and dropped at the next writable open)"
        } else {
            ""
        }
    )?;
    writeln!(out, "time             {:.3} s", started.elapsed().as_secs_f64())?;
    Ok(())
}

// ---------------------------------------------------------------- import

pub enum IdSource {
    File(PathBuf),
    Rows { prefix: String, offset: u64 },
}

pub struct CreateSettings {
    pub dim: Option<u32>,
    pub metric: Metric,
    pub pq: Option<PqSettings>,
    pub drop_raw: bool,
    pub ivf_lists: Option<u32>,
}

pub struct ImportPlan {
    pub store: PathBuf,
    pub file: PathBuf,
    pub format: Option<Format>,
    pub ids: IdSource,
    pub batch_size: usize,
    pub create: Option<CreateSettings>,
}

/// Reads an ID file: one ID per line, the line's bytes (a trailing \r
/// dropped), as `omendb export` writes them; packed as the library reads them.
fn read_id_file(path: &Path) -> Result<(Vec<u8>, Vec<u64>), Failure> {
    let bytes = std::fs::read(path).map_err(|e| Failure::File(format!("read {}: {e}", path.display())))?;
    let mut body = &bytes[..];
    if body.last() == Some(&b'\n') {
        body = &body[..body.len() - 1];
    }
    let mut ids = Vec::with_capacity(body.len());
    let mut offsets = vec![0u64];
    if !body.is_empty() {
        for (n, line) in body.split(|&b| b == b'\n').enumerate() {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.is_empty() || line.len() > 1024 {
                return Err(Failure::File(format!(
                    "{} line {}: an ID is 1 to 1024 bytes (this line has {})",
                    path.display(),
                    n + 1,
                    line.len()
                )));
            }
            ids.extend_from_slice(line);
            offsets.push(ids.len() as u64);
        }
    }
    Ok((ids, offsets))
}

pub fn import(global: &Global, plan: &ImportPlan) -> Outcome {
    let format = Format::resolve(&plan.file, plan.format).map_err(Failure::File)?;
    let mut reader = VecReader::open(&plan.file, format).map_err(Failure::File)?;
    let (rows, file_dim) = (reader.rows(), reader.dim());
    let id_file = match &plan.ids {
        IdSource::File(path) => {
            let (ids, offsets) = read_id_file(path)?;
            let count = offsets.len() as u64 - 1;
            if count != rows {
                return Err(Failure::File(format!(
                    "{} holds {count} IDs but the vector file has {rows} rows; they must match one to one",
                    path.display()
                )));
            }
            Some((ids, offsets))
        }
        IdSource::Rows { prefix, .. } => {
            if prefix.len() > 1024 - 20 {
                return Err(Failure::File(format!(
                    "--id-prefix is {} bytes; with the row number an ID would pass 1024 bytes",
                    prefix.len()
                )));
            }
            None
        }
    };

    let mut options = Options { threads: global.threads, huge_pages: global.huge_pages, ..Options::default() };
    if let Some(create) = &plan.create {
        let dim = create.dim.unwrap_or(file_dim as u32);
        if dim as usize != file_dim {
            return Err(Failure::Store {
                doing: format!("import {}", plan.file.display()),
                error: Error::new(
                    ErrorKind::Dimension,
                    format!("--dim is {dim} but the file's vectors have {file_dim} values"),
                ),
            });
        }
        options = Options {
            create: true,
            dim,
            metric: create.metric,
            pq: create.pq,
            drop_raw: create.drop_raw,
            ivf_lists: create.ivf_lists,
            ..options
        };
    }
    let shown = plan.store.display();
    let existed = Store::exists(&plan.store);
    let store = Store::open(&plan.store, &options).map_err(|error| {
        let hint = if error.kind() == ErrorKind::NotFound && plan.create.is_none() { " (pass --create to make one)" } else { "" };
        Failure::Store { doing: format!("open {shown}{hint}"), error }
    })?;
    if store.dim() != file_dim {
        let error = Error::new(
            ErrorKind::Dimension,
            format!("{} holds vectors of {file_dim} values; the store's have {}", plan.file.display(), store.dim()),
        );
        return Err(Failure::Store { doing: format!("import into {shown}"), error });
    }

    if let (true, Some(create)) = (existed, &plan.create) {
        // As in omen_open, creation settings do not change an existing store.
        let stats = store.stats().map_err(Failure::store("read stats"))?;
        let pq_differs = create.pq.is_some_and(|pq| pq.m != stats.pq_m);
        if create.metric != store.metric() || pq_differs {
            eprintln!(
                "omendb: note: {shown} already exists (metric {}, pq_m {}); --metric and --pq-* only apply when creating",
                metric_name(stats.metric),
                stats.pq_m
            );
        }
    }
    let started = Instant::now();
    let bar = progress(global, rows, "import");
    let mut vectors = Vec::with_capacity(plan.batch_size * file_dim);
    let mut id_bytes: Vec<u8> = Vec::new();
    let mut id_offsets: Vec<u64> = Vec::new();
    let mut done = 0u64;
    let result = (|| -> Outcome {
        loop {
            let n = reader.read_batch(plan.batch_size, &mut vectors).map_err(Failure::File)?;
            if n == 0 {
                break;
            }
            let batch = match (&id_file, &plan.ids) {
                (Some((bytes, offsets)), _) => {
                    let offs = &offsets[done as usize..=done as usize + n];
                    let start = offs[0] as usize;
                    IdBatch::new(&bytes[start..], offs)
                }
                (None, IdSource::Rows { prefix, offset }) => {
                    id_bytes.clear();
                    id_offsets.clear();
                    id_offsets.push(0);
                    for row in done..done + n as u64 {
                        id_bytes.extend_from_slice(prefix.as_bytes());
                        write!(id_bytes, "{}", offset + row).expect("writing to a Vec");
                        id_offsets.push(id_bytes.len() as u64);
                    }
                    IdBatch::new(&id_bytes, &id_offsets)
                }
                (None, IdSource::File(_)) => unreachable!("read above"),
            };
            let batch = batch.map_err(|error| Failure::Store { doing: format!("IDs of rows {done}.."), error })?;
            store.put_batch(&batch, &vectors).map_err(|error| Failure::Store {
                doing: format!("put rows {done}..{} of {}", done + n as u64, plan.file.display()),
                error,
            })?;
            done += n as u64;
            bar.set_position(done);
        }
        Ok(())
    })();
    bar.finish_and_clear();
    if let Err(failure) = result {
        // No checkpoint: the store reopens at its previous checkpoint, as if
        // this import had not run (unless automatic PQ training committed
        // part of it). Dropping the store would checkpoint, so it is leaked;
        // the process exits next, which releases its lock and mappings.
        std::mem::forget(store);
        return Err(failure);
    }
    let seq = store.checkpoint().map_err(Failure::store(format!("checkpoint {shown}")))?;
    let stats = store.stats().map_err(Failure::store("read stats"))?;
    store.close().map_err(Failure::store(format!("close {shown}")))?;
    let elapsed = started.elapsed();
    println!(
        "imported {done} vectors (dim {file_dim}) from {} into {shown} in {:.2} s{}; checkpoint {seq}; {} live vectors",
        plan.file.display(),
        elapsed.as_secs_f64(),
        rate(done, elapsed),
        stats.live_vectors
    );
    Ok(())
}

// ---------------------------------------------------------------- export

pub fn export(global: &Global, path: &Path, out: &Path, ids_out: Option<&Path>, format: Option<Format>) -> Outcome {
    let format = Format::resolve(out, format).map_err(Failure::File)?;
    let ids_path = ids_out.map(Path::to_path_buf).unwrap_or_else(|| out.with_extension("ids"));
    if ids_path == out {
        return Err(Failure::File(format!("the IDs file and the vector file are both {}", out.display())));
    }
    let store = open_read_only(global, path)?;
    let stats: Stats = store.stats().map_err(Failure::store("read stats"))?;
    if !stats.raw_kept {
        return Err(Failure::Store {
            doing: format!("export {}", path.display()),
            error: Error::invalid("this compressed store keeps only PQ codes: there are no raw vectors to export"),
        });
    }
    let dim = store.dim();
    let live = stats.live_vectors;

    let started = Instant::now();
    let mut vectors = VecWriter::create(out, format, dim, live).map_err(Failure::File)?;
    let ids_tmp = tmp_path(&ids_path);
    let ids_file =
        std::fs::File::create(&ids_tmp).map_err(|e| Failure::File(format!("create {}: {e}", ids_tmp.display())))?;
    let mut ids_writer = BufWriter::with_capacity(1 << 20, ids_file);
    let ids_err = |e: std::io::Error| Failure::File(format!("write {}: {e}", ids_tmp.display()));
    let result = (|| -> Outcome {
        // Every live ID as of one moment (the store is open read-only
        // here, so nothing changes meanwhile), then their vectors in chunks.
        let ids = store.live_ids().map_err(Failure::store("list the live IDs"))?;
        let ids = ids.batch().map_err(Failure::store("IDs"))?;
        let bar = progress(global, ids.len() as u64, "export");
        let (mut rows, mut found) = (Vec::new(), Vec::new());
        let mut written = 0u64;
        for start in (0..ids.len()).step_by(EXPORT_CHUNK) {
            let end = (start + EXPORT_CHUNK).min(ids.len());
            let chunk = ids.slice(start..end);
            rows.resize(chunk.len() * dim, 0.0);
            found.resize(chunk.len(), 0u8);
            store
                .get_batch_into(&chunk, &mut rows, Some(&mut found))
                .map_err(Failure::store(format!("read the vectors of IDs {start}..{end}")))?;
            for (i, id) in chunk.iter().enumerate() {
                if found[i] == 0 {
                    continue; // counted below: the store then disagrees with itself
                }
                if id.contains(&b'\n') || id.ends_with(b"\r") {
                    return Err(Failure::File(format!(
                        "ID {} holds a line break: it cannot be written to a one-ID-per-line file",
                        show_id(id)
                    )));
                }
                vectors.write_rows(&rows[i * dim..(i + 1) * dim]).map_err(Failure::File)?;
                ids_writer.write_all(id).map_err(ids_err)?;
                ids_writer.write_all(b"\n").map_err(ids_err)?;
                written += 1;
            }
            bar.set_position(end as u64);
        }
        bar.finish_and_clear();
        if written != live {
            return Err(Failure::Store {
                doing: format!("export {}", path.display()),
                error: Error::new(ErrorKind::Internal, format!("found {written} live vectors, the store counts {live}")),
            });
        }
        Ok(())
    })();
    if let Err(failure) = result {
        drop(vectors);
        let _ = std::fs::remove_file(&ids_tmp);
        return Err(failure);
    }
    let ids_file = ids_writer.into_inner().map_err(|e| ids_err(e.into_error()))?;
    ids_file.sync_all().map_err(ids_err)?;
    let written = vectors.finish().map_err(Failure::File)?;
    std::fs::rename(&ids_tmp, &ids_path)
        .map_err(|e| Failure::File(format!("rename {} to {}: {e}", ids_tmp.display(), ids_path.display())))?;
    let elapsed = started.elapsed();
    println!(
        "exported {written} vectors (dim {dim}) from {} to {} and their IDs to {} in {:.2} s{}",
        path.display(),
        out.display(),
        ids_path.display(),
        elapsed.as_secs_f64(),
        rate(written, elapsed)
    );
    Ok(())
}

// ---------------------------------------------------------------- search

pub struct SearchPlan {
    pub store: PathBuf,
    pub queries: PathBuf,
    pub format: Option<Format>,
    pub k: usize,
    pub rerank: u32,
    pub exact: bool,
    /// IVF stores: the recall to aim at (0 = the default) or the lists to scan (0 = by recall).
    pub target_recall: f32,
    pub nprobe: u32,
    /// Threads sharing each query's own work.
    pub query_threads: u32,
    /// Only these IDs may be hits (a file of one ID per line).
    pub filter_ids: Option<PathBuf>,
    /// First print how the search runs, to stderr.
    pub explain: bool,
}

/// Refuses a query file whose rows are not the store's dimension (rows of
/// another length would otherwise be cut into the store's).
fn check_query_dim(reader: &VecReader, file: &Path, store: &Store, doing: impl FnOnce() -> String) -> Outcome {
    if reader.dim() == store.dim() {
        return Ok(());
    }
    Err(Failure::Store {
        doing: doing(),
        error: Error::new(
            ErrorKind::Dimension,
            format!("the queries in {} have {} values; the store's vectors have {}", file.display(), reader.dim(), store.dim()),
        ),
    })
}

/// One line: how a search runs (`--explain`).
fn describe_search(how: &omendb::SearchPlan) -> String {
    let mut line = match how.method {
        omendb::SearchMethod::Exact => "search: exact distances".to_string(),
        omendb::SearchMethod::PqScan => "search: every PQ code".to_string(),
        omendb::SearchMethod::Ivf => format!("search: IVF, {} lists a query", how.nprobe),
    };
    if how.method != omendb::SearchMethod::Exact {
        line += &match how.rerank {
            0 => ", ranked by the codes (no re-rank)".to_string(),
            n => format!(", {n} candidates re-ranked exactly"),
        };
    }
    if let Some(recall) = how.calibrated_recall {
        line += &format!(", calibrated recall@10 {recall:.4}");
    }
    line
}

/// Prints one line per hit: query number, rank (from 1), ID, distance,
/// separated by tabs. With `filter_ids`, only the listed IDs can be hits.
pub fn search(global: &Global, plan: &SearchPlan) -> Outcome {
    let format = Format::resolve(&plan.queries, plan.format).map_err(Failure::File)?;
    let mut reader = VecReader::open(&plan.queries, format).map_err(Failure::File)?;
    let allowed = plan.filter_ids.as_deref().map(read_id_file).transpose()?;
    let filter = Filter {
        ids: match &allowed {
            Some((ids, offsets)) => Some(IdBatch::new(ids, offsets).map_err(Failure::store("--filter-ids"))?),
            None => None,
        },
        accept: None,
    };
    let store = open_read_only(global, &plan.store)?;
    check_query_dim(&reader, &plan.queries, &store, || format!("search {}", plan.store.display()))?;
    let params = SearchParams {
        rerank: plan.rerank,
        exact: plan.exact,
        threads: global.threads,
        target_recall: plan.target_recall,
        nprobe: plan.nprobe,
        query_threads: plan.query_threads,
    };
    if plan.explain {
        let how = store.search_plan_filtered(plan.k, &params, &filter).map_err(Failure::store("explain the search"))?;
        eprintln!("{}", describe_search(&how));
    }
    let total = reader.rows();
    let bar = progress(global, total, "search");
    let mut out = BufWriter::new(std::io::stdout().lock());
    let mut queries = Vec::new();
    let mut first = 0u64;
    loop {
        let n = reader.read_batch(SEARCH_CHUNK, &mut queries).map_err(Failure::File)?;
        if n == 0 {
            break;
        }
        let results = store.search_batch_filtered(&queries, plan.k, &params, &filter).map_err(Failure::store(format!(
            "search queries {first}..{} of {}",
            first + n as u64,
            plan.queries.display()
        )))?;
        for (q, hits) in results.iter().enumerate() {
            for (rank, hit) in hits.iter().enumerate() {
                let id = store.with_key_id(hit.key, show_id).map_err(Failure::store(format!("read the ID of key {}", hit.key)))?;
                writeln!(out, "{}\t{}\t{id}\t{}", first + q as u64, rank + 1, hit.distance)?;
            }
        }
        first += n as u64;
        bar.set_position(first);
    }
    bar.finish_and_clear();
    out.flush()?;
    Ok(())
}

// ---------------------------------------------------------------- train

/// `train`, or with `rebuild` `rebuild-index` (the same training, through
/// `Store::rebuild_index`, reporting the damage it repairs).
pub fn train(global: &Global, path: &Path, rebuild: bool) -> Outcome {
    let shown = path.display();
    let doing = if rebuild { "rebuild the index of" } else { "train" };
    let options = Options { threads: global.threads, huge_pages: global.huge_pages, ..Options::default() };
    let store = Store::open(path, &options).map_err(Failure::store(format!("open {shown}")))?;
    let before = store.stats().map_err(Failure::store("read stats"))?;
    if before.pq_m == 0 {
        return Err(Failure::Store {
            doing: format!("{doing} {shown}"),
            error: Error::invalid(
                "the store was created without PQ settings (create it with `omendb import --create --pq-m M ...`)",
            ),
        });
    }
    let damage = store.index_damage();
    let started = Instant::now();
    let bar = progress(global, 1, if rebuild { "rebuild" } else { "train" });
    let mut report = |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    };
    let result = if rebuild { store.rebuild_index(&mut report) } else { store.train_pq(&mut report) };
    bar.finish_and_clear();
    result.map_err(Failure::store(format!("{doing} {shown}")))?;
    let after = store.stats().map_err(Failure::store("read stats"))?;
    store.close().map_err(Failure::store(format!("close {shown}")))?;
    if let Some(damage) = damage {
        println!("replaced the damaged index ({})", damage.message());
    }
    println!(
        "{} PQ (m={}, bits={}{}) on {} vectors of {shown} in {:.2} s; checkpoint {}",
        if rebuild { "rebuilt the index:" } else { "trained" },
        after.pq_m,
        after.pq_bits,
        if after.ivf_lists > 0 { format!(", {} IVF lists", after.ivf_lists) } else { String::new() },
        after.live_vectors,
        started.elapsed().as_secs_f64(),
        after.checkpoint_seq
    );
    Ok(())
}

// ---------------------------------------------------------------- calibrate

/// Measures the IVF targets on the queries of `file` (`Store::calibrate`,
/// which commits them), then prints the points kept and a summary.
pub fn calibrate(global: &Global, path: &Path, file: &Path, format: Option<Format>, json: bool) -> Outcome {
    let shown = path.display();
    let format = Format::resolve(file, format).map_err(Failure::File)?;
    let mut reader = VecReader::open(file, format).map_err(Failure::File)?;
    let options = Options { threads: global.threads, huge_pages: global.huge_pages, ..Options::default() };
    let store = Store::open(path, &options).map_err(Failure::store(format!("open {shown}")))?;
    let doing = || format!("calibrate {shown}");
    check_query_dim(&reader, file, &store, doing)?;
    // Refused before a file too large for one calibration is read into memory.
    if reader.rows() > MAX_CALIBRATION_QUERIES as u64 {
        let error = Error::invalid(format!(
            "{} holds {} queries; a calibration takes 1 to {MAX_CALIBRATION_QUERIES} (a sample is enough)",
            file.display(),
            reader.rows()
        ));
        return Err(Failure::Store { doing: doing(), error });
    }
    let queries = reader.read_all().map_err(Failure::File)?;
    let nq = queries.len() / store.dim().max(1);
    let started = Instant::now();
    let bar = progress(global, 1, "calibrate");
    let mut report = |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    };
    let result = store.calibrate(&queries, &mut report);
    bar.finish_and_clear();
    let points = result.map_err(Failure::store(doing()))?;
    let elapsed = started.elapsed();
    let stats = store.stats().map_err(Failure::store("read stats"))?;
    store.close().map_err(Failure::store(format!("close {shown}")))?;
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(
            out,
            "{{\"store\": {}, \"queries_file\": {}, \"calibration_queries\": {}, \"checkpoint_seq\": {}, \
             \"seconds\": {:.3}, \"calibration\": [{}]}}",
            json_string(&shown.to_string()),
            json_string(&file.display().to_string()),
            stats.calibration_queries,
            stats.checkpoint_seq,
            elapsed.as_secs_f64(),
            calibration_json(&points)
        )?;
        return Ok(());
    }
    write_calibration(&mut out, &points)?;
    writeln!(
        out,
        "calibrated the IVF recall targets of {shown} on {nq} queries of {} in {:.2} s: {} settings kept; checkpoint {}",
        file.display(),
        elapsed.as_secs_f64(),
        points.len(),
        stats.checkpoint_seq
    )?;
    Ok(())
}
