//! Reading and writing the two vector file formats the tool speaks:
//!
//! - `.fvecs` (the TEXMEX/ANN-benchmarks format): every row is a
//!   little-endian int32 `d` followed by `d` little-endian float32 values.
//! - `.npy` (NumPy's format, versions 1 to 3): a header naming the dtype and
//!   shape, then the C-ordered data. Only float32 (`<f4`, or `>f4` which is
//!   byte-swapped on the way in) 1-D (one row) or 2-D arrays are accepted.
//!
//! Both are read in streaming batches (a file much larger than memory
//! imports fine) and written to a temporary file renamed into place at the
//! end, so a failed export leaves no half-written file under the final name.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Largest dimension the library accepts (the store refuses more).
const MAX_DIM: usize = 65_536;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Fvecs,
    Npy,
}

impl Format {
    /// The explicit format, else the one the file name's extension names.
    pub fn resolve(path: &Path, explicit: Option<Format>) -> Result<Format, String> {
        if let Some(f) = explicit {
            return Ok(f);
        }
        match path.extension().and_then(|e| e.to_str()).map(|e| e.to_ascii_lowercase()).as_deref() {
            Some("fvecs") => Ok(Format::Fvecs),
            Some("npy") => Ok(Format::Npy),
            _ => Err(format!(
                "{}: cannot tell the format from the file name (expected .fvecs or .npy); pass --format",
                path.display()
            )),
        }
    }
}

/// A vector file opened for reading, positioned at its first row.
pub struct VecReader {
    path: PathBuf,
    format: Format,
    input: BufReader<File>,
    dim: usize,
    rows: u64,
    read: u64,
    /// `>f4` data: swap the bytes of every value.
    swap: bool,
    scratch: Vec<u8>,
}

