#pragma once
// Internal libhdf5 helpers without LibTorch (not a public header: it includes <hdf5.h>). Shared by the
// store and by mechscope-h5check, which must start in milliseconds and so links no LibTorch.
// Every function here expects the caller to hold Hdf5Lock.
#include <hdf5.h>

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace mechscope::store::detail {

/// Owns one libhdf5 identifier (file, group, dataset, dataspace, datatype, attribute, property list).
/// Closing takes Hdf5Lock itself, so a Hid may die anywhere.
class Hid {
 public:
  Hid() = default;
  explicit Hid(hid_t id) : m_id(id) {}
  Hid(const Hid&) = delete;
  Hid& operator=(const Hid&) = delete;
  Hid(Hid&& o) noexcept : m_id(std::exchange(o.m_id, H5I_INVALID_HID)) {}
  Hid& operator=(Hid&& o) noexcept {
    if (this != &o) {
      reset();
      m_id = std::exchange(o.m_id, H5I_INVALID_HID);
    }
    return *this;
  }
  ~Hid() { reset(); }
  /// Close now (no-op when empty or already invalid, e.g. after a strong file close).
  void reset() noexcept;
  /// Forgets the id without closing it (after an H5Fclose that failed: libhdf5 crashes on a second close).
  void release() noexcept { m_id = H5I_INVALID_HID; }
  /// The raw id.
  [[nodiscard]] hid_t get() const noexcept { return m_id; }
  /// Whether this holds a valid id.
  [[nodiscard]] bool valid() const noexcept { return m_id >= 0; }

 private:
  hid_t m_id = H5I_INVALID_HID;
};

/// The innermost messages of libhdf5's current error stack, e.g. "truncated file: eof = 96, ...".
std::string errorStack();
/// Throws `E` with "what: <libhdf5 message>" when `status` < 0; returns status otherwise.
template <class E>
int64_t check(int64_t status, const std::string& what) {
  if (status < 0) throw E(what + ": " + errorStack());
  return status;
}
/// Wraps a freshly created id, throwing Error (or InputError when `input`) with the libhdf5 message.
Hid own(hid_t id, const std::string& what, bool input = false);

/// A variable-length UTF-8 string type (caller owns it).
Hid vlenStringType();


/// Creates the groups along `path` ("/a/b") that do not exist yet.
void ensureGroups(hid_t file, const std::string& path);
/// Whether a link at `path` exists (every parent must exist for true; missing parents → false).
bool linkExists(hid_t file, const std::string& path);

/// Writes (replacing) a scalar UTF-8 string attribute on the object at `objPath`.
void writeStringAttr(hid_t file, const std::string& objPath, const std::string& key, const std::string& value);
/// Writes (replacing) a scalar int64 attribute.
void writeIntAttr(hid_t file, const std::string& objPath, const std::string& key, int64_t value);
/// Writes (replacing) a scalar float64 attribute.
void writeDoubleAttr(hid_t file, const std::string& objPath, const std::string& key, double value);
/// Reads any scalar attribute as text (strings as they are, numbers formatted); nullopt when absent.
std::optional<std::string> readAttrAsString(hid_t obj, const std::string& key);
/// Reads a scalar integer attribute; nullopt when absent or not an integer.
std::optional<int64_t> readIntAttr(hid_t obj, const std::string& key);
/// Names of every attribute of an object, in name order; InputError when libhdf5 cannot list them all.
std::vector<std::string> attributeNames(hid_t obj);

/// Dimensions of a dataspace.
std::vector<int64_t> spaceDims(hid_t space);
/// Chunk dims of a dataset, empty when contiguous/compact.
std::vector<int64_t> chunkDims(hid_t dset);
/// "gzip 4 + shuffle", "gzip 1", "none"...
std::string filterDescription(hid_t dset);

}  // namespace mechscope::store::detail
