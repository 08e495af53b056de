#pragma once
// Residual-stream layout of the planted model: which dimensions carry which feature.
// Every feature is mean-free (zero-sum codes or a +x/−x mirror pair), so GPT-2's LayerNorm only
// rescales: LN(x) = x / s with s = |x| / sqrt(D), and a large constant "stabiliser" keeps s ≈ 1.
namespace mechscope::planted {

struct Layout {
  static constexpr int kDModel = 320;
  static constexpr int kHeads = 4;
  static constexpr int kDHead = kDModel / kHeads;  // 80
  static constexpr int kLayers = 24;
  static constexpr int kInner = 4;                 // MLP neurons (two clamp units)
  static constexpr int kCtx = 1024;
  static constexpr int kFreqs = 16;                // position code: 16 cos/sin pairs

  static constexpr int kTok = 0;       // [32] token identity code
  static constexpr int kPrev = 32;     // [32] previous token's code (written by head 0.0)
  static constexpr int kLogit = 64;    // [32] code of the token to predict (read by lm_head)
  static constexpr int kPos = 96;      // [32] position code; mirror at kPosMirror
  static constexpr int kPosMirror = 128;
  static constexpr int kInhib = 160;   // [8] one-hot name to inhibit (S-inhibition output); mirror +8
  static constexpr int kCand = 176;    // [8] one-hot candidate colour (gatherer output); mirror +8
  static constexpr int kFlags = 192;   // [16] flags; mirror at kFlagMirror
  static constexpr int kFlagMirror = 208;
  static constexpr int kStab = 240;    // [80] ±2 alternating: |stab|² = D
  static constexpr int kStabDims = 80;
  static constexpr float kStabValue = 2.0f;
};

/// Single-dimension features (each with a mirror at Layout::kFlagMirror + flag).
enum Flag : int { kOne = 0, kBosF, kSink, kNameF, kColourF, kDupF, kObjectF, kFirst, kDelimF, kPrevColourF };

/// Dimension of a flag and of its mirror.
constexpr int flagDim(Flag f) { return Layout::kFlags + f; }
constexpr int flagMirrorDim(Flag f) { return Layout::kFlagMirror + f; }

}  // namespace mechscope::planted
