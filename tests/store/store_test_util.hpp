#pragma once
// Helpers for the store tests: a scratch folder per test, file bytes.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "core/common/remove_tree.hpp"

namespace mechscope::store::testing {

/// A fresh folder under the temp dir, removed at destruction.
class ScratchDir {
 public:
  ScratchDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::string name = std::string("mechscope_store_") + std::to_string(::getpid()) + "_" +
                       (info ? std::string(info->test_suite_name()) + "_" + info->name() : std::string("x"));
    for (auto& c : name)
      if (c == '/') c = '_';
    m_path = std::filesystem::temp_directory_path() / name;
    mechscope::removeTree(m_path);
    std::filesystem::create_directories(m_path);
  }
  ~ScratchDir() {
    std::error_code ec;
    mechscope::removeTree(m_path, ec);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  /// The folder.
  [[nodiscard]] const std::filesystem::path& path() const { return m_path; }
  /// A file name inside it.
  [[nodiscard]] std::filesystem::path operator/(const std::string& name) const { return m_path / name; }

 private:
  std::filesystem::path m_path;
};

/// Whole file as bytes.
inline std::string fileBytes(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

}  // namespace mechscope::store::testing
