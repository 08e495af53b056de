#include "core/model/memory_estimate.hpp"

#include <sys/resource.h>
#include <sys/statvfs.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <limits>

#include <fmt/format.h>

#include "core/common/errors.hpp"
#include "core/model/device_plan.hpp"

namespace mechscope {
namespace {

/// "Key:   123 kB" from a /proc file, in bytes; -1 when absent.
int64_t procKiB(const char* file, const std::string& key) {
  std::ifstream in(file);
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(key + ":", 0) == 0) {
      try {
        return std::stoll(line.substr(key.size() + 1)) * 1024;
      } catch (const std::exception&) {
        return -1;
      }
    }
  return -1;
}

/// One integer from a cgroup file ("max" → -1).
int64_t readCgroupValue(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::string v;
  if (!(in >> v) || v == "max") return -1;
  try {
    return std::stoll(v);
  } catch (const std::exception&) {
    return -1;
  }
}

/// limit − usage over `root`/`rel` and its parents up to `root` (the tightest); -1 when none is set.
int64_t headroomAlong(const std::filesystem::path& root, std::string rel, const char* limitFile, const char* usageFile) {
  while (!rel.empty() && rel.front() == '/') rel.erase(0, 1);
  int64_t best = -1;
  for (std::filesystem::path p = rel.empty() ? root : root / rel;; p = p.parent_path()) {
    const int64_t max = readCgroupValue(p / limitFile), cur = readCgroupValue(p / usageFile);
    if (max >= 0 && cur >= 0 && max < (int64_t{1} << 60)) {  // v1 writes ~2^63 for "no limit"
      const int64_t room = std::max<int64_t>(0, max - cur);
      best = best < 0 ? room : std::min(best, room);
    }
    if (p.string().size() <= root.string().size()) break;
  }
  return best;
}

/// Headroom of this process's memory cgroup: v2 memory.max − memory.current, or v1
/// memory.limit_in_bytes − memory.usage_in_bytes (and their parents); -1 when unlimited/unknown.
int64_t cgroupHeadroom() {
  std::ifstream in("/proc/self/cgroup");
  std::string line;
  int64_t best = -1;
  auto take = [&](int64_t v) {
    if (v >= 0) best = best < 0 ? v : std::min(best, v);
  };
  while (std::getline(in, line)) {
    if (line.rfind("0::", 0) == 0) take(headroomAlong("/sys/fs/cgroup", line.substr(3), "memory.max", "memory.current"));
    const auto m = line.find(":memory:");
    if (m != std::string::npos) {
      const std::string rel = line.substr(m + 8);
      take(headroomAlong("/sys/fs/cgroup/memory", rel, "memory.limit_in_bytes", "memory.usage_in_bytes"));
      take(headroomAlong("/sys/fs/cgroup/memory", "", "memory.limit_in_bytes", "memory.usage_in_bytes"));  // namespaced root
    }
  }
  return best;
}

}  // namespace

std::string formatBytes(int64_t bytes) {
  const double b = static_cast<double>(bytes);
  if (bytes >= (int64_t{1} << 30)) return fmt::format("{:.1f} GiB", b / double(int64_t{1} << 30));
  if (bytes >= (int64_t{1} << 20)) return fmt::format("{:.1f} MiB", b / double(int64_t{1} << 20));
  if (bytes >= (int64_t{1} << 10)) return fmt::format("{:.1f} KiB", b / 1024.0);
  return fmt::format("{} B", bytes);
}

std::string MemoryEstimate::describe() const {
  return fmt::format("≈ {} (weights {} + one layer {} + kept {})", formatBytes(total()), formatBytes(weights),
                     formatBytes(layer), formatBytes(retained));
}

MemoryEstimate estimateForwardMemory(const ModelConfig& cfg, const ForwardMemoryOptions& o) {
  const int64_t B = o.batch, P = o.positions, E = o.elementBytes;
  const int64_t D = cfg.dModel, H = cfg.nHeads, Dh = cfg.dHead, Dm = cfg.dMlp, V = cfg.dVocab;
  MemoryEstimate e;
  e.weights = estimateWeightBytes(cfg, E).total();  // core/model/device_plan.hpp
  // One layer: fp32 scores and pattern (+ one softmax temporary) when attention is materialised, else a
  // 16 MB tile; about a dozen residual/MLP-sized tensors (q, k, v, z, resid, normalized, MLP pre/post).
  const int64_t scores = B * H * P * P * 4;
  const int64_t attention = o.materializedAttention ? 3 * scores : std::min<int64_t>(3 * scores, int64_t{48} << 20);
  const int64_t residual = B * P * std::max({D, H * Dh, Dm}) * E;
  e.layer = attention + 12 * residual;
  // Kept: fp32 logits [batch, pos or 1, vocab] plus the unembed matmul's output in the compute dtype.
  e.retained = (o.fullLogits ? B * P : B) * V * (4 + E) + o.keptBytes;
  return e;
}

