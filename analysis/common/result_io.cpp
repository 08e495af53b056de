#include "analysis/common/result_io.hpp"

#include <ATen/ATen.h>

#include <fstream>

#include <fmt/format.h>

#include "core/common/errors.hpp"
#ifdef MECHSCOPE_WITH_HDF5
#include "store/cache_writer.hpp"
#endif

namespace mechscope::analysis {

void AnalysisResult::addArray(const std::string& arrayName, const at::Tensor& t) {
  for (auto& [n, a] : arrays)
    if (n == arrayName) {
      a = t;
      return;
    }
  arrays.emplace_back(arrayName, t);
}

namespace {
nlohmann::json leafJson(bool v) { return v; }
nlohmann::json leafJson(int64_t v) { return v; }
nlohmann::json leafJson(double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); }

/// Nested arrays of the contiguous values at `p` with `sizes` from dimension `d` on (a scalar when none is left):
/// element reads, not an indexing op per element (a heads × positions grid has a million).
template <class T>
nlohmann::json nestedJson(const T* p, at::IntArrayRef sizes, size_t d) {
  if (d == sizes.size()) return leafJson(*p);
  int64_t stride = 1;
  for (size_t e = d + 1; e < sizes.size(); ++e) stride *= sizes[e];
  nlohmann::json arr = nlohmann::json::array();
  for (int64_t i = 0; i < sizes[d]; ++i) arr.push_back(nestedJson(p + i * stride, sizes, d + 1));
  return arr;
}
}  // namespace

nlohmann::json tensorToJson(const at::Tensor& t) {
  at::Tensor c = t.to(at::kCPU);
  if (at::isFloatingType(c.scalar_type())) c = c.to(at::kDouble);
  else if (c.scalar_type() != at::kBool) c = c.to(at::kLong);
  c = c.contiguous();
  if (c.scalar_type() == at::kBool) return nestedJson(c.data_ptr<bool>(), c.sizes(), 0);
  if (c.scalar_type() == at::kLong) return nestedJson(c.data_ptr<int64_t>(), c.sizes(), 0);
  return nestedJson(c.data_ptr<double>(), c.sizes(), 0);
}

void writeResultJson(const AnalysisResult& result, const std::filesystem::path& path) {
  const std::filesystem::path partial = path.string() + ".partial";
  {
    std::ofstream out(partial);
    if (!out) throw InputError(fmt::format("{}: cannot write the --json file (does the folder exist?)", path.string()));
    out << result.json.dump(1) << "\n";
    if (!out) throw InputError(fmt::format("{}: write failed", path.string()));
  }
  std::error_code ec;
  std::filesystem::rename(partial, path, ec);
  if (ec) throw InputError(fmt::format("{}: cannot rename from {} ({})", path.string(), partial.string(), ec.message()));
}

bool resultH5Available() {
#ifdef MECHSCOPE_WITH_HDF5
  return true;
#else
  return false;
#endif
}

void writeResultH5(const AnalysisResult& result, const std::filesystem::path& path, const ResultProvenance& provenance) {
#ifdef MECHSCOPE_WITH_HDF5
  store::Provenance prov;
  prov.modelFolder = provenance.modelFolder;
  prov.family = provenance.family;
  prov.configJson = provenance.configJson;
  prov.weightsHash = provenance.weightsHash.empty() ? "" : "fnv1a64:" + provenance.weightsHash;
  prov.dtype = provenance.dtype;
  prov.device = provenance.device;
  prov.attentionPath = provenance.attentionPath;
  prov.bosHandling = "tokenizer-default";
  prov.padding = "none";
  prov.commandLine = provenance.commandLine;
  store::CacheWriter writer(path, prov);
  if (!provenance.seed.empty()) writer.setAttribute("/", "seed", provenance.seed);
  for (const auto& [n, a] : result.arrays) {
    at::Tensor t = a.to(at::kCPU).contiguous();
    if (t.scalar_type() == at::kBool) t = t.to(at::kByte).to(at::kInt);
    writer.writeAnalysisArray(result.name, n, t);
  }
  writer.writeAnalysisJson(result.name, "result_json", result.json.dump());
  writer.commit();
#else
  (void)result;
  (void)provenance;
  throw UnsupportedError(fmt::format("{}: --out needs the HDF5 store, which this build does not have (-DMECHSCOPE_HDF5=OFF); use --json",
                                     path.string()));
#endif
}

}  // namespace mechscope::analysis
