#include "app/gui/model_session.hpp"

#include <ATen/ATen.h>

#include <algorithm>
#include <cstring>

#include "core/common/errors.hpp"

namespace mechscope::gui {

namespace fs = std::filesystem;

std::vector<float> AttentionPatterns::head(int layer, int h) const {
  if (layer < 0 || layer >= layers || h < 0 || h >= heads)
    throw InputError("attention patterns: head " + std::to_string(layer) + "." + std::to_string(h) + " is outside " +
                     std::to_string(layers) + " layers × " + std::to_string(heads) + " heads");
  const std::size_t n = static_cast<std::size_t>(positions) * static_cast<std::size_t>(positions);
  const auto& l = perLayer[static_cast<std::size_t>(layer)];
  return {l.begin() + static_cast<std::ptrdiff_t>(n * static_cast<std::size_t>(h)),
          l.begin() + static_cast<std::ptrdiff_t>(n * static_cast<std::size_t>(h + 1))};
}

std::shared_ptr<ModelSession> loadModelSession(const fs::path& folder, const LoadOptions& options, const RunContext& ctx) {
  std::error_code ec;
  if (folder.empty()) throw InputError("open model: no folder given; choose a Hugging Face model folder");
  if (!fs::exists(folder, ec))
    throw InputError(folder.string() + ": folder does not exist; choose a Hugging Face model folder (config.json + *.safetensors)");
  if (!fs::is_directory(folder, ec))
    throw InputError(folder.string() + ": is a file, expected a model folder; choose the folder that holds config.json");
  if (!fs::exists(folder / "config.json", ec))
    throw InputError(folder.string() + ": no config.json; this is not a Hugging Face model folder (choose the folder with config.json and *.safetensors)");
  ctx.step(0, 3, "loading weights");
  auto session = std::make_shared<ModelSession>();
  session->model = HookedTransformer::load(folder, options);
  ctx.step(1, 3, "loading tokenizer");
  if (fs::exists(folder / "tokenizer.json", ec)) session->tokenizer = Tokenizer::fromFile(folder);
  ctx.step(2, 3, "model card");
  const auto& cfg = session->model->config();
  ModelCard& c = session->card;
  c.folder = QString::fromStdString(folder.string());
  c.family = QString::fromStdString(cfg.modelType);
  c.device = QString::fromStdString(session->model->deviceLabel());
  c.dtype = QString::fromStdString(dtypeName(session->model->dtype()));
  c.layers = cfg.nLayers;
  c.heads = cfg.nHeads;
  c.kvHeads = cfg.nKvHeads;
  c.dModel = cfg.dModel;
  c.dHead = cfg.dHead;
  c.dMlp = cfg.dMlp;
  c.vocab = cfg.dVocab;
  c.nCtx = cfg.nCtx;
  c.parameters = session->model->parameterCount();
  for (const auto& h : session->model->hookNames()) c.hooks << QString::fromStdString(h);
  c.planted = fs::exists(folder / "planted.json", ec);
  ctx.step(3, 3, "done");
  return session;
}

PromptTokens tokenizePrompt(const ModelSession& session, const QString& text) {
  if (!session.tokenizer)
    throw InputError(session.card.folder.toStdString() + ": no tokenizer.json in the model folder; add one to type prompts");
  if (text.trimmed().isEmpty()) throw InputError("prompt: empty; type a prompt to tokenize");
  const std::string utf8 = text.toStdString();
  Encoding enc = session.tokenizer->encode(utf8, true);
  const auto bos = session.tokenizer->bosId() ? session.tokenizer->bosId() : session.model->config().bosTokenId;
  if (bos && (enc.ids.empty() || enc.ids.front() != *bos)) {
    enc.ids.insert(enc.ids.begin(), *bos);
    enc.tokens.insert(enc.tokens.begin(), session.tokenizer->idToToken(*bos));
    enc.offsets.insert(enc.offsets.begin(), std::pair<std::size_t, std::size_t>{0, 0});
  }
  if (enc.ids.empty()) throw InputError("prompt: encodes to no tokens");
  PromptTokens out;
  out.ids = enc.ids;
  for (std::size_t i = 0; i < enc.ids.size(); ++i) {
    out.display << QString::fromStdString(session.tokenizer->displayToken(enc.ids[i]));
    out.offsets.emplace_back(static_cast<int>(enc.offsets[i].first), static_cast<int>(enc.offsets[i].second));
  }
  return out;
}

qint64 patternBytes(const ModelCard& card, qint64 positions) {
  return static_cast<qint64>(card.layers) * card.heads * positions * positions * static_cast<qint64>(sizeof(float));
}

QString formatBytes(qint64 bytes) {
  const char* units[] = {"B", "KB", "MB", "GB", "TB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1000.0 && u < 4) {
    v /= 1000.0;
    ++u;
  }
  return QString("%1 %2").arg(v, 0, 'f', u == 0 ? 0 : 1).arg(units[u]);
}

at::Tensor tokenTensor(const std::vector<int64_t>& ids) {
  return at::tensor(at::ArrayRef<int64_t>(ids), at::kLong).view({1, static_cast<int64_t>(ids.size())});  // [1, pos]
}

AttentionPatterns computePatterns(const ModelSession& session, const PromptTokens& tokens, const RunContext& ctx) {
  const auto& model = *session.model;
  const int L = model.config().nLayers;
  AttentionPatterns out;
  out.layers = L;
  out.heads = model.config().nHeads;
  out.positions = static_cast<int>(tokens.ids.size());
  out.labels = tokens.display;
  out.perLayer.resize(static_cast<std::size_t>(L));
  // Copy each layer's pattern out as it is produced (nothing accumulates as tensors) and report progress.
  HookSet hooks;
  hooks.add("blocks.*.attn.hook_pattern", [&](const at::Tensor& t, const HookContext& c) -> std::optional<at::Tensor> {
    const at::Tensor p = t.select(0, 0).to(at::kCPU, at::kFloat).contiguous();  // [head, query, key]
    auto& dst = out.perLayer[static_cast<std::size_t>(c.layer)];
    dst.resize(static_cast<std::size_t>(p.numel()));
    std::memcpy(dst.data(), p.data_ptr<float>(), dst.size() * sizeof(float));
    ctx.step(c.layer + 1, L, "attention patterns");
    return std::nullopt;
  });
  ForwardOptions fo;
  fo.path = AttentionPath::Explicit;
  fo.logitsLastOnly = true;
  model.forward(model.checkTokens(tokenTensor(tokens.ids)), fo, &hooks, &ctx);
  return out;
}

}  // namespace mechscope::gui
