"""The CuPy fast path for training-mode batch norm: four fused CUDA kernels.

A C-contiguous input (N, C, *spatial) is seen as (N, C, L), L = prod(spatial) (L = 1 for
2-D input).  Channel c holds the m = N·L values x[n, c, l] at ``(n·C + c)·L + l``: N runs
of L contiguous values ("planes") when L > 1, a strided column when L = 1.

Kernels (CUDA source in :data:`KERNEL_SOURCE`, one compiled module per dtype):

``bncourse_forward_stats``      per channel: reference r, shifted sums, mean, biased variance,
                                and the coefficients of the normalization (one pass over x);
``bncourse_forward_normalize``  y = (x − r)·scale + offset (one elementwise pass);
``bncourse_backward_sums``      per channel: Σ dy and Σ dy·(x − r), then dγ, dβ and the
                                coefficients of dx (one pass over x and dy);
``bncourse_backward_dx``        dx = k·(dy − ((x − r)·P + Q)) (one elementwise pass).

So the forward pass reads x twice and writes y; the backward pass reads x and dy twice and
writes dx.  No statistic needs a round trip to the host: two launches a pass (plus a memset).
One pass for the statistics rather than two (mean, then squared deviations): the kernels
are memory-bound and a second pass would add a read of x to the forward's 3·|x| of traffic
(about a third more time).  That choice rests on this traffic count, not on a measurement:
the kernels were written without a GPU (see ``benchmarks/README.md``).

Numerics — the same argument as ``bncourse.kernels.numpy_tiles``.  Per channel we sum the
*shifted* values t = x − r in the compute precision (float32 for float16/float32 data),
in runs of at most ``RUN`` values per thread, and add each run to a float64 accumulator:

    A = Σ t,   B = Σ t²,   μ = r + A/m,   M2 = max(B − A²/m, 0),   σ² = M2/m.

The relative error of M2 is about κ·RUN·u (u = 2⁻²⁴), κ = B/M2 = 1 + (μ − r)²/σ², so r only
has to be within a few σ of μ.  Every block of a channel computes the same r: the mean of
``SAMPLE`` values spread evenly over the channel (read from L2 after the first block).  The
blocks' float64 sums are merged in float64, in a fixed order (no floating-point atomics:
results are deterministic), by the last block of the channel, which then finishes the
channel; if the sample was unlucky (κ > ``KAPPA_MAX``, e.g. adversarially ordered data; the
test of :func:`bncourse.core.policy.needs_recentring`, B > KAPPA_MAX·M2, in CUDA C) that
block sums the whole channel again around r = μ, now known well enough to make κ ≈ 1 (one
block streaming a channel is slow, but only data built to defeat the sample gets there).
Plain float32 accumulation (torch's Welford in float32) or E[x²] − E[x]² would lose every
digit on data like 1e4 + N(0, 1); per-element float64 accumulation would be exact too, but
float64 runs at 1/32–1/64 of the float32 rate on consumer GPUs, where it would make these
memory-bound kernels compute-bound.  With one float64 add per RUN values it costs nothing.

The normalization reuses t:  y = t·s + (β + (r − μ)·s)  with s = γ/sqrt(σ² + ε), so a huge
common offset is never rounded to the input precision.  All per-channel arithmetic (the
"finishing": μ, σ², κ, the coefficients, dγ, dβ) is float64, with the formulas and names of
``bncourse.kernels.numpy_tiles``, but done by the last block in the kernel rather than shared Python: on
(C,)-vectors in CuPy it would be some twenty tiny launches per pass and a host round trip
for the κ test.  float16 data is loaded as float16, computed in float32 and stored back as
float16; float64 data is computed in float64 throughout.

Why RawKernels and not ``ElementwiseKernel``/``ReductionKernel``: the reductions run over two
non-adjacent axes (N and space) with float32 runs merged in float64 and a data-dependent
second pass; the elementwise kernels need each value's channel, which ``ElementwiseKernel``
would compute with two 64-bit divisions per element (more instructions than the memory
system leaves time for at float16).  Here each thread tracks its channel incrementally.

Importing this module needs neither CuPy nor a GPU; the kernels compile on first use.
"""

