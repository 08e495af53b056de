#include "core/safetensors/safetensors_file.hpp"

#include <ATen/ATen.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <limits>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/common/errors.hpp"
#include "core/common/json_guard.hpp"
#include "core/safetensors/mapped_file.hpp"

namespace mechscope {

namespace {

constexpr std::size_t kMaxHeader = 100u * 1024u * 1024u;

struct DTypeRow {
  const char* name;
  SafetensorsDType dtype;
  std::size_t size;
  at::ScalarType scalar;
};

const DTypeRow kDTypes[] = {
    {"F64", SafetensorsDType::F64, 8, at::kDouble}, {"F32", SafetensorsDType::F32, 4, at::kFloat},
    {"F16", SafetensorsDType::F16, 2, at::kHalf},   {"BF16", SafetensorsDType::BF16, 2, at::kBFloat16},
    {"I64", SafetensorsDType::I64, 8, at::kLong},   {"I32", SafetensorsDType::I32, 4, at::kInt},
    {"I8", SafetensorsDType::I8, 1, at::kChar},     {"U8", SafetensorsDType::U8, 1, at::kByte},
    {"BOOL", SafetensorsDType::BOOL, 1, at::kBool},
};

const DTypeRow& row(SafetensorsDType d) {
  for (const auto& r : kDTypes)
    if (r.dtype == d) return r;
  return kDTypes[1];
}

std::size_t readLe64(const std::byte* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return static_cast<std::size_t>(v);
}

}  // namespace

std::string toString(SafetensorsDType dtype) { return row(dtype).name; }
std::size_t elementSize(SafetensorsDType dtype) { return row(dtype).size; }
at::ScalarType toScalarType(SafetensorsDType dtype) { return row(dtype).scalar; }

SafetensorsDType fromScalarType(at::ScalarType type) {
  for (const auto& r : kDTypes)
    if (r.scalar == type) return r.dtype;
  throw UnsupportedError(fmt::format("safetensors: tensor dtype {} cannot be stored", c10::toString(type)));
}

std::string shapeString(const std::vector<int64_t>& shape) { return fmt::format("[{}]", fmt::join(shape, ", ")); }

std::string pickleGuidance(const std::string& what) {
  return fmt::format("{}; mechscope never reads pickle checkpoints (loading one can run arbitrary code). Convert the "
                     "model to safetensors with transformers: python -c \"from transformers import AutoModelForCausalLM "
                     "as M; M.from_pretrained('FOLDER').save_pretrained('FOLDER', safe_serialization=True)\"",
                     what);
}

namespace {
// torch.save files: a zip archive ("PK\3\4") or a raw pickle (protocol 2-5 opcode 0x80 then the version).
// Only asked about a file that is not structurally safetensors: the first bytes of a safetensors file are
// the low bytes of its header length, which are 0x80 0x02..0x05 for lengths such as 640 or 1408.
bool looksLikePickle(const std::byte* p, std::size_t size) {
  const auto b = [&](std::size_t i) { return i < size ? static_cast<unsigned char>(p[i]) : 0u; };
  if (b(0) == 'P' && b(1) == 'K' && b(2) == 3 && b(3) == 4) return true;
  return b(0) == 0x80 && b(1) >= 2 && b(1) <= 5;
}
bool hasPickleExtension(const std::filesystem::path& path) {
  const auto ext = path.extension().string();
  return ext == ".bin" || ext == ".pt" || ext == ".pth" || ext == ".ckpt" || ext == ".pkl";
}
/// The format's own structure: an 8-byte little-endian length n with 2 ≤ n ≤ the cap and n ≤ the bytes
/// that follow, then a header that opens a JSON object. A torch.save zip or pickle cannot pass this:
/// "PK\3\4" + any next four bytes is ≥ 67 MB of header whose byte 8 is a zip field, and a pickle's
/// bytes 2..7 after 0x80 0x0N are opcodes, not the zeros a length under the cap needs.
bool hasSafetensorsStructure(const std::byte* p, std::size_t size) {
  if (size < 10) return false;
  const std::size_t n = readLe64(p);
  return n >= 2 && n <= kMaxHeader && n <= size - 8 && static_cast<char>(p[8]) == '{';
}
}  // namespace

SafetensorsFile SafetensorsFile::open(const std::filesystem::path& path) {
  SafetensorsFile f;
  const std::string file = path.string();
  f.m_map = MappedFile::open(path);
  const std::size_t size = f.m_map->size();
  // Decide by the safetensors structure first; only a file without it is sniffed for pickle.
  if (!hasSafetensorsStructure(f.m_map->data(), size)) {
    if (hasPickleExtension(path))
      throw InputError(
          pickleGuidance(fmt::format("{}: is a pickle checkpoint (extension {})", file, path.extension().string())));
    if (looksLikePickle(f.m_map->data(), size))
      throw InputError(pickleGuidance(fmt::format("{}: is a PyTorch pickle checkpoint (torch.save), not safetensors", file)));
  }
  if (size < 8)
    throw InputError(fmt::format("{}: truncated safetensors file: {} bytes, expected at least the 8-byte header length",
                                 file, size));
  const std::size_t n = readLe64(f.m_map->data());
  if (n > kMaxHeader)
    throw InputError(fmt::format("{}: malformed safetensors header: length {} exceeds the 100 MB limit", file, n));
  if (n > size - 8)
    throw InputError(fmt::format("{}: truncated safetensors header: length {} but only {} bytes follow", file, n,
                                 size - 8));
  f.m_dataStart = 8 + n;
  const std::size_t dataSize = size - f.m_dataStart;
  const char* hp = reinterpret_cast<const char*>(f.m_map->data() + 8);
  // Depth limit before parsing (the 100 MB length cap is above); metadata values are dumped below.
  checkJsonLimits(std::string_view(hp, n), file + ": malformed safetensors header", JsonLimits{kMaxHeader, 64});
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(hp, hp + n);
  } catch (const nlohmann::json::exception& e) {
    throw InputError(fmt::format("{}: malformed safetensors header: JSON does not parse ({})", file, e.what()));
  }
  if (!header.is_object()) throw InputError(fmt::format("{}: malformed safetensors header: not a JSON object", file));

