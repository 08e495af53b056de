#pragma once
// A retrieval test built from the planted model's needle prompt (shared by the retrieval tests).
#include "analysis/retrieval/retrieval.hpp"
#include "core/synth/planted_tasks.hpp"
#include "core/synth/planted_vocab.hpp"

namespace mechscope::test {

/// The planted needle prompt `np` as one retrieval test: its ids and the needle span.
inline analysis::RetrievalTest plantedRetrievalTest(const planted::NeedlePrompt& np) {
  analysis::RetrievalTest t;
  t.ids = planted::toIds(np.words);
  t.needleStart = np.needleStart;
  t.needleEnd = np.needleEnd;
  return t;
}

}  // namespace mechscope::test
