// `mechscope-cli run`: one forward pass over prompts or token ids; prints the top-k next tokens and
// optionally streams logits and hooked activations into an HDF5 cache.
#include <ATen/ATen.h>

#include <algorithm>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "app/cli/command.hpp"
#include "core/model/hooked_transformer.hpp"
#include "core/model/memory_estimate.hpp"
#include "core/tokenizer/tokenizer.hpp"
#ifdef MECHSCOPE_WITH_HDF5
#include "store/cache_writer.hpp"
#include "store/forward_streaming.hpp"
#endif

namespace mechscope::cli {
namespace {

struct RunOptions {
  std::string model;
  std::vector<std::string> prompts;
  std::string tokenIds;
  std::vector<std::string> hooks;
  std::string cache;
  std::string cacheDtype = "fp32";
  int cacheQueueMib = 256;
  bool cacheMaskedTiles = false;
  std::string device = "cpu";
  std::string dtype = "fp32";
  bool prependBos = false;
  bool noPrependBos = false;
  int topK = 5;
  bool force = false;
  std::string commandLine;
};

/// [[int, ...], ...] of equal lengths → [batch, pos] int64.
at::Tensor readTokenIds(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw InputError(fmt::format("{}: cannot open --token-ids file", path));
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw InputError(fmt::format("{}: malformed JSON ({})", path, e.what()));
  }
  if (!j.is_array() || j.empty()) throw InputError(fmt::format("{}: expected a non-empty JSON array of arrays of token ids", path));
  std::vector<int64_t> flat;
  std::size_t len = 0;
  for (std::size_t b = 0; b < j.size(); ++b) {
    if (!j[b].is_array() || j[b].empty())
      throw InputError(fmt::format("{}: row {} is not a non-empty array of token ids", path, b));
    if (b == 0) len = j[b].size();
    if (j[b].size() != len)
      throw InputError(fmt::format("{}: row {} has {} ids but row 0 has {} (rows must have equal length)", path, b, j[b].size(), len));
    for (const auto& v : j[b]) {
      if (!v.is_number_integer()) throw InputError(fmt::format("{}: row {} holds {}, expected integer ids", path, b, v.dump()));
      flat.push_back(v.get<int64_t>());
    }
  }
  return at::tensor(at::ArrayRef<int64_t>(flat), at::kLong).view({static_cast<int64_t>(j.size()), static_cast<int64_t>(len)});
}

#ifdef MECHSCOPE_WITH_HDF5
/// A store failure (not bad input, not a cancel) while writing `cache`, as one line that names the file and
/// says "the disk is full" when it is. The writer is dropped first, so its .partial is gone by then.
[[noreturn]] void rethrowCacheFailure(std::unique_ptr<store::CacheWriter>& writer, const std::string& cache,
                                      const Error& e) {
  const std::filesystem::path partial = writer ? writer->partialPath() : std::filesystem::path(cache + ".partial");
  writer.reset();
  std::string what = e.what();
  const bool full = what.find("errno = 28") != std::string::npos || what.find("No space left") != std::string::npos ||
                    what.find("errno = 27") != std::string::npos || what.find("File too large") != std::string::npos;
  std::replace(what.begin(), what.end(), '\n', ' ');
  if (what.size() > 400) what = what.substr(0, 400) + "…";
  throw InputError(fmt::format("run: writing the cache {} failed{}; {} was not created or replaced{} (libhdf5: {})",
                               cache, full ? ": the disk is full" : "", cache,
                               std::filesystem::exists(partial) ? fmt::format(", remove {}", partial.string())
                                                                : " and nothing was left behind",
                               what));
}
#endif

/// The model folder's tokenizer, or none when the folder has no tokenizer.json.
std::optional<Tokenizer> tryTokenizer(const std::filesystem::path& folder) {
  if (!std::filesystem::exists(folder / "tokenizer.json")) return std::nullopt;
  return Tokenizer::fromFile(folder);
}

/// Refuses option values and combinations `run` cannot take, before any model is loaded.
void validateRunOptions(const RunOptions& o) {
  if (o.prompts.empty() == o.tokenIds.empty())
    throw InputError("run: give either --prompt TEXT (one or more) or --token-ids FILE.json");
  if (o.prependBos && o.noPrependBos) throw InputError("run: --prepend-bos and --no-prepend-bos exclude each other");
  if (o.topK < 1) throw InputError(fmt::format("run: --top-k must be ≥ 1, found {}", o.topK));
  if (o.cacheQueueMib < 0) throw InputError(fmt::format("run: --cache-queue-mib must be ≥ 0, found {}", o.cacheQueueMib));
#ifndef MECHSCOPE_WITH_HDF5
  if (!o.cache.empty()) throw UnsupportedError("run: --cache needs the HDF5 store, which this build does not have (-DMECHSCOPE_HDF5=OFF)");
#endif
}

#ifdef MECHSCOPE_WITH_HDF5
/// The cache writer's options from --cache-dtype (fp32, fp16 or bf16) and --cache-queue-mib; checked
/// even without --cache.
store::CacheOptions cacheOptionsFrom(const RunOptions& o) {
  store::CacheOptions cacheOptions;
  cacheOptions.dtype = store::parseStorageDtype(o.cacheDtype, "run: --cache-dtype");
  if (cacheOptions.dtype != store::StorageDtype::Float32 && cacheOptions.dtype != store::StorageDtype::Float16 &&
      cacheOptions.dtype != store::StorageDtype::BFloat16)
    throw InputError(fmt::format("run: --cache-dtype must be fp32, fp16 or bf16, found '{}'", o.cacheDtype));
  // Hook tensors are handed to a background writer (no copy): the forward never modifies a tensor after its
  // hook ran, and the queue's bound keeps a streamed cache's memory flat.
  cacheOptions.backgroundBytes = int64_t{o.cacheQueueMib} << 20;
  cacheOptions.skipMaskedTiles = o.cacheMaskedTiles;
  return cacheOptions;
}
#endif

/// The token ids of each sequence before padding (lengths may differ), and how BOS was handled.
struct EncodedRows {
  std::vector<std::vector<int64_t>> rows;
  std::string bosHandling;  ///< "none", "prepend" or "tokenizer-default" (recorded in the cache's provenance)
};

/// --prompt texts encoded by the model folder's tokenizer, with BOS as --prepend-bos / --no-prepend-bos ask.
EncodedRows encodePrompts(const RunOptions& o, const std::optional<Tokenizer>& tok, std::optional<int64_t> bos,
                        const std::filesystem::path& folder) {
  if (!tok) throw InputError(fmt::format("{}: no tokenizer.json in the model folder; use --token-ids FILE.json", folder.string()));
  EncodedRows out;
  out.bosHandling = o.noPrependBos ? "none" : o.prependBos ? "prepend" : "tokenizer-default";
  for (const auto& p : o.prompts) {
    std::vector<int64_t> ids = tok->encode(p, !o.noPrependBos).ids;
    if (o.prependBos && (ids.empty() || ids.front() != bos.value_or(-1))) {
      if (!bos) throw InputError(fmt::format("{}: --prepend-bos but neither config.json nor tokenizer.json names a BOS token", folder.string()));
      ids.insert(ids.begin(), *bos);
    }
    if (ids.empty()) throw InputError(fmt::format("run: prompt '{}' encodes to no tokens", p));
    out.rows.push_back(std::move(ids));
  }
  return out;
}

/// The rows of --token-ids, with BOS put in front of each row that lacks it on --prepend-bos.
EncodedRows tokenIdRows(const RunOptions& o, std::optional<int64_t> bos, const std::filesystem::path& folder) {
  const at::Tensor t = readTokenIds(o.tokenIds);  // [batch, pos]
  EncodedRows out;
  out.bosHandling = o.prependBos ? "prepend" : "none";
  for (int64_t b = 0; b < t.size(0); ++b) {
    std::vector<int64_t> ids(t[b].data_ptr<int64_t>(), t[b].data_ptr<int64_t>() + t.size(1));
    if (o.prependBos) {
      if (!bos) throw InputError(fmt::format("{}: --prepend-bos but config.json names no bos_token_id", folder.string()));
      if (ids.front() != *bos) ids.insert(ids.begin(), *bos);
    }
    out.rows.push_back(std::move(ids));
  }
  return out;
}

/// Rows of different lengths as one batch, left-padded so the last position predicts for every row.
struct PaddedBatch {
  at::Tensor tokens;  // [batch, pos] int64, padding filled with the pad id
  at::Tensor mask;    // [batch, pos] int64, 0 on padding
  bool padded = false;
};

/// Left-pads `rows` to the longest one with `padId`.
PaddedBatch leftPad(const std::vector<std::vector<int64_t>>& rows, int64_t padId) {
  std::size_t maxLen = 0;
  for (const auto& r : rows) maxLen = std::max(maxLen, r.size());
  const int64_t B = static_cast<int64_t>(rows.size()), P = static_cast<int64_t>(maxLen);
  PaddedBatch out;
  out.tokens = at::zeros({B, P}, at::kLong);  // [batch, pos]
  out.mask = at::ones({B, P}, at::kLong);     // [batch, pos]
  for (int64_t b = 0; b < B; ++b) {
    const auto& r = rows[static_cast<std::size_t>(b)];
    const int64_t off = P - static_cast<int64_t>(r.size());
    if (off > 0) {
      out.padded = true;
      out.mask[b].narrow(0, 0, off).zero_();
      out.tokens[b].narrow(0, 0, off).fill_(padId);
    }
    for (std::size_t i = 0; i < r.size(); ++i) out.tokens[b][off + static_cast<int64_t>(i)] = r[i];
  }
  return out;
}

/// Refuses a --hooks pattern that matches none of the model's hook points; notes that --hooks alone
/// caches nothing.
void checkHookPatterns(const RunOptions& o, const std::vector<std::string>& hookNames) {
  for (const auto& g : o.hooks)
    if (std::none_of(hookNames.begin(), hookNames.end(), [&](const std::string& n) { return HookSet::matches(g, n); }))
      throw InputError(fmt::format("run: --hooks '{}' matches no hook point (mechscope-cli inspect --model {} lists them)", g, o.model));
  if (!o.hooks.empty() && o.cache.empty())
    std::cerr << "mechscope-cli: note: --hooks without --cache only checks the patterns\n";
}

/// The hook points that one of `patterns` matches, in the model's order (what the cache will hold).
std::vector<std::string> matchedHookNames(const std::vector<std::string>& patterns, const std::vector<std::string>& hookNames) {
  std::vector<std::string> matched;
  for (const auto& n : hookNames)
    if (std::any_of(patterns.begin(), patterns.end(), [&](const std::string& g) { return HookSet::matches(g, n); }))
      matched.push_back(n);
  return matched;
}

/// Refuses a run of batch × positions tokens that cannot fit, unless --force: memory on CPU first (the
/// bound that cannot be worked around by writing elsewhere), then disk for --cache.
void checkRunFits(const RunOptions& o, const HookedTransformer& model, const std::vector<std::string>& cached, int64_t batch,
                  int64_t positions) {
  const ModelConfig& cfg = model.config();
  if (model.device().is_cpu()) {
    ForwardMemoryOptions mo;
    mo.batch = batch;
    mo.positions = positions;
    mo.elementBytes = static_cast<int64_t>(c10::elementSize(model.dtype()));
    mo.materializedAttention = std::any_of(cached.begin(), cached.end(), [](const std::string& n) {
      return n.find("hook_pattern") != std::string::npos || n.find("hook_attn_scores") != std::string::npos;
    });
    checkMemoryOrThrow("run", fmt::format("a forward pass of {}×{} tokens", batch, positions), estimateForwardMemory(cfg, mo), o.force);
  }
  if (!o.cache.empty()) checkDiskOrThrow("run", o.cache, cacheFileBytes(cfg, cached, batch, positions), o.force);
}

#ifdef MECHSCOPE_WITH_HDF5
/// The cache file's provenance: model, weights, dtype and device, tokenization and the command line.
store::Provenance cacheProvenance(const RunOptions& o, const HookedTransformer& model, const std::string& bosHandling, bool padded) {
  const ModelConfig& cfg = model.config();
  store::Provenance prov;
  prov.modelFolder = o.model;
  prov.family = cfg.modelType;
  prov.configJson = cfg.raw.dump(2);
  prov.weightsHash = "fnv1a64:" + model.weightsHash();
  prov.dtype = dtypeName(model.dtype());  // "fp32", as the analyses record it
  prov.device = model.deviceLabel();
  prov.bosHandling = bosHandling;
  prov.padding = padded ? "left" : "none";
  prov.commandLine = o.commandLine;
  return prov;
}

/// The forward pass; when `writer` (null without --cache) streams the hooks into the cache, a failed
/// write (disk full, I/O error) becomes one InputError naming the cache. A cancel passes through (the
/// writer's destructor removes the .partial; exit 130).
ForwardResult forwardIntoCache(const HookedTransformer& model, const at::Tensor& tokens, const ForwardOptions& fo, const HookSet& hooks,
                               std::unique_ptr<store::CacheWriter>& writer, const std::string& cache) {
  try {
    return model.forward(tokens, fo, hooks.empty() ? nullptr : &hooks, &processContext());
  } catch (const InputError&) {
    throw;
  } catch (const Cancelled&) {
    throw;
  } catch (const Error& e) {  // a hook's write failed
    if (!writer) throw;
    rethrowCacheFailure(writer, cache, e);
  }
}

/// Writes the tokens (with their strings when there is a tokenizer), logits and attention path, then
/// commits the cache file.
void finishCache(std::unique_ptr<store::CacheWriter>& writer, const std::string& cache, const at::Tensor& tokens,
                 const std::optional<Tokenizer>& tok, const ForwardResult& result) {
  std::vector<std::vector<std::string>> strings;  // [batch][pos]
  if (tok) {
    for (int64_t b = 0; b < tokens.size(0); ++b) {
      strings.emplace_back();
      for (int64_t p = 0; p < tokens.size(1); ++p) strings.back().push_back(tok->idToToken(tokens[b][p].item<int64_t>()));
    }
  }
  try {
    writer->writeTokens(tokens, strings);
    writer->writeLogits(result.logits);
    writer->setAttribute("/", "attention_path", result.attentionPath);
    writer->commit();
  } catch (const InputError&) {
    throw;
  } catch (const Cancelled&) {
    throw;
  } catch (const Error& e) {
    rethrowCacheFailure(writer, cache, e);
  }
  std::cout << fmt::format("wrote {}\n", cache);
}
#endif

/// Prints each row's top-k next tokens after the last position: id, logit, probability and, with a
/// tokenizer, the token's text.
void printTopNextTokens(const at::Tensor& logits, const std::vector<std::vector<int64_t>>& rows, int topK, int64_t dVocab,
                        const std::optional<Tokenizer>& tok) {
  const at::Tensor last = logits.select(1, logits.size(1) - 1).to(at::kCPU);  // [batch, vocab]
  const at::Tensor probs = at::softmax(last, -1);                             // [batch, vocab]
  const int k = static_cast<int>(std::min<int64_t>(topK, dVocab));
  const auto top = last.topk(k, -1);
  for (int64_t b = 0; b < last.size(0); ++b) {
    std::cout << fmt::format("[{}] {} tokens; top-{} next tokens:\n", b, rows[static_cast<std::size_t>(b)].size(), k);
    for (int i = 0; i < k; ++i) {
      const int64_t id = std::get<1>(top)[b][i].item<int64_t>();
      const double logit = std::get<0>(top)[b][i].item<double>();
      std::cout << fmt::format("  {:>8}  logit {:>9.4f}  p {:.4f}{}\n", id, logit, probs[b][id].item<double>(),
                               tok ? fmt::format("  '{}'", tok->displayToken(id)) : "");
    }
  }
}

/// `run`: tokens → fit checks → forward (streaming hooks into --cache) → top-k report → cache commit.
void runRun(const RunOptions& o) {
  validateRunOptions(o);
#ifdef MECHSCOPE_WITH_HDF5
  const store::CacheOptions cacheOptions = cacheOptionsFrom(o);
#endif
  const std::filesystem::path folder = o.model;
  auto model = HookedTransformer::load(folder, LoadOptions{o.device, o.dtype});
  const ModelConfig& cfg = model->config();
  const std::optional<Tokenizer> tok = tryTokenizer(folder);
  std::optional<int64_t> bos = cfg.bosTokenId;
  if (tok && tok->bosId()) bos = tok->bosId();

  const EncodedRows encodedRows = !o.prompts.empty() ? encodePrompts(o, tok, bos, folder) : tokenIdRows(o, bos, folder);
  const PaddedBatch batch = leftPad(encodedRows.rows, cfg.eosTokenIds.empty() ? 0 : cfg.eosTokenIds.front());
  const int64_t B = batch.tokens.size(0), P = batch.tokens.size(1);
  ForwardOptions fo;
  if (batch.padded) fo.attentionMask = batch.mask;

  const auto hookNames = model->hookNames();
  checkHookPatterns(o, hookNames);
  checkRunFits(o, *model, matchedHookNames(o.hooks, hookNames), B, P);

  HookSet hooks;
#ifdef MECHSCOPE_WITH_HDF5
  std::unique_ptr<store::CacheWriter> writer;
  if (!o.cache.empty()) {
    writer = std::make_unique<store::CacheWriter>(o.cache, cacheProvenance(o, *model, encodedRows.bosHandling, batch.padded), cacheOptions);
    // The hooks, the logits streamed while computed, the attention maps formed beside the forward.
    store::streamForwardInto(*writer, o.hooks, hookNames, fo, hooks);
  }
  const ForwardResult result = forwardIntoCache(*model, batch.tokens, fo, hooks, writer, o.cache);
#else
  const ForwardResult result = model->forward(batch.tokens, fo, hooks.empty() ? nullptr : &hooks, &processContext());
#endif

  printTopNextTokens(result.logits, encodedRows.rows, o.topK, cfg.dVocab, tok);
  std::cout << fmt::format("attention path: {}, device {}, dtype {}\n", result.attentionPath, model->deviceLabel(),
                           dtypeName(model->dtype()));
#ifdef MECHSCOPE_WITH_HDF5
  if (writer) finishCache(writer, o.cache, batch.tokens, tok, result);
#endif
}

const RegisterCommand reg_cmd_run{"run", 20, [](CLI::App& root) {
  auto o = std::make_shared<RunOptions>();
  auto* sub = root.add_subcommand("run", "Run a model forward pass; print top-k next tokens; optionally cache activations");
  sub->add_option("--model", o->model, "Hugging Face model folder (config.json + safetensors)")->required();
  sub->add_option("--prompt", o->prompts, "Prompt text (repeat for a batch; needs tokenizer.json)");
  sub->add_option("--token-ids", o->tokenIds, "JSON file: array of equal-length arrays of token ids (a batch)");
  sub->add_option("--hooks", o->hooks, "Hook names or globs to cache, e.g. 'blocks.*.attn.hook_pattern'");
  sub->add_option("--cache", o->cache, "Write tokens, logits and hooked activations to this HDF5 file");
  sub->add_option("--cache-dtype", o->cacheDtype,
                  "Storage type of cached activations and logits: fp32 (default, exact), fp16 or bf16 (half the bytes)");
  sub->add_option("--cache-queue-mib", o->cacheQueueMib,
                  "MiB of hook tensors the background cache writer may hold while the forward goes on (default 256; "
                  "0 writes on the forward's thread)");
  sub->add_flag("--cache-masked-tiles", o->cacheMaskedTiles,
                "Store attention patterns and scores in 256x256 tiles and leave out the tiles that hold only the mask "
                "(0 / -inf): the file of a causal model's patterns is ~40 % smaller at 2K tokens, ~50 % at long "
                "contexts; every reader still reads the full tensor. Costs the writer a copy of the kept tiles. Maps formed "
                "beside the forward (when at least 2 CPUs are idle) are stored so without this flag, cut on their own thread");
  sub->add_option("--device", o->device, "cpu, cuda or cuda:N; a comma list (cuda:0,cuda:1) splits the blocks over those devices; auto: cuda:0, or every GPU when the weights need them");
  sub->add_option("--dtype", o->dtype, "fp32 (default), bf16 or fp16 (fp16 needs cuda)");
  sub->add_flag("--prepend-bos", o->prependBos, "Make every sequence start with the BOS token");
  sub->add_flag("--no-prepend-bos", o->noPrependBos, "Encode prompts without special tokens (no BOS)");
  sub->add_option("--top-k", o->topK, "How many next tokens to print (default 5)");
  sub->add_flag("--force", o->force, "Run even when the memory or disk estimate says it will not fit");
  sub->callback([o, sub] {
    o->commandLine = "mechscope-cli run";
    for (const auto* opt : sub->get_options())
      if (opt->count() > 0 && !opt->get_name().empty() && opt->get_name() != "--help")
        o->commandLine += " " + opt->get_name() + (opt->get_expected_max() > 0 ? " " + fmt::format("{}", fmt::join(opt->results(), " ")) : "");
    runRun(*o);
  });
}};

}  // namespace
}  // namespace mechscope::cli