  std::vector<std::pair<std::string, const TensorInfo*>> order;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const auto& e = it.value();
    if (name == "__metadata__") {
      if (!e.is_object())
        throw InputError(fmt::format("{}: malformed safetensors header: __metadata__ is not an object", file));
      for (auto m = e.begin(); m != e.end(); ++m)
        f.m_metadata[m.key()] = m.value().is_string() ? m.value().get<std::string>() : m.value().dump();
      continue;
    }
    auto bad = [&](const std::string& what) {
      return InputError(fmt::format("{}: malformed safetensors header: tensor '{}' {}", file, name, what));
    };
    if (!e.is_object() || !e.contains("dtype") || !e.contains("shape") || !e.contains("data_offsets"))
      throw bad("needs dtype, shape and data_offsets");
    if (!e["dtype"].is_string()) throw bad("has a non-string dtype");
    const auto ds = e["dtype"].get<std::string>();
    const DTypeRow* dr = nullptr;
    for (const auto& r : kDTypes)
      if (ds == r.name) dr = &r;
    if (!dr) throw bad(fmt::format("has unsupported dtype '{}' (expected F64, F32, F16, BF16, I64, I32, I8, U8, BOOL)", ds));
    TensorInfo info;
    info.dtype = dr->dtype;
    if (!e["shape"].is_array()) throw bad("has a shape that is not an array");
    std::size_t count = 1;
    for (const auto& d : e["shape"]) {
      if (!d.is_number_integer() || d.get<int64_t>() < 0) throw bad("has a shape entry that is not a non-negative integer");
      const auto v = static_cast<std::size_t>(d.get<int64_t>());
      if (v != 0 && count > std::numeric_limits<std::size_t>::max() / v) throw bad("has a shape whose size overflows");
      count *= v;
      info.shape.push_back(static_cast<int64_t>(v));
    }
    if (count > std::numeric_limits<std::size_t>::max() / dr->size) throw bad("has a shape whose size overflows");
    const auto& off = e["data_offsets"];
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
      throw bad("has data_offsets that are not two non-negative integers");
    info.begin = off[0].get<std::size_t>();
    info.end = off[1].get<std::size_t>();
    if (info.end < info.begin) throw bad(fmt::format("has data_offsets [{}, {}] that end before they begin", info.begin, info.end));
    if (info.end - info.begin != count * dr->size)
      throw bad(fmt::format("has shape {} of {} = {} bytes but data_offsets [{}, {}] span {} bytes", shapeString(info.shape),
                            ds, count * dr->size, info.begin, info.end, info.end - info.begin));
    if (info.end > dataSize)
      throw bad(fmt::format("has data_offsets [{}, {}] past the end of the data section ({} bytes; file truncated?)",
                            info.begin, info.end, dataSize));
    f.m_infos[name] = std::move(info);
  }
  for (const auto& [name, info] : f.m_infos) order.emplace_back(name, &info);
  std::sort(order.begin(), order.end(), [](const auto& a, const auto& b) {
    return a.second->begin != b.second->begin ? a.second->begin < b.second->begin : a.second->end < b.second->end;
  });
  // Sorted by begin: a non-empty range overlaps an earlier one iff it starts before the furthest end
  // seen so far (comparing neighbours only misses A=[0,100], B=[10,10] (empty), C=[50,60]).
  const std::pair<std::string, const TensorInfo*>* furthest = nullptr;
  for (const auto& entry : order) {
    const auto* cur = entry.second;
    if (cur->end == cur->begin) continue;  // empty tensors occupy no bytes
    if (furthest && cur->begin < furthest->second->end)
      throw InputError(fmt::format("{}: malformed safetensors header: tensors '{}' [{}, {}] and '{}' [{}, {}] overlap", file,
                                   furthest->first, furthest->second->begin, furthest->second->end, entry.first, cur->begin,
                                   cur->end));
    if (!furthest || cur->end > furthest->second->end) furthest = &entry;
  }
  for (const auto& [name, info] : order) f.m_names.push_back(name);
  return f;
}

