#!/usr/bin/env bash
# What `serve --executor slurm` costs, against Slurm's own clients, on a
# private single-node cluster started here (tests/slurm/start-slurm.sh) and
# stopped by its pid files at the end:
#
#   round trip   `spoolq run -- true` through Slurm, against `srun true` and
#                `sbatch --wait --wrap true`, interleaved in the same run:
#                p50/p90/max of REPS samples each, ms
#   hand-over    N requests queued before the server starts (--max-in-flight
#                N): requests handed to Slurm per second (sbatch accepted and
#                job id recorded, from the server's log), and all N results
#                written; against N plain `sbatch --wrap true` in a loop
#
# Usage (as root): bash benches/slurm.sh [REPS] [N]   (defaults 20, 200)
#   SPOOLQ_BIN  the spoolq binary [default: target/release/spoolq, built if
#               missing]
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
REPS=${1:-20}
N=${2:-200}
[ "$(id -u)" = 0 ] || { echo "benches/slurm.sh: needs root (slurmd)" >&2; exit 2; }
BIN=${SPOOLQ_BIN:-target/release/spoolq}
[ -x "$BIN" ] || cargo build --release --locked >&2
BIN=$(realpath "$BIN")
W=$(mktemp -d /tmp/sq-bench.XXXXXX)
chmod 755 "$W"
SERVER=
cleanup() {
  [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null && wait "$SERVER" 2>/dev/null
  bash "$REPO/tests/slurm/stop-slurm.sh" "$W/slurm" >/dev/null 2>&1 || true
  rm -rf "$W"
}
trap cleanup EXIT
out=$(SLURM_CTLD_PORT=${SLURM_CTLD_PORT:-7917} SLURMD_PORT=${SLURMD_PORT:-7918} \
  bash "$REPO/tests/slurm/start-slurm.sh" "$W/slurm") || exit 1
eval "$out"
export SLURM_CONF
mkdir -p "$W/work"
cd "$W/work"
ms() { echo $(( $(date +%s%N) / 1000000 )); }
serve() {  # serve LOG ARGS...: start a server, wait for its status
  local log=$1; shift
  "$BIN" --spool "$W/spool" serve --executor slurm --kill-grace 1 "$@" >/dev/null 2>"$log" &
  SERVER=$!
  until [ -s "$W/spool/status.json" ] && grep -q "\"pid\": $SERVER," "$W/spool/status.json"; do
    kill -0 "$SERVER" || { cat "$log"; exit 1; }
    sleep 0.01
  done
}
stop() { kill "$SERVER"; wait "$SERVER" || true; SERVER=; rm -f "$W/spool/status.json"; }
stats() {  # stats NAME: p50/p90/max of the numbers on stdin
  sort -n | awk -v name="$1" '{ v[NR] = $1 } END {
    printf "%-28s p50 %5d  p90 %5d  max %5d ms  (%d runs)\n", name,
      v[int((NR + 1) / 2)], v[int(NR * 0.9 + 0.5)], v[NR], NR }'
}

serve "$W/server.log"
"$BIN" --spool "$W/spool" run -- true   # warm up: sinfo, caches
: > rt.spoolq; : > rt.srun; : > rt.sbatch
for _ in $(seq "$REPS"); do
  t=$(ms); "$BIN" --spool "$W/spool" run -- true; echo $(( $(ms) - t )) >> rt.spoolq
  t=$(ms); srun -Q true; echo $(( $(ms) - t )) >> rt.srun
  t=$(ms); sbatch -Q --wait -o /dev/null --wrap true >/dev/null; echo $(( $(ms) - t )) >> rt.sbatch
done
echo "round trip of true through Slurm (${REPS} interleaved samples each):"
stats "spoolq run -- true" < rt.spoolq
stats "srun true" < rt.srun
stats "sbatch --wait --wrap true" < rt.sbatch
stop

for _ in $(seq "$N"); do "$BIN" --spool "$W/spool" submit -- true >/dev/null; done
t0=$(ms)
serve "$W/handover.log" --max-in-flight "$N" -vv
until [ "$(ls "$W/spool/4-complete" | wc -l)" -ge "$N" ]; do sleep 0.05; done
t1=$(ms)
stop
handed=$(grep -c 'handed to Slurm' "$W/handover.log")
first=$(grep -m1 'handed to Slurm' "$W/handover.log" | cut -c1-27)
last=$(grep 'handed to Slurm' "$W/handover.log" | tail -1 | cut -c1-27)
span=$(( ( $(date -d "$last" +%s%N) - $(date -d "$first" +%s%N) ) / 1000000 ))
echo "hand-over of $N queued requests (4 sbatch workers):"
awk -v n="$handed" -v s="$span" 'BEGIN { printf "  handed to Slurm: %d in %d ms = %.0f jobs/s\n", n, s, (n - 1) * 1000 / (s > 0 ? s : 1) }'
awk -v n="$N" -v s="$(( t1 - t0 ))" 'BEGIN { printf "  all results written %d ms after the server started = %.0f jobs/s\n", s, n * 1000 / s }'
t=$(ms)
for _ in $(seq "$N"); do sbatch -Q --parsable -o /dev/null --wrap true >/dev/null; done
awk -v n="$N" -v s="$(( $(ms) - t ))" 'BEGIN { printf "  plain sbatch loop: %d in %d ms = %.0f jobs/s\n", n, s, n * 1000 / s }'
