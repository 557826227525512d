/*
 * The sparse first layer's micro-kernel: out = normalise(X) @ W' for a CSR block of cells.
 *
 * Why C: the product is bound by how weights reach the FMA units, not by arithmetic.
 * numba cannot keep a 128-wide accumulator in registers across a cell's non-zeros (it
 * stores it back after every multiply-add), so this file does the one loop that
 * matters by hand and Python (encoder/sparse.py) does everything else.
 *
 * The schedule, per chunk of `cell_block` cells:
 *   1. Bucket the chunk's non-zeros by gene block (`gene_block` genes), normalising raw
 *      counts as they are copied (log1p(count * target_sum / total)) and diverting the
 *      genes marked dense to a dense buffer (their product is one BLAS call upstream).
 *   2. For each tile of TILE hidden units and each gene block, whose TILE-wide weight
 *      slices (gene_block * TILE * 4 bytes, 256 KB by default) stay in the core's L2,
 *      walk every cell of the chunk: load its TILE accumulators into vector registers,
 *      add value * weight-slice for each of its non-zeros in the block, store them back.
 *   Weights are read from L2 once per non-zero and from memory once per chunk; the
 *   accumulators touch memory once per (cell, gene block), not once per non-zero.
 *
 * No Python API is used: the library is loaded with ctypes, which releases the GIL, so
 * Python threads run chunks of rows in parallel. Built with target_clones so one binary
 * picks AVX-512, AVX2+FMA or baseline SSE code at load time.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define TILE 128
#ifndef PREFETCH_ROWS
#define PREFETCH_ROWS 4
#endif

typedef float vec16 __attribute__((vector_size(64), aligned(4)));
#define NVEC (TILE / 16)

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define MULTIVERSION __attribute__((target_clones("avx512f", "arch=haswell", "default")))
#else
#define MULTIVERSION
#endif

/* One non-zero of the chunk: its gene and its (normalised) value, read together. */
typedef struct {
  int32_t gene;
  float value;
} entry;

/* The TILE-wide product for one chunk. Entries are row-major, bucketed by gene block within
 * each row: those of row r and gene block b are nz[seg[r * (n_blocks + 1) + b] .. +1).
 * While a row is summed, the next row's entries for the same block are prefetched (a
 * block's pass visits every row, so its reads are short runs 16 KB apart, which the
 * hardware prefetchers do not follow). acc rows are TILE floats, contiguous. */
MULTIVERSION
static void accumulate_tile(const int64_t *seg, int64_t n_rows, int64_t n_blocks,
                            const entry *nz, const float *w_tile, float *acc) {
  const int64_t stride = n_blocks + 1;
  for (int64_t b = 0; b < n_blocks; b++) {
    for (int64_t r = 0; r < n_rows; r++) {
      const int64_t s = seg[r * stride + b], e = seg[r * stride + b + 1];
      if (r + PREFETCH_ROWS < n_rows) {
        const char *next = (const char *)(nz + seg[(r + PREFETCH_ROWS) * stride + b]);
        for (int q = 0; q < 4 * 64; q += 64) __builtin_prefetch(next + q, 0, 3);
      }
      float *o = acc + r * TILE;
      vec16 a[NVEC];
      if (b == 0) {
        for (int i = 0; i < NVEC; i++) a[i] = (vec16){0};
      } else {
        if (s == e) continue;
        for (int i = 0; i < NVEC; i++) memcpy(&a[i], o + 16 * i, 64);
      }
      for (int64_t k = s; k < e; k++) {
        const float v = nz[k].value;
        const vec16 *wr = (const vec16 *)(w_tile + (int64_t)nz[k].gene * TILE);
#pragma GCC unroll 8
        for (int i = 0; i < NVEC; i++) a[i] += v * wr[i];
      }
      for (int i = 0; i < NVEC; i++) memcpy(o + 16 * i, &a[i], 64);
    }
  }
}

int cs_first_layer_tile(void) { return TILE; }

/*
 * Rows [row0, row1) of out (n x n_tiles*TILE, row-major) from the CSR arrays.
 * scale: per-cell target_sum/total when data holds raw counts, else NULL.
 * dense_col: per gene, its column in xd (n x xd_cols) or -1; NULL when no gene is dense.
 * wt: (n_tiles, n_genes, TILE) float32, tile t holding W'[t*TILE:(t+1)*TILE, :].T.
 * gene_block must be a power of two (a shift, not a division, per non-zero).
 * Returns 0, -1 when a scratch buffer cannot be allocated, -2 for a bad gene_block.
 */
