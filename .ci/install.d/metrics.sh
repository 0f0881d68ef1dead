#!/usr/bin/env bash
# The metrics test (tests/share, `metrics_prom_passes_promtool_check_metrics`)
# lints SPOOL/metrics.prom with promtool, Prometheus' own checker of the text
# exposition format and its naming rules. promtool ships in Debian's
# `prometheus` package (19 MB download); only the promtool binary (linked
# against libc alone) is taken out of it, so that no Prometheus server, user
# or service is installed on the machine. Idempotent: nothing to do when a
# promtool is on PATH.
set -euo pipefail
command -v promtool >/dev/null && exit 0
[ "$(id -u)" = 0 ] || { echo "metrics.sh: needs root to install promtool" >&2; exit 1; }
apt-get update -qq
tmp=$(mktemp -d)
chown _apt "$tmp" 2>/dev/null || true  # apt downloads as _apt where it can
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && apt-get download -qq prometheus)
dpkg-deb --fsys-tarfile "$tmp"/prometheus_*.deb | tar -x -C "$tmp" ./usr/bin/promtool
install -m 0755 "$tmp/usr/bin/promtool" /usr/local/bin/promtool
promtool --version | head -1
