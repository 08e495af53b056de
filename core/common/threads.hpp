#pragma once
// Intra-op thread count of the process. Debian's LibTorch 1.13 starts with one intra-op thread, so
// without this the CPU forward runs element-wise ops, softmax and layer norms on one core.
#include <string>

namespace mechscope {

/// Sets LibTorch's intra-op threads (and OpenBLAS's, when LibTorch uses it) once per process and
/// returns the count: MECHSCOPE_THREADS if set to a positive integer, else OMP_NUM_THREADS, else the
/// CPUs this process may run on (sched affinity). Later calls return the first answer unchanged.
int configureThreads();

/// Re-executes the program once with the environment the CPU forward needs, read only at process start:
///  - OMP_WAIT_POLICY=PASSIVE unless the user set OMP_WAIT_POLICY or GOMP_SPINCOUNT (libgomp reads them at
///    load). Why: Debian's LibTorch runs matmuls on OpenBLAS's own threads; with the default active wait the
///    idle OpenMP workers spin for the CPU that OpenBLAS needs (measured on 2 cores: a GPT-2-small forward
///    at 512 tokens took 23.5 s with spinning workers, 11.4 s passive).
///  - glibc.malloc.hugetlb=1 appended to GLIBC_TUNABLES unless it already names glibc.malloc.hugetlb:
///    malloc then asks for transparent huge pages (THP in `madvise` mode) on its mmap'd chunks. Large
///    tensors are fresh mmap'd pages once a cache writer pins the mmap threshold (store/heap_policy.hpp);
///    with 4 KiB pages their faults cost a GPT-2-small forward with every hook active +39 %, with 2 MiB
///    pages +5 % (docs/benchmarks.md, issue 11).
/// Must be the first thing main() does. Returns only when no exec happened (or it failed).
void ensurePassiveOpenMpWait(char** argv);

/// CPUs this process may run on (sched affinity; hardware_concurrency where that fails; at least 1).
int availableCpus();

/// CPUs the intra-op threads leave idle: availableCpus() − at::get_num_threads(), at least 0.
int spareCpus();

/// One line for logs and benchmarks, e.g. "intra-op 2 (cores), OpenBLAS 2".
std::string threadSummary();

}  // namespace mechscope
