// Streamed unembedding (ForwardOptions::onLogitRows, issue #24): a cache writes the logits' rows while the rest are
// computed. Checked on tiny random models of four families (Gemma 2's final soft-cap among them) with one and two
// batch rows: the callback hears of every position once, in order, in blocks of the asked size; each block's rows
// are already their final values when it hears of them; the hook on the logits fires after the last block; the
// logits are bit-identical to the same pass without the callback; and the blocked product stays within fp32's
// summation bound of the one-block product (a BLAS may sum a row differently for another number of rows: OpenBLAS
// does here), 2·γ_K·Σ_k |x_k|·|w_k| per logit (Higham), plus a few roundings of the soft-cap.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "core/model/hooked_transformer.hpp"
#include "core/synth/synth_model.hpp"
#include "engine_test_support.hpp"

using namespace mechscope;
using mechscope::test::tempDir;

TEST(StreamedLogits, BlocksAreFinalWhenAnnouncedAndTheLogitsUnchanged) {
  const auto dir = tempDir("streamed_logits");
  for (const std::string family : {"gpt2", "llama", "qwen3", "gemma2"}) {
    synth::writeSynthFolder(dir / family, family, "tiny", 31, "fp32");
    auto model = HookedTransformer::load(dir / family);
    for (const int64_t batch : {1, 2}) {
      SCOPED_TRACE(family + " batch " + std::to_string(batch));
      const at::Tensor tokens = at::randint(model->config().dVocab, {batch, 70}, at::TensorOptions().dtype(at::kLong));
      at::Tensor x;  // the unembedding's input [batch, pos, d_model]
      HookSet keepX;
      keepX.add("ln_final.hook_normalized", [&](const at::Tensor& t, const HookContext&) -> std::optional<at::Tensor> {
        x = t.clone();
        return std::nullopt;
      });
      const at::Tensor whole = model->forward(tokens, {}, &keepX).logits;  // 70 positions: one block
      ForwardOptions blocked;
      blocked.logitBlockPositions = 16;
      const at::Tensor bare = model->forward(tokens, blocked).logits;  // [batch, pos, vocab]

      std::vector<std::pair<int64_t, int64_t>> calls;
      std::vector<at::Tensor> seen;  // each block's rows as they were when announced
      bool hookAfterLastBlock = false;
      HookSet hooks;
      hooks.add("unembed.hook_logits", [&](const at::Tensor&, const HookContext&) -> std::optional<at::Tensor> {
        hookAfterLastBlock = !calls.empty() && calls.back().second == 70;
        return std::nullopt;
      });
      ForwardOptions fo = blocked;
      fo.onLogitRows = [&](const at::Tensor& logits, int64_t begin, int64_t end) {
        calls.emplace_back(begin, end);
        seen.push_back(logits.narrow(1, begin, end - begin).clone());
      };
      const at::Tensor streamed = model->forward(tokens, fo, &hooks).logits;

      EXPECT_EQ(calls, (std::vector<std::pair<int64_t, int64_t>>{{0, 16}, {16, 32}, {32, 48}, {48, 64}, {64, 70}}));
      EXPECT_TRUE(hookAfterLastBlock);
      EXPECT_TRUE(at::equal(streamed, bare)) << "max |Δ| " << (streamed - bare).abs().max().item<double>();
      for (size_t i = 0; i < calls.size(); ++i)
        EXPECT_TRUE(at::equal(seen[i], bare.narrow(1, calls[i].first, calls[i].second - calls[i].first))) << i;

      // Blocks against one product: within the summation bound of each logit's K-term dot product.
      const at::Tensor wU = model->weights().wU.to(at::kDouble);  // [vocab, d_model]
      const double K = static_cast<double>(wU.size(1)), u = std::ldexp(1.0, -24);
      const at::Tensor sumAbs = at::matmul(x.to(at::kDouble).abs(), wU.abs().t());  // [batch, pos, vocab]
      const at::Tensor bound = 2 * (K * u / (1 - K * u)) * sumAbs + 4 * u * whole.to(at::kDouble).abs();
      EXPECT_TRUE(((bare.to(at::kDouble) - whole.to(at::kDouble)).abs() <= bound).all().item<bool>())
          << "max |Δ| " << (bare - whole).abs().max().item<double>();

      calls.clear();
      fo.logitsLastOnly = true;  // one position: one block, announced once
      const at::Tensor last = model->forward(tokens, fo).logits.to(at::kDouble);
      EXPECT_TRUE(((last - whole.narrow(1, 69, 1).to(at::kDouble)).abs() <= bound.narrow(1, 69, 1)).all().item<bool>());
      EXPECT_EQ(calls, (std::vector<std::pair<int64_t, int64_t>>{{0, 1}}));
    }
  }
}