const TensorInfo& SafetensorsFile::info(const std::string& name) const {
  auto it = m_infos.find(name);
  if (it == m_infos.end()) throw InputError(fmt::format("{}: tensor '{}' is missing", path().string(), name));
  return it->second;
}

const std::filesystem::path& SafetensorsFile::path() const { return m_map->path(); }
std::size_t SafetensorsFile::fileSize() const { return m_map->size(); }
std::string SafetensorsFile::headerBytes() const {
  return std::string(reinterpret_cast<const char*>(m_map->data()), m_dataStart);
}

at::Tensor SafetensorsFile::tensor(const std::string& name, std::optional<at::ScalarType> as) const {
  const TensorInfo& ti = info(name);
  const auto stored = toScalarType(ti.dtype);
  std::byte* p = const_cast<std::byte*>(m_map->data() + m_dataStart + ti.begin);
  const bool aligned = reinterpret_cast<uintptr_t>(p) % elementSize(ti.dtype) == 0;
  const auto opts = at::TensorOptions().dtype(stored).device(at::kCPU);
  if (ti.begin == ti.end) return at::empty(ti.shape, opts.dtype(as.value_or(stored)));
  at::Tensor view;
  if (aligned) {
    auto keep = m_map;
    view = at::from_blob(p, ti.shape, [keep](void*) mutable { keep.reset(); }, opts);
  } else {
    // Unaligned data (legal in the format, rare in practice): one aligned copy.
    view = at::empty(ti.shape, opts);
    std::memcpy(view.data_ptr(), p, ti.end - ti.begin);
  }
  if (!as || *as == stored) return view;
  at::Tensor converted = view.to(*as);
  // Converted straight from the mapping: drop those mapped pages so a converting load never holds
  // the file's bytes and the converted weights at once.
  if (aligned) m_map->release(m_dataStart + ti.begin, ti.end - ti.begin);
  return converted;
}

