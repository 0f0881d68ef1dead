#!/usr/bin/env bash
# What tests/unix needs: man (man-db, with groff to render) for the man
# pages, systemd-analyze (package systemd: only its tools are used, no
# init is started) to verify the units, dash for the POSIX sh client, zsh
# to check its completion script's syntax. cargo-deb and lintian are not
# installed: building cargo-deb takes ~6 min of CI, so the package check is
# the documented command in the README ("Debian package").
set -euo pipefail
need=()
command -v man >/dev/null || need+=(man-db)
command -v groff >/dev/null || need+=(groff-base)
command -v systemd-analyze >/dev/null || need+=(systemd)
command -v dash >/dev/null || need+=(dash)
command -v zsh >/dev/null || need+=(zsh)
if [ ${#need[@]} -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
