#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Build cdi_check.go against Debian's packaged reference CDI library (no
# module download: GOPATH mode over /usr/share/gocode) and run it on the
# specs the given gpucap writes.
#
# usage: run.sh GPUCAP WORKDIR
# Exit 77 (reported by CTest as skipped, never as passed) when Go or the
# library is not installed.
set -eu
gpucap=$1 work=$2
gopath=/usr/share/gocode
library=$gopath/src/github.com/container-orchestrated-devices/container-device-interface/pkg/cdi
if ! command -v go >/dev/null 2>&1; then
	echo "SKIPPED: go is not installed (apt-get install golang-go)"
	exit 77
fi
if [ ! -d "$library" ]; then
	echo "SKIPPED: the CDI library is not installed (apt-get install" \
		"golang-github-container-orchestrated-devices-container-device-interface-dev)"
	exit 77
fi
mkdir -p "$work"
GO111MODULE=off GOPATH=$gopath GOCACHE=$work/go-cache GOFLAGS='' \
	go build -o "$work/cdi_check" "$(dirname "$0")/cdi_check.go"
exec "$work/cdi_check" "$gpucap" "$work/run"
