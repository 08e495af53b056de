#!/usr/bin/env bash
# LibTorch 2.x on CPU (PyTorch's LibTorch on the GPU box, no Qt, no HDF5; deps as in gpu_build.sh): builds the
# engine test binary and the CLI (-O2 -g1) and runs stages:
#   env    torch / compiler / glibc versions, which libgomp and libstdc++ the binaries load
#   run    Cli.RunTokenIdsPrintsTopK plainly, with the CLI's re-exec disarmed, with one thread, and under a
#          preloaded SIGSEGV reporter (pid, si_code, si_pid, backtrace resolved with addr2line)
#   gdb    the same test under cuda-gdb (the only gdb on the box): signal, threads, backtrace
#   verify libtorch.so's std::filesystem exports, a minimal remove_all repro with and without libtorch.so
#          first, RemoveTree.* + Cli.*, then the whole engine suite on CPU (log + xml)
# This is how the Cli.RunTokenIdsPrintsTopK crash was traced to libtorch.so's copy of remove_all.
#   OUT=... STAGES="build verify" scripts/device/libtorch2_cpu_debug.sh   (carry .deps: debs + shared fixtures)
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${OUT:-$ROOT/out}; mkdir -p "$OUT"
STAGES=${STAGES:-"build verify"}
B=${BUILD:-$ROOT/build-gpu}
PREFIX=/tmp/msdeps
export MECHSCOPE_SHARED=$ROOT/.deps/shared MECHSCOPE_TEST_DEVICE=cpu
has() { [[ " $STAGES " == *" $1 "* ]]; }
S=$OUT/summary.txt
log() { echo "$*" | tee -a "$S"; }
T="$B/tests/mechscope_tests_engine"; F='--gtest_filter=Cli.RunTokenIdsPrintsTopK'
t0=$SECONDS

