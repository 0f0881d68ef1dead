#!/usr/bin/env bash
# The fault campaign (tests/faults/): its durable scenario traces submit and
# the server with strace to check the fsync order.
set -euo pipefail
if ! command -v strace >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq strace >/dev/null
fi
