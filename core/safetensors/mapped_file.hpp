#pragma once
// A read-only, private memory mapping of a whole file (POSIX mmap). Shared by every tensor view
// built over it: the mapping stays alive until the last view is freed.
#include <cstddef>
#include <filesystem>
#include <memory>

namespace mechscope {

/// A whole file mapped into memory (MAP_PRIVATE: the file is never written; a stray in-place write
/// into a weight view copies the page instead of crashing).
class MappedFile {
 public:
  /// Maps `path`; throws InputError when it cannot be opened or is empty.
  static std::shared_ptr<MappedFile> open(const std::filesystem::path& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  /// First byte of the mapping.
  [[nodiscard]] const std::byte* data() const { return m_data; }
  /// File size in bytes.
  [[nodiscard]] std::size_t size() const { return m_size; }
  /// Drops the resident pages wholly inside [offset, offset + length) (MADV_DONTNEED): after a
  /// tensor was converted out of the mapping its pages need not stay in RSS. Re-reads come from the file.
  void release(std::size_t offset, std::size_t length) const;
  /// The path it was opened from.
  [[nodiscard]] const std::filesystem::path& path() const { return m_path; }

 private:
  MappedFile() = default;
  std::byte* m_data = nullptr;
  std::size_t m_size = 0;
  std::filesystem::path m_path;
};

}  // namespace mechscope