impl VecReader {
    pub fn open(path: &Path, format: Format) -> Result<VecReader, String> {
        let shown = path.display();
        let mut file = File::open(path).map_err(|e| format!("open {shown}: {e}"))?;
        let len = file.metadata().map_err(|e| format!("stat {shown}: {e}"))?.len();
        let (dim, rows, swap) = match format {
            Format::Fvecs => {
                let dim = fvecs_dim(&mut file, len).map_err(|e| format!("{shown}: {e}"))?;
                let record = 4 * (dim as u64 + 1);
                (dim, len / record, false)
            }
            Format::Npy => {
                let header = npy_header(&mut file, len).map_err(|e| format!("{shown}: {e}"))?;
                (header.dim, header.rows, header.big_endian)
            }
        };
        Ok(VecReader {
            path: path.to_path_buf(),
            format,
            input: BufReader::with_capacity(1 << 20, file),
            dim,
            rows,
            read: 0,
            swap,
            scratch: Vec::new(),
        })
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Replaces `out` with up to `max_rows` next rows (row-major); returns
    /// how many were read (0 at the end).
    pub fn read_batch(&mut self, max_rows: usize, out: &mut Vec<f32>) -> Result<usize, String> {
        let n = (max_rows as u64).min(self.rows - self.read) as usize;
        out.clear();
        if n == 0 {
            return Ok(0);
        }
        let row_bytes = match self.format {
            Format::Fvecs => 4 * (self.dim + 1),
            Format::Npy => 4 * self.dim,
        };
        self.scratch.resize(n * row_bytes, 0);
        self.input.read_exact(&mut self.scratch).map_err(|e| {
            format!("{}: reading rows {}..{}: {e}", self.path.display(), self.read, self.read + n as u64)
        })?;
        out.reserve(n * self.dim);
        for (i, row) in self.scratch.chunks_exact(row_bytes).enumerate() {
            let values = match self.format {
                Format::Fvecs => {
                    let d = i32::from_le_bytes(row[..4].try_into().unwrap());
                    if d as i64 != self.dim as i64 {
                        return Err(format!(
                            "{}: row {} says it has {d} values; the file's first row has {} (.fvecs rows must share one dimension)",
                            self.path.display(),
                            self.read + i as u64,
                            self.dim
                        ));
                    }
                    &row[4..]
                }
                Format::Npy => row,
            };
            out.extend(values.chunks_exact(4).map(|b| {
                let bytes: [u8; 4] = b.try_into().unwrap();
                if self.swap {
                    f32::from_be_bytes(bytes)
                } else {
                    f32::from_le_bytes(bytes)
                }
            }));
        }
        self.read += n as u64;
        Ok(n)
    }

    /// Reads every remaining row (`calibrate` hands its queries over at once).
    pub fn read_all(&mut self) -> Result<Vec<f32>, String> {
        let mut all = Vec::with_capacity(((self.rows - self.read) as usize).saturating_mul(self.dim));
        let mut batch = Vec::new();
        while self.read_batch(4096, &mut batch)? > 0 {
            all.extend_from_slice(&batch);
        }
        Ok(all)
    }
}

fn fvecs_dim(file: &mut File, len: u64) -> Result<usize, String> {
    if len == 0 {
        return Err("empty file: an .fvecs file needs at least one row".into());
    }
    let mut first = [0u8; 4];
    file.read_exact(&mut first).map_err(|e| format!("reading the first row's dimension: {e}"))?;
    file.seek(SeekFrom::Start(0)).map_err(|e| format!("seek: {e}"))?;
    let dim = i32::from_le_bytes(first);
    if dim <= 0 || dim as usize > MAX_DIM {
        return Err(format!("not an .fvecs file: the first row's dimension reads {dim} (expected 1..={MAX_DIM})"));
    }
    let record = 4 * (dim as u64 + 1);
    if !len.is_multiple_of(record) {
        return Err(format!(
            "not a whole number of rows: {len} bytes is not a multiple of {record} (4 + 4 x {dim}); truncated, or rows of different dimensions"
        ));
    }
    Ok(dim as usize)
}

struct NpyHeader {
    rows: u64,
    dim: usize,
    big_endian: bool,
}

/// Parses a .npy header (leaves `file` at the first data byte).
fn npy_header(file: &mut File, len: u64) -> Result<NpyHeader, String> {
    let mut pre = [0u8; 8];
    file.read_exact(&mut pre).map_err(|_| "not a .npy file: shorter than its magic".to_string())?;
    if &pre[..6] != b"\x93NUMPY" {
        return Err("not a .npy file: the magic \\x93NUMPY is missing".into());
    }
    let major = pre[6];
    let header_len = match major {
        1 => {
            let mut b = [0u8; 2];
            file.read_exact(&mut b).map_err(|e| format!("reading the .npy header length: {e}"))?;
            u16::from_le_bytes(b) as u64
        }
        2 | 3 => {
            let mut b = [0u8; 4];
            file.read_exact(&mut b).map_err(|e| format!("reading the .npy header length: {e}"))?;
            u32::from_le_bytes(b) as u64
        }
        v => return Err(format!("unsupported .npy format version {v}.{}", pre[7])),
    };
    let data_start = if major == 1 { 10 } else { 12 } + header_len;
    if header_len > 1 << 20 || data_start > len {
        return Err(format!("damaged .npy file: header of {header_len} bytes in a {len}-byte file"));
    }
    let mut header = vec![0u8; header_len as usize];
    file.read_exact(&mut header).map_err(|e| format!("reading the .npy header: {e}"))?;
    let header = String::from_utf8_lossy(&header);

    let descr = dict_value(&header, "descr").ok_or("the .npy header has no 'descr'")?;
    let descr = quoted(descr).ok_or("bad 'descr' in the .npy header")?;
    let big_endian = match descr {
        "<f4" => false,
        ">f4" => true,
        other => {
            return Err(format!(
                "dtype {other:?} is not supported: only float32 ('<f4') arrays (in numpy: a.astype('<f4'))"
            ))
        }
    };
    let fortran = dict_value(&header, "fortran_order").ok_or("the .npy header has no 'fortran_order'")?;
    if fortran.starts_with("True") {
        return Err("Fortran-ordered arrays are not supported (in numpy: np.ascontiguousarray(a))".into());
    }
    let shape = dict_value(&header, "shape").ok_or("the .npy header has no 'shape'")?;
    let inner = shape.trim().strip_prefix('(').and_then(|s| s.split(')').next()).ok_or("bad 'shape' in the .npy header")?;
    let dims: Vec<u64> = inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.trim_end_matches('L').parse::<u64>().map_err(|_| format!("bad 'shape' ({inner}) in the .npy header")))
        .collect::<Result<_, _>>()?;
    let (rows, dim) = match dims[..] {
        [d] => (1, d),
        [n, d] => (n, d),
        _ => return Err(format!("a {}-D array: only 2-D arrays (rows x dim) or one 1-D vector are supported", dims.len())),
    };
    if dim == 0 || dim as usize > MAX_DIM {
        return Err(format!("a dimension of {dim} is out of range (1..={MAX_DIM})"));
    }
    let need = rows.checked_mul(dim).and_then(|v| v.checked_mul(4)).ok_or("the shape overflows")?;
    if len - data_start != need {
        return Err(format!(
            "shape ({rows}, {dim}) needs {need} bytes of data but the file holds {} after its header (truncated?)",
            len - data_start
        ));
    }
    Ok(NpyHeader { rows, dim: dim as usize, big_endian })
}

