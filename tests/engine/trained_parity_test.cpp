// Parity with Hugging Face on the models we trained (tests/data/trained, issue 18): real tokenizers,
// learned (not random) weights stored in bf16 and computed in fp32, and a sliding-window Mistral whose
// 160-token reference is longer than its 64-token window. The references were made by transformers'
// eager attention on the shipped weights (scripts/train/train_tiny_models.py), not by our code.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <filesystem>

#include "core/model/hooked_transformer.hpp"
#include "core/safetensors/safetensors_file.hpp"
#include "tests/common/param_names.hpp"
#include "tests/engine/engine_test_support.hpp"

using namespace mechscope;

namespace {

class TrainedParity : public ::testing::TestWithParam<std::string> {};

TEST_P(TrainedParity, MatchesHuggingFaceOnRealPrompts) {
  const std::filesystem::path dir = std::filesystem::path(MECHSCOPE_SOURCE_DIR) / "tests" / "data" / "trained" / GetParam();
  ASSERT_TRUE(std::filesystem::exists(dir / "config.json")) << dir << " is part of the repository";
  auto model = HookedTransformer::load(dir, LoadOptions{"cpu", "fp32"});
  const auto& c = model->config();
  const auto ref = SafetensorsFile::open(dir / "reference.safetensors");
  const at::Tensor ids = ref.tensor("input_ids");          // [2, T]
  const at::Tensor lengths = ref.tensor("lengths");        // [2] real lengths (right padding after)
  const at::Tensor hiddenRef = ref.tensor("hidden_states");  // [L + 1, 2, T, d_model], last after the final norm
  const at::Tensor attnRef = ref.tensor("attentions");     // [L, 2, H, T, T]
  const at::Tensor lastRef = ref.tensor("last_logits");    // [2, vocab] at position lengths − 1
  ASSERT_EQ(hiddenRef.size(0), c.nLayers + 1);

  ForwardOptions opts;
  opts.path = AttentionPath::Explicit;
  ForwardResult res;
  const auto cache = model->runWithCache(ids, {"blocks.*.hook_resid_pre", "blocks.*.attn.hook_pattern", "ln_final.hook_normalized"},
                                         opts, at::Device(at::kCPU), &res);
  double eHidden = 0, eAttn = 0, eLast = 0;
  for (int64_t b = 0; b < ids.size(0); ++b) {
    const int64_t n = lengths[b].item<int64_t>();  // right padding cannot reach earlier positions (causal)
    for (int l = 0; l <= c.nLayers; ++l) {
      const at::Tensor h = (l < c.nLayers ? cache.at("resid_pre", l) : cache.get("ln_final.hook_normalized"))[b].narrow(0, 0, n);
      const at::Tensor r = hiddenRef[l][b].narrow(0, 0, n);
      const double e = (h.to(at::kDouble) - r.to(at::kDouble)).abs().max().item<double>();
      EXPECT_LE(e, test::parityTolerance(r)) << "row " << b << " hidden state " << l;
      eHidden = std::max(eHidden, e);
      if (l < c.nLayers) {
        const at::Tensor p = cache.at("pattern", l)[b].narrow(1, 0, n).narrow(2, 0, n);  // [head, n, n]
        const double ea = (p.to(at::kDouble) - attnRef[l][b].narrow(1, 0, n).narrow(2, 0, n).to(at::kDouble)).abs().max().item<double>();
        EXPECT_LE(ea, 1e-4) << "row " << b << " attention " << l;
        eAttn = std::max(eAttn, ea);
      }
    }
    const at::Tensor last = res.logits[b][n - 1].to(at::kDouble);
    const double el = (last - lastRef[b].to(at::kDouble)).abs().max().item<double>();
    EXPECT_LE(el, test::parityTolerance(lastRef[b])) << "row " << b << " last logits";
    eLast = std::max(eLast, el);
    // The model's next token is the reference's (a trained model is confident; ties would be luck).
    EXPECT_EQ(last.argmax().item<int64_t>(), lastRef[b].argmax().item<int64_t>()) << "row " << b;
  }
  std::printf("[trained-parity] %-12s max|err| hidden %.3g attention %.3g last logits %.3g\n", GetParam().c_str(), eHidden,
              eAttn, eLast);
  // Every layer's window is honoured: no attention at distance ≥ its window, in the reference and in ours.
  const int64_t T = ids.size(1);
  const at::Tensor i = at::arange(T).unsqueeze(1), j = at::arange(T).unsqueeze(0);
  for (int l = 0; l < c.nLayers; ++l) {
    const int64_t w = c.windowOf(l);
    if (w == 0) continue;
    ASSERT_GT(T, w) << "the reference must be longer than the window";
    const at::Tensor far = (i - j) >= w;  // [T, T]
    EXPECT_EQ(cache.at("pattern", l).masked_select(far.unsqueeze(0).unsqueeze(0)).abs().max().item<double>(), 0.0);
    EXPECT_EQ(attnRef[l].masked_select(far.unsqueeze(0).unsqueeze(0)).abs().max().item<double>(), 0.0);
  }
}

INSTANTIATE_TEST_SUITE_P(Trained, TrainedParity, ::testing::Values("llama2-niah", "mistral-sw", "gpt2-ioi"),
                         test::identifierName);

}  // namespace