SafetensorsSet SafetensorsSet::openFolder(const std::filesystem::path& folder) {
  namespace fs = std::filesystem;
  SafetensorsSet set;
  if (!fs::is_directory(folder)) throw InputError(fmt::format("{}: not a model folder (not a directory)", folder.string()));
  std::vector<fs::path> files;
  const fs::path single = folder / "model.safetensors";
  const fs::path index = folder / "model.safetensors.index.json";
  if (fs::exists(index)) {
    set.m_label = index.filename().string();
    const nlohmann::json j = readJsonFileGuarded(index.string(), kIndexJsonLimits);
    if (!j.contains("weight_map") || !j["weight_map"].is_object())
      throw InputError(fmt::format("{}: malformed index: no weight_map object", index.string()));
    std::vector<std::string> shards;
    for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
      if (!it.value().is_string()) throw InputError(fmt::format("{}: weight_map['{}'] is not a file name", index.string(), it.key()));
      const auto s = it.value().get<std::string>();
      if (std::find(shards.begin(), shards.end(), s) == shards.end()) shards.push_back(s);
    }
    std::sort(shards.begin(), shards.end());
    for (const auto& s : shards) {
      // A plain file name: no separator and not "." / ".." ("model..safetensors" is a valid name).
      if (s.empty() || s.find('/') != std::string::npos || s.find('\\') != std::string::npos || s == "." || s == "..")
        throw InputError(fmt::format("{}: shard name '{}' is not a plain file name", index.string(), s));
      if (!fs::exists(folder / s)) throw InputError(fmt::format("{}: shard '{}' is missing from the folder", index.string(), s));
      files.push_back(folder / s);
    }
  } else if (fs::exists(single)) {
    set.m_label = single.filename().string();
    files.push_back(single);
  } else {
    std::vector<fs::path> found, pickles;
    for (const auto& e : fs::directory_iterator(folder)) {
      const auto ext = e.path().extension().string();
      if (ext == ".safetensors") found.push_back(e.path());
      if (ext == ".bin" || ext == ".pt" || ext == ".pth" || ext == ".ckpt") pickles.push_back(e.path());
    }
    if (found.size() == 1) {
      set.m_label = found[0].filename().string();
      files = found;
    } else if (!pickles.empty()) {
      std::string msg = pickleGuidance(
          fmt::format("{}: holds only pickle weights ({}), no model.safetensors", folder.string(), pickles[0].filename().string()));
      for (std::size_t at = msg.find("FOLDER"); at != std::string::npos; at = msg.find("FOLDER", at + 1))
        msg.replace(at, 6, folder.string());
      throw InputError(msg);
    } else {
      throw InputError(fmt::format("{}: no model.safetensors or model.safetensors.index.json in the folder", folder.string()));
    }
  }
  for (const auto& p : files) {
    set.m_files.push_back(SafetensorsFile::open(p));
    const std::size_t idx = set.m_files.size() - 1;
    for (const auto& n : set.m_files.back().names()) {
      if (set.m_where.count(n))
        throw InputError(fmt::format("{}: tensor '{}' appears in two shards", p.string(), n));
      set.m_where[n] = idx;
    }
  }
  return set;
}

std::vector<std::string> SafetensorsSet::names() const {
  std::vector<std::string> out;
  for (const auto& [k, v] : m_where) out.push_back(k);
  return out;
}

const SafetensorsFile& SafetensorsSet::fileOf(const std::string& name) const {
  auto it = m_where.find(name);
  if (it == m_where.end()) throw InputError(fmt::format("{}: tensor '{}' is missing", m_label, name));
  return m_files[it->second];
}

const TensorInfo& SafetensorsSet::info(const std::string& name) const { return fileOf(name).info(name); }

at::Tensor SafetensorsSet::tensor(const std::string& name, std::optional<at::ScalarType> as) const {
  return fileOf(name).tensor(name, as);
}

void writeSafetensors(const std::filesystem::path& path, const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    nlohmann::ordered_json m = nlohmann::ordered_json::object();
    for (const auto& [k, v] : metadata) m[k] = v;
    header["__metadata__"] = m;
  }
  std::vector<at::Tensor> cpu;
  std::size_t offset = 0;
  for (const auto& [name, t] : tensors) {
    if (name == "__metadata__") throw InputError(fmt::format("{}: '__metadata__' is not a valid tensor name", path.string()));
    at::Tensor c = t.detach().to(at::kCPU).contiguous();
    const auto dt = fromScalarType(c.scalar_type());
    const std::size_t bytes = static_cast<std::size_t>(c.numel()) * elementSize(dt);
    header[name] = {{"dtype", toString(dt)}, {"shape", c.sizes().vec()}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
    cpu.push_back(std::move(c));
  }
  std::string h = header.dump();
  while (h.size() % 8 != 0) h.push_back(' ');
  const std::filesystem::path partial = path.string() + ".partial";
  {
    std::ofstream out(partial, std::ios::binary | std::ios::trunc);
    if (!out) throw InputError(fmt::format("{}: cannot write", partial.string()));
    uint64_t n = h.size();
    char len[8];
    for (int i = 0; i < 8; ++i) len[i] = static_cast<char>((n >> (8 * i)) & 0xff);
    out.write(len, 8);
    out.write(h.data(), static_cast<std::streamsize>(h.size()));
    for (const auto& c : cpu)
      out.write(static_cast<const char*>(c.data_ptr()), static_cast<std::streamsize>(c.numel() * c.element_size()));
    if (!out) throw InputError(fmt::format("{}: write failed (disk full?)", partial.string()));
  }
  std::error_code ec;
  std::filesystem::rename(partial, path, ec);
  if (ec) throw InputError(fmt::format("{}: cannot rename from {} ({})", path.string(), partial.string(), ec.message()));
}

}  // namespace mechscope
