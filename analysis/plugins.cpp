// The built-in analysis plugins: one line per analysis written in the plugin shape
// (analysis/common/analysis_plugin.hpp). Adding one: its folder under analysis/ and one line here.
#include "analysis/ablation/ablation_groups.hpp"
#include "analysis/attention_influence/attention_influence.hpp"
#include "analysis/attention_overview/attention_overview.hpp"
#include "analysis/attribution/dla_groups.hpp"
#include "analysis/circuits/circuit_discovery.hpp"
#include "analysis/circuits/overlap.hpp"
#include "analysis/common/analysis_plugin.hpp"
#include "analysis/constraint/constraint_attention.hpp"
#include "analysis/eap/edge_attribution.hpp"
#include "analysis/intervention/intervention.hpp"
#include "analysis/logit_lens/logit_lens.hpp"
#include "analysis/ov_qk/ov_qk.hpp"
#include "analysis/patching/patch_groups.hpp"
#include "analysis/retrieval/niah_grid.hpp"
#include "analysis/sinks/sinks.hpp"
#include "analysis/waad_fai/waad_fai.hpp"

namespace mechscope::analysis {

void installAnalysisPlugins() {
  static const bool installed = [] {
    registerAnalysisPlugin(attentionOverviewPlugin());
    registerAnalysisPlugin(sinksPlugin());
    registerAnalysisPlugin(waadFaiPlugin());
    registerAnalysisPlugin(constraintAttentionPlugin());
    registerAnalysisPlugin(attentionInfluencePlugin());
    registerAnalysisPlugin(interventionPlugin());
    registerAnalysisPlugin(dlaPlugin());
    registerAnalysisPlugin(logitLensPlugin());
    registerAnalysisPlugin(ovQkPlugin());
    registerAnalysisPlugin(patchPlugin());
    registerAnalysisPlugin(ablatePlugin());
    registerAnalysisPlugin(circuitPlugin());
    registerAnalysisPlugin(retrievalPlugin());
    registerAnalysisPlugin(overlapPlugin());
    registerAnalysisPlugin(eapPlugin());
    return true;
  }();
  (void)installed;
}

}  // namespace mechscope::analysis
