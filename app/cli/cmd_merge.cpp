// `mechscope-cli merge DIRS... --out DIR`: the output folders of `batch --shard I/N` runs combined
// into what one unsharded run writes (docs/batch.md).
#ifdef MECHSCOPE_WITH_TOML
#include <iostream>

#include <fmt/format.h>

#include "app/batch/merge.hpp"
#include "app/cli/command.hpp"

namespace mechscope::cli {
namespace {

struct MergeOptions {
  std::vector<std::string> dirs;
  std::string out;
};

void runMerge(const MergeOptions& o) {
  std::vector<std::filesystem::path> dirs(o.dirs.begin(), o.dirs.end());
  const batch::MergeCounts c = batch::mergeOutputs(dirs, o.out);
  std::cout << fmt::format("merged {} folder{} into {}: {} ok, {} failed, {} missing\n", dirs.size(), dirs.size() == 1 ? "" : "s",
                           o.out, c.ok, c.failed, c.missing);
  if (c.failed > 0 || c.missing > 0) setExitCode(kPartialFailure);
}

const RegisterCommand reg_cmd_merge{"merge", 7, [](CLI::App& root) {
  auto o = std::make_shared<MergeOptions>();
  auto* sub = root.add_subcommand("merge", "Combine the output folders of sharded batch runs into one");
  sub->add_option("dirs", o->dirs, "Shard output folders")->required();
  sub->add_option("--out", o->out, "Merged output folder")->required();
  sub->callback([o] { runMerge(*o); });
}};

}  // namespace
}  // namespace mechscope::cli
#endif  // MECHSCOPE_WITH_TOML