from dataclasses import dataclass
import functools
import math

import numpy as np

from ..core.policy import KAPPA_MAX, compute_dtype  # the same numerical policy as the CPU
from ..core.policy import REFERENCE_SAMPLE_GPU as SAMPLE

try:
    import cupy as cp
except ImportError:  # pragma: no cover - depends on the machine
    cp = None

BLOCK = 256              # threads per block (a power of two)
RUN = 64                 # values per float32 partial sum of one thread
BLOCKS_PER_SM = 8        # blocks launched per multiprocessor: 2048 threads' worth (the
                         # reductions, at <= 64 registers a thread, run 4 at a time)
MAX_TILE = 32            # 2-D input: channels side by side in one block (a warp's width)

# storage type, compute type (C names) by dtype name
TYPES = {"float16": ("unsigned short", "float"),
         "float32": ("float", "float"),
         "float64": ("double", "double")}

# Only float16 needs help: bits in an unsigned short, converted with the PTX instructions that
# cuda_fp16.h uses (no header needed under NVRTC).
HALF_CONVERSIONS = r"""
__device__ __forceinline__ float half_to_float(unsigned short h) {
    float f; asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h)); return f;
}
__device__ __forceinline__ unsigned short float_to_half(float f) {
    unsigned short h; asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f)); return h;
}
__device__ __forceinline__ unsigned short double_to_half(double d) {
    unsigned short h; asm("cvt.rn.f16.f64 %0, %1;" : "=h"(h) : "d"(d)); return h;
}
"""

