#pragma once
// Intra-op thread count of the process. Debian's LibTorch 1.13 starts with one intra-op thread, so
// without this the CPU forward runs element-wise ops, softmax and layer norms on one core.
#include <string>

namespace mechscope {

/// Sets LibTorch's intra-op threads (and OpenBLAS's, when LibTorch uses it) once per process and
/// returns the count: MECHSCOPE_THREADS if set to a positive integer, else OMP_NUM_THREADS, else the
/// CPUs this process may run on (sched affinity). Later calls return the first answer unchanged.
int configureThreads();

/// One line for logs and benchmarks, e.g. "intra-op 2 (cores), OpenBLAS 2".
std::string threadSummary();

}  // namespace mechscope
