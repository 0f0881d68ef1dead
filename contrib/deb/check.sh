#!/usr/bin/env bash
# CI's package check: build the .deb as contrib/deb/build.sh does, but with
# a quick release profile (no LTO, parallel codegen: the package's contents
# and layout are what is checked, not its speed), and fail on any lintian
# error. `bash contrib/deb/build.sh` builds the real package.
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16
rm -rf target/debian
bash contrib/deb/build.sh >/dev/null
deb=$(ls target/debian/spoolq_*.deb)
lintian --fail-on error "$deb"
echo "package check: $deb passes lintian without errors"
