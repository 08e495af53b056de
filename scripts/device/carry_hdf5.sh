#!/usr/bin/env bash
# Makes .deps/hdf5 on a Debian bookworm machine with libhdf5-dev installed: the serial HDF5 headers, libhdf5_serial.so.103
# and every shared library it loads except glibc's own (none needs more than GLIBC_2.34), so that a GPU box without
# HDF5 can build and run the store there (session_pending.sh's cpucache stage: LD_LIBRARY_PATH=.deps/hdf5/lib,
# -DHDF5_ROOT=.deps/hdf5). About 23 MB: a device call carries at most 64 MiB with the working tree, so move the
# trained models' weights (tests/data/trained/*/model.safetensors) aside for that call and back after it.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
H=$ROOT/.deps/hdf5 SO=/usr/lib/x86_64-linux-gnu/libhdf5_serial.so.103
[ -f $SO ] || { echo "carry_hdf5.sh: $SO is missing (apt-get install libhdf5-dev)" >&2; exit 1; }
rm -rf "$H" && mkdir -p "$H/lib" "$H/include"
cp -r /usr/include/hdf5/serial/. "$H/include/"
for f in $SO $(ldd $SO | awk '$3 {print $3}' | grep -v -E '/(libc|libm|libresolv)\.so|ld-linux'); do cp -L "$f" "$H/lib/$(basename "$f")"; done
echo 'INPUT(libhdf5_serial.so.103)' >"$H/lib/libhdf5.so"  # the link-time name, as a linker script: no symlink to carry
du -sh "$H"
