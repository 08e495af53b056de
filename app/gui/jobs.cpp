#include "app/gui/jobs.hpp"

#include <ATen/ATen.h>

#include "core/common/errors.hpp"
#include "core/synth/planted_model.hpp"
#include "store/cache_writer.hpp"
#include "core/model/hook_names.hpp"

namespace mechscope::gui {

int submitOpenModel(Workspace& ws, JobRunner& jobs, const QString& folder, const LoadOptions& options, bool embedded) {
  const std::string path = folder.toStdString();
  return jobs.submit(embedded ? "Open embedded planted model" : "Open " + folder,
                     [&ws, path, options, embedded](const RunContext& ctx) -> JobRunner::Deliver {
                       const std::filesystem::path dir = embedded ? planted::embeddedModelFolder() : std::filesystem::path(path);
                       std::shared_ptr<const ModelSession> session = loadModelSession(dir, options, ctx);
                       return [&ws, session] { ws.setSession(session); };
                     });
}

int submitComputePatterns(Workspace& ws, JobRunner& jobs) {
  auto session = ws.session();
  if (!session) throw InputError("attention: no model loaded; open a model first");
  if (ws.tokens().ids.empty()) throw InputError("attention: the prompt has no tokens; type a prompt first");
  const PromptTokens tokens = ws.tokens();
  return jobs.submit("Attention patterns", [&ws, session, tokens](const RunContext& ctx) -> JobRunner::Deliver {
    auto patterns = std::make_shared<const AttentionPatterns>(computePatterns(*session, tokens, ctx));
    return [&ws, session, patterns, ids = tokens.ids] {
      // Stale when the model or the prompt changed meanwhile (e.g. stepping through a batch).
      if (ws.session() == session && ws.tokens().ids == ids) ws.setPatterns(patterns);
    };
  });
}

int submitBuildPatching(Workspace& ws, JobRunner& jobs, std::vector<int64_t> clean, std::vector<int64_t> corrupt,
                        int64_t answer, int64_t incorrect) {
  auto session = ws.session();
  if (!session) throw InputError("patching: no model loaded; open a model first");
  return jobs.submit("Clean and corrupted runs", [&ws, session, clean = std::move(clean), corrupt = std::move(corrupt), answer,
                                                   incorrect](const RunContext& ctx) -> JobRunner::Deliver {
    std::shared_ptr<const PatchingSession> p = PatchingSession::build(session, clean, corrupt, answer, incorrect, ctx);
    return [&ws, session, p] {
      if (ws.session() == session) ws.setPatching(p);
    };
  });
}

int submitSaveCache(Workspace& ws, JobRunner& jobs, const QString& path) {
  auto session = ws.session();
  auto patterns = ws.patterns();
  if (!session || !patterns) throw InputError("save cache: nothing to save; run the attention patterns first");
  const PromptTokens tokens = ws.tokens();
  const std::string file = path.toStdString();
  return jobs.submit("Save cache " + path, [session, patterns, tokens, file](const RunContext& ctx) -> JobRunner::Deliver {
    const auto& cfg = session->model->config();
    store::Provenance prov;
    prov.modelFolder = session->card.folder.toStdString();
    prov.family = cfg.modelType;
    prov.configJson = cfg.raw.dump(2);
    prov.weightsHash = "fnv1a64:" + session->model->weightsHash();
    prov.dtype = c10::toString(session->model->dtype());
    prov.device = session->model->deviceLabel();
    prov.attentionPath = "explicit";
    prov.bosHandling = "tokenizer-default";
    prov.padding = "none";
    prov.commandLine = "mechscope (GUI) save cache";
    store::CacheWriter w(file, prov);
    std::vector<std::vector<std::string>> strings(1);
    for (int64_t id : tokens.ids) strings[0].push_back(session->tokenizer ? session->tokenizer->idToToken(id) : std::to_string(id));
    w.writeTokens(tokenTensor(tokens.ids), strings);
    const int64_t P = patterns->positions;
    for (int l = 0; l < patterns->layers; ++l) {
      ctx.step(l, patterns->layers, "writing cache");
      auto& v = const_cast<std::vector<float>&>(patterns->perLayer[static_cast<std::size_t>(l)]);
      const at::Tensor t = at::from_blob(v.data(), {1, patterns->heads, P, P}, at::kFloat);  // [batch, head, query, key]
      w.writeActivation(hook::pattern(l), t);
    }
    w.setAttribute("/", "attention_path", "explicit");
    w.commit();
    return {};
  });
}

PatchingDefaults plantedPatchingDefaults() {
  return {"When Mary and John were at the store , John gave a ring to",
          "When Alice and Bob were at the store , Anna gave a ring to", "Mary", "John"};
}

}  // namespace mechscope::gui
