// Similarity tiles for semantic dedup: all pairs (i, j) with dot(a_i, b_j) >= threshold over
// unit-length float rows, without ever writing the N x M similarity matrix.
//
// One 256-thread block computes a 64 x 64 tile of dot products: both 64-row slabs are staged
// through shared memory 32 columns at a time (stored k-major, +1 padding against bank
// conflicts), each thread accumulates a 4 x 4 register micro-tile, and the threshold is
// applied in registers. Survivors are appended to a compact (i, j, sim) buffer through one
// atomic counter; when more pairs exist than `capacity`, the counter still reports how many,
// and the host reruns with a buffer that fits. In self mode (a == b) only tiles on or above
// the diagonal run, and only j > i is kept.
//
// CPU reference: src/dedup/semantic.rs (self_pairs / cross_pairs); the test in
// src/dedup/cuda.rs compares the two on random inputs wherever a GPU exists.

#define BM 64
#define BN 64
#define BK 32
#define THREADS 256

extern "C" __global__ void sim_pairs_f32(
    const float* __restrict__ a, int na,
    const float* __restrict__ b, int nb,
    int dim, float threshold, int self_mode,
    unsigned int* __restrict__ out_i,
    unsigned int* __restrict__ out_j,
    float* __restrict__ out_s,
    unsigned int* __restrict__ count,
    unsigned int capacity)
{
    const int bi = blockIdx.y, bj = blockIdx.x;
    if (self_mode && bj < bi) return;
    __shared__ float As[BK][BM + 1];
    __shared__ float Bs[BK][BN + 1];
    const int tid = threadIdx.x;
    const int tr = tid / 16, tc = tid % 16;
    const int row0 = bi * BM, col0 = bj * BN;
    float acc[4][4];
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = 0.f;

    for (int k0 = 0; k0 < dim; k0 += BK) {
        for (int e = tid; e < BM * BK; e += THREADS) {
            const int r = e / BK, k = e % BK;
            const int gr = row0 + r, gk = k0 + k;
            As[k][r] = (gr < na && gk < dim) ? a[(size_t)gr * dim + gk] : 0.f;
        }
        for (int e = tid; e < BN * BK; e += THREADS) {
            const int r = e / BK, k = e % BK;
            const int gc = col0 + r, gk = k0 + k;
            Bs[k][r] = (gc < nb && gk < dim) ? b[(size_t)gc * dim + gk] : 0.f;
        }
        __syncthreads();
#pragma unroll 8
        for (int k = 0; k < BK; ++k) {
            float av[4], bv[4];
#pragma unroll
            for (int i = 0; i < 4; ++i) av[i] = As[k][tr * 4 + i];
#pragma unroll
            for (int j = 0; j < 4; ++j) bv[j] = Bs[k][tc * 4 + j];
#pragma unroll
            for (int i = 0; i < 4; ++i)
#pragma unroll
                for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
        }
        __syncthreads();
    }

#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const int gr = row0 + tr * 4 + i;
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            const int gc = col0 + tc * 4 + j;
            if (gr < na && gc < nb && (!self_mode || gc > gr) && acc[i][j] >= threshold) {
                const unsigned int slot = atomicAdd(count, 1u);
                if (slot < capacity) {
                    out_i[slot] = (unsigned int)gr;
                    out_j[slot] = (unsigned int)gc;
                    out_s[slot] = acc[i][j];
                }
            }
        }
    }
}
