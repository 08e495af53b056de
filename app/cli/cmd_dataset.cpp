// `mechscope-cli dataset ioi|colored-objects --model DIR --n N --seed S --out FILE.jsonl`.
#include <iostream>

#include <fmt/format.h>

#include "analysis/common/datasets.hpp"
#include "app/cli/command.hpp"
#include "core/common/errors.hpp"
#include "core/tokenizer/tokenizer.hpp"

namespace mechscope::cli {
namespace {

struct DatasetOptions {
  std::string task, model, out, corruption = "abc", order = "mixed";
  int n = 100;
  uint64_t seed = 0;
  bool noBos = false;
};

void runDataset(const DatasetOptions& o) {
  if (o.task != "ioi" && o.task != "colored-objects")
    throw InputError(fmt::format("dataset: task must be ioi or colored-objects, found '{}'", o.task));
  const Tokenizer tok = Tokenizer::fromFile(o.model);
  analysis::CausalDataset ds;
  if (o.task == "ioi") {
    analysis::IoiOptions io;
    io.n = o.n;
    io.seed = o.seed;
    io.order = o.order;
    if (o.corruption == "abc") io.corruption = analysis::IoiCorruption::Abc;
    else if (o.corruption == "s2-io") io.corruption = analysis::IoiCorruption::S2Io;
    else throw InputError(fmt::format("dataset: --corruption must be abc or s2-io, found '{}'", o.corruption));
    ds = analysis::ioiDataset(tok, io);
  } else {
    analysis::ColoredObjectsOptions co;
    co.n = o.n;
    co.seed = o.seed;
    ds = analysis::coloredObjectsDataset(tok, co);
  }
  analysis::tokenizeDataset(ds, &tok, o.noBos ? std::nullopt : tok.bosId());
  analysis::writeJsonl(ds, o.out);
  std::cout << fmt::format("wrote {} {} prompts to {}; {} words dropped (not one token){}{}\n", ds.prompts.size(), o.task,
                           o.out, ds.droppedWords.size(), ds.droppedWords.empty() ? "" : ": ",
                           fmt::format("{}", fmt::join(ds.droppedWords, ", ")));
}

const RegisterCommand reg_cmd_dataset{"dataset", 44, [](CLI::App& root) {
  auto o = std::make_shared<DatasetOptions>();
  auto* sub = root.add_subcommand("dataset", "Generate IOI or Colored Objects prompt pairs as JSONL for a model's tokenizer");
  sub->add_option("task", o->task, "ioi or colored-objects")->required();
  sub->add_option("--model", o->model, "model folder (its tokenizer.json)")->required();
  sub->add_option("--n", o->n, "number of prompts (default 100)");
  sub->add_option("--seed", o->seed, "seed (default 0)");
  sub->add_option("--corruption", o->corruption, "IOI: abc (p_ABC, default) or s2-io");
  sub->add_option("--order", o->order, "IOI: mixed (default), baba, abba");
  sub->add_flag("--no-bos", o->noBos, "do not prepend the tokenizer's BOS to the stored ids");
  sub->add_option("--out", o->out, "FILE.jsonl")->required();
  sub->callback([o] { runDataset(*o); });
}};

}  // namespace
}  // namespace mechscope::cli
