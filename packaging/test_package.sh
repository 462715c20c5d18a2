#!/bin/sh
# Package test: build the .deb with cpack, unpack it into a scratch root with
# dpkg -x, then run the installed gpucap, ask pkg-config for the region
# library and compile, link and run a program against the installed header
# and archive.
#
# usage: test_package.sh BUILD_DIR CPACK CC VERSION LIBDIR
# Exit 77 (reported by CTest as skipped, never as passed) when a tool the
# test needs is missing.
set -eu
build=$1 cpack=$2 cc=$3 version=$4 libdir=$5

for tool in dpkg-deb pkg-config; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "SKIPPED: $tool is not installed (apt-get install dpkg-dev pkg-config)"
		exit 77
	fi
done

work=$(mktemp -d /tmp/gpucap-package-XXXXXX)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

"$cpack" -G DEB -B "$work/out" --config "$build/CPackConfig.cmake" >"$work/cpack.log" 2>&1 ||
	{ cat "$work/cpack.log" >&2; fail "cpack -G DEB failed"; }
deb=$(ls "$work"/out/gpucap_*.deb 2>/dev/null | head -n 1)
[ -n "$deb" ] || fail "cpack made no gpucap_*.deb in $work/out"
echo "built $(basename "$deb")"
dpkg-deb -I "$deb" | grep -q "Package: gpucap" || fail "the package is not named gpucap"

root=$work/root
dpkg-deb -x "$deb" "$root" || fail "dpkg-deb -x $deb failed"
for f in usr/bin/gpucap "usr/$libdir/libgpucap.so" "usr/$libdir/libvgpu.so" "usr/$libdir/vgpu/libvgpu.so" \
	"usr/$libdir/libgpucap-region.a" "usr/$libdir/pkgconfig/gpucap-region.pc" usr/include/gpucap/region.h \
	usr/share/gpucap/limits.conf.example; do
	[ -e "$root/$f" ] || fail "the package lacks /$f"
done

out=$("$root/usr/bin/gpucap" --version) || fail "the installed gpucap --version failed"
echo "$out"
case $out in
"gpucap $version (build "*", "*")") ;;
*) fail "unexpected version line: $out" ;;
esac

# The installed gpucap finds the installed library next to it.
# (A sanitizer build's gpucap must accept a preloaded library before its runtime.)
ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0" \
	"$root/usr/bin/gpucap" doctor --file "$work/none.cache" >"$work/doctor.txt" 2>&1 || true
grep -q "^ok    preload: $root/usr/$libdir/libgpucap.so is loaded" "$work/doctor.txt" ||
	{ cat "$work/doctor.txt" >&2; fail "the installed gpucap does not preload the installed library"; }

export PKG_CONFIG_PATH="$root/usr/$libdir/pkgconfig" PKG_CONFIG_SYSROOT_DIR="$root"
flags=$(pkg-config --cflags --libs gpucap-region) || fail "pkg-config --cflags --libs gpucap-region failed"
echo "pkg-config: $flags"
[ "$(pkg-config --modversion gpucap-region)" = "$version" ] || fail "pkg-config reports another version"

cat >"$work/use_region.c" <<'PROGRAM'
#include <gpucap/region.h>
#include <stdio.h>

int main(int argc, char **argv)
{
	struct gpucap_region_options options = {0};
	options.path = argc > 1 ? argv[1] : NULL;
	gpucap_region *region = NULL;
	char err[512] = "";
	if (gpucap_region_attach(&options, &region, err, sizeof(err)) != GPUCAP_OK ||
	    gpucap_region_claim_slot(region, NULL, err, sizeof(err)) != GPUCAP_OK) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	int device = gpucap_region_device_register(region, "GPU-package-test", 1u << 30, 0);
	if (device < 0 || gpucap_reserve(region, device, GPUCAP_KIND_DATA, 1u << 20) != GPUCAP_OK)
		return 1;
	struct gpucap_snapshot *s = gpucap_region_snapshot(region);
	printf("devices %u processes %u\n", s ? s->device_count : 0, s ? s->process_count : 0);
	gpucap_snapshot_free(s);
	gpucap_region_detach(region);
	return 0;
}
PROGRAM
# shellcheck disable=SC2086
"$cc" -std=c11 -Wall -Werror -o "$work/use_region" "$work/use_region.c" $flags ||
	fail "cannot compile and link against the installed header and library"
got=$("$work/use_region" "$work/region.cache") || fail "the program linked against libgpucap-region.a failed"
[ "$got" = "devices 1 processes 1" ] || fail "unexpected output from the linked program: $got"
"$root/usr/bin/gpucap" status --file "$work/region.cache" >/dev/null ||
	fail "the installed gpucap cannot read the region the linked program wrote"
echo "ok package"
