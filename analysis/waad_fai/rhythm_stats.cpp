#include "analysis/waad_fai/rhythm_stats.hpp"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>

namespace mechscope::analysis {

at::Tensor excessKurtosis(const at::Tensor& v) {
  const at::Tensor x = v.to(at::kDouble);
  const at::Tensor finite = at::isfinite(x);                          // [..., m]
  const at::Tensor count = finite.sum(-1).to(at::kDouble);            // [...]
  const at::Tensor x0 = at::where(finite, x, at::zeros_like(x));
  const at::Tensor mean = x0.sum(-1, true) / count.clamp_min(1).unsqueeze(-1);
  const at::Tensor d2 = at::where(finite, (x0 - mean).pow(2), at::zeros_like(x));  // [..., m]
  const at::Tensor m2 = d2.sum(-1) / count.clamp_min(1), m4 = d2.pow(2).sum(-1) / count.clamp_min(1);
  const at::Tensor ok = (count >= 2).logical_and(m2 > 0);
  return at::where(ok, m4 / (m2 * m2) - 3.0, at::full_like(m2, std::numeric_limits<double>::quiet_NaN()));
}

PeakMatch peakCoOccurrence(const std::vector<int64_t>& a, const std::vector<int64_t>& b, int64_t nPositions) {
  PeakMatch m;
  const std::set<int64_t> bs(b.begin(), b.end());
  for (int64_t t : a) m.hits += bs.count(t) ? 1.0 : 0.0;
  m.events = static_cast<int64_t>(a.size());
  if (nPositions > 0) m.expected = static_cast<double>(a.size()) * static_cast<double>(bs.size()) / static_cast<double>(nPositions);
  return m;
}

PeakMatch faiAfterWaad(const std::vector<int64_t>& waadPeaks, const std::vector<int64_t>& faiPeaks, int64_t lag, int64_t first,
                       int64_t last) {
  PeakMatch m;
  const std::set<int64_t> fs(faiPeaks.begin(), faiPeaks.end());
  const int64_t N = last - first + 1;
  const auto k = static_cast<int64_t>(fs.size());
  for (int64_t t : waadPeaks) {
    const int64_t hi = std::min(t + lag, last);
    const auto it = fs.lower_bound(t);
    m.hits += (it != fs.end() && *it <= hi) ? 1.0 : 0.0;
    // P(no draw in the window) = Π_{i<k} (N − len − i) / (N − i)
    const int64_t len = hi - t + 1;
    double miss = 1.0;
    for (int64_t i = 0; i < k && miss > 0; ++i)
      miss *= N - len - i > 0 ? static_cast<double>(N - len - i) / static_cast<double>(N - i) : 0.0;
    m.expected += 1.0 - miss;
    ++m.events;
  }
  return m;
}

}  // namespace mechscope::analysis
