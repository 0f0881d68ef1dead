#!/usr/bin/env bash
# Build the Debian package (target/debian/spoolq_*.deb) with cargo-deb: the
# release binary, then what [package.metadata.deb] in Cargo.toml installs
# besides it that the binary generates — man pages (gzipped, as Debian
# policy wants them) and completion scripts — into target/deb-assets/, then
# `cargo deb --no-build`. Needs `cargo install cargo-deb --locked` once.
# Check the result with `lintian target/debian/spoolq_*.deb`.
set -euo pipefail
cd "$(dirname "$0")/../.."

cargo build --release --locked
bin=${CARGO_TARGET_DIR:-target}/release/spoolq
out=target/deb-assets
rm -rf "$out"
mkdir -p "$out/man" "$out/completions"
"$bin" manpages "$out/man" >/dev/null
gzip -9n "$out"/man/*.1
"$bin" completions bash >"$out/completions/spoolq"
"$bin" completions zsh >"$out/completions/_spoolq"
"$bin" completions fish >"$out/completions/spoolq.fish"
# --strip: the release profile keeps line tables (debug = 1) for profiling;
# the package ships the binary without them.
cargo deb --no-build --locked --strip "$@"
