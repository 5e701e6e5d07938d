// Ragged attention for the decoder: every query row of a forward step (prefill rows and
// decode rows of many sequences together) against its own sequence's KV cache, in one
// launch per layer. It replaces candle's per-segment ops (about a dozen launches per
// sequence and layer), which leave a GPU idle between launches at wide batches.
//
// One warp per (row, head): lanes split head_dim, a shuffle reduction gives each score,
// and an online softmax (running max and sum) accumulates the output in registers, so no
// score buffer is written. Keys first..=pos are visible to a row at position pos (causal;
// `first` > 0 under a sliding window). Caches are token-major [capacity, kv_heads,
// head_dim] per sequence, found through a table of device pointers; q and out are f32
// [rows, heads, head_dim]. Scores, softmax and accumulation are f32 whatever the cache
// dtype.
//
// CPU reference: attention_f64 in src/cpu/attention.rs; the test in
// src/engine/cuda_attention.rs compares the two wherever a GPU exists, and the engine
// checks this kernel against candle's ops once at load before using it.

#include <cuda_fp16.h>
#include <cuda_bf16.h>

#define WARPS 4
#define MAX_PER_LANE 8 // head_dim <= 256

__device__ __forceinline__ float to_f(float x) { return x; }
__device__ __forceinline__ float to_f(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_f(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename T>
__device__ void ragged_attention(
    const float* __restrict__ q,
    float* __restrict__ out,
    const unsigned int* __restrict__ row_seg,
    const unsigned int* __restrict__ row_pos,
    const unsigned int* __restrict__ row_first,
    const unsigned long long* __restrict__ k_ptrs,
    const unsigned long long* __restrict__ v_ptrs,
    int rows, int heads, int kv_heads, int head_dim, float scale)
{
    const int warp = blockIdx.x * WARPS + threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    if (warp >= rows * heads) return;
    const int row = warp / heads, head = warp % heads;
    const int kvh = head / (heads / kv_heads);
    const unsigned int seg = row_seg[row];
    const int pos = (int)row_pos[row], first = (int)row_first[row];
    const T* k = reinterpret_cast<const T*>(k_ptrs[seg]);
    const T* v = reinterpret_cast<const T*>(v_ptrs[seg]);
    const float* qr = q + ((size_t)row * heads + head) * head_dim;

    float qv[MAX_PER_LANE], acc[MAX_PER_LANE];
    int n = 0;
    for (int d = lane; d < head_dim && n < MAX_PER_LANE; d += 32, ++n) {
        qv[n] = qr[d] * scale;
        acc[n] = 0.f;
    }
    float m = -INFINITY, l = 0.f;
    for (int j = first; j <= pos; ++j) {
        const size_t base = ((size_t)j * kv_heads + kvh) * head_dim;
        float s = 0.f;
        int i = 0;
        for (int d = lane; i < n; d += 32, ++i) s += qv[i] * to_f(k[base + d]);
        for (int o = 16; o > 0; o /= 2) s += __shfl_xor_sync(0xffffffffu, s, o);
        const float m2 = fmaxf(m, s);
        const float c = __expf(m - m2), p = __expf(s - m2);
        l = l * c + p;
        i = 0;
        for (int d = lane; i < n; d += 32, ++i) acc[i] = acc[i] * c + p * to_f(v[base + d]);
        m = m2;
    }
    float* o = out + ((size_t)row * heads + head) * head_dim;
    const float inv = 1.f / l;
    int i = 0;
    for (int d = lane; i < n; d += 32, ++i) o[d] = acc[i] * inv;
}

#define ENTRY(NAME, T)                                                                      \
    extern "C" __global__ void NAME(                                                        \
        const float* q, float* out, const unsigned int* row_seg, const unsigned int* row_pos, \
        const unsigned int* row_first, const unsigned long long* k_ptrs,                    \
        const unsigned long long* v_ptrs, int rows, int heads, int kv_heads, int head_dim,  \
        float scale)                                                                        \
    {                                                                                       \
        ragged_attention<T>(q, out, row_seg, row_pos, row_first, k_ptrs, v_ptrs, rows, heads, \
                            kv_heads, head_dim, scale);                                     \
    }

ENTRY(ragged_attention_f32, float)
ENTRY(ragged_attention_f16, __half)
ENTRY(ragged_attention_bf16, __nv_bfloat16)
