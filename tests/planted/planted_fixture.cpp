#include "tests/planted/planted_fixture.hpp"

#include <ATen/ATen.h>


#include "core/synth/planted_model.hpp"
#include "tests/common/scratch_root.hpp"

namespace mechscope::test {

const PlantedFixture& plantedFixture() {
  static const PlantedFixture fixture = [] {
    PlantedFixture f;
    f.folder = scratchRoot() / "planted-test";
    planted::writePlantedFolder(f.folder);
    f.model = HookedTransformer::load(f.folder);
    f.planted = planted::readPlantedJson(f.folder);
    return f;
  }();
  return fixture;
}

PlantedRun runPlanted(const std::vector<int64_t>& ids) {
  const auto& f = plantedFixture();
  const auto tokens = at::tensor(ids, at::kLong).unsqueeze(0);  // [1, pos]
  ForwardResult result;
  const auto cache = f.model->runWithCache(tokens, {"blocks.*.attn.hook_pattern", "blocks.*.hook_resid_post"}, {},
                                           std::nullopt, &result);
  PlantedRun run;
  for (int l = 0; l < f.model->config().nLayers; ++l) {
    run.patterns.push_back(cache.at("pattern", l)[0]);      // [head, query, key]
    run.residPost.push_back(cache.at("resid_post", l)[0]);  // [pos, d_model]
  }
  run.logits = result.logits[0];
  return run;
}

}  // namespace mechscope::test
