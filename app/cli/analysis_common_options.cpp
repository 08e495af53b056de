#include "app/cli/analysis_common_options.hpp"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>  // at::NoGradGuard: not in ATen.h in LibTorch 2.x

#include <fstream>
#include <iostream>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "app/cli/command.hpp"
#include "mechscope/version.hpp"
#include "core/common/device_memory.hpp"
#include "core/common/errors.hpp"
#include "core/model/memory_estimate.hpp"

namespace mechscope::cli {

void AnalysisCommonOptions::addRunAndOutputs(CLI::App* sub) {
  sub->add_option("--device", device, "cpu, cuda or cuda:N; a comma list (cuda:0,cuda:1) splits the blocks over those devices; auto: cuda:0, or every GPU when the weights need them");
  sub->add_option("--dtype", dtype, "fp32 (default), bf16 or fp16 (fp16 needs cuda)");
  sub->add_option("--out", out, "Write the result to this HDF5 file under /analyses/<name>/");
  sub->add_option("--json", json, "Write the result as JSON (keys in docs/cli.md)");
}

void AnalysisCommonOptions::add(CLI::App* sub, bool withMaterialize) {
  sub->add_option("--model", model, "Hugging Face model folder (config.json + safetensors)")->required();
  sub->add_option("--prompt", prompts, "Prompt text (repeat for a batch; needs tokenizer.json)");
  sub->add_option("--prompt-file", promptFile, "Read the prompt text from this file");
  sub->add_option("--token-ids", tokenIds, "JSON file: array of arrays of token ids (one row per sequence)");
  addRunAndOutputs(sub);
  sub->add_flag("--no-prepend-bos", noPrependBos, "Encode prompts without special tokens (no BOS)");
  if (withMaterialize) {
    sub->add_flag("--materialize", materialize, "Read full attention patterns (hook_pattern) instead of the streaming probe");
    sub->add_flag("--force", force, "With --materialize: run even when the memory estimate says it will not fit");
  }
}

void AnalysisCommonOptions::finishCommandLine(const CLI::App* sub) {
  commandLine = "mechscope-cli " + sub->get_name();
  for (const auto* opt : sub->get_options())
    if (opt->count() > 0 && !opt->get_name().empty() && opt->get_name() != "--help")
      commandLine += " " + opt->get_name() + (opt->get_expected_max() > 0 ? " " + fmt::format("{}", fmt::join(opt->results(), " ")) : "");
  // Every command with --seed defaults it to 0; record the value in use either way.
  if (const CLI::Option* s = sub->get_option_no_throw("--seed")) seed = s->count() > 0 ? s->as<int64_t>() : 0;
}

void AnalysisCommonOptions::validate(const std::string& command, bool needOutput) const {
  const int sources = (!prompts.empty()) + (!promptFile.empty()) + (!tokenIds.empty());
  if (sources != 1) throw InputError(fmt::format("{}: give exactly one of --prompt, --prompt-file or --token-ids (found {})", command, sources));
  validateOutputs(command, needOutput);
}

void AnalysisCommonOptions::validateOutputs(const std::string& command, bool needOutput) const {
  if (needOutput && out.empty() && json.empty()) throw InputError(fmt::format("{}: give --json FILE.json and/or --out FILE.h5", command));
  if (!out.empty() && !analysis::resultH5Available())
    throw UnsupportedError(fmt::format("{}: --out {} needs the HDF5 store, which this build does not have (-DMECHSCOPE_HDF5=OFF); use --json", command, out));
  for (const std::string& f : {out, json}) {
    if (f.empty()) continue;
    const auto parent = std::filesystem::path(f).parent_path();
    if (!parent.empty() && !std::filesystem::is_directory(parent))
      throw InputError(fmt::format("{}: output folder {} does not exist", command, parent.string()));
  }
}

namespace {
/// Whether some part of the model runs on a CUDA device.
bool usesCuda(const HookedTransformer& model) {
  for (const at::Device& d : model.devicePlan().devices())
    if (d.is_cuda()) return true;
  return false;
}
}  // namespace

LoadedModel loadAnalysisModel(const AnalysisCommonOptions& o) {
  const auto t0 = std::chrono::steady_clock::now();
  LoadedModel m;
  m.model = HookedTransformer::load(o.model, LoadOptions{o.device, o.dtype});
  if (std::filesystem::exists(std::filesystem::path(o.model) / "tokenizer.json")) m.tokenizer = Tokenizer::fromFile(o.model);
  const auto loaded = std::chrono::steady_clock::now();
  m.loadSeconds = std::chrono::duration<double>(loaded - t0).count();
  if (usesCuda(*m.model)) {
    // A cold process pays CUDA's first-call costs (context, cuBLAS handle and workspace, kernel modules) in its
    // first forward: one 8-token forward takes them here, so they are reported apart from the analysis.
    at::NoGradGuard noGrad;
    const at::Tensor ids = at::arange(8, at::kLong).remainder(m.model->config().dVocab).unsqueeze(0);  // [1, 8]
    (void)m.model->forward(ids).logits.sum().item<float>();  // .item() waits for the device
  }
  m.loadedAt = std::chrono::steady_clock::now();
  m.gpuWarmupSeconds = std::chrono::duration<double>(m.loadedAt - loaded).count();
  for (const at::Device& d : m.model->devicePlan().devices())  // the analysis' own peak, weights included (they stay allocated)
    if (d.is_cuda()) resetCudaPeak(d.index());
  return m;
}

std::vector<std::vector<int64_t>> readTokenIdRows(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw InputError(fmt::format("{}: cannot open --token-ids file", path));
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw InputError(fmt::format("{}: malformed JSON ({})", path, e.what()));
  }
  if (j.is_array() && !j.empty() && j[0].is_number_integer()) j = nlohmann::json::array({j});
  if (!j.is_array() || j.empty()) throw InputError(fmt::format("{}: expected a non-empty JSON array of arrays of token ids", path));
  std::vector<std::vector<int64_t>> rows;
  for (std::size_t b = 0; b < j.size(); ++b) {
    if (!j[b].is_array() || j[b].empty()) throw InputError(fmt::format("{}: row {} is not a non-empty array of token ids", path, b));
    std::vector<int64_t> r;
    for (const auto& v : j[b]) {
      if (!v.is_number_integer()) throw InputError(fmt::format("{}: row {} holds {}, expected integer ids", path, b, v.dump()));
      r.push_back(v.get<int64_t>());
    }
    rows.push_back(std::move(r));
  }
  return rows;
}

