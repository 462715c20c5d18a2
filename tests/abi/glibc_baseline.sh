#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# The preload library must load under old glibc: no symbol it imports may
# need a glibc version newer than the baseline (2.17, CentOS 7 / the
# aarch64 base), and it must name libdl and libpthread for the glibc
# releases where dl* and pthread_* still live there.
#   glibc_baseline.sh LIBRARY
set -eu
lib=$1
newest=$(objdump -T "$lib" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -t. -k1,1n -k2,2n -k3,3n | tail -1)
echo "$lib: newest glibc symbol version needed: ${newest:-none}"
too_new=$(objdump -T "$lib" | grep -E 'GLIBC_2\.(1[89]|[2-9][0-9])' || true)
if [ -n "$too_new" ]; then
  echo "symbols newer than GLIBC_2.17 (bind them in src/common/glibc_baseline.h or avoid them):"
  echo "$too_new"
  exit 1
fi
for needed in libdl.so.2 libpthread.so.0; do
  if ! objdump -p "$lib" | grep -q "NEEDED *$needed"; then
    echo "$lib does not name $needed: older glibc keeps dl*/pthread_* there"
    exit 1
  fi
done
echo "ok"