KERNEL_SOURCE = r"""
// Compiled once per dtype after:  typedef <storage> T;  typedef <compute> A;
//   T: how x, y, dy, dx are stored (unsigned short holds float16 bits)
//   A: what they are computed in (float for float16/float32, double for float64)
// Layout: channel c of a C-contiguous (N, C, L) array holds the m = N·L values
//   j = n·L + l  at  pos(c, j) = (n·C + c)·L + l.

#define BLOCK __BLOCK__
#define RUN __RUN__
#define SAMPLE __SAMPLE__
#define KAPPA_MAX __KAPPA_MAX__
#define UNROLL (16 / (int)sizeof(T))     // loads in flight per thread: 16 bytes per array

__device__ __forceinline__ float value(unsigned short v) { return half_to_float(v); }
__device__ __forceinline__ float value(float v) { return v; }
__device__ __forceinline__ double value(double v) { return v; }
__device__ __forceinline__ void assign(unsigned short& d, float v) { d = float_to_half(v); }
__device__ __forceinline__ void assign(float& d, float v) { d = v; }
__device__ __forceinline__ void assign(double& d, double v) { d = v; }

// gamma, beta, dgamma, dbeta may be float16/32/64 (kind = itemsize) or absent (kind = 0)
__device__ double load_param(const void* p, int kind, int c, double absent) {
    if (kind == 2) return half_to_float(((const unsigned short*)p)[c]);
    if (kind == 4) return ((const float*)p)[c];
    if (kind == 8) return ((const double*)p)[c];
    return absent;
}
__device__ void store_param(void* p, int kind, int c, double v) {
    if (kind == 2) ((unsigned short*)p)[c] = double_to_half(v);
    if (kind == 4) ((float*)p)[c] = (float)v;
    if (kind == 8) ((double*)p)[c] = v;
}

__device__ __forceinline__ long long position(int c, long long j, int C, long long L) {
    long long n = j / L;
    return (n * C + c) * L + (j - n * L);
}

// A block is a tile of CW channels (CW = 1 for L > 1) times BLOCK/CW "lanes":
// thread tid works for channel blockIdx.x·CW + tid % CW as lane tid / CW.
// After block_reduce, sa[tx], sb[tx] hold the sums of a, b over the lanes of column tx
// (a fixed tree: the result does not depend on timing).
__device__ void block_reduce(double a, double b, int CW, double* sa, double* sb) {
    const int tid = threadIdx.x;
    __syncthreads();                          // earlier readers of sa, sb are done
    sa[tid] = a;
    sb[tid] = b;
    __syncthreads();
    for (int stride = BLOCK / 2; stride >= CW; stride /= 2) {
        if (tid < stride) {
            sa[tid] += sa[tid + stride];
            sb[tid] += sb[tid + stride];
        }
        __syncthreads();
    }
}

// Σ x over SAMPLE values spread evenly over channel c; this lane's share.
__device__ double sample_sum(const T* x, int c, int C, long long L, long long m,
                             int lane, int lanes) {
    const long long ns = m < SAMPLE ? m : SAMPLE;
    double s = 0.0;
    for (long long k = lane; k < ns; k += lanes)
        s += (double)value(x[position(c, k * m / ns, C, L)]);
    return s;
}

// This lane's share of the values j0 <= j < j1 of channel c (j = j0 + lane + k·lanes):
//   GRAD = false:  s1 = Σ t,   s2 = Σ t²      with t = x − r
//   GRAD = true:   s1 = Σ dy,  s2 = Σ dy·t
// in float32 runs of RUN values, each added to the float64 s1, s2.
template <bool GRAD>
__device__ void range_sums(const T* __restrict__ x, const T* __restrict__ dy, A r, int c, int C,
                           long long L, long long j0, long long j1, int lane, int lanes,
                           double& s1, double& s2) {
    s1 = 0.0;
    s2 = 0.0;
    long long j = j0 + lane;
    if (j >= j1) return;
    long long l = j % L;                       // (n, l) of j, tracked as j advances
    long long pos = position(c, j, C, L);
    const long long plane = (long long)C * L;  // from x[n, c, l] to x[n + 1, c, l]
    const long long dl = lanes % L;
    const long long jump = (lanes / L) * plane + dl;
    while (j < j1) {
        A a1 = 0, a2 = 0;                      // one run
        for (int k = 0; k < RUN && j < j1; k += UNROLL) {
            A t[UNROLL], g[UNROLL];
#pragma unroll
            for (int u = 0; u < UNROLL; ++u) {     // issue the loads first ...
                const bool ok = j < j1;
                t[u] = ok ? value(x[pos]) - r : (A)0;
                if (GRAD) g[u] = ok ? value(dy[pos]) : (A)0;
                j += lanes;
                l += dl;
                pos += jump;
                if (l >= L) { l -= L; pos += plane - L; }
            }
#pragma unroll
            for (int u = 0; u < UNROLL; ++u) {     // ... then accumulate
                if (GRAD) { a1 += g[u]; a2 += g[u] * t[u]; }
                else      { a1 += t[u]; a2 += t[u] * t[u]; }
            }
        }
        s1 += (double)a1;
        s2 += (double)a2;
    }
}

// Each block stores its per-channel sums in partial[c][s] (s = blockIdx.y, S blocks per
// tile).  Returns true in the last block of the tile to arrive, with the totals over all S
// blocks in sa[tx], sb[tx], added in the order s = 0, 1, ... whichever block is last.
__device__ bool merge_tile(double s1, double s2, double* partial, unsigned int* done, int C,
                           int S, int CW, double* sa, double* sb, unsigned int* ticket) {
    const int tid = threadIdx.x, tx = tid % CW, lane = tid / CW, lanes = BLOCK / CW;
    const int c = blockIdx.x * CW + tx;
    block_reduce(s1, s2, CW, sa, sb);
    if (lane == 0 && c < C) {
        partial[2 * ((long long)c * S + blockIdx.y)] = sa[tx];
        partial[2 * ((long long)c * S + blockIdx.y) + 1] = sb[tx];
        __threadfence();                       // visible to the last block before it counts
    }
    __syncthreads();
    if (tid == 0) *ticket = atomicAdd(&done[blockIdx.x], 1u);
    __syncthreads();
    if (*ticket != (unsigned int)(S - 1)) return false;
    __threadfence();
    double a = 0.0, b = 0.0;
    if (c < C)
        for (int s = lane; s < S; s += lanes) {
            a += __ldcg(&partial[2 * ((long long)c * S + s)]);     // L2, not a stale L1
            b += __ldcg(&partial[2 * ((long long)c * S + s) + 1]);
        }
    block_reduce(a, b, CW, sa, sb);
    return true;
}

// Forward statistics.  Grid (tiles, S): block (i, s) sums values [s·chunk, (s+1)·chunk) of
// the channels of tile i.  The last block of a tile writes, per channel c:
//   stats = (mean, biased var, invstd) float64,  coef = (r, scale, offset) in A.
extern "C" __global__ void bncourse_forward_stats(
        const T* __restrict__ x, A* coef, double* stats, double* partial, unsigned int* done,
        const void* gamma, int gamma_kind, const void* beta, int beta_kind, double eps,
        int C, long long L, long long m, long long chunk, int S, int CW) {
    __shared__ double sa[BLOCK], sb[BLOCK];
    __shared__ unsigned int ticket;
    __shared__ int any_redo;
    const int tid = threadIdx.x, tx = tid % CW, lane = tid / CW, lanes = BLOCK / CW;
    const int c = blockIdx.x * CW + tx;
    const bool valid = c < C;

    // the reference r: the same in every block of the channel
    block_reduce(valid ? sample_sum(x, c, C, L, m, lane, lanes) : 0.0, 0.0, CW, sa, sb);
    A r = (A)(sa[tx] / (double)(m < SAMPLE ? m : SAMPLE));

    const long long j0 = (long long)blockIdx.y * chunk;
    const long long j1 = j0 + chunk < m ? j0 + chunk : m;
    double s1, s2;
    range_sums<false>(x, x, r, c, C, L, j0, valid ? j1 : j0, lane, lanes, s1, s2);
    if (!merge_tile(s1, s2, partial, done, C, S, CW, sa, sb, &ticket)) return;

    // the last block of the tile: finish its channels (float64)
    const double mm = (double)m;
    double sum_t = sa[tx], sum_tt = sb[tx];
    double M2 = fmax(sum_tt - sum_t * sum_t / mm, 0.0);
    const bool redo = valid && sum_tt > KAPPA_MAX * M2;  // κ = B/M2 too large (policy.needs_recentring)
    if (tid == 0) any_redo = 0;
    __syncthreads();
    if (redo && lane == 0) any_redo = 1;
    __syncthreads();
    if (any_redo) {                           // sum the whole channel again around r = μ
        const A r2 = (A)((double)r + sum_t / mm);
        range_sums<false>(x, x, r2, c, C, L, 0, redo ? m : 0, lane, lanes, s1, s2);
        block_reduce(s1, s2, CW, sa, sb);
        if (redo) {
            r = r2;
            sum_t = sa[tx];
            sum_tt = sb[tx];
            M2 = fmax(sum_tt - sum_t * sum_t / mm, 0.0);
        }
    }
    if (lane == 0 && valid) {
        const double mean = (double)r + sum_t / mm;
        const double var = M2 / mm;
        const double invstd = 1.0 / sqrt(var + eps);
        const double scale = invstd * load_param(gamma, gamma_kind, c, 1.0);
        const double offset = load_param(beta, beta_kind, c, 0.0) + ((double)r - mean) * scale;
        stats[c] = mean;
        stats[C + c] = var;
        stats[2 * C + c] = invstd;
        coef[c] = r;
        coef[C + c] = (A)scale;
        coef[2 * C + c] = (A)offset;
    }
}

// Backward sums, same grid as the forward statistics.  With the forward's r, μ, invstd and
// k = γ·invstd, the last block of a tile writes, per channel c:
//   dgamma = Σ dy·x̂,  dbeta = Σ dy,  coef_b = (r, P, Q, k) in A with
//   P = mean(dy·x̂)·invstd,  Q = mean(dy) + P·(r − μ),  so that  dx = k·(dy − (P·t + Q)).
extern "C" __global__ void bncourse_backward_sums(
        const T* __restrict__ x, const T* __restrict__ dy, const A* coef, const double* stats,
        A* coef_b, double* partial, unsigned int* done, const void* gamma, int gamma_kind,
        void* dgamma, int dgamma_kind, void* dbeta, int dbeta_kind,
        int C, long long L, long long m, long long chunk, int S, int CW) {
    __shared__ double sa[BLOCK], sb[BLOCK];
    __shared__ unsigned int ticket;
    const int tid = threadIdx.x, tx = tid % CW, lane = tid / CW, lanes = BLOCK / CW;
    const int c = blockIdx.x * CW + tx;
    const bool valid = c < C;
    const A r = valid ? coef[c] : (A)0;

    const long long j0 = (long long)blockIdx.y * chunk;
    const long long j1 = j0 + chunk < m ? j0 + chunk : m;
    double s1, s2;
    range_sums<true>(x, dy, r, c, C, L, j0, valid ? j1 : j0, lane, lanes, s1, s2);
    if (!merge_tile(s1, s2, partial, done, C, S, CW, sa, sb, &ticket)) return;

    if (lane == 0 && valid) {
        const double mm = (double)m;
        const double sum_dy = sa[tx], sum_dy_t = sb[tx];
        const double invstd = stats[2 * C + c];
        const double r_minus_mean = (double)r - stats[c];
        const double sum_dy_xhat = invstd * (sum_dy_t + r_minus_mean * sum_dy);
        const double k = invstd * load_param(gamma, gamma_kind, c, 1.0);
        const double P = sum_dy_xhat / mm * invstd;
        const double Q = sum_dy / mm + P * r_minus_mean;
        coef_b[c] = r;
        coef_b[C + c] = (A)P;
        coef_b[2 * C + c] = (A)Q;
        coef_b[3 * C + c] = (A)k;
        store_param(dgamma, dgamma_kind, c, sum_dy_xhat);
        store_param(dbeta, dbeta_kind, c, sum_dy);
    }
}

// out[i] = (x[i] − r)·coef1 + coef2, and for GRAD:  out[i] = coef3·(dy[i] − that),
// with the coefficients of i's channel  c = (i / L) % C,  coef laid out (rows, C).
// A grid-stride loop; each thread tracks its (c, l) as i advances, without dividing.
template <bool GRAD>
__device__ void channel_affine(const T* __restrict__ x, const T* __restrict__ dy,
                               T* __restrict__ out, const A* __restrict__ coef, int C,
                               long long L, long long total) {
    const long long stride = (long long)gridDim.x * BLOCK;
    long long i = (long long)blockIdx.x * BLOCK + threadIdx.x;
    long long l = i % L;
    int c = (int)((i / L) % C);
    const long long dl = stride % L;
    const int dc = (int)((stride / L) % C);
    while (i < total) {
        A v[UNROLL], g[UNROLL];
        long long at[UNROLL];
        int ch[UNROLL];
#pragma unroll
        for (int u = 0; u < UNROLL; ++u) {     // issue the loads first ...
            at[u] = i;
            ch[u] = c;
            if (i < total) {
                v[u] = value(x[i]);
                if (GRAD) g[u] = value(dy[i]);
            }
            i += stride;
            l += dl;
            c += dc;
            if (l >= L) { l -= L; c += 1; }
            if (c >= C) c -= C;
        }
#pragma unroll
        for (int u = 0; u < UNROLL; ++u) {     // ... then compute and store
            if (at[u] < total) {
                const int k = ch[u];
                A y = (v[u] - coef[k]) * coef[C + k] + coef[2 * C + k];
                if (GRAD) y = coef[3 * C + k] * (g[u] - y);
                assign(out[at[u]], y);
            }
        }
    }
}

extern "C" __global__ void bncourse_forward_normalize(
        const T* __restrict__ x, T* __restrict__ y, const A* __restrict__ coef, int C,
        long long L, long long total) {
    channel_affine<false>(x, x, y, coef, C, L, total);
}

extern "C" __global__ void bncourse_backward_dx(
        const T* __restrict__ x, const T* __restrict__ dy, T* __restrict__ dx,
        const A* __restrict__ coef_b, int C, long long L, long long total) {
    channel_affine<true>(x, dy, dx, coef_b, C, L, total);
}
"""