std::vector<std::string> inputTexts(const AnalysisCommonOptions& o) {
  if (!o.promptFile.empty()) {
    std::ifstream in(o.promptFile);
    if (!in) throw InputError(fmt::format("{}: cannot open --prompt-file", o.promptFile));
    std::stringstream ss;
    ss << in.rdbuf();
    return {ss.str()};
  }
  return o.prompts;
}

std::vector<std::vector<int64_t>> readInputRows(const AnalysisCommonOptions& o, const LoadedModel& m, const std::string& command) {
  std::vector<std::vector<int64_t>> rows;
  if (!o.tokenIds.empty()) {
    rows = readTokenIdRows(o.tokenIds);
  } else {
    if (!m.tokenizer)
      throw InputError(fmt::format("{}: no tokenizer.json in the model folder {}; use --token-ids FILE.json", command, o.model));
    for (const auto& text : inputTexts(o)) {
      auto ids = m.tokenizer->encode(text, !o.noPrependBos).ids;
      if (ids.empty()) throw InputError(fmt::format("{}: the prompt encodes to no tokens", command));
      rows.push_back(std::move(ids));
    }
  }
  for (std::size_t b = 0; b < rows.size(); ++b) {
    const at::Tensor t = at::tensor(at::ArrayRef<int64_t>(rows[b]), at::kLong).unsqueeze(0);
    (void)m.model->checkTokens(t);  // InputError on bad ids / too long
  }
  if (o.materialize && m.model->device().is_cpu()) {  // [batch, head, pos, pos] per layer: refuse what cannot fit
    ForwardMemoryOptions mo;
    mo.batch = static_cast<int64_t>(rows.size());
    for (const auto& r : rows) mo.positions = std::max<int64_t>(mo.positions, static_cast<int64_t>(r.size()));
    mo.elementBytes = static_cast<int64_t>(c10::elementSize(m.model->dtype()));
    mo.fullLogits = false;
    checkMemoryOrThrow(command, fmt::format("--materialize on {}×{} tokens", mo.batch, mo.positions),
                       estimateForwardMemory(m.model->config(), mo), o.force);
  }
  return rows;
}

