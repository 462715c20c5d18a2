#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# gpucap-install-library on scratch files: it places the library by rename
# (a new inode, never a file rewritten in place), leaves an equal file alone,
# puts gpucap's library back after HAMi's copy overwrote it, writes the
# preload file and makes the node directory 1777.
#
# usage: installer_test.sh INSTALLER
set -eu
installer=$1
work=$(mktemp -d /tmp/gpucap-installer-XXXXXX)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
inode() { stat -c %i "$1"; }

printf 'gpucap library bytes\n' >"$work/libgpucap.so"
printf 'HAMi library bytes\n' >"$work/hami.so"
host=$work/host
mkdir -p "$host/usr/local/vgpu"
cp "$work/hami.so" "$host/usr/local/vgpu/libvgpu.so"
hami_inode=$(inode "$host/usr/local/vgpu/libvgpu.so")

run() { "$installer" --source "$work/libgpucap.so" --target "$host/usr/local/gpucap/lib/libgpucap.so" \
	--hami-path "$host/usr/local/vgpu/libvgpu.so" --preload-file "$host/usr/local/gpucap/ld.so.preload" \
	--node-dir "$host/var/lib/gpucap/node" --once 2>>"$work/log"; }

run || fail "the first round failed: $(cat "$work/log")"
cmp -s "$work/libgpucap.so" "$host/usr/local/gpucap/lib/libgpucap.so" || fail "gpucap's path does not hold the library"
cmp -s "$work/libgpucap.so" "$host/usr/local/vgpu/libvgpu.so" || fail "HAMi's path does not hold gpucap's library"
[ "$(inode "$host/usr/local/vgpu/libvgpu.so")" != "$hami_inode" ] || fail "HAMi's file was rewritten in place, not replaced"
[ "$(cat "$host/usr/local/gpucap/ld.so.preload")" = /usr/local/gpucap/lib/libgpucap.so ] ||
	fail "ld.so.preload holds '$(cat "$host/usr/local/gpucap/ld.so.preload")'"
[ "$(stat -c %a "$host/var/lib/gpucap/node")" = 1777 ] || fail "the node directory is not 1777"
[ "$(stat -c %a "$host/usr/local/gpucap/lib/libgpucap.so")" = 644 ] || fail "the library is not 0644"
for left in "$host"/usr/local/vgpu/.*gpucap-new* "$host"/usr/local/gpucap/lib/.*gpucap-new*; do
	[ ! -e "$left" ] || fail "a temporary file was left: $left"
done

# An equal file is left alone: same inode, nothing logged.
placed=$(inode "$host/usr/local/gpucap/lib/libgpucap.so")
: >"$work/log"
run || fail "the second round failed"
[ "$(inode "$host/usr/local/gpucap/lib/libgpucap.so")" = "$placed" ] || fail "an equal file was replaced"
[ ! -s "$work/log" ] || fail "the second round logged: $(cat "$work/log")"

# HAMi's device plugin restarts and copies its library over the host's.
cp "$work/hami.so" "$host/usr/local/vgpu/libvgpu.so"
run || fail "the round after HAMi's copy failed"
cmp -s "$work/libgpucap.so" "$host/usr/local/vgpu/libvgpu.so" || fail "gpucap's library was not put back at HAMi's path"
grep -q "placed .* at $host/usr/local/vgpu/libvgpu.so" "$work/log" || fail "the re-placement was not logged"

# Errors: a missing source, a bad --watch.
if "$installer" --source "$work/none.so" --target "$work/x" --once 2>/dev/null; then fail "a missing source succeeded"; fi
set +e
"$installer" --source "$work/libgpucap.so" --watch soon 2>/dev/null
[ $? -eq 2 ] || fail "--watch soon is not a usage error"
set -e
echo "ok installer"
