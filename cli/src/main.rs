//! `omendb`: the command-line tool for OmenDB stores. Everything goes
//! through the crate's safe Rust API (the same code the C ABI wraps).
//!
//! Exit codes (docs/cli.md): 0 success; 1 an unexpected failure (writing to
//! stdout, say); 2 bad command-line usage; 3 a vector, query or ID file that
//! cannot be read, parsed or written; 10 + the library's status value for a
//! store error (11 invalid argument, 12 dimension, 13 not found, 14 I/O,
//! 15 corrupt, 16 locked, 17 version, 18 read-only, 19 not trained,
//! 20 buffer too small, 21 internal).

mod commands;
mod vecfile;

use std::fmt;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use omendb::ErrorKind;

use crate::vecfile::Format;

const EXIT_CODES: &str = "\
Exit codes:
  0   success
  1   unexpected failure (e.g. writing to stdout)
  2   bad command-line usage
  3   a vector, query or ID file could not be read, parsed or written
  10+ a store error: 10 + the library's omen_status value
      11 INVALID_ARGUMENT  12 DIMENSION  13 NOT_FOUND  14 IO  15 CORRUPT
      16 LOCKED  17 VERSION  18 READ_ONLY  19 NOT_TRAINED  20 BUFFER_TOO_SMALL
      21 INTERNAL";

#[derive(Parser)]
#[command(
    name = "omendb",
    version,
    about = "Inspect, verify, import, export, search and train OmenDB vector stores",
    after_help = EXIT_CODES
)]
struct Cli {
    /// Worker threads for training, encoding and batch search (0 = all cores).
    #[arg(long, global = true, default_value_t = 0, value_name = "N")]
    threads: u32,
    /// No progress bars (they are drawn only when stderr is a terminal anyway).
    #[arg(short, long, global = true)]
    quiet: bool,
    /// Keep the vectors file in 2 MiB pages (OMEN_OPEN_HUGE_PAGES): faster
    /// gets and re-ranks for a store that memory holds, slower small puts.
    #[arg(long, global = true)]
    huge_pages: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show a store's dimension, metric, counts, sizes, checkpoint and PQ settings (read-only).
    Info(InfoArgs),
    /// Verify every checksum of the committed data, like omen_recover (read-only); non-zero exit on damage.
    Verify(StoreArg),
    /// Put the vectors of an .fvecs or .npy file into a store (batched, one checkpoint at the end).
    Import(ImportArgs),
    /// Write every live vector to an .fvecs or .npy file, and their IDs to a text file (read-only).
    Export(ExportArgs),
    /// Search the store for each query of an .fvecs or .npy file; prints ids and distances (read-only).
    Search(SearchArgs),
    /// Train PQ codebooks on the stored vectors and encode them all (the store must have PQ settings).
    Train(StoreArg),
    /// Measure a trained IVF store's recall targets on a sample of your own queries and commit them:
    /// `search --recall R` then means recall@10 on queries like these, not on the stored vectors.
    Calibrate(CalibrateArgs),
    /// Rebuild the search index (PQ codebooks, IVF lists, codes) from the raw vectors: for a store whose index
    /// `verify` or `info` reports damaged; the damaged index files are removed.
    RebuildIndex(StoreArg),
}

#[derive(Args)]
struct StoreArg {
    /// The store directory.
    store: PathBuf,
}

#[derive(Args)]
struct InfoArgs {
    /// The store directory.
    store: PathBuf,
    /// Print one JSON object instead of aligned text.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum MetricArg {
    L2,
    Ip,
    Cosine,
}