/// The text after `'key':` in a Python dict literal, up to the end.
fn dict_value<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    for quote in ['\'', '"'] {
        let pattern = format!("{quote}{key}{quote}");
        if let Some(at) = header.find(&pattern) {
            let rest = header[at + pattern.len()..].trim_start();
            return Some(rest.strip_prefix(':')?.trim_start());
        }
    }
    None
}

/// The contents of the quoted string `value` starts with.
fn quoted(value: &str) -> Option<&str> {
    let quote = value.chars().next().filter(|c| *c == '\'' || *c == '"')?;
    let rest = &value[1..];
    rest.find(quote).map(|end| &rest[..end])
}

/// A vector file being written: to `<path>.tmp`, renamed into place by `finish`.
pub struct VecWriter {
    path: PathBuf,
    tmp: PathBuf,
    format: Format,
    out: BufWriter<File>,
    dim: usize,
    rows: u64,
    written: u64,
    finished: bool,
}

impl VecWriter {
    /// `rows` must be known up front (the .npy header holds the shape).
    pub fn create(path: &Path, format: Format, dim: usize, rows: u64) -> Result<VecWriter, String> {
        let tmp = tmp_path(path);
        let file = File::create(&tmp).map_err(|e| format!("create {}: {e}", tmp.display()))?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        if format == Format::Npy {
            out.write_all(&npy_header_bytes(rows, dim)).map_err(|e| format!("write {}: {e}", tmp.display()))?;
        }
        Ok(VecWriter { path: path.to_path_buf(), tmp, format, out, dim, rows, written: 0, finished: false })
    }

    pub fn write_rows(&mut self, rows: &[f32]) -> Result<(), String> {
        let dim = self.dim;
        let err = |e: std::io::Error| format!("write {}: {e}", self.tmp.display());
        for row in rows.chunks_exact(dim) {
            if self.format == Format::Fvecs {
                self.out.write_all(&(dim as i32).to_le_bytes()).map_err(err)?;
            }
            for x in row {
                self.out.write_all(&x.to_le_bytes()).map_err(err)?;
            }
            self.written += 1;
        }
        Ok(())
    }

    /// Flushes, syncs and renames the file into place.
    pub fn finish(mut self) -> Result<u64, String> {
        if self.written != self.rows {
            return Err(format!("wrote {} rows where {} were announced", self.written, self.rows));
        }
        let tmp = self.tmp.display().to_string();
        self.out.flush().map_err(|e| format!("write {tmp}: {e}"))?;
        self.out.get_ref().sync_all().map_err(|e| format!("sync {tmp}: {e}"))?;
        std::fs::rename(&self.tmp, &self.path).map_err(|e| format!("rename {tmp} to {}: {e}", self.path.display()))?;
        self.finished = true;
        Ok(self.written)
    }
}

