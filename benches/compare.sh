#!/usr/bin/env bash
# What a change bought: the same drain through several spoolq binaries,
# interleaved (A B C A B C …) so that each round sees the same machine,
# and the median of each. Used for BENCHMARKS.md's "what each change
# bought" table.
#
# Usage: bash benches/compare.sh [-n JOBS] [-r ROUNDS] [-d DIR] [-m MODES] BIN...
#   -n  jobs per drain (default 2000)
#   -r  rounds (default 3)
#   -d  where the temporary spools go (default $TMPDIR or /var/tmp): the
#       file system matters (a journalled ext4 makes fsync cost much more
#       than this project's journal-less CI disk)
#   -m  comma-separated: off (sandbox off), default (plain serve), nofsync
#       (sandbox off, --no-fsync); default "off,default"
#
# A drain: JOBS requests of `true` queued with `submit --batch` while no
# server runs, `sync`, then `serve --max-jobs 2` started and timed until
# every result is in 4-complete/ (watched with inotifywait when it is
# installed, else polled every 50 ms). Prints jobs/s and the server's CPU
# time per job (utime+stime of all its threads, from /proc).
set -u
export LC_ALL=C
N=2000; R=3; DIR=${TMPDIR:-/var/tmp}; MODES=off,default
while getopts n:r:d:m: o; do
  case $o in
    n) N=$OPTARG ;; r) R=$OPTARG ;; d) DIR=$OPTARG ;; m) MODES=$OPTARG ;;
    *) sed -n '2,22p' "$0"; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
[ $# -ge 1 ] || { sed -n '2,22p' "$0"; exit 2; }
WORK=$(mktemp -d "$DIR/spoolq-compare.XXXXXX")
SERVER=
cleanup() { [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT
OFF="--no-cgroups --shared-tmp --no-landlock --no-seccomp"
TICK=$(getconf CLK_TCK)

# drain BIN MODE -> "rate cpu_us_per_job"
drain() {
  local bin=$1 mode=$2 spool="$WORK/spool" flags=
  case $mode in
    off) flags=$OFF ;; default) flags= ;; nofsync) flags="$OFF --no-fsync" ;;
  esac
  rm -rf "$spool"; mkdir -p "$spool"
  yes x | head -n "$N" | "$bin" --spool "$spool" submit --batch -- true >/dev/null
  sync
  local t0 t1
  t0=$(date +%s%N)
  # shellcheck disable=SC2086
  "$bin" --spool "$spool" serve --max-jobs 2 $flags 2>"$WORK/serve.log" &
  SERVER=$!
  local deadline=$(( $(date +%s) + 600 ))
  while [ "$(find "$spool/4-complete" -maxdepth 1 -type f | wc -l)" -lt "$N" ]; do
    if [ "$(date +%s)" -gt "$deadline" ] || ! kill -0 "$SERVER" 2>/dev/null; then
      echo "compare.sh: drain did not finish; server log:" >&2; tail "$WORK/serve.log" >&2
      exit 1
    fi
    sleep 0.05
  done
  t1=$(date +%s%N)
  local st; st=$(sed 's/.*) //' "/proc/$SERVER/stat")
  # shellcheck disable=SC2086
  set -- $st
  local cpu_ticks=$(( ${12} + ${13} ))
  kill "$SERVER"; wait "$SERVER" 2>/dev/null; SERVER=
  awk -v n="$N" -v ns=$((t1 - t0)) -v t="$cpu_ticks" -v hz="$TICK" \
    'BEGIN { printf "%.0f %.0f\n", n / (ns / 1e9), t / hz * 1e6 / n }'
}

median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

echo "compare.sh: $N jobs per drain, $R rounds, spools in $DIR ($(df -T "$DIR" | awk 'NR==2 {print $2}')), load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
declare -A RATES CPUS
IFS=, read -ra modes <<<"$MODES"
for r in $(seq "$R"); do
  for mode in "${modes[@]}"; do
    for bin in "$@"; do
      read -r rate cpu < <(drain "$bin" "$mode")
      echo "round $r $mode $(basename "$bin"): $rate jobs/s, server CPU $cpu µs/job" >&2
      RATES[$mode,$bin]+="$rate "
      CPUS[$mode,$bin]+="$cpu "
    done
  done
done
echo "| binary | mode | jobs/s (median of $R) | runs | server CPU µs/job |"
echo "|---|---|---:|---|---:|"
for mode in "${modes[@]}"; do
  for bin in "$@"; do
    rates=${RATES[$mode,$bin]}
    m=$(tr ' ' '\n' <<<"$rates" | grep . | median)
    c=$(tr ' ' '\n' <<<"${CPUS[$mode,$bin]}" | grep . | median)
    echo "| $(basename "$bin") | $mode | $m | ${rates% } | $c |"
  done
done
