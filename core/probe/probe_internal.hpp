#pragma once
// Pieces shared by the tiled probe and the materialised reference path (not a public API).
#include <cstdint>
#include <string>

#include "core/common/tensor.hpp"
#include "core/probe/attention_probe.hpp"

namespace mechscope::probe_detail {

/// Throw InputError when the request cannot apply to nKeys keys (negative k/window, empty band, key
/// set out of range). `who` names the caller in the message.
void validateRequest(const ProbeRequest& request, int64_t nKeys, const std::string& who);

/// Zero-filled result tensors for everything requested (top-k indices −1), on the options' device.
ProbeResult allocateResult(const ProbeRequest& request, int64_t heads, int64_t nQueries, int64_t nKeys,
                           const at::TensorOptions& floatOptions, const at::TensorOptions& longOptions);

/// Column counts on the CPU, in closed form: rows i in [max(j + max(bandMin, 0), queryStart, offset,
/// firstNonEmptyRow), min(j + bandMax, offset + nQueries − 1)] → [nKeys] int64.
at::Tensor columnCounts(const ProbeRequest& request, int64_t nQueries, int64_t nKeys, int64_t offset,
                        int64_t firstNonEmptyRow);

/// statsFromPattern over chunks of `chunkRows` query rows (0: chosen so temporaries stay ~32M elements).
ProbeResult statsFromPatternChunked(const at::Tensor& pattern, const ProbeRequest& request, int64_t queryOffset,
                                    int64_t chunkRows);

}  // namespace mechscope::probe_detail