KERNEL_NAMES = ("bncourse_forward_stats", "bncourse_forward_normalize",
                "bncourse_backward_sums", "bncourse_backward_dx")


def source(dtype, half_conversions=HALF_CONVERSIONS):
    """The complete CUDA source for data of ``dtype`` ('float16', 'float32', 'float64')."""
    storage, compute = TYPES[np.dtype(dtype).name]
    body = (KERNEL_SOURCE.replace("__BLOCK__", str(BLOCK)).replace("__RUN__", str(RUN))
            .replace("__SAMPLE__", str(SAMPLE)).replace("__KAPPA_MAX__", repr(KAPPA_MAX)))
    return f"{half_conversions}\ntypedef {storage} T;\ntypedef {compute} A;\n{body}"


# One module per dtype, created at import when CuPy is importable (creating compiles
# nothing; the first launch on a device compiles, and CuPy caches the binary on disk).
bncourse_kernels = ({} if cp is None else
                    {name: cp.RawModule(code=source(name)) for name in TYPES})


def supports(x):
    """Whether the fused kernels handle ``x`` (a CuPy array; else the generic path runs)."""
    return x.dtype.name in TYPES and 2 <= x.ndim <= 5 and x.size > 0


# ----------------------------------------------------------------------------- launch plan


@dataclass(frozen=True)
class LaunchPlan:
    """Launch geometry for a C-contiguous (N, C, L) array.

    The reduction kernels run on a grid (tiles, S): a tile is ``CW`` channels side by side
    (1 if L > 1; up to a warp's width for 2-D input, so that a warp reads a contiguous row
    segment), and each channel's m values are split into S chunks of ``chunk`` values, one
    per block.  The elementwise kernels run a grid-stride loop on ``grid`` blocks.
    """

    N: int
    C: int
    L: int
    CW: int
    tiles: int
    S: int
    chunk: int
    grid: int

    @property
    def count(self):
        """m, the values per channel."""
        return self.N * self.L

    @property
    def total(self):
        return self.N * self.C * self.L


