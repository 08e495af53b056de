#pragma once
// Helpers shared by the views tests: an offscreen QApplication and synthetic mouse events.
#include <QApplication>
#include <QMouseEvent>
#include <QWidget>

#include <cstdint>
#include <random>
#include <vector>

namespace mechscope::views::test {

/// Sends a mouse event of `type` at `pos` (widget coordinates) to `widget`.
inline void sendMouse(QWidget* widget, QEvent::Type type, QPointF pos, Qt::MouseButton button = Qt::NoButton,
                      Qt::KeyboardModifiers mods = Qt::NoModifier) {
  const Qt::MouseButtons buttons = type == QEvent::MouseButtonPress || type == QEvent::MouseMove ? Qt::MouseButtons(button) : Qt::NoButton;
  QMouseEvent ev(type, pos, widget->mapToGlobal(pos), button, buttons, mods);
  QApplication::sendEvent(widget, &ev);
}

/// A press and release at `pos`.
inline void click(QWidget* widget, QPointF pos, Qt::KeyboardModifiers mods = Qt::NoModifier) {
  sendMouse(widget, QEvent::MouseButtonPress, pos, Qt::LeftButton, mods);
  sendMouse(widget, QEvent::MouseButtonRelease, pos, Qt::LeftButton, mods);
}

/// A causal attention-like matrix [n, n]: random positive rows normalised to 1 over keys 0..i.
inline std::vector<float> causalPattern(int n, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  std::vector<float> v(static_cast<std::size_t>(n) * static_cast<std::size_t>(n), 0.0f);
  for (int i = 0; i < n; ++i) {
    float sum = 0.0f;
    for (int j = 0; j <= i; ++j) sum += (v[static_cast<std::size_t>(i) * n + j] = u(rng) * u(rng));
    for (int j = 0; j <= i; ++j) v[static_cast<std::size_t>(i) * n + j] /= sum;
  }
  return v;
}

}  // namespace mechscope::views::test
