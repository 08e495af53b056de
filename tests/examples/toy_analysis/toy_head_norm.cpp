#include "tests/examples/toy_analysis/toy_head_norm.hpp"

#include <ATen/ATen.h>

#include "core/model/hooked_transformer.hpp"

namespace mechscope::toy {

namespace {

analysis::AnalysisResult runToy(const analysis::PluginInputs& in, const analysis::ParamValues& params, const RunContext* ctx) {
  const double scale = params.number("scale");
  const int L = in.model->config().nLayers, H = in.model->config().nHeads;
  at::Tensor sum = at::zeros({L, H}, at::kDouble);  // [layer, head]
  for (const auto& row : in.rows) {
    HookSet hooks;
    hooks.add("blocks.*.attn.hook_z", [&](const at::Tensor& z, const HookContext& c) -> std::optional<at::Tensor> {
      sum[c.layer] += z.select(0, 0).to(at::kDouble).norm(2, {-1}).mean(0);  // [pos, head, d_head] → [head]
      return std::nullopt;
    });
    in.model->forward(in.model->checkTokens(at::tensor(row, at::kLong).unsqueeze(0)), {}, &hooks, ctx);
  }
  analysis::AnalysisResult r;
  r.name = "toy-head-norm";
  const at::Tensor grid = sum * (scale / static_cast<double>(in.rows.size()));
  r.json["head_norm"] = analysis::tensorToJson(grid);
  r.json["prompts"] = static_cast<int64_t>(in.rows.size());
  r.addArray("head_norm", grid);
  return r;
}

}  // namespace

analysis::AnalysisPlugin toyHeadNormPlugin() {
  analysis::AnalysisPlugin p = analysis::makePlugin("toy-head-norm", "Toy head norm",
                                                    "toy: mean norm of every head's output z (an example of adding an analysis)",
                                                    analysis::PluginInput::TokenRows, runToy);
  p.descriptor.acceptsKinds = {"prompts", "token-ids"};
  analysis::ParamInfo scale = analysis::makeParam("scale", analysis::ParamType::Float, "--scale", "multiply every norm by this factor", "1");
  scale.minimum = 0;
  p.descriptor.params = {scale};
  p.descriptor.figureKeys = {"head_norm"};
  p.descriptor.headlineKeys = {"prompts"};
  return p;
}

// The one registration line.
static const analysis::RegisterAnalysisPlugin registerToy{toyHeadNormPlugin()};

}  // namespace mechscope::toy
