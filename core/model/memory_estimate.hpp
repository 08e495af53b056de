#pragma once
// Memory and disk estimates made before a long run (`run --cache`, attention analyses with --materialize),
// so a run that cannot fit is refused with the numbers instead of being killed by the OOM killer hours
// later. Qt-free; the CLI calls it and the GUI may. The figures are estimates of the dominant terms, not
// exact allocator accounting: weights, one layer's working set and what the run keeps across layers.
#include <cstdint>
#include <string>
#include <vector>

#include "core/model/model_config.hpp"

namespace mechscope {

/// What one forward pass of [batch, pos] tokens holds at its peak, by part (bytes).
struct MemoryEstimate {
  int64_t weights = 0;   ///< parameters in the compute dtype
  int64_t layer = 0;     ///< one layer's working set (scores + pattern + softmax temporaries + residual-sized tensors)
  int64_t retained = 0;  ///< what survives across layers (full logits, kept caches)
  /// weights + layer + retained.
  [[nodiscard]] int64_t total() const { return weights + layer + retained; }
  /// "≈ 3.2 GiB (weights 0.5 GiB + one layer 2.1 GiB + kept 0.6 GiB)".
  [[nodiscard]] std::string describe() const;
};

/// What the forward pass of the estimate materialises.
struct ForwardMemoryOptions {
  int64_t batch = 1;
  int64_t positions = 1;
  int64_t elementBytes = 4;          ///< compute dtype size (fp32 4, bf16/fp16 2)
  bool materializedAttention = true;  ///< [batch, head, pos, pos] scores and pattern exist (explicit path)
  bool fullLogits = true;            ///< [batch, pos, vocab] fp32 logits are kept (else last position only)
  int64_t keptBytes = 0;             ///< anything else the caller keeps for the whole run (e.g. an in-memory cache)
};

/// Estimates the peak memory of one forward pass of `cfg` (CPU tensors and weights).
MemoryEstimate estimateForwardMemory(const ModelConfig& cfg, const ForwardMemoryOptions& options);

/// Elements of the TransformerLens hook `name` (e.g. "blocks.3.attn.hook_pattern") for [batch, pos]
/// input, from the layouts in hooked_transformer.hpp; 0 for a name it does not know.
int64_t hookElementCount(const ModelConfig& cfg, const std::string& name, int64_t batch, int64_t positions);

/// Bytes a cache file of `hookNames` (plus tokens and fp32 logits) takes at `storageBytes` per element.
int64_t cacheFileBytes(const ModelConfig& cfg, const std::vector<std::string>& hookNames, int64_t batch,
                       int64_t positions, int64_t storageBytes = 4);

/// Memory this process can still use: the least of MemAvailable, the address-space limit (RLIMIT_AS)
/// minus the current virtual size, and the cgroup v2 memory.max minus memory.current. `source` names
/// which bound won ("MemAvailable", "RLIMIT_AS", "cgroup memory.max"). -1 when nothing is known.
int64_t availableMemoryBytes(std::string* source = nullptr);

/// Free bytes for an unprivileged writer on the filesystem holding `path` (or its folder); -1 unknown.
int64_t freeDiskBytes(const std::string& path);

/// "1.5 GiB", "300.0 MiB", "12.0 KiB", "17 B".
std::string formatBytes(int64_t bytes);

/// Throws InputError("<command>: ... needs ≈ X ... only Y available (<source>) ... --force") when
/// `estimate` exceeds what is available and `force` is false. `what` says what is being estimated.
void checkMemoryOrThrow(const std::string& command, const std::string& what, const MemoryEstimate& estimate,
                        bool force);

/// Refuses (InputError naming `folder`) to load weights of `weightBytes` onto `device` ("cuda:0") that has only
/// `available` bytes free; `available` < 0 (unknown) checks nothing. Called before any weight is read.
void checkWeightsFit(const std::string& folder, const std::string& device, const std::string& dtype, int64_t weightBytes,
                     int64_t available);

/// Throws InputError naming `path` when a `bytes`-sized file will not fit on its filesystem and `force` is false.
void checkDiskOrThrow(const std::string& command, const std::string& path, int64_t bytes, bool force);

}  // namespace mechscope