if has build; then
  mkdir -p $PREFIX
  for d in "$ROOT"/.deps/debs/*.deb; do dpkg-deb -x "$d" $PREFIX; done
  TORCH_PREFIX=$(python3 -c 'import torch;print(torch.utils.cmake_prefix_path)')
  L=(); command -v ccache >/dev/null && L=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
  cmake -S "$ROOT" -B "$B" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_FLAGS_RELEASE="-O2 -g1 -DNDEBUG" "${L[@]}" \
    -DMECHSCOPE_GUI=OFF -DMECHSCOPE_HDF5=OFF -DMECHSCOPE_FMT_HEADER_ONLY=ON -DMECHSCOPE_BENCH=OFF \
    -DCMAKE_PREFIX_PATH="$TORCH_PREFIX;$PREFIX/usr;$PREFIX/usr/lib/x86_64-linux-gnu/cmake" \
    -DCMAKE_LIBRARY_PATH="$PREFIX/usr/lib/x86_64-linux-gnu" -DCMAKE_INCLUDE_PATH="$PREFIX/usr/include" > "$OUT/build.log" 2>&1
  cmake --build "$B" -j 16 --target mechscope_tests_engine mechscope-cli >> "$OUT/build.log" 2>&1
  log "build rc=$? $((SECONDS - t0)) s"; grep -E "error" "$OUT/build.log" | head -20 >> "$S"
fi
export LD_LIBRARY_PATH="$PREFIX/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"

# A preloaded SIGSEGV reporter: who got the signal, who sent it, and a backtrace (addresses resolved below).
cat > /tmp/segv_reporter_src.c <<'EOF'
#define _GNU_SOURCE
#include <execinfo.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <fcntl.h>
static void onSegv(int sig, siginfo_t* si, void* uc) {
  (void)uc;
  char path[64], buf[512];
  snprintf(path, sizeof path, "/tmp/segv_report.%d", (int)getpid());
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  int c = open("/proc/self/cmdline", O_RDONLY);
  ssize_t n = c >= 0 ? read(c, buf, sizeof buf - 1) : 0;
  if (n < 0) n = 0;
  for (ssize_t i = 0; i < n; ++i) if (!buf[i]) buf[i] = ' ';
  buf[n] = 0;
  dprintf(fd, "signal %d pid %d tid %d cmd %s\nsi_code %d si_pid %d si_addr %p\n", sig, (int)getpid(), (int)gettid(), buf,
          si->si_code, (int)si->si_pid, si->si_addr);
  void* frames[64];
  int k = backtrace(frames, 64);
  backtrace_symbols_fd(frames, k, fd);
  int m = open("/proc/self/maps", O_RDONLY);
  dprintf(fd, "---maps\n");
  while ((n = read(m, buf, sizeof buf)) > 0) write(fd, buf, (size_t)n);
  close(fd);
  signal(sig, SIG_DFL);
  raise(sig);
}
__attribute__((constructor)) static void install(void) {
  static char stack[1 << 16];
  stack_t ss = {.ss_sp = stack, .ss_size = sizeof stack, .ss_flags = 0};
  sigaltstack(&ss, NULL);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = onSegv;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
  sigaction(SIGSEGV, &sa, NULL);
  sigaction(SIGBUS, &sa, NULL);
  sigaction(SIGABRT, &sa, NULL);
}
EOF

if has env; then
  {
    python3 -c 'import torch; print("torch", torch.__version__, "cxx11abi", torch._C._GLIBCXX_USE_CXX11_ABI, "parallel", torch.__config__.parallel_info())'
    gcc --version | head -1; ldd --version | head -1; uname -r; nproc
    grep -E "TORCH_CXX_FLAGS|Torch_DIR" "$B/CMakeCache.txt"
    ldd "$T" | grep -E "gomp|omp|stdc|torch|c10|gtest"
    ldd "$B/bin/mechscope-cli" | grep -E "gomp|omp|stdc|torch|c10"
    for t in catchsegv cuda-gdb gdb addr2line strace valgrind; do echo "$t: $(command -v $t)"; done
  } > "$OUT/env.txt" 2>&1
  cat "$OUT/env.txt" >> "$S"
fi

if has run; then
  W=/tmp/clidbg; mkdir -p $W; echo '[[1, 2, 3, 4], [5, 6, 7, 8]]' > $W/ids.json
  G=$MECHSCOPE_SHARED/fixtures/models/gpt2
  timeout 60 "$B/bin/mechscope-cli" run --model $G --token-ids $W/ids.json --top-k 3 > $W/cli.log 2>&1
  log "cli direct rc=$?"; tail -12 $W/cli.log >> "$S"
  for v in plain "OMP_WAIT_POLICY=PASSIVE GLIBC_TUNABLES=glibc.malloc.hugetlb=1" "MECHSCOPE_THREADS=1 OMP_NUM_THREADS=1"; do
    e=(); [ "$v" != plain ] && read -ra e <<< "$v"
    env "${e[@]}" timeout 120 "$T" "$F" > $W/t.log 2>&1
    log "test [$v] rc=$?"; tail -6 $W/t.log >> "$S"
  done
  rm -f /tmp/segv_report.*
  gcc -shared -fPIC -O1 -o /tmp/libsegv_report.so /tmp/segv_reporter_src.c && {
    LD_PRELOAD=/tmp/libsegv_report.so timeout 120 "$T" "$F" > $W/tp.log 2>&1
    log "test [preload reporter] rc=$?"; tail -4 $W/tp.log >> "$S"
    for r in /tmp/segv_report.*; do
      [ -f "$r" ] || continue
      cp "$r" "$OUT/"
      log "== $r"; sed -n '1,/^---maps/p' "$r" | tee -a "$S" | grep -oE '^[^ (]+\(\+?[^)]*\)' | while read -r fr; do
        file=${fr%%(*}; off=${fr#*(}; off=${off%)}
        [[ "$off" == +0x* ]] && addr2line -f -C -i -e "$file" "${off#+}" 2>/dev/null | paste -sd' ' | sed "s|^|  $file: |" >> "$S"
      done
    done
  } || log "gcc reporter build failed"
fi

if has verify; then  # after the fix (mechscope::removeTree): a minimal repro, the crashing test, the whole CPU suite
  TL=$(python3 -c 'import torch,os;print(os.path.join(os.path.dirname(torch.__file__),"lib"))')
  log "g++ $(command -v g++), libstdc++.so: $(g++ -print-file-name=libstdc++.so)"
  log "NEEDED $(basename $T): $(readelf -d $T | grep -oP 'NEEDED.*\[\K[^]]+' | paste -sd' ')"
  log "libtorch.so exports $(nm -D --defined-only $TL/libtorch.so | c++filt | grep -c 'std::filesystem') std::filesystem symbols; its weak undefined ones:"
  nm -D --with-symbol-versions $TL/libtorch.so | grep -E '^ +w ' | grep -i filesystem >> "$S"
  log "system libstdc++ has: $(nm -D --with-symbol-versions /lib/x86_64-linux-gnu/libstdc++.so.6 | grep -E '7__cxx1128recursive_directory_iterator(C1|D1|7__erase)' | awk '{print $3}' | paste -sd' ')"
  # Minimal repro, no mechscope code: remove_all of a non-empty folder in a program that needs libtorch.so first.
  printf '%s\n' '#include <filesystem>' '#include <fstream>' 'int main() { auto d = std::filesystem::temp_directory_path() / "ra";' \
    '  std::filesystem::create_directories(d / "x"); std::ofstream(d / "x" / "f") << 1;' \
    '  return std::filesystem::remove_all(d) == 3 ? 0 : 1; }' > /tmp/ra.cpp
  g++ -std=c++17 -O1 /tmp/ra.cpp -o /tmp/ra_plain && /tmp/ra_plain; log "repro, libstdc++ only: rc=$?"
  g++ -std=c++17 -O1 /tmp/ra.cpp -o /tmp/ra_torch -L$TL -Wl,--no-as-needed -ltorch -Wl,-rpath,$TL
  log "repro NEEDED: $(readelf -d /tmp/ra_torch | grep -oP 'NEEDED.*\[\K[^]]+' | paste -sd' ')"
  /tmp/ra_torch; log "repro, libtorch.so first: rc=$?"
  LD_DEBUG=bindings /tmp/ra_torch 2>&1 | grep -E 'remove_all|recursive_directory_iterator' | sed 's/^ *[0-9]*: *//' | head -8 >> "$S"
  timeout 120 "$T" --gtest_filter='RemoveTree.*:Cli.*' > "$OUT/verify_cli.log" 2>&1
  log "RemoveTree.* + Cli.* on cpu rc=$?"; grep -E '^\[ +(OK|FAILED|PASSED|SKIPPED) ' "$OUT/verify_cli.log" >> "$S"
  s=$SECONDS; timeout ${SUITE_TIMEOUT:-300} "$T" --gtest_output=xml:"$OUT/engine_cpu_torch2.xml" > "$OUT/engine_cpu_torch2.log" 2>&1
  log "whole engine suite on cpu (torch 2.x) rc=$? in $((SECONDS - s)) s"
  grep -E '^\[( +PASSED|  FAILED|  SKIPPED) ' "$OUT/engine_cpu_torch2.log" | head -30 >> "$S"; tail -3 "$OUT/engine_cpu_torch2.log" >> "$S"
fi

if has gdb && command -v cuda-gdb >/dev/null; then
  timeout 240 cuda-gdb -batch -ex 'set pagination off' -ex 'set print thread-events off' -ex 'set follow-fork-mode parent' \
    -ex run -ex 'p $_siginfo._sifields._sigfault.si_addr' -ex 'p $_siginfo.si_code' -ex 'info threads' -ex 'bt 40' \
    -ex 'thread apply all bt 12' --args "$T" "$F" > "$OUT/gdb.log" 2>&1
  log "cuda-gdb rc=$?"; grep -E "^(#|Thread|Program|\\$|\*)" "$OUT/gdb.log" | head -80 >> "$S"
fi
log "total $((SECONDS - t0)) s"
cat "$S"
