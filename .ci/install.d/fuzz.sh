#!/usr/bin/env bash
# The fuzz targets (fuzz/run, run by .ci/run): libfuzzer-sys compiles
# libFuzzer's C++ sources, so a C++ compiler. No cargo-fuzz: fuzz/run drives
# the targets with cargo on stable Rust (installing cargo-fuzz from source
# would cost a minute of the CI's fuzz budget).
set -euo pipefail
if ! command -v c++ >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq g++ >/dev/null
fi
