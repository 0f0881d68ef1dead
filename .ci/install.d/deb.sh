#!/usr/bin/env bash
# The Debian package check (contrib/deb/check.sh) needs cargo-deb, from
# crates.io (not packaged by Debian; ~3-6 min to build once), and lintian.
set -euo pipefail
if ! command -v lintian >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq lintian >/dev/null
fi
if ! command -v cargo-deb >/dev/null; then
  cargo install --locked --quiet cargo-deb
fi
