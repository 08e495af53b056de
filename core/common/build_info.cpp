#include "core/common/build_info.hpp"

#include <torch/version.h>
#include <fmt/format.h>

#include "mechscope/version.hpp"

namespace mechscope {

std::string torchVersion() { return TORCH_VERSION; }

std::string buildInfo() {
  return fmt::format("mechscope {}\nLibTorch {}\nCUDA {}\nHDF5 store {}\nGUI {}\n", kVersion, torchVersion(),
                     kHasCuda ? "yes" : "no", kHasHdf5 ? "yes" : "no", kHasGui ? "yes" : "no");
}

}  // namespace mechscope