#[derive(Args)]
struct ImportArgs {
    /// The store directory.
    store: PathBuf,
    /// The vectors: an .fvecs file or a float32 2-D .npy file.
    file: PathBuf,
    /// The file's format, when its extension does not say.
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// A text file of IDs, one per line, one line per row (IDs are the line's bytes; a trailing \r is dropped).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["id_prefix", "id_offset"])]
    ids: Option<PathBuf>,
    /// Without --ids, row i gets the ID <PREFIX><OFFSET + i>.
    #[arg(long, default_value = "", value_name = "PREFIX")]
    id_prefix: String,
    /// Without --ids, the number of the first row's ID.
    #[arg(long, default_value_t = 0, value_name = "N")]
    id_offset: u64,
    /// Vectors per put_batch call.
    #[arg(long, default_value_t = 1000, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    batch_size: u64,
    /// Create the store if the directory holds none (with the settings below).
    #[arg(long)]
    create: bool,
    /// With --create: the dimension (default: the file's).
    #[arg(long, requires = "create", value_name = "D")]
    dim: Option<u32>,
    /// With --create: the distance metric [default: l2].
    #[arg(long, value_enum, requires = "create")]
    metric: Option<MetricArg>,
    /// With --create: PQ sub-quantizers (must divide the dimension; default: no PQ).
    #[arg(long, requires = "create", value_name = "M")]
    pq_m: Option<u32>,
    /// With --pq-m: bits per PQ code, 8 or 4 [default: 8].
    #[arg(long, requires = "pq_m", value_name = "BITS")]
    pq_bits: Option<u32>,
    /// With --pq-m: train PQ automatically once the store holds this many vectors [default: 0 = only by `train`].
    #[arg(long, requires = "pq_m", value_name = "N")]
    pq_train_size: Option<u32>,
    /// With --pq-m: keep only PQ codes once trained (a compressed store).
    #[arg(long, requires = "pq_m")]
    drop_raw: bool,
    /// With --pq-m: build an IVF index at training with N lists (0 = about sqrt(n)).
    #[arg(long, requires = "pq_m", value_name = "N")]
    ivf_lists: Option<u32>,
}

#[derive(Args)]
struct ExportArgs {
    /// The store directory.
    store: PathBuf,
    /// The output vector file (.fvecs or .npy).
    out: PathBuf,
    /// The IDs file to write, one ID per line in the same order (default: OUT with the extension .ids).
    #[arg(long, value_name = "FILE")]
    ids: Option<PathBuf>,
    /// The output format, when OUT's extension does not say.
    #[arg(long, value_enum)]
    format: Option<Format>,
}

#[derive(Args)]
struct SearchArgs {
    /// The store directory.
    store: PathBuf,
    /// The queries: an .fvecs file or a float32 .npy file (2-D, or one 1-D vector).
    queries: PathBuf,
    /// Hits per query.
    #[arg(short, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    k: u64,
    /// Re-rank this many PQ candidates with exact distances (0 = none).
    #[arg(long, default_value_t = 0, value_name = "N")]
    rerank: u32,
    /// Exact scan of the raw vectors, even in a trained PQ store.
    #[arg(long)]
    exact: bool,
    /// IVF stores: the recall@10 to aim at, as calibrated at training or by `calibrate` [default: 0.95].
    #[arg(long, value_name = "R", value_parser = parse_recall)]
    recall: Option<f32>,
    /// IVF stores: scan this many lists per query (instead of --recall).
    #[arg(long, value_name = "N", conflicts_with = "recall")]
    nprobe: Option<u32>,
    /// Threads that share each query's own work (its lists, codes or vectors and its re-rank),
    /// for latency on large stores; the hits are the same (--threads spreads the queries instead).
    #[arg(long, default_value_t = 1, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1024))]
    query_threads: u32,
    /// The query file's format, when its extension does not say.
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// Only IDs listed in FILE (one per line, as `omendb export` writes them) may be hits;
    /// listed IDs the store lacks are ignored, an empty file allows none.
    #[arg(long, value_name = "FILE")]
    filter_ids: Option<PathBuf>,
    /// First print to stderr how the search runs: exact, every code or the IVF index, the lists probed,
    /// the candidates re-ranked, and the recall@10 the calibration measured for that setting.
    #[arg(long)]
    explain: bool,
}

#[derive(Args)]
struct CalibrateArgs {
    /// The store directory.
    store: PathBuf,
    /// The queries, as `search` reads them: an .fvecs file or a float32 .npy file (2-D, or one 1-D vector);
    /// 1 to 100,000 of them, a sample of what the store will be asked.
    #[arg(long, value_name = "FILE")]
    queries: PathBuf,
    /// The query file's format, when its extension does not say.
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// Print one JSON object instead of aligned text.
    #[arg(long)]
    json: bool,
}

/// Why a command failed; decides the message and the exit code.
#[derive(Debug)]
pub enum Failure {
    /// A store error from the library, with what the tool was doing.
    Store { doing: String, error: omendb::Error },
    /// A vector, query or ID file problem.
    File(String),
    /// Anything else (stdout closed, ...).
    Other(String),
}

impl Failure {
    pub fn store(doing: impl Into<String>) -> impl FnOnce(omendb::Error) -> Failure {
        let doing = doing.into();
        move |error| Failure::Store { doing, error }
    }