impl Drop for VecWriter {
    fn drop(&mut self) {
        if !self.finished {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

pub fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".tmp");
    path.with_file_name(name)
}

/// A version 1.0 .npy header for a C-ordered float32 array of `rows x dim`,
/// padded so the data starts at a multiple of 64 bytes.
fn npy_header_bytes(rows: u64, dim: usize) -> Vec<u8> {
    let dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {dim}), }}");
    let unpadded = 10 + dict.len() + 1;
    let total = unpadded.div_ceil(64) * 64;
    let header_len = total - 10;
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header_len as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out.resize(total - 1, b' ');
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tempdir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("omendb-cli-unit-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn round_trips_both_formats() {
        let dir = tempdir("roundtrip");
        let data: Vec<f32> = (0..15).map(|i| i as f32 * 0.5 - 3.0).collect();
        for format in [Format::Fvecs, Format::Npy] {
            let path = dir.join(format!("v.{format:?}"));
            let mut w = VecWriter::create(&path, format, 3, 5).unwrap();
            w.write_rows(&data[..6]).unwrap();
            w.write_rows(&data[6..]).unwrap();
            assert_eq!(w.finish().unwrap(), 5);
            let mut r = VecReader::open(&path, format).unwrap();
            assert_eq!((r.dim(), r.rows()), (3, 5));
            let mut batch = Vec::new();
            assert_eq!(r.read_batch(2, &mut batch).unwrap(), 2);
            assert_eq!(batch, data[..6]);
            assert_eq!(r.read_all().unwrap(), data[6..]);
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn npy_header_is_aligned() {
        for rows in [0, 1, 123_456_789] {
            let h = npy_header_bytes(rows, 768);
            assert_eq!(h.len() % 64, 0);
            assert_eq!(*h.last().unwrap(), b'\n');
        }
    }

    #[test]
    fn rejects_malformed_files() {
        let dir = tempdir("malformed");
        let cases: &[(&str, &[u8], &str)] = &[
            ("empty.fvecs", b"", "empty file"),
            ("neg.fvecs", &(-1i32).to_le_bytes(), "dimension reads -1"),
            ("short.fvecs", &[2, 0, 0, 0, 0, 0, 0, 0], "not a whole number of rows"),
            ("magic.npy", b"PK\x03\x04 not numpy", "magic"),
        ];
        for (name, bytes, want) in cases {
            let path = dir.join(name);
            std::fs::write(&path, bytes).unwrap();
            let format = Format::resolve(&path, None).unwrap();
            let err = VecReader::open(&path, format).err().unwrap();
            assert!(err.contains(want), "{name}: {err}");
        }
        // A float64 array.
        let mut f8 = b"\x93NUMPY\x01\x00".to_vec();
        let dict = b"{'descr': '<f8', 'fortran_order': False, 'shape': (1, 2), }\n";
        f8.extend_from_slice(&(dict.len() as u16).to_le_bytes());
        f8.extend_from_slice(dict);
        f8.extend_from_slice(&[0u8; 16]);
        let path = dir.join("f8.npy");
        std::fs::write(&path, &f8).unwrap();
        let err = VecReader::open(&path, Format::Npy).err().unwrap();
        assert!(err.contains("'<f4'"), "{err}");
        assert!(Format::resolve(Path::new("x.csv"), None).is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn reads_big_endian_and_one_d() {
        let dir = tempdir("be");
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        let dict = b"{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }       \n";
        bytes.extend_from_slice(&(dict.len() as u16).to_le_bytes());
        bytes.extend_from_slice(dict);
        bytes.extend_from_slice(&1.5f32.to_be_bytes());
        bytes.extend_from_slice(&(-2.0f32).to_be_bytes());
        let path = dir.join("be.npy");
        std::fs::write(&path, &bytes).unwrap();
        let mut r = VecReader::open(&path, Format::Npy).unwrap();
        assert_eq!((r.rows(), r.dim()), (1, 2));
        assert_eq!(r.read_all().unwrap(), vec![1.5, -2.0]);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
