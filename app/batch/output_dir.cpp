#include "app/batch/output_dir.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include <fmt/format.h>

#include "core/common/errors.hpp"
#include "core/common/remove_tree.hpp"

namespace mechscope::batch {
namespace fs = std::filesystem;
using nlohmann::json;

void writeFileAtomic(const fs::path& path, const std::string& text) {
  fs::create_directories(path.parent_path());
  const fs::path tmp = path.parent_path() / fmt::format(".{}.tmp.{}", path.filename().string(), ::getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw InputError(fmt::format("{}: cannot write", tmp.string()));
    out << text;
    out.flush();
    if (!out) throw InputError(fmt::format("{}: write failed", tmp.string()));
  }
  fs::rename(tmp, path);
}

std::optional<json> readJsonFile(const fs::path& path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  try {
    return json::parse(in);
  } catch (const json::exception&) {
    return std::nullopt;
  }
}

std::string flatKey(const std::string& key) {
  std::string out;
  for (char c : key) out += c == '/' ? std::string("__") : std::string(1, c);
  return out;
}

fs::path OutputDir::recordPath(const std::string& key) const { return m_root / ".batch" / "done" / (flatKey(key) + ".json"); }

fs::path OutputDir::workDir(const std::string& key) const {
  return m_root / ".batch" / "work" / fmt::format("{}.{}", flatKey(key), ::getpid());
}

std::optional<json> OutputDir::record(const std::string& key) const { return readJsonFile(recordPath(key)); }

void OutputDir::writeRecord(const std::string& key, const json& record) const {
  writeFileAtomic(recordPath(key), record.dump(2) + "\n");
}

void OutputDir::clearItem(const std::string& key) const {
  fs::remove(recordPath(key));
  mechscope::removeTree(itemDir(key));
  const fs::path work = m_root / ".batch" / "work";
  if (!fs::is_directory(work)) return;
  const std::string prefix = flatKey(key) + ".";
  for (const auto& e : fs::directory_iterator(work))
    if (e.path().filename().string().rfind(prefix, 0) == 0) mechscope::removeTree(e.path());
}

void OutputDir::commitItem(const std::string& key, const fs::path& work) const {
  const fs::path dest = itemDir(key);
  fs::create_directories(dest.parent_path());
  mechscope::removeTree(dest);
  fs::rename(work, dest);
}

void OutputDir::lock() {
  fs::create_directories(m_root / ".batch");
  const std::string path = (m_root / ".batch" / "lock").string();
  m_lockFd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (m_lockFd < 0) throw InputError(fmt::format("{}: cannot open the lock file", path));
  if (::flock(m_lockFd, LOCK_EX | LOCK_NB) != 0)
    throw InputError(fmt::format("{}: another batch run is using this output folder", m_root.string()));
}

}  // namespace mechscope::batch
