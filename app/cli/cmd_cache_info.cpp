// `mechscope-cli cache-info FILE.h5`: the provenance and the datasets (shape, dtype, chunks, compression)
// of an activation cache.
#ifdef MECHSCOPE_WITH_HDF5
#include <iostream>
#include <memory>

#include <fmt/format.h>

#include "app/cli/command.hpp"
#include "store/cache_reader.hpp"

namespace mechscope::cli {
namespace {

struct CacheInfoOptions {
  std::string file;
  bool fullConfig = false;
};

std::string shapeText(const std::vector<int64_t>& v) { return fmt::format("[{}]", fmt::join(v, ", ")); }

void runCacheInfo(const CacheInfoOptions& o) {
  const auto reader = store::CacheReader::open(o.file);
  std::cout << fmt::format("File: {}\nSchema version: {}\n", o.file, reader.schemaVersion());
  std::cout << "Provenance:\n";
  const auto attrs = reader.attributes("/");
  for (const auto& [key, value] : attrs) {
    if (key == "schema_version") continue;
    std::string shown = value;
    if (key == "config_json" && !o.fullConfig && shown.size() > 72) {
      std::string flat;
      for (char c : shown.substr(0, 72)) flat.push_back(c == '\n' ? ' ' : c);
      shown = fmt::format("{}... ({} bytes; --full-config prints it)", flat, value.size());
    }
    std::cout << fmt::format("  {:<18} {}\n", key, shown);
  }
  const auto all = reader.datasets();
  std::cout << fmt::format("Datasets ({}):\n", all.size());
  size_t width = 4;
  for (const auto& d : all) width = std::max(width, d.path.size());
  std::cout << fmt::format("  {:<{}}  {:<20} {:<9} {:<20} {}\n", "path", width, "shape", "dtype", "chunks",
                           "compression");
  for (const auto& d : all)
    std::cout << fmt::format("  {:<{}}  {:<20} {:<9} {:<20} {}\n", d.path, width, shapeText(d.shape), d.dtype,
                             d.chunks.empty() ? std::string("contiguous") : shapeText(d.chunks), d.compression);
}

const RegisterCommand reg_cmd_cache_info{"cache-info", 60, [](CLI::App& root) {
                            auto o = std::make_shared<CacheInfoOptions>();
                            auto* sub = root.add_subcommand("cache-info",
                                                            "Print the provenance and datasets of an HDF5 cache");
                            sub->add_option("file", o->file, "Cache file (.h5)")->required();
                            sub->add_flag("--full-config", o->fullConfig, "Print the whole config_json attribute");
                            sub->callback([o] { runCacheInfo(*o); });
                          }};

}  // namespace
}  // namespace mechscope::cli
#endif  // MECHSCOPE_WITH_HDF5
