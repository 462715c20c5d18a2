#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Write gpucap.1 and one gpucap-COMMAND.1 per command with help2man, from
# the program's own --help texts.
#
# usage: manpages.sh GPUCAP OUTDIR VERSION [HELP2MAN]
set -eu
gpucap=$1 out=$2 version=$3 help2man=${4:-help2man}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
wrappers=$(mktemp -d)
trap 'rm -rf "$wrappers"' EXIT

# The commands, as "gpucap --help" lists them: "  NAME  summary".
commands=$("$gpucap" --help | sed -n '/^commands:$/,/^$/{s/^  \([a-z][a-z-]*\)  .*/\1/p}')
[ -n "$commands" ] || { echo "manpages.sh: no commands in '$gpucap --help'" >&2; exit 1; }

see_also="$wrappers/see-also.h2m"
{
	cat "$here/manpage-see-also.h2m"
	printf '.BR gpucap (1)'
	for c in $commands; do printf ',\n.BR gpucap\\-%s (1)' "$c"; done
	printf '\n'
} >"$see_also"

# help2man names a page after the program it runs, so each command gets a
# wrapper called gpucap-COMMAND.
for c in $commands; do
	summary=$("$gpucap" --help | sed -n "s/^  $c  *//p")
	printf '#!/bin/sh\nexec "%s" %s "$@"\n' "$gpucap" "$c" >"$wrappers/gpucap-$c"
	chmod +x "$wrappers/gpucap-$c"
	"$help2man" --no-info --no-discard-stderr --section=1 --version-string="$version" \
		--name="$summary" --include="$see_also" --output="$out/gpucap-$c.1" "$wrappers/gpucap-$c"
done
"$help2man" --no-info --section=1 --version-string="$version" \
	--name="GPU memory and compute caps for containers sharing NVIDIA GPUs" --include="$see_also" \
	--output="$out/gpucap.1" "$gpucap"
