#include "store/hook_axes.hpp"

namespace mechscope::store {

bool hasSuffix(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool isAttentionMapHook(const std::string& name) {
  return hasSuffix(name, "hook_pattern") || hasSuffix(name, "hook_attn_scores");
}

std::string hookAxes(const std::string& hookName, int64_t rank) {
  if (rank == 4 && isAttentionMapHook(hookName)) return "batch,head,query,key";
  if (rank == 4) {
    for (const char* s : {"hook_q", "hook_k", "hook_v", "hook_z", "hook_result", "hook_rot_q", "hook_rot_k"})
      if (hasSuffix(hookName, s)) return "batch,pos,head,d_head";
  }
  if (rank == 3 && (hasSuffix(hookName, "mlp.hook_pre") || hasSuffix(hookName, "mlp.hook_post") ||
                    hasSuffix(hookName, "mlp.hook_pre_linear")))
    return "batch,pos,d_mlp";
  if (rank == 4 && hasSuffix(hookName, "mlp.hook_expert_out")) return "batch,pos,expert,d_model";  // mixture of experts
  if (rank == 3 && hasSuffix(hookName, "mlp.hook_router_logits")) return "batch,pos,expert";
  if (rank == 3 && (hasSuffix(hookName, "mlp.hook_expert_weights") || hasSuffix(hookName, "mlp.hook_expert_indices")))
    return "batch,pos,k";
  if (rank == 3 && hasSuffix(hookName, "hook_scale")) return "batch,pos,one";
  if (rank == 3 && hasSuffix(hookName, "hook_logits")) return "batch,pos,vocab";
  if (rank == 3) return "batch,pos,d_model";
  std::string out;
  for (int64_t i = 0; i < rank; ++i) out += (i ? ",dim" : "dim") + std::to_string(i);
  return out;
}

}  // namespace mechscope::store