def make_plan(shape, sm_count):
    """A :class:`LaunchPlan` for a C-contiguous array of ``shape`` on a GPU with ``sm_count``
    multiprocessors: about ``BLOCKS_PER_SM`` blocks per multiprocessor, and at least one
    run of ``RUN`` values per thread."""
    N, C, L = shape[0], shape[1], math.prod(shape[2:])
    m = N * L
    CW = 1 if L > 1 else min(MAX_TILE, 1 << (C - 1).bit_length())
    tiles = -(-C // CW)
    target = sm_count * BLOCKS_PER_SM
    lanes = BLOCK // CW
    S = max(1, min(-(-target // tiles), -(-m // (lanes * RUN)), 65535))
    chunk = -(-m // S)
    S = -(-m // chunk)                         # no empty block
    grid = max(1, min(-(-(N * C * L) // BLOCK), target))
    return LaunchPlan(N, C, L, CW, tiles, S, chunk, grid)


# ----------------------------------------------------------------------------- device seams
# Everything below talks to CuPy through ``cp`` and these three functions only, so that the
# test suite can run this module against a CPU emulation of the kernels.


def _sm_count(x):
    """Multiprocessors of the GPU that holds ``x``."""
    return _multiprocessors(x.device.id)


@functools.lru_cache(maxsize=None)
def _multiprocessors(device_id):
    return cp.cuda.Device(device_id).attributes["MultiProcessorCount"]


def _device(x):
    """The context manager that makes ``x``'s GPU current."""
    return x.device


def _launch(name, dtype, grid, block, args):
    """Run kernel ``name`` of the module for ``dtype`` on the current device and stream."""
    _function(np.dtype(dtype).name, name)(grid, block, args)


@functools.lru_cache(maxsize=None)
def _function(dtype_name, name):
    return bncourse_kernels[dtype_name].get_function(name)


def _optional(v, placeholder):
    """Kernel arguments (array, kind) for an optional (C,)-vector: kind is its itemsize, or
    0 if absent, and then ``placeholder`` is passed and never read."""
    if v is None:
        return placeholder, np.int32(0)
    return cp.ascontiguousarray(v), np.int32(v.dtype.itemsize)


# ----------------------------------------------------------------------------- forward


@dataclass
class FusedCache:
    """What the fused backward needs; ``mean``/``var`` as in ``numpy_tiles.FastCache``."""

    X: object          # C-contiguous input, x's dtype
    plan: LaunchPlan
    coef: object       # (3, C) compute dtype: r, scale, offset
    stats: object      # (3, C) float64: mean, biased var, invstd
    gamma: object      # (C,) or None
    beta_dtype: object
    shape: tuple
    dtype: object

    @property
    def mean(self):
        return self.stats[0]

    @property
    def var(self):
        """Biased variance (1/m), the one used to normalize."""
        return self.stats[1]

    @property
    def count(self):
        return self.plan.count

    def backward(self, dy):
        return backward(dy, self)


def _reduction_buffers(plan):
    """Per-block partial sums and the tiles' arrival counters (zeroed)."""
    return (cp.empty(2 * plan.C * plan.S, dtype=np.float64),
            cp.zeros(plan.tiles, dtype=np.uint32))


def _geometry(plan):
    return (np.int32(plan.C), np.int64(plan.L), np.int64(plan.count), np.int64(plan.chunk),
            np.int32(plan.S), np.int32(plan.CW))


def forward(x, gamma, beta, eps):
    """Training-mode batch norm of a CuPy array (validated by the caller): (y, FusedCache)."""
    with _device(x):
        X = cp.ascontiguousarray(x)
        plan = make_plan(X.shape, _sm_count(X))
        cdt = compute_dtype(X.dtype)
        coef = cp.empty((3, plan.C), dtype=cdt)
        stats = cp.empty((3, plan.C), dtype=np.float64)
        partial, done = _reduction_buffers(plan)
        g = _optional(gamma, stats)
        _launch("bncourse_forward_stats", X.dtype, (plan.tiles, plan.S), (BLOCK,),
                (X, coef, stats, partial, done, *g, *_optional(beta, stats), np.float64(eps),
                 *_geometry(plan)))
        Y = cp.empty_like(X)
        _launch("bncourse_forward_normalize", X.dtype, (plan.grid,), (BLOCK,),
                (X, Y, coef, np.int32(plan.C), np.int64(plan.L), np.int64(plan.total)))
    cache = FusedCache(X, plan, coef, stats, None if gamma is None else g[0],
                       None if beta is None else beta.dtype, tuple(x.shape), x.dtype)
    return Y, cache


# ----------------------------------------------------------------------------- backward


def backward(dy, cache):
    """(dx, dgamma, dbeta) for :func:`forward`.

    With k = γ/σ̂, q = mean(dy), p = mean(dy·x̂) per channel and x̂ = (t + r − μ)/σ̂:
        dx = k·(dy − q − p·x̂) = k·(dy − (P·t + Q)),   P = p/σ̂,   Q = q + P·(r − μ).
    """
    X, plan = cache.X, cache.plan
    with _device(X):
        DY = cp.ascontiguousarray(dy, dtype=X.dtype)
        coef_b = cp.empty((4, plan.C), dtype=cache.coef.dtype)
        partial, done = _reduction_buffers(plan)
        dgamma = None if cache.gamma is None else cp.empty(plan.C, dtype=cache.gamma.dtype)
        dbeta = None if cache.beta_dtype is None else cp.empty(plan.C, dtype=cache.beta_dtype)
        _launch("bncourse_backward_sums", X.dtype, (plan.tiles, plan.S), (BLOCK,),
                (X, DY, cache.coef, cache.stats, coef_b, partial, done,
                 *_optional(cache.gamma, cache.stats), *_optional(dgamma, cache.stats),
                 *_optional(dbeta, cache.stats), *_geometry(plan)))
        DX = cp.empty_like(X)
        _launch("bncourse_backward_dx", X.dtype, (plan.grid,), (BLOCK,),
                (X, DY, DX, coef_b, np.int32(plan.C), np.int64(plan.L), np.int64(plan.total)))
    return DX, dgamma, dbeta
