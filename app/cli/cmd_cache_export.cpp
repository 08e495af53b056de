// `mechscope-cli cache-export FILE.h5 --hook NAME [--slice "0,2,:,:"] --csv OUT | --npy OUT`: one dataset
// or slice of it as CSV or NumPy .npy, read without loading the rest of the file.
#ifdef MECHSCOPE_WITH_HDF5
#include <ATen/ATen.h>

#include <iostream>
#include <memory>

#include <fmt/format.h>

#include "app/cli/command.hpp"
#include "core/common/errors.hpp"
#include "store/cache_reader.hpp"
#include "store/export.hpp"

namespace mechscope::cli {
namespace {

struct CacheExportOptions {
  std::string file;
  std::string hook;
  std::string slice;
  std::string csv;
  std::string npy;
};

void runCacheExport(const CacheExportOptions& o) {
  if (o.csv.empty() == o.npy.empty())
    throw InputError("cache-export: give exactly one of --csv OUT or --npy OUT");
  const auto reader = store::CacheReader::open(o.file);
  const auto ranges = store::parseSlice(o.slice);
  const at::Tensor t = reader.readSlice(o.hook, ranges);
  if (!o.npy.empty()) {
    store::writeNpy(o.npy, t);
  } else if (o.csv == "-") {
    store::writeCsv(std::cout, t);
  } else {
    store::writeCsv(o.csv, t);
  }
  if (o.csv != "-")
    std::cerr << fmt::format("wrote {} [{}] {} to {}\n", o.hook, fmt::join(t.sizes(), ", "),
                             c10::toString(t.scalar_type()), o.npy.empty() ? o.csv : o.npy);
  if (!o.csv.empty() && t.dim() > 2)
    std::cerr << fmt::format("note: a rank-{} slice is written to CSV as [{}, {}] (leading dims flattened)\n",
                             t.dim(), t.numel() / std::max<int64_t>(1, t.size(-1)), t.size(-1));
}

const RegisterCommand reg_cmd_cache_export{"cache-export", 61, [](CLI::App& root) {
                            auto o = std::make_shared<CacheExportOptions>();
                            auto* sub = root.add_subcommand("cache-export",
                                                            "Write one dataset (or a slice of it) of a cache as CSV or .npy");
                            sub->add_option("file", o->file, "Cache file (.h5)")->required();
                            sub->add_option("--hook", o->hook,
                                            "TransformerLens hook name, or a dataset path such as /logits")
                                ->required();
                            sub->add_option("--slice", o->slice,
                                            "numpy-like slice, e.g. \"0,2,:,:\" or \"0,:,5:10\" (default: all)");
                            sub->add_option("--csv", o->csv, "Write CSV here ('-' = stdout)");
                            sub->add_option("--npy", o->npy, "Write a NumPy .npy file here");
                            sub->callback([o] { runCacheExport(*o); });
                          }};

}  // namespace
}  // namespace mechscope::cli
#endif  // MECHSCOPE_WITH_HDF5
