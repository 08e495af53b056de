// Times the probe's far-sums kernel (core/probe/far_sums_kernel.cu) in each block shape on random bf16 inputs, to
// pick the production shape (DefaultShape). Not part of the build: scripts/device/far_sums_bench.sh compiles it with
// nvcc on a GPU box. Correctness is FarSumsCuda's job (tests/core/test_far_sums_cuda.cpp); this only times.
//   far_sums_bench N HEADS KV_HEADS [REPS]
#include "core/probe/far_sums_kernel.cu"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <vector>

using namespace mechscope::probe_kernels;

#define CHECK(x)                                                                              \
  do {                                                                                        \
    cudaError_t e_ = (x);                                                                     \
    if (e_ != cudaSuccess) {                                                                  \
      std::fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_)); \
      std::exit(1);                                                                           \
    }                                                                                         \
  } while (0)

namespace {

std::vector<__nv_bfloat16> randomBf16(size_t count, unsigned seed) {  // roughly N(0, 1): a sum of uniforms
  std::vector<__nv_bfloat16> v(count);
  unsigned x = seed;
  for (auto& e : v) {
    float s = 0;
    for (int i = 0; i < 4; ++i) {
      x = x * 1664525u + 1013904223u;
      s += static_cast<float>(x >> 8) / 16777216.0f;
    }
    e = __float2bfloat16((s - 2.0f) * 1.7f);
  }
  return v;
}

template <typename Shape>
void timeShape(const char* name, FarSumsArgs a, int reps) {
  const size_t bytes = sizeof(double) * a.heads * a.n;
  CHECK(cudaMemset(a.rowMass, 0, bytes));
  CHECK(cudaMemset(a.colMass, 0, bytes));
  CHECK((launchFor<__nv_bfloat16, Shape>(a, nullptr)));  // warm-up
  CHECK(cudaDeviceSynchronize());
  cudaEvent_t start, stop;
  CHECK(cudaEventCreate(&start));
  CHECK(cudaEventCreate(&stop));
  std::vector<float> ms;
  for (int r = 0; r < reps; ++r) {
    CHECK(cudaEventRecord(start));
    CHECK((launchFor<__nv_bfloat16, Shape>(a, nullptr)));
    CHECK(cudaEventRecord(stop));
    CHECK(cudaEventSynchronize(stop));
    float t = 0;
    CHECK(cudaEventElapsedTime(&t, start, stop));
    ms.push_back(t);
  }
  std::sort(ms.begin(), ms.end());
  const double pairs = 0.5 * static_cast<double>(a.n) * a.n * a.heads;  // causal half, every head
  const double med = ms[ms.size() / 2];
  std::printf("%-28s n %7lld  median %8.3f ms  min %8.3f ms  %6.1f TFLOP/s (q·k only)  %.3g pairs/s\n", name, static_cast<long long>(a.n), med,
              ms.front(), 2.0 * pairs * a.dHead / (med * 1e-3) / 1e12, pairs / (med * 1e-3));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: far_sums_bench N HEADS KV_HEADS [REPS]\n");
    return 2;
  }
  const int64_t n = std::atoll(argv[1]);
  const int heads = std::atoi(argv[2]), kv = std::atoi(argv[3]), reps = argc > 4 ? std::atoi(argv[4]) : 20, d = 128;
  const auto q = randomBf16(static_cast<size_t>(n) * heads * d, 1), k = randomBf16(static_cast<size_t>(n) * kv * d, 2);
  std::vector<float> lse(static_cast<size_t>(heads) * n);
  for (int h = 0; h < heads; ++h)
    for (int64_t i = 0; i < n; ++i) lse[h * n + i] = std::log(static_cast<float>(i + 1)) + 1.2f;  // ≈ a random row's normaliser
  FarSumsArgs a;
  void *dq, *dk, *dl, *dr, *dc;
  CHECK(cudaMalloc(&dq, q.size() * 2));
  CHECK(cudaMalloc(&dk, k.size() * 2));
  CHECK(cudaMalloc(&dl, lse.size() * 4));
  CHECK(cudaMalloc(&dr, sizeof(double) * heads * n));
  CHECK(cudaMalloc(&dc, sizeof(double) * heads * n));
  CHECK(cudaMemcpy(dq, q.data(), q.size() * 2, cudaMemcpyHostToDevice));
  CHECK(cudaMemcpy(dk, k.data(), k.size() * 2, cudaMemcpyHostToDevice));
  CHECK(cudaMemcpy(dl, lse.data(), lse.size() * 4, cudaMemcpyHostToDevice));
  a.q = dq;
  a.k = dk;
  a.lse = static_cast<const float*>(dl);
  a.rowMass = static_cast<double*>(dr);
  a.colMass = static_cast<double*>(dc);
  a.n = n;
  a.qRowStride = static_cast<int64_t>(heads) * d;
  a.qHeadStride = d;
  a.kRowStride = static_cast<int64_t>(kv) * d;
  a.kHeadStride = d;
  a.shift = 32;
  a.heads = heads;
  a.group = heads / kv;
  a.dHead = d;
  a.scale = 1.0f / std::sqrt(static_cast<float>(d));
  timeShape<FarSumsShape<8, 1>>("8 warps x 16 keys", a, reps);
  timeShape<FarSumsShape<8, 1, false>>("8 warps x 16 keys, no rows", a, reps);
  timeShape<FarSumsShape<4, 1>>("4 warps x 16 keys", a, reps);
  timeShape<FarSumsShape<4, 2>>("4 warps x 32 keys", a, reps);
  timeShape<FarSumsShape<4, 2, false>>("4 warps x 32 keys, no rows", a, reps);
  timeShape<FarSumsShape<8, 2>>("8 warps x 32 keys", a, reps);
  timeShape<FarSumsShape<2, 2>>("2 warps x 32 keys", a, reps);
  return 0;
}
