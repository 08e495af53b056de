#include "app/gui/workspace.hpp"

#include <algorithm>

namespace mechscope::gui {

Workspace::Workspace(QObject* parent) : QObject(parent) {}

void Workspace::setSession(std::shared_ptr<const ModelSession> session) {
  m_session = std::move(session);
  m_tokens = {};
  m_patterns.reset();
  m_patching.reset();
  emit modelChanged();
  emit tokensChanged();
  emit patternsChanged();
  emit patchingChanged();
}

void Workspace::setPrompt(const QString& prompt, PromptTokens tokens) {
  m_prompt = prompt;
  m_tokens = std::move(tokens);
  m_patterns.reset();
  emit tokensChanged();
  emit patternsChanged();
}

void Workspace::setPatterns(std::shared_ptr<const AttentionPatterns> patterns) {
  m_patterns = std::move(patterns);
  emit patternsChanged();
}

void Workspace::setPatching(std::shared_ptr<const PatchingSession> patching) {
  m_patching = std::move(patching);
  emit patchingChanged();
}

void Workspace::addResult(AnalysisResult result) {
  m_results.push_back(std::move(result));
  emit resultAdded(static_cast<int>(m_results.size()) - 1);
}

void Workspace::setBatch(QStringList prompts) {
  m_batch = std::move(prompts);
  m_batchIndex = -1;
  emit batchChanged();
  if (!m_batch.isEmpty()) setBatchIndex(0);
}

void Workspace::setBatchIndex(int index) {
  if (m_batch.isEmpty()) return;
  index = std::clamp(index, 0, static_cast<int>(m_batch.size()) - 1);
  if (index == m_batchIndex) return;
  m_batchIndex = index;
  emit batchIndexChanged(index);
}

void Workspace::requestHead(int layer, int head) { emit headRequested(layer, head); }

}  // namespace mechscope::gui
