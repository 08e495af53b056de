// Fuzz harness: a batch plan file (TOML, app/batch/plan.hpp). parsePlan checks syntax, keys, types and
// the references between sections without touching files; PlanError (an InputError) is the refusal.
#include "app/batch/plan.hpp"
#include "fuzz/fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace mechscope;
  fuzz::expectCleanRefusal([&] {
    const batch::Plan plan = batch::parsePlan(fuzz::bytes(data, size), "fuzz/plan.toml");
    for (const auto& m : plan.models) (void)plan.model(m.id);
    for (const auto& a : plan.analyses) (void)plan.analysis(a.id);
  });
  return 0;
}
