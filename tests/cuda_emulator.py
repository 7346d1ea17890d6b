"""Run the CUDA kernels of ``bncourse.kernels.cuda`` on the CPU, for tests without a GPU.

The kernel source is compiled by the host C++ compiler after a small runtime that models
what the kernels use of CUDA: a block's threads are fibers (``ucontext``) that the runtime
runs in turn up to each ``__syncthreads`` (reaching a barrier with only part of the block is
reported and aborts), ``__shared__`` variables (one block runs at a time, so a static
variable is the block's shared memory), ``atomicAdd``, ``__threadfence``, ``__ldcg`` and
float16 conversions (``_Float16``).  Blocks run one after another, in grid order, reversed
or shuffled, so that any block can be the "last block" of a reduction.

:class:`Emulator` replaces ``cuda._launch`` and checks every launch the way the
CUDA driver would not: the block size must be ``BLOCK``, the grid within CUDA's limits,
and each argument of exactly the C type of the kernel's parameter (``int`` ← numpy.int32,
``long long`` ← numpy.int64, ``double`` ← numpy.float64, ``T*`` ← an array of the data
dtype, ``A*`` ← compute dtype, ``double*`` ← float64, ``unsigned int*`` ← uint32).

What this does not check: CUDA compilation (see the NVRTC/nvcc tests), memory-model and
timing effects between concurrent blocks, and anything about speed.
"""

import ctypes
import hashlib
import os
import re
import shutil
import subprocess

import numpy as np

from bncourse.kernels import cuda as K

RUNTIME = r"""
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <vector>
#include <ucontext.h>

struct dim3 { unsigned x, y, z; };

namespace emu {
// Every CUDA thread of a block is a fiber; __syncthreads switches back to the scheduler,
// which resumes each fiber in turn: a barrier is a round in which every fiber stops there.
dim3 thread_idx, block_idx, block_dim, grid_dim;
ucontext_t scheduler;
struct Fiber { ucontext_t context; std::vector<char> stack; bool done; };
std::vector<Fiber> fibers;
const std::function<void()>* kernel = nullptr;
unsigned current = 0;

void sync() { swapcontext(&fibers[current].context, &scheduler); }

void body() {
    (*kernel)();
    fibers[current].done = true;              // returns to the scheduler through uc_link
}

void launch(unsigned gx, unsigned gy, unsigned bx, int order, const std::function<void()>& k) {
    block_dim = {bx, 1, 1};
    grid_dim = {gx, gy, 1};
    kernel = &k;
    std::vector<dim3> blocks;
    for (unsigned y = 0; y < gy; ++y)
        for (unsigned x = 0; x < gx; ++x) blocks.push_back({x, y, 0});
    if (order == 1) std::reverse(blocks.begin(), blocks.end());
    if (order == 2) std::shuffle(blocks.begin(), blocks.end(), std::mt19937(12345));
    fibers.resize(bx);
    for (auto& f : fibers) f.stack.resize(1 << 16);
    for (const dim3& b : blocks) {
        block_idx = b;
        for (unsigned t = 0; t < bx; ++t) {
            Fiber& f = fibers[t];
            f.done = false;
            getcontext(&f.context);
            f.context.uc_stack.ss_sp = f.stack.data();
            f.context.uc_stack.ss_size = f.stack.size();
            f.context.uc_link = &scheduler;
            makecontext(&f.context, body, 0);
        }
        for (;;) {                               // one round: every fiber to its next barrier
            unsigned finished = 0;
            for (unsigned t = 0; t < bx; ++t) {
                if (fibers[t].done) { ++finished; continue; }
                current = t;
                thread_idx = {t, 0, 0};
                swapcontext(&scheduler, &fibers[t].context);
                finished += fibers[t].done;
            }
            if (finished == bx) break;
            if (finished) {
                std::fprintf(stderr, "cuda_emulator: __syncthreads not reached by every thread\n");
                std::abort();
            }
        }
    }
}
}  // namespace emu

#define threadIdx emu::thread_idx
#define blockIdx emu::block_idx
#define blockDim emu::block_dim
#define gridDim emu::grid_dim
#define __global__
#define __device__
#define __forceinline__ inline
#define __restrict__ __restrict
#define __shared__ static
inline void __syncthreads() { emu::sync(); }
inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline unsigned int atomicAdd(unsigned int* p, unsigned int v) {
    return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST);
}
template <class V> inline V __ldcg(const V* p) { return *p; }
using std::fmax;
using std::sqrt;

inline float half_to_float(unsigned short h) { _Float16 f; std::memcpy(&f, &h, 2); return (float)f; }
inline unsigned short float_to_half(float v) {
    _Float16 f = (_Float16)v; unsigned short h; std::memcpy(&h, &f, 2); return h;
}
inline unsigned short double_to_half(double v) {
    _Float16 f = (_Float16)v; unsigned short h; std::memcpy(&h, &f, 2); return h;
}
"""