    fn exit_code(&self) -> u8 {
        match self {
            Failure::Store { error, .. } => 10 + status_value(error.kind()),
            Failure::File(_) => 3,
            Failure::Other(_) => 1,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Store { doing, error } => {
                write!(f, "{doing}: {} [{}]", error.message(), status_name(error.kind()))
            }
            Failure::File(message) | Failure::Other(message) => f.write_str(message),
        }
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Failure {
        Failure::Other(format!("writing output: {e}"))
    }
}

/// The C ABI's `omen_status` value of an error kind (docs/api.md).
pub fn status_value(kind: ErrorKind) -> u8 {
    match kind {
        ErrorKind::InvalidArgument => 1,
        ErrorKind::Dimension => 2,
        ErrorKind::NotFound => 3,
        ErrorKind::Io => 4,
        ErrorKind::Corrupt => 5,
        ErrorKind::Locked => 6,
        ErrorKind::Version => 7,
        ErrorKind::ReadOnly => 8,
        ErrorKind::NotTrained => 9,
        ErrorKind::BufferTooSmall => 10,
        ErrorKind::Internal => 11,
    }
}

pub fn status_name(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::InvalidArgument => "OMEN_ERR_INVALID_ARGUMENT",
        ErrorKind::Dimension => "OMEN_ERR_DIMENSION",
        ErrorKind::NotFound => "OMEN_ERR_NOT_FOUND",
        ErrorKind::Io => "OMEN_ERR_IO",
        ErrorKind::Corrupt => "OMEN_ERR_CORRUPT",
        ErrorKind::Locked => "OMEN_ERR_LOCKED",
        ErrorKind::Version => "OMEN_ERR_VERSION",
        ErrorKind::ReadOnly => "OMEN_ERR_READ_ONLY",
        ErrorKind::NotTrained => "OMEN_ERR_NOT_TRAINED",
        ErrorKind::BufferTooSmall => "OMEN_ERR_BUFFER_TOO_SMALL",
        ErrorKind::Internal => "OMEN_ERR_INTERNAL",
    }
}

/// Settings every command shares.
pub struct Global {
    pub threads: u32,
    pub quiet: bool,
    pub huge_pages: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let global = Global { threads: cli.threads, quiet: cli.quiet, huge_pages: cli.huge_pages };
    let result = match cli.command {
        Command::Info(a) => commands::info(&global, &a.store, a.json),
        Command::Verify(a) => commands::verify(&global, &a.store),
        Command::Import(a) => commands::import(&global, &import_plan(a)),
        Command::Export(a) => commands::export(&global, &a.store, &a.out, a.ids.as_deref(), a.format),
        Command::Search(a) => commands::search(
            &global,
            &commands::SearchPlan {
                store: a.store,
                queries: a.queries,
                format: a.format,
                k: a.k as usize,
                rerank: a.rerank,
                exact: a.exact,
                target_recall: a.recall.unwrap_or(0.0),
                nprobe: a.nprobe.unwrap_or(0),
                query_threads: a.query_threads,
                filter_ids: a.filter_ids,
                explain: a.explain,
            },
        ),
        Command::Train(a) => commands::train(&global, &a.store, false),
        Command::Calibrate(a) => commands::calibrate(&global, &a.store, &a.queries, a.format, a.json),
        Command::RebuildIndex(a) => commands::train(&global, &a.store, true),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Other(m)) if m.contains("Broken pipe") => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("omendb: error: {failure}");
            ExitCode::from(failure.exit_code())
        }
    }
}

fn import_plan(a: ImportArgs) -> commands::ImportPlan {
    use omendb::{Metric, PqSettings};
    let metric = match a.metric.unwrap_or(MetricArg::L2) {
        MetricArg::L2 => Metric::L2,
        MetricArg::Ip => Metric::InnerProduct,
        MetricArg::Cosine => Metric::Cosine,
    };
    commands::ImportPlan {
        store: a.store,
        file: a.file,
        format: a.format,
        ids: match a.ids {
            Some(path) => commands::IdSource::File(path),
            None => commands::IdSource::Rows { prefix: a.id_prefix, offset: a.id_offset },
        },
        batch_size: a.batch_size as usize,
        create: a.create.then_some(commands::CreateSettings {
            dim: a.dim,
            metric,
            pq: a.pq_m.map(|m| PqSettings {
                m,
                bits: a.pq_bits.unwrap_or(8),
                train_size: a.pq_train_size.unwrap_or(0),
            }),
            drop_raw: a.drop_raw,
            ivf_lists: a.ivf_lists,
        }),
    }
}

/// A recall target: a number in (0, 1].
fn parse_recall(s: &str) -> Result<f32, String> {
    match s.parse::<f32>() {
        Ok(r) if r > 0.0 && r <= 1.0 => Ok(r),
        _ => Err(format!("{s:?} is not a recall in (0, 1]")),
    }
}