void writeAnalysisOutputs(const AnalysisCommonOptions& o, const analysis::AnalysisResult& result, const LoadedModel& m,
                          const std::string& attentionPath) {
  // Timing on stderr, not in the outputs (they stay bit-identical across runs).
  const double analysisSeconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - m.loadedAt).count();
  std::vector<std::string> peaks;  // per CUDA device of the model, named when there are several
  const auto devices = m.model->devicePlan().devices();
  for (const at::Device& d : devices)
    if (const int64_t bytes = d.is_cuda() ? cudaPeakAllocatedBytes(d.index()) : 0; bytes > 0)
      peaks.push_back(fmt::format("{:.2f} GiB{}", static_cast<double>(bytes) / (1 << 30), devices.size() > 1 ? " on " + d.str() : ""));
  const std::string peak = peaks.empty() ? "" : fmt::format(", peak CUDA memory {}", fmt::join(peaks, ", "));
  const std::string warmup = usesCuda(*m.model) ? fmt::format(", gpu warm-up {:.3f} s", m.gpuWarmupSeconds) : "";
  std::cerr << fmt::format("timing: load {:.3f} s{}, analysis {:.3f} s{}\n", m.loadSeconds, warmup, analysisSeconds, peak);
  analysis::AnalysisResult withProvenance = result;
  if (withProvenance.json.is_object()) {
    nlohmann::json p = {{"model_folder", o.model},
                        {"family", m.model->config().modelType},
                        {"weights_hash", "fnv1a64:" + m.model->weightsHash()},
                        {"dtype", dtypeName(m.model->dtype())},
                        {"device", m.model->deviceLabel()},
                        {"attention_path", attentionPath},
                        {"mechscope_version", kVersion},
                        {"command_line", o.commandLine}};
    if (o.seed) p["seed"] = *o.seed;
    withProvenance.json["provenance"] = p;
  }
  const analysis::AnalysisResult& out = withProvenance;
  if (!o.json.empty()) {
    analysis::writeResultJson(out, o.json);
    std::cerr << fmt::format("wrote {}\n", o.json);
  }
  if (!o.out.empty()) {
    analysis::ResultProvenance p;
    p.modelFolder = o.model;
    p.family = m.model->config().modelType;
    p.configJson = m.model->config().raw.dump(2);
    p.weightsHash = m.model->weightsHash();
    p.dtype = dtypeName(m.model->dtype());
    p.device = m.model->deviceLabel();
    p.attentionPath = attentionPath;
    p.commandLine = o.commandLine;
    if (o.seed) p.seed = std::to_string(*o.seed);
    analysis::writeResultH5(out, o.out, p);
    std::cerr << fmt::format("wrote {}\n", o.out);
  }
}

void attachStderrProgress(const std::string& command) {
  processContext().progress = [command](const Progress& p) {
    std::cerr << fmt::format("{}: {} {}/{}\n", command, p.stage, p.done, p.total);
  };
}

}  // namespace mechscope::cli
