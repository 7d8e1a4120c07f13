//! Codes in byte-planar blocks, the layout the fast-scan kernels read
//! without transposing (faiss's IVF fast-scan lists are blocked the same
//! way): codes `64 b .. 64 b + 63` form block `b`, `64 * code_size` bytes,
//! in which byte `j` of code `i` lies at `64 j + i % 64`. A block is one
//! 64-byte row per code byte, so a kernel loads the `j`-th bytes of 64 codes
//! with one load. The last block is padded with zero codes.

/// Codes per block.
pub const BLOCK: usize = 64;

/// Bytes of the blocks holding `n` codes of `code_size` bytes.
pub fn blocks_len(n: usize, code_size: usize) -> usize {
    n.div_ceil(BLOCK) * BLOCK * code_size
}

/// Appends `code` as code `n` (the blocks hold `n` codes).
pub fn push(blocks: &mut Vec<u8>, n: usize, code: &[u8]) {
    debug_assert_eq!(blocks.len(), blocks_len(n, code.len()));
    blocks.resize(blocks_len(n + 1, code.len()), 0);
    write_rows(blocks, n, code, code.len());
}

/// Writes `rows` (whole codes of `code_size` bytes, one after another) as
/// codes `n..` of `blocks`, which already has their room (zeroed padding
/// past code `n`): a block row at a time (written byte by byte, a code's
/// bytes go to `code_size` cache lines).
pub fn write_rows(blocks: &mut [u8], mut n: usize, mut rows: &[u8], code_size: usize) {
    let cs = code_size;
    debug_assert!(rows.len().is_multiple_of(cs) && blocks.len() >= blocks_len(n + rows.len() / cs, cs));
    while !rows.is_empty() {
        let lane = n % BLOCK;
        let count = (BLOCK - lane).min(rows.len() / cs);
        let (these, rest) = rows.split_at(count * cs);
        let block = &mut blocks[n / BLOCK * BLOCK * cs..];
        for (j, row) in block.chunks_exact_mut(BLOCK).take(cs).enumerate() {
            for (i, out) in row[lane..lane + count].iter_mut().enumerate() {
                *out = these[i * cs + j];
            }
        }
        n += count;
        rows = rest;
    }
}

/// Code `i` into `out` (`code_size` bytes).
pub fn get(blocks: &[u8], i: usize, out: &mut [u8]) {
    let cs = out.len();
    let block = &blocks[i / BLOCK * BLOCK * cs..];
    for (j, o) in out.iter_mut().enumerate() {
        *o = block[j * BLOCK + i % BLOCK];
    }
}

/// Removes code `i` of `n` from `blocks` (`blocks_len(n)` bytes), moving
/// the later codes one place down (their order is kept) and the last
/// code's place back to padding; the bytes past `blocks_len(n - 1)` are
/// then all zero.
pub fn remove(blocks: &mut [u8], n: usize, i: usize, code_size: usize) {
    let cs = code_size;
    debug_assert!(i < n && blocks.len() == blocks_len(n, cs));
    let last_block = (n - 1) / BLOCK;
    for b in i / BLOCK..=last_block {
        let from = if b == i / BLOCK { i % BLOCK } else { 0 };
        for j in 0..cs {
            let row = b * BLOCK * cs + j * BLOCK;
            blocks.copy_within(row + from + 1..row + BLOCK, row + from);
            // The next block's first code moves into this block's last lane.
            blocks[row + BLOCK - 1] = if b < last_block { blocks[row + BLOCK * cs] } else { 0 };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_get_remove_keep_order_and_padding() {
        let cs = 3;
        let code = |v: usize| [v as u8, (v * 7) as u8, (v * 13 + 1) as u8];
        let mut blocks = Vec::new();
        let mut want: Vec<usize> = (0..150).collect();
        for (n, &v) in want.iter().enumerate() {
            push(&mut blocks, n, &code(v));
        }
        // From the middle of a block, a block's first and last code, the last code.
        for at in [70usize, 64, 63, 0, 145] {
            remove(&mut blocks, want.len(), at, cs);
            assert!(blocks[blocks_len(want.len() - 1, cs)..].iter().all(|&b| b == 0), "freed bytes zeroed");
            blocks.truncate(blocks_len(want.len() - 1, cs));
            want.remove(at);
            assert_eq!(blocks.len(), blocks_len(want.len(), cs));
            let mut out = [0u8; 3];
            for (i, &v) in want.iter().enumerate() {
                get(&blocks, i, &mut out);
                assert_eq!(out, code(v), "code {i} after removing {at}");
            }
            for i in want.len()..blocks.len() / cs {
                get(&blocks, i, &mut out);
                assert_eq!(out, [0; 3], "padding lane {i}");
            }
        }
        // Appending runs of codes, across block ends, lays them out as pushes do.
        let mut rows = Vec::new();
        let mut n = 0;
        for run in [1usize, 5, 64, 70, 3] {
            let codes: Vec<u8> = (n..n + run).flat_map(code).collect();
            rows.resize(blocks_len(n + run, cs), 0);
            write_rows(&mut rows, n, &codes, cs);
            n += run;
        }
        let mut pushed = Vec::new();
        for v in 0..n {
            push(&mut pushed, v, &code(v));
        }
        assert_eq!(rows, pushed);
        while !want.is_empty() {
            remove(&mut blocks, want.len(), 0, cs);
            blocks.truncate(blocks_len(want.len() - 1, cs));
            want.remove(0);
        }
        assert!(blocks.is_empty());
    }
}
