#pragma once
// Recursive removal of a file or folder, in POSIX calls only — use it instead of std::filesystem::remove_all.
// Why: PyTorch 2.x's libtorch.so carries and exports its own copy of std::filesystem (64 symbols) and is the
// first library our binaries need, so the loader binds remove_all to that copy. It calls
// recursive_directory_iterator::__erase, a weak undefined symbol in libtorch.so that an older libstdc++
// (GCC 13's, Ubuntu 24.04) lacks: a call to address 0, SIGSEGV, on any non-empty folder (torch 2.11 on the
// GPU box; Cli.RunTokenIdsPrintsTopK died in its cleanup). Debian's LibTorch 1.13 exports no such copy.
// Header-only and torch-free, so mechscope_batch can use it too. ctest `layering` rejects remove_all calls.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>
#include <system_error>

namespace mechscope {

namespace detail {

// Removes `name` inside the folder `dirFd`; a folder's contents first. Links are removed, never followed.
inline std::uintmax_t removeTreeAt(int dirFd, const char* name, std::error_code& ec) {
  struct stat st {};
  if (::fstatat(dirFd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno != ENOENT) ec.assign(errno, std::generic_category());
    return 0;
  }
  std::uintmax_t removed = 0;
  const bool isDir = S_ISDIR(st.st_mode);
  if (isDir) {
    const int fd = ::openat(dirFd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
      ec.assign(errno, std::generic_category());
      return 0;
    }
    DIR* dir = ::fdopendir(fd);
    if (!dir) {
      ec.assign(errno, std::generic_category());
      ::close(fd);
      return 0;
    }
    while (!ec) {
      errno = 0;
      const dirent* entry = ::readdir(dir);
      if (!entry) {
        if (errno != 0) ec.assign(errno, std::generic_category());
        break;
      }
      if (std::strcmp(entry->d_name, ".") == 0 || std::strcmp(entry->d_name, "..") == 0) continue;
      removed += removeTreeAt(fd, entry->d_name, ec);
    }
    ::closedir(dir);  // closes fd
    if (ec) return removed;
  }
  if (::unlinkat(dirFd, name, isDir ? AT_REMOVEDIR : 0) != 0) {
    if (errno != ENOENT) ec.assign(errno, std::generic_category());
    return removed;
  }
  return removed + 1;
}

}  // namespace detail

/// Removes `path` and, for a folder, everything under it (symbolic links are removed, not followed), like
/// std::filesystem::remove_all. Returns how many entries went (0 when nothing was there); on failure sets
/// `ec` and returns the count removed so far.
inline std::uintmax_t removeTree(const std::filesystem::path& path, std::error_code& ec) noexcept {
  ec.clear();
  if (path.empty()) return 0;
  return detail::removeTreeAt(AT_FDCWD, path.c_str(), ec);
}

/// As above; throws std::system_error naming the path on failure.
inline std::uintmax_t removeTree(const std::filesystem::path& path) {
  std::error_code ec;
  const std::uintmax_t removed = removeTree(path, ec);
  if (ec) throw std::system_error(ec, "cannot remove " + path.string());
  return removed;
}

}  // namespace mechscope
