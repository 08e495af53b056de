#include "store/detail/direct_vfd.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "store/detail/write_queue.hpp"

namespace mechscope::store::detail {

namespace {

constexpr std::size_t kDirectMinBytes = std::size_t{64} << 10;  // smaller raw writes stay buffered
constexpr std::size_t kFileAlignment = 4096;                      // chunk start (H5Pset_alignment)
constexpr std::size_t kBounceBytes = std::size_t{4} << 20;        // the copy buffer for unaligned memory
constexpr haddr_t kMaxAddr = (haddr_t{1} << 62) - 1;              // well inside off_t
constexpr std::size_t kQueuedPieceBytes = std::size_t{2} << 20;   // a queued direct write's largest piece

std::atomic<unsigned long long> g_directBytes{0};
std::atomic<unsigned long long> g_bouncedBytes{0};
std::atomic<unsigned long long> g_bufferedBytes{0};

/// One open file: libhdf5 sees `pub` only (it must come first).
struct DirectFile {
  H5FD_t pub{};
  int fd = -1;   // ordinary descriptor: metadata, reads, the unaligned ends of raw writes
  int dfd = -1;  // O_DIRECT descriptor, -1 when the filesystem refused it (or after a refused write)
  haddr_t eoa = 0;
  haddr_t eof = 0;
  dev_t device = 0;
  ino_t inode = 0;
  std::size_t memAlign = kFileAlignment;  // buffer alignment a direct write needs
  std::size_t offAlign = kFileAlignment;  // file offset and length alignment a direct write needs
  void* bounce = nullptr;                 // kBounceBytes, aligned; allocated on first use
  std::string name;
  std::unique_ptr<WriteQueue> queue;      // writer threads of queued direct writes; started on first use
};

/// The scope of ParallelDirectWrites on this thread (null: every write is made before dvWrite returns).
thread_local ParallelDirectWrites* t_parallelScope = nullptr;

DirectFile* asFile(H5FD_t* f) { return reinterpret_cast<DirectFile*>(f); }
const DirectFile* asFile(const H5FD_t* f) { return reinterpret_cast<const DirectFile*>(f); }

/// Pushes `message` onto libhdf5's error stack as a file-driver error (the caller returns failure).
void pushError(hid_t minor, const std::string& message) {
  H5Epush2(H5E_DEFAULT, __FILE__, "mechscope_direct_vfd", __LINE__, H5E_ERR_CLS, H5E_VFL, minor, "%s",
           message.c_str());
}

/// The sec2 driver's wording, so callers that look for "errno = 28" (a full disk) still find it.
void pushWriteError(const DirectFile* f, int err, haddr_t addr, std::size_t size, const char* how) {
  pushError(H5E_WRITEERROR,
            "file write failed: filename = '" + f->name + "', errno = " + std::to_string(err) + ", error message = '" +
                std::strerror(err) + "', total write size = " + std::to_string(size) +
                ", offset = " + std::to_string(static_cast<unsigned long long>(addr)) + " (" + how + ")");
}

bool bufferedWrite(DirectFile* f, haddr_t addr, std::size_t size, const unsigned char* p, bool raw) {
  std::size_t written = 0;
  const int err = writeFully(f->fd, p, size, static_cast<off_t>(addr), written);
  if (raw) g_bufferedBytes += written;
  if (err != 0) {
    pushWriteError(f, err, addr, size, "buffered");
    return false;
  }
  return true;
}

/// The last direct write was refused as misaligned: this file goes on buffered, as sec2.
void stopDirect(DirectFile* f) {
  if (f->dfd >= 0) ::close(f->dfd);
  f->dfd = -1;
}

/// Queues [addr, addr + size) from `p` in pieces when a ParallelDirectWrites scope on this thread covers `p`'s
/// bytes and allows more than one writer thread; false (nothing queued) otherwise. addr and size are
/// aligned to offAlign, `p` to memAlign.
bool queuedWrite(DirectFile* f, haddr_t addr, std::size_t size, const unsigned char* p) {
  ParallelDirectWrites* scope = t_parallelScope;
  if (!scope || p < scope->begin || p + size > scope->end || scope->threads < 2) return false;
  if (!f->queue) f->queue = std::make_unique<WriteQueue>(scope->threads);  // the first scope's count stays
  const std::size_t piece = std::max(kQueuedPieceBytes / f->offAlign, std::size_t{1}) * f->offAlign;
  for (std::size_t done = 0; done < size; done += piece) {
    QueuedWrite w;
    w.fd = f->dfd;
    w.fallbackFd = f->fd;
    w.offset = static_cast<off_t>(addr + done);
    w.p = p + done;
    w.size = std::min(piece, size - done);
    w.writtenCounter = &g_directBytes;
    w.fallbackCounter = &g_bufferedBytes;
    f->queue->submit(w);
  }
  if (std::find(scope->files.begin(), scope->files.end(), static_cast<void*>(f)) == scope->files.end())
    scope->files.push_back(f);
  return true;
}

/// Waits for `f`'s queued writes; false after pushing the first failure. A piece that O_DIRECT refused as
/// misaligned was written buffered by its thread; the file then goes on buffered, as after a refused write.
bool settle(DirectFile* f) {
  if (!f->queue) return true;
  const WriteFailure failure = f->queue->wait();
  if (f->queue->refusedByFd()) stopDirect(f);
  if (failure.err == 0) return true;
  pushWriteError(f, failure.err, static_cast<haddr_t>(failure.offset), failure.size, "O_DIRECT, queued");
  return false;
}

/// Writes [addr, addr + size) (both aligned to offAlign) with O_DIRECT; whatever a refusal or a short
/// write leaves is written buffered. False after pushing an error.
bool directWrite(DirectFile* f, haddr_t addr, std::size_t size, const unsigned char* p) {
  std::size_t done = 0;
  const bool aligned = reinterpret_cast<std::uintptr_t>(p) % f->memAlign == 0;
  if (aligned && queuedWrite(f, addr, size, p)) return true;
  if (aligned) {
    std::size_t written = 0;
    const int err = writeFully(f->dfd, p, size, static_cast<off_t>(addr), written);
    g_directBytes += written;
    done = written;
    if (err != 0 && err != EINVAL) {
      pushWriteError(f, err, addr + done, size - done, "O_DIRECT");
      return false;
    }
    if (err == EINVAL) stopDirect(f);
  } else {
    if (!f->bounce) {
      void* b = nullptr;
      if (::posix_memalign(&b, std::max(f->memAlign, kFileAlignment), kBounceBytes) != 0) b = nullptr;
      f->bounce = b;
    }
    while (f->bounce && f->dfd >= 0 && done < size) {
      const std::size_t piece = std::min(kBounceBytes, size - done);  // a multiple of offAlign: size is
      std::memcpy(f->bounce, p + done, piece);
      std::size_t written = 0;
      const int err = writeFully(f->dfd, static_cast<const unsigned char*>(f->bounce), piece,
                                 static_cast<off_t>(addr + done), written);
      g_bouncedBytes += written;
      done += written;
      if (err == EINVAL) {
        stopDirect(f);
      } else if (err != 0) {
        pushWriteError(f, err, addr + done, size - done, "O_DIRECT");
        return false;
      } else if (written < piece) {
        break;
      }
    }
  }
  return done == size || bufferedWrite(f, addr + done, size - done, p + done, true);
}

// ---- driver callbacks (signatures of H5FD_class_t) ----

H5FD_t* dvOpen(const char* name, unsigned flags, hid_t /*fapl*/, haddr_t maxaddr) {
  if (!name || !*name) {
    pushError(H5E_BADVALUE, "invalid file name");
    return nullptr;
  }
  if (maxaddr == 0 || maxaddr == HADDR_UNDEF || maxaddr > kMaxAddr) {
    pushError(H5E_BADRANGE, "bad maximum address for file '" + std::string(name) + "'");
    return nullptr;
  }
  int oflags = (flags & H5F_ACC_RDWR) ? O_RDWR : O_RDONLY;
  if (flags & H5F_ACC_TRUNC) oflags |= O_TRUNC;
  if (flags & H5F_ACC_CREAT) oflags |= O_CREAT;
  if (flags & H5F_ACC_EXCL) oflags |= O_EXCL;
  const int fd = ::open(name, oflags | O_CLOEXEC, 0666);
  if (fd < 0) {
    const int err = errno;
    pushError(H5E_CANTOPENFILE, "unable to open file: name = '" + std::string(name) + "', errno = " +
                                    std::to_string(err) + ", error message = '" + std::strerror(err) + "'");
    return nullptr;
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    pushError(H5E_BADFILE, "unable to fstat file '" + std::string(name) + "': " + std::strerror(err));
    return nullptr;
  }
  auto* f = new DirectFile();
  f->fd = fd;
  f->eof = static_cast<haddr_t>(st.st_size);
  f->device = st.st_dev;
  f->inode = st.st_ino;
  f->name = name;
#if defined(__linux__) && defined(O_DIRECT)
  if (flags & H5F_ACC_RDWR) {
    bool supported = true;
#if defined(STATX_DIOALIGN)
    struct statx sx {};
    if (::statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &sx) == 0 && (sx.stx_mask & STATX_DIOALIGN)) {
      supported = sx.stx_dio_offset_align != 0 && kFileAlignment % sx.stx_dio_offset_align == 0;
      f->memAlign = std::max<std::size_t>(sx.stx_dio_mem_align, 1);
      f->offAlign = std::max<std::size_t>(sx.stx_dio_offset_align, 1);
    }
#endif
    if (supported) f->dfd = ::open(name, O_WRONLY | O_DIRECT | O_CLOEXEC);
  }
#endif
  return &f->pub;
}

herr_t dvClose(H5FD_t* file) {
  DirectFile* f = asFile(file);
  const bool settled = settle(f);
  f->queue.reset();
  stopDirect(f);
  const int rc = ::close(f->fd);
  const int err = errno;
  const std::string name = f->name;
  std::free(f->bounce);
  delete f;
  if (rc != 0) {
    pushError(H5E_CANTCLOSEFILE, "unable to close file '" + name + "': " + std::strerror(err));
    return -1;
  }
  return settled ? 0 : -1;
}

int dvCmp(const H5FD_t* a, const H5FD_t* b) {
  const DirectFile* x = asFile(a);
  const DirectFile* y = asFile(b);
  if (x->device != y->device) return x->device < y->device ? -1 : 1;
  if (x->inode != y->inode) return x->inode < y->inode ? -1 : 1;
  return 0;
}

herr_t dvQuery(const H5FD_t* /*file*/, unsigned long* flags) {
  if (flags) {
    // As sec2: metadata aggregation and accumulation, data sieving, small raw data aggregation.
    *flags = H5FD_FEAT_AGGREGATE_METADATA | H5FD_FEAT_ACCUMULATE_METADATA | H5FD_FEAT_DATA_SIEVE |
             H5FD_FEAT_AGGREGATE_SMALLDATA | H5FD_FEAT_POSIX_COMPAT_HANDLE;
#ifdef H5FD_FEAT_DEFAULT_VFD_COMPATIBLE
    *flags |= H5FD_FEAT_DEFAULT_VFD_COMPATIBLE;
#endif
  }
  return 0;
}

haddr_t dvGetEoa(const H5FD_t* file, H5FD_mem_t /*type*/) { return asFile(file)->eoa; }

herr_t dvSetEoa(H5FD_t* file, H5FD_mem_t /*type*/, haddr_t addr) {
  asFile(file)->eoa = addr;
  return 0;
}

haddr_t dvGetEof(const H5FD_t* file, H5FD_mem_t /*type*/) { return asFile(file)->eof; }

herr_t dvGetHandle(H5FD_t* file, hid_t /*fapl*/, void** handle) {
  if (!handle) {
    pushError(H5E_BADVALUE, "file handle not valid");
    return -1;
  }
  *handle = &asFile(file)->fd;
  return 0;
}

herr_t dvRead(H5FD_t* file, H5FD_mem_t /*type*/, hid_t /*dxpl*/, haddr_t addr, std::size_t size, void* buf) {
  DirectFile* f = asFile(file);
  if (addr == HADDR_UNDEF || addr > kMaxAddr || size > kMaxAddr - addr) {
    pushError(H5E_OVERFLOW, "addr overflow reading '" + f->name + "'");
    return -1;
  }
  if (!settle(f)) return -1;  // the bytes read may be queued
  auto* p = static_cast<unsigned char*>(buf);
  std::size_t done = 0;
  while (done < size) {
    const ssize_t n = ::pread(f->fd, p + done, size - done, static_cast<off_t>(addr + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      pushError(H5E_READERROR, "file read failed: filename = '" + f->name + "', errno = " + std::to_string(err) +
                                   ", error message = '" + std::strerror(err) + "'");
      return -1;
    }
    if (n == 0) {  // past the end of the file: zeros, as sec2
      std::memset(p + done, 0, size - done);
      break;
    }
    done += static_cast<std::size_t>(n);
  }
  return 0;
}

herr_t dvWrite(H5FD_t* file, H5FD_mem_t type, hid_t /*dxpl*/, haddr_t addr, std::size_t size, const void* buf) {
  DirectFile* f = asFile(file);
  if (addr == HADDR_UNDEF || addr > kMaxAddr || size > kMaxAddr - addr) {
    pushError(H5E_OVERFLOW, "addr overflow writing '" + f->name + "'");
    return -1;
  }
  if (!t_parallelScope && !settle(f)) return -1;  // outside a scope every write is made in turn, after the queued
  const auto* p = static_cast<const unsigned char*>(buf);
  const bool raw = type == H5FD_MEM_DRAW;
  bool ok = true;
  const haddr_t start = (addr + f->offAlign - 1) / f->offAlign * f->offAlign;
  const haddr_t end = (addr + size) / f->offAlign * f->offAlign;
  if (f->dfd >= 0 && raw && size >= kDirectMinBytes && end > start) {
    const auto head = static_cast<std::size_t>(start - addr);
    const auto middle = static_cast<std::size_t>(end - start);
    ok = (head == 0 || bufferedWrite(f, addr, head, p, true)) && directWrite(f, start, middle, p + head) &&
         (end == addr + size || bufferedWrite(f, end, static_cast<std::size_t>(addr + size - end), p + head + middle, true));
  } else {
    ok = bufferedWrite(f, addr, size, p, raw);
  }
  if (!ok) return -1;
  f->eof = std::max(f->eof, addr + size);
  return 0;
}

herr_t dvTruncate(H5FD_t* file, hid_t /*dxpl*/, hbool_t /*closing*/) {
  DirectFile* f = asFile(file);
  if (!settle(f)) return -1;
  if (f->eoa == f->eof) return 0;
  if (::ftruncate(f->fd, static_cast<off_t>(f->eoa)) != 0) {
    const int err = errno;
    pushError(H5E_SEEKERROR, "unable to extend or truncate '" + f->name + "': errno = " + std::to_string(err) +
                                 ", error message = '" + std::strerror(err) + "'");
    return -1;
  }
  f->eof = f->eoa;
  return 0;
}

herr_t dvLock(H5FD_t* file, hbool_t rw) {
  DirectFile* f = asFile(file);
  if (::flock(f->fd, (rw ? LOCK_EX : LOCK_SH) | LOCK_NB) != 0 && errno != ENOSYS) {  // as sec2
    const int err = errno;
    pushError(H5E_CANTLOCKFILE, "unable to lock the file '" + f->name + "': errno = " + std::to_string(err) +
                                    ", error message = '" + std::strerror(err) + "'");
    return -1;
  }
  return 0;
}

herr_t dvUnlock(H5FD_t* file) {
  DirectFile* f = asFile(file);
  if (::flock(f->fd, LOCK_UN) != 0 && errno != ENOSYS) {
    const int err = errno;
    pushError(H5E_CANTUNLOCKFILE, "unable to unlock the file '" + f->name + "': " + std::strerror(err));
    return -1;
  }
  return 0;
}

/// The class, field by field (libhdf5 1.10/1.12 and 1.14 order and add fields differently).
H5FD_class_t makeClass() {
  H5FD_class_t c{};
#ifdef H5FD_CLASS_VERSION
  c.version = H5FD_CLASS_VERSION;
  c.value = static_cast<H5FD_class_value_t>(H5_VFD_RESERVED + 77);
#endif
  c.name = "mechscope_direct";
  c.maxaddr = kMaxAddr;
  c.fc_degree = H5F_CLOSE_WEAK;
  c.open = dvOpen;
  c.close = dvClose;
  c.cmp = dvCmp;
  c.query = dvQuery;
  c.get_eoa = dvGetEoa;
  c.set_eoa = dvSetEoa;
  c.get_eof = dvGetEof;
  c.get_handle = dvGetHandle;
  c.read = dvRead;
  c.write = dvWrite;
  c.truncate = dvTruncate;
  c.lock = dvLock;
  c.unlock = dvUnlock;
  const H5FD_mem_t dichotomy[H5FD_MEM_NTYPES] = H5FD_FLMAP_DICHOTOMY;
  std::copy(std::begin(dichotomy), std::end(dichotomy), std::begin(c.fl_map));
  return c;
}

}  // namespace

hid_t directWriteDriver() {
  static const H5FD_class_t cls = makeClass();
  static hid_t id = H5I_INVALID_HID;
  if (id < 0 || H5Iis_valid(id) <= 0) id = H5FDregister(&cls);
  return id;
}

bool useDirectWrites(hid_t fapl) {
  const hid_t id = directWriteDriver();
  if (id < 0 || H5Pset_driver(fapl, id, nullptr) < 0) {
    H5Eclear2(H5E_DEFAULT);
    return false;
  }
  if (H5Pset_alignment(fapl, kDirectMinBytes, kFileAlignment) < 0) {
    H5Eclear2(H5E_DEFAULT);
    H5Pset_fapl_sec2(fapl);
    return false;
  }
  return true;
}

ParallelDirectWrites::ParallelDirectWrites(const void* buffer, std::size_t bytes, int writerThreads)
    : begin(static_cast<const unsigned char*>(buffer)),
      end(static_cast<const unsigned char*>(buffer) + bytes),
      threads(std::clamp(writerThreads, 1, 16)) {
  t_parallelScope = this;
}

ParallelDirectWrites::~ParallelDirectWrites() {
  if (!m_finished) {
    (void)finish();
    H5Eclear2(H5E_DEFAULT);
  }
}

bool ParallelDirectWrites::finish() {
  if (m_finished) return true;
  m_finished = true;
  t_parallelScope = nullptr;
  bool ok = true;
  for (void* f : files) ok = settle(static_cast<DirectFile*>(f)) && ok;
  return ok;
}

DirectWriteCounters directWriteCounters() {
  DirectWriteCounters c;
  c.directBytes = g_directBytes.load();
  c.bouncedBytes = g_bouncedBytes.load();
  c.bufferedBytes = g_bufferedBytes.load();
  return c;
}

}  // namespace mechscope::store::detail
