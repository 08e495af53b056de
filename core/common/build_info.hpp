#pragma once
#include <string>

namespace mechscope {
/// Versions of mechscope and the libraries it was built against, one per line ("name version").
std::string buildInfo();
/// The LibTorch version string, e.g. "1.13.1".
std::string torchVersion();
}  // namespace mechscope
