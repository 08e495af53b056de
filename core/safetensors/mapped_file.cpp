#include "core/safetensors/mapped_file.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "core/common/errors.hpp"

namespace mechscope {

std::shared_ptr<MappedFile> MappedFile::open(const std::filesystem::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw InputError(fmt::format("{}: cannot open ({})", path.string(), std::strerror(errno)));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    throw InputError(fmt::format("{}: cannot stat ({})", path.string(), std::strerror(err)));
  }
  if (st.st_size == 0) {
    ::close(fd);
    throw InputError(fmt::format("{}: file is empty, expected a safetensors header", path.string()));
  }
  const auto size = static_cast<std::size_t>(st.st_size);
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
  const int err = errno;
  ::close(fd);
  if (p == MAP_FAILED) throw InputError(fmt::format("{}: cannot memory-map ({})", path.string(), std::strerror(err)));
  auto out = std::shared_ptr<MappedFile>(new MappedFile());
  out->m_data = static_cast<std::byte*>(p);
  out->m_size = size;
  out->m_path = path;
  return out;
}

void MappedFile::release(std::size_t offset, std::size_t length) const {
  static const std::size_t page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  const std::size_t begin = (offset + page - 1) / page * page;
  const std::size_t end = std::min(offset + length, m_size) / page * page;
  if (end > begin) ::madvise(m_data + begin, end - begin, MADV_DONTNEED);
}

MappedFile::~MappedFile() {
  if (m_data) ::munmap(m_data, m_size);
}

}  // namespace mechscope
