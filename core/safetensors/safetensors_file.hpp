#pragma once
// Safetensors: a memory-mapped reader that validates the whole header before building any tensor,
// a folder-level set (single file or sharded index), and an atomic writer.
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/common/tensor.hpp"

namespace mechscope {

class MappedFile;

/// Element types of the safetensors format that mechscope accepts.
enum class SafetensorsDType { F64, F32, F16, BF16, I64, I32, I8, U8, BOOL };

/// The safetensors name of a dtype ("F32", "BF16", ...).
std::string toString(SafetensorsDType dtype);
/// Bytes per element.
std::size_t elementSize(SafetensorsDType dtype);
/// The matching ATen scalar type.
at::ScalarType toScalarType(SafetensorsDType dtype);
/// The safetensors dtype for an ATen scalar type; throws UnsupportedError for others.
SafetensorsDType fromScalarType(at::ScalarType type);

/// One header entry, validated.
struct TensorInfo {
  SafetensorsDType dtype = SafetensorsDType::F32;
  std::vector<int64_t> shape;
  std::size_t begin = 0;  ///< byte offset inside the data section
  std::size_t end = 0;    ///< one past the last byte inside the data section
};

/// "[2, 3, 4]".
std::string shapeString(const std::vector<int64_t>& shape);

/// One memory-mapped .safetensors file.
class SafetensorsFile {
 public:
  /// Maps the file and validates its header (length ≤ 100 MB, JSON depth ≤ 64, dtypes, shape × dtype
  /// size == byte range without overflow, ranges inside the file, no overlaps); throws InputError naming
  /// the file and the problem. Pickle checkpoints (by extension or magic bytes) are refused with guidance.
  static SafetensorsFile open(const std::filesystem::path& path);

  /// Tensor names in file order (the header's key order is not kept: sorted by data offset).
  [[nodiscard]] const std::vector<std::string>& names() const { return m_names; }
  /// Whether the file holds `name`.
  [[nodiscard]] bool has(const std::string& name) const { return m_infos.count(name) != 0; }
  /// Header entry of `name`; throws InputError when absent.
  [[nodiscard]] const TensorInfo& info(const std::string& name) const;
  /// The tensor `name` on CPU: a zero-copy view over the mapping (kept alive by the tensor) when
  /// `as` is empty or equal to the stored type and the data is aligned, else converted straight
  /// from the mapping into one new tensor.
  [[nodiscard]] at::Tensor tensor(const std::string& name, std::optional<at::ScalarType> as = {}) const;
  /// The `__metadata__` string map.
  [[nodiscard]] const std::map<std::string, std::string>& metadata() const { return m_metadata; }
  /// Path of the file.
  [[nodiscard]] const std::filesystem::path& path() const;
  /// Size of the file in bytes.
  [[nodiscard]] std::size_t fileSize() const;
  /// The raw header bytes (for cheap hashing).
  [[nodiscard]] std::string headerBytes() const;

 private:
  std::shared_ptr<MappedFile> m_map;
  std::size_t m_dataStart = 0;
  std::map<std::string, TensorInfo> m_infos;
  std::vector<std::string> m_names;
  std::map<std::string, std::string> m_metadata;
};

/// The safetensors files of one model folder: `model.safetensors`, or
/// `model.safetensors.index.json` with its shards, or any single `*.safetensors`.
class SafetensorsSet {
 public:
  /// Opens the folder's weights. A folder with only pickle files (*.bin, *.pt, *.pth) gets an
  /// InputError telling how to convert; a folder with nothing gets one naming what was expected.
  static SafetensorsSet openFolder(const std::filesystem::path& folder);

  /// Every tensor name, sorted.
  [[nodiscard]] std::vector<std::string> names() const;
  /// Whether some file holds `name`.
  [[nodiscard]] bool has(const std::string& name) const { return m_where.count(name) != 0; }
  /// Header entry of `name`; throws InputError when absent.
  [[nodiscard]] const TensorInfo& info(const std::string& name) const;
  /// See SafetensorsFile::tensor.
  [[nodiscard]] at::Tensor tensor(const std::string& name, std::optional<at::ScalarType> as = {}) const;
  /// The file that holds `name`; throws InputError when absent.
  [[nodiscard]] const SafetensorsFile& fileOf(const std::string& name) const;
  /// The opened files.
  [[nodiscard]] const std::vector<SafetensorsFile>& files() const { return m_files; }
  /// A short label for errors: the file name, or the index name for sharded sets.
  [[nodiscard]] const std::string& label() const { return m_label; }

 private:
  std::vector<SafetensorsFile> m_files;
  std::map<std::string, std::size_t> m_where;  ///< tensor name → index into m_files
  std::string m_label;
};

/// "`what`; mechscope never reads pickle checkpoints ... save_pretrained(..., safe_serialization=True)":
/// the refusal text for *.bin / *.pt / *.pth / *.ckpt weights (FOLDER stands for the model folder).
std::string pickleGuidance(const std::string& what);

/// Writes `tensors` (moved to CPU, made contiguous) as a safetensors file: `path.partial` first,
/// then renamed onto `path`, so a killed writer never leaves a file that looks complete.
void writeSafetensors(const std::filesystem::path& path, const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

}  // namespace mechscope