int cs_first_layer(const int64_t *indptr, const int32_t *indices, const float *data,
                   const float *scale, const int32_t *dense_col, float *xd, int64_t xd_cols,
                   const float *wt, int64_t n_genes, int64_t n_tiles, float *out,
                   int64_t row0, int64_t row1, int64_t gene_block, int64_t cell_block) {
  if (gene_block < 1 || (gene_block & (gene_block - 1))) return -2;
  int shift = 0;
  while ((1LL << shift) < gene_block) shift++;
  const int64_t n_blocks = (n_genes + gene_block - 1) / gene_block;
  const int64_t hidden = n_tiles * TILE;
  int64_t max_nnz = 0;
  for (int64_t c0 = row0; c0 < row1; c0 += cell_block) {
    const int64_t c1 = c0 + cell_block < row1 ? c0 + cell_block : row1;
    if (indptr[c1] - indptr[c0] > max_nnz) max_nnz = indptr[c1] - indptr[c0];
  }
  int64_t *seg = malloc(sizeof(int64_t) * cell_block * (n_blocks + 1));
  entry *nz = malloc(sizeof(entry) * (max_nnz + 1));
  float *acc = aligned_alloc(64, sizeof(float) * cell_block * TILE);
  if (!seg || !nz || !acc) {
    free(seg), free(nz), free(acc);
    return -1;
  }
  for (int64_t c0 = row0; c0 < row1; c0 += cell_block) {
    const int64_t c1 = c0 + cell_block < row1 ? c0 + cell_block : row1;
    const int64_t n_rows = c1 - c0;
    /* 1. bucket each row's entries by gene block: count, prefix-sum, scatter (normalising
     *    as we go); a row's entries stay within its own few KB, so this pass is cheap */
    memset(seg, 0, sizeof(int64_t) * n_rows * (n_blocks + 1));
    for (int64_t r = c0; r < c1; r++) {
      int64_t *cnt = seg + (r - c0) * (n_blocks + 1);
      for (int64_t k = indptr[r]; k < indptr[r + 1]; k++) {
        const int32_t g = indices[k];
        if (dense_col && dense_col[g] >= 0) continue;
        cnt[(g >> shift) + 1]++;
      }
    }
    int64_t pos = 0;
    for (int64_t r = 0; r < n_rows; r++) {
      int64_t *cnt = seg + r * (n_blocks + 1);
      cnt[0] = pos;
      for (int64_t b = 1; b <= n_blocks; b++) cnt[b] += cnt[b - 1];
      pos = cnt[n_blocks];
    }
    for (int64_t r = c0; r < c1; r++) {
      int64_t *fill = seg + (r - c0) * (n_blocks + 1);
      const float s = scale ? scale[r] : 1.0f;
      for (int64_t k = indptr[r]; k < indptr[r + 1]; k++) {
        const int32_t g = indices[k];
        const float v = scale ? log1pf(data[k] * s) : data[k];
        if (dense_col && dense_col[g] >= 0) {
          xd[r * xd_cols + dense_col[g]] += v;
          continue;
        }
        const int64_t p = fill[g >> shift]++;
        nz[p].gene = g;
        nz[p].value = v;
      }
      /* the scatter advanced each block's start to its end: shift back by one block */
      for (int64_t b = n_blocks; b > 0; b--) fill[b] = fill[b - 1];
      fill[0] = r > c0 ? seg[(r - c0 - 1) * (n_blocks + 1) + n_blocks] : 0;
    }
    /* 2. one TILE of hidden units at a time over L2-resident gene blocks of weights */
    for (int64_t t = 0; t < n_tiles; t++) {
      accumulate_tile(seg, n_rows, n_blocks, nz, wt + t * n_genes * TILE, acc);
      for (int64_t r = 0; r < n_rows; r++)
        memcpy(out + (c0 + r) * hidden + t * TILE, acc + r * TILE, sizeof(float) * TILE);
    }
  }
  free(seg), free(nz), free(acc);
  return 0;
}
