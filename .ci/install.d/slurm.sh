#!/usr/bin/env bash
# The Slurm tests (tests/slurm, `serve --executor slurm`) run against a
# private single-node cluster that they start themselves with
# tests/slurm/start-slurm.sh (munged + slurmctld + slurmd on loopback, no
# systemd) and stop by its pid files: they need the Debian packages of
# Slurm (22.05 on bookworm) and munge, and tail(1) (coreutils) for the
# watcher that stops the cluster when the test process ends. Idempotent.
set -euo pipefail
need=()
for p in munged:munge slurmctld:slurmctld slurmd:slurmd sbatch:slurm-client tail:coreutils; do
  command -v "${p%%:*}" >/dev/null || need+=("${p#*:}")
done
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "install.d/slurm.sh: missing ${need[*]}; install slurm-wlm and munge as root" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# slurm-wlm pulls in slurmctld, slurmd and slurm-client; the packages'
# services are not started (no systemd in CI; policy-rc.d may deny it).
apt-get install -y -qq --no-install-recommends slurm-wlm munge coreutils >/dev/null