ORDERS = {"forward": 0, "reverse": 1, "shuffled": 2}

_SIGNATURE = re.compile(r'extern "C" __global__ void (\w+)\(([^)]*)\)')
_SCALARS = {"int": (np.int32, ctypes.c_int), "long long": (np.int64, ctypes.c_longlong),
            "double": (np.float64, ctypes.c_double)}


def compiler():
    """The host C++ compiler, or None."""
    return shutil.which(os.environ.get("CXX", "g++"))


def kernel_signatures(source):
    """{kernel name: [(C type, parameter name), ...]} of the ``extern "C"`` kernels."""
    out = {}
    for name, params in _SIGNATURE.findall(source):
        parsed = []
        for p in " ".join(params.split()).split(","):
            words = p.replace("*", " * ").split()
            parsed.append((" ".join(w for w in words[:-1] if w not in ("const", "__restrict__")),
                           words[-1]))
        out[name] = parsed
    return out


class Emulator:
    """Compiled kernels for every dtype; call :meth:`launch` in place of ``K._launch``."""

    def __init__(self, build_dir, order="forward"):
        self.order = ORDERS[order]
        self.signatures = kernel_signatures(K.KERNEL_SOURCE)
        self.libs = {dt: self._build(dt, build_dir) for dt in K.TYPES}
        self.launches = []              # (name, grid) of every launch, for the tests

    def _build(self, dtype, build_dir):
        wrappers = []
        for name, params in self.signatures.items():
            decl = ", ".join(f"{t} {n}" for t, n in params)
            names = ", ".join(n for _, n in params)
            wrappers.append(f'extern "C" void emu_{name}(unsigned gx, unsigned gy, unsigned bx, '
                            f'int order, {decl}) {{ emu::launch(gx, gy, bx, order, [=] {{ '
                            f'{name}({names}); }}); }}')
        code = RUNTIME + K.source(dtype, half_conversions="") + "\n".join(wrappers) + "\n"
        tag = hashlib.sha256(code.encode()).hexdigest()[:16]
        lib = os.path.join(build_dir, f"bncourse_emu_{dtype}_{tag}.so")
        if not os.path.exists(lib):               # build under a private name, then rename
            src = f"{lib[:-3]}.{os.getpid()}.cpp"
            with open(src, "w") as f:
                f.write(code)
            out = subprocess.run([compiler(), "-std=c++20", "-O2", "-shared", "-fPIC",
                                  "-Wall", "-Wno-unknown-pragmas", "-Wno-unused-variable",
                                  "-Wno-maybe-uninitialized",
                                  "-o", src[:-4] + ".so", src], capture_output=True, text=True)
            if out.returncode:
                raise RuntimeError(f"building the CUDA emulator failed:\n{out.stderr}")
            os.replace(src[:-4] + ".so", lib)
            os.remove(src)
        return ctypes.CDLL(lib)

    def launch(self, name, dtype, grid, block, args):
        dtype = np.dtype(dtype)
        storage, compute = dtype, K.compute_dtype(dtype)
        params = self.signatures[name]
        assert tuple(block) == (K.BLOCK,), f"{name}: block {block}, the kernels assume ({K.BLOCK},)"
        gx, gy = (tuple(grid) + (1,))[:2]
        assert 1 <= gx < 2**31 and 1 <= gy <= 65535, f"{name}: grid {grid} outside CUDA's limits"
        assert len(args) == len(params), f"{name}: {len(args)} arguments for {len(params)} parameters"
        cargs, ctypes_ = [], []
        for (ctype, pname), a in zip(params, args):
            if ctype.endswith("*"):
                base = ctype[:-1].strip()
                want = {"T": storage, "A": compute, "double": np.dtype(np.float64),
                        "unsigned int": np.dtype(np.uint32), "void": None}[base]
                assert isinstance(a, np.ndarray) and a.flags.c_contiguous, f"{name}.{pname}"
                assert want is None or a.dtype == want, f"{name}.{pname}: {a.dtype} for {ctype}"
                cargs.append(a.ctypes.data)
                ctypes_.append(ctypes.c_void_p)
            else:
                np_type, c_type = _SCALARS[ctype]
                assert type(a) is np_type, f"{name}.{pname}: {type(a).__name__} for {ctype}"
                cargs.append(a.item())
                ctypes_.append(c_type)
        fn = getattr(self.libs[dtype.name], f"emu_{name}")
        fn.argtypes = [ctypes.c_uint] * 3 + [ctypes.c_int] + ctypes_
        fn.restype = None
        self.launches.append((name, (gx, gy)))
        fn(gx, gy, K.BLOCK, self.order, *cargs)
