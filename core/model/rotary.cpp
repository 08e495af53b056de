#include "core/model/rotary.hpp"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>

namespace mechscope {

namespace {

/// YaRN (Peng et al.; HF's _compute_yarn_parameters): dims that turn fewer than beta_slow times over the
/// original context are interpolated (θ / factor), those turning more than beta_fast times keep θ, and a
/// linear ramp over the dims in between blends the two. [rd / 2] fp32.
at::Tensor yarnInvFreq(double theta, int64_t rd, const RopeScaling& s) {
  const auto f32 = at::TensorOptions().dtype(at::kFloat);
  at::Tensor posFreqs = at::pow(theta, at::arange(0, rd, 2, f32.dtype(at::kLong)).to(at::kFloat) / static_cast<double>(rd));
  at::Tensor extrapolated = 1.0 / posFreqs;               // [rd / 2]
  at::Tensor interpolated = 1.0 / (s.factor * posFreqs);  // [rd / 2]
  // The dim index at which a frequency turns `rotations` times over the original context.
  const double orig = static_cast<double>(s.originalMaxPositionEmbeddings);
  auto dimOf = [&](double rotations) {
    return static_cast<double>(rd) * std::log(orig / (rotations * 2.0 * M_PI)) / (2.0 * std::log(theta));
  };
  double low = dimOf(s.betaFast), high = dimOf(s.betaSlow);
  if (s.truncate) {
    low = std::floor(low);
    high = std::ceil(high);
  }
  low = std::max(low, 0.0);
  high = std::min(high, static_cast<double>(rd - 1));
  if (low == high) high += 0.001;  // as HF: no zero-width ramp
  at::Tensor ramp = ((at::arange(rd / 2, f32.dtype(at::kLong)).to(at::kFloat) - low) / (high - low)).clamp(0.0, 1.0);
  at::Tensor keep = 1.0 - ramp;  // [rd / 2]: 1 where the frequency is extrapolated (kept)
  return interpolated * (1.0 - keep) + extrapolated * keep;
}

}  // namespace

at::Tensor ropeInvFreq(const ModelConfig& c, at::Device device, bool longFactors) {
  return ropeInvFreq(c.rotaryDim, c.ropeTheta, c.ropeScaling, device, longFactors);
}

at::Tensor ropeInvFreq(int rotaryDim, double theta, const RopeScaling& s, at::Device device, bool longFactors) {
  const int64_t rd = rotaryDim;
  auto f32 = at::TensorOptions().dtype(at::kFloat);
  // Same float32 arithmetic as HF: 1 / base ** (arange(0, dim, 2) / dim).
  at::Tensor exponent = at::arange(0, rd, 2, f32.dtype(at::kLong)).to(at::kFloat) / static_cast<double>(rd);
  at::Tensor inv = 1.0 / at::pow(theta, exponent);  // [rd / 2]
  if (s.kind == RopeScalingKind::LongRope) {
    // HF: 1 / (ext_factors * base ** (arange / dim)), ext_factors fp32.
    const std::vector<double>& f = longFactors ? s.longFactor : s.shortFactor;
    at::Tensor ext = at::tensor(at::ArrayRef<double>(f), at::TensorOptions().dtype(at::kDouble)).to(at::kFloat);  // [rd / 2]
    inv = 1.0 / (ext * at::pow(theta, exponent));
  } else if (s.kind == RopeScalingKind::Linear) {
    inv = inv / s.factor;
  } else if (s.kind == RopeScalingKind::Llama3) {
    const double oldCtx = static_cast<double>(s.originalMaxPositionEmbeddings);
    const double lowWavelen = oldCtx / s.lowFreqFactor;
    const double highWavelen = oldCtx / s.highFreqFactor;
    at::Tensor wavelen = 2.0 * M_PI / inv;
    at::Tensor scaled = at::where(wavelen > lowWavelen, inv / s.factor, inv);
    at::Tensor smooth = (oldCtx / wavelen - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor);
    at::Tensor smoothed = (1 - smooth) * scaled / s.factor + smooth * scaled;
    at::Tensor medium = (wavelen >= highWavelen).logical_and(wavelen <= lowWavelen);
    inv = at::where(medium, smoothed, scaled);
  } else if (s.kind == RopeScalingKind::Yarn) {
    inv = yarnInvFreq(theta, rd, s);
  }
  return inv.to(device);
}

std::pair<at::Tensor, at::Tensor> ropeCosSin(const at::Tensor& invFreq, const at::Tensor& positions, at::ScalarType dtype,
                                             double attentionFactor) {
  at::Tensor freqs = positions.to(at::kFloat).unsqueeze(-1) * invFreq;  // [batch, pos, rd / 2]
  at::Tensor emb = at::cat({freqs, freqs}, -1);                          // [batch, pos, rd]
  if (attentionFactor != 1.0) return {(emb.cos() * attentionFactor).to(dtype), (emb.sin() * attentionFactor).to(dtype)};
  return {emb.cos().to(dtype), emb.sin().to(dtype)};
}

at::Tensor applyRope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  const int64_t rd = cos.size(-1);
  const int64_t dh = x.size(-1);
  at::Tensor xr = rd == dh ? x : x.narrow(-1, 0, rd);  // [batch, pos, head, rd]
  at::Tensor c = cos.unsqueeze(2), s = sin.unsqueeze(2);  // [batch, pos, 1, rd]
  at::Tensor x1 = xr.narrow(-1, 0, rd / 2), x2 = xr.narrow(-1, rd / 2, rd / 2);
  at::Tensor rotated = at::cat({-x2, x1}, -1);
  at::Tensor out = xr * c + rotated * s;
  if (rd == dh) return out;
  return at::cat({out, x.narrow(-1, rd, dh - rd)}, -1);
}

}  // namespace mechscope