int64_t hookElementCount(const ModelConfig& cfg, const std::string& n, int64_t batch, int64_t pos) {
  const int64_t D = cfg.dModel, H = cfg.nHeads, KV = cfg.nKvHeads > 0 ? cfg.nKvHeads : cfg.nHeads, Dh = cfg.dHead;
  const int64_t bp = batch * pos;
  if (n.ends_with("hook_pattern") || n.ends_with("hook_attn_scores")) return batch * H * pos * pos;
  if (n.ends_with("hook_q") || n.ends_with("hook_rot_q") || n.ends_with("hook_z")) return bp * H * Dh;
  if (n.ends_with("hook_k") || n.ends_with("hook_v") || n.ends_with("hook_rot_k")) return bp * KV * Dh;
  if (n.ends_with("hook_result")) return bp * H * D;
  if (n.ends_with("mlp.hook_pre") || n.ends_with("mlp.hook_pre_linear") || n.ends_with("mlp.hook_post"))
    return bp * cfg.dMlp;
  if (n.ends_with("hook_router_logits")) return bp * cfg.moe.nExperts;
  if (n.ends_with("hook_expert_weights") || n.ends_with("hook_expert_indices")) return bp * cfg.moe.topK;
  if (n.ends_with("hook_expert_out")) return bp * cfg.moe.nExperts * D;
  if (n.ends_with("hook_shared_expert_out")) return bp * D;
  if (n.ends_with("hook_logits")) return bp * cfg.dVocab;
  if (n.ends_with("hook_scale")) return bp;
  if (n.ends_with("hook_embed") || n.ends_with("hook_pos_embed") || n.find("hook_resid_") != std::string::npos ||
      n.ends_with("hook_attn_out") || n.ends_with("hook_mlp_out") || n.ends_with("hook_normalized"))
    return bp * D;
  return 0;
}

int64_t cacheFileBytes(const ModelConfig& cfg, const std::vector<std::string>& hookNames, int64_t batch,
                       int64_t positions, int64_t storageBytes) {
  int64_t total = batch * positions * 8 + batch * positions * cfg.dVocab * storageBytes;  // tokens + logits
  for (const auto& n : hookNames) total += hookElementCount(cfg, n, batch, positions) * storageBytes;
  return total;
}

int64_t availableMemoryBytes(std::string* source) {
  int64_t best = -1;
  std::string from;
  auto take = [&](int64_t v, const char* what) {
    if (v >= 0 && (best < 0 || v < best)) {
      best = v;
      from = what;
    }
  };
  take(procKiB("/proc/meminfo", "MemAvailable"), "MemAvailable");
  rlimit lim{};
  if (getrlimit(RLIMIT_AS, &lim) == 0 && lim.rlim_cur != RLIM_INFINITY) {
    const int64_t vm = procKiB("/proc/self/status", "VmSize");
    const auto cap = static_cast<int64_t>(std::min<rlim_t>(lim.rlim_cur, std::numeric_limits<int64_t>::max()));
    if (vm >= 0) take(std::max<int64_t>(0, cap - vm), "RLIMIT_AS");
  }
  take(cgroupHeadroom(), "cgroup memory.max");
  if (source) *source = from;
  return best;
}

int64_t freeDiskBytes(const std::string& path) {
  std::filesystem::path p = std::filesystem::absolute(path);
  std::error_code ec;
  while (!p.empty() && !std::filesystem::exists(p, ec)) p = p.parent_path();
  struct statvfs s {};
  if (p.empty() || statvfs(p.c_str(), &s) != 0) return -1;
  return static_cast<int64_t>(s.f_bavail) * static_cast<int64_t>(s.f_frsize);
}

void checkMemoryOrThrow(const std::string& command, const std::string& what, const MemoryEstimate& estimate,
                        bool force) {
  std::string source;
  const int64_t avail = availableMemoryBytes(&source);
  if (force || avail < 0 || estimate.total() <= avail) return;
  throw InputError(fmt::format("{}: {} needs {} of memory but only {} is available ({}); shorten the input, "
                               "use fewer rows, or pass --force to run anyway",
                               command, what, estimate.describe(), formatBytes(avail), source));
}

void checkWeightsFit(const std::string& folder, const std::string& device, const std::string& dtype, int64_t weightBytes,
                     int64_t available) {
  if (available < 0 || weightBytes <= available) return;
  throw InputError(fmt::format("{}: the weights need ≈ {} in {} but {} has only {} free; use a smaller --dtype (bf16 "
                               "halves fp32), a device with more memory, or the CPU",
                               folder, formatBytes(weightBytes), dtype, device, formatBytes(available)));
}

void checkDiskOrThrow(const std::string& command, const std::string& path, int64_t bytes, bool force) {
  const int64_t free = freeDiskBytes(path);
  if (force || free < 0 || bytes <= free) return;
  throw InputError(fmt::format("{}: {} will take ≈ {} but its filesystem has only {} free; cache fewer hooks "
                               "(--hooks), write elsewhere, or pass --force to try anyway",
                               command, path, formatBytes(bytes), formatBytes(free)));
}

}  // namespace mechscope
