#!/usr/bin/env bash
# The workloads of the `bench` bench (benches/bench/), run the same way
# against spoolq and its peers: pueue (crates.io), nq and task-spooler
# (Debian packages). Every tool is driven from bash through its own client,
# as a user would drive it, so the figures compare like with like. The
# `bench` bench measures spoolq alone in more depth.
#
# Usage: bash benches/peers.sh [--quick] [--no-install] [--only spoolq,pueue,nq,tsp]
#   SPOOLQ_BIN  the spoolq binary (default: release/spoolq under
#               $CARGO_TARGET_DIR or target/, built with cargo if missing)
#   SPOOLQ_SERVE_ARGS  extra `spoolq serve` arguments [default: the sandbox
#               off (--no-cgroups --shared-tmp --no-landlock --no-seccomp)
#               when serve has those flags,
#               as the peers have no sandbox]
#   TMPDIR      where the temporary directory goes (default /tmp; the file
#               system matters)
#
# Installs what is missing: `apt-get install nq task-spooler` and
# `cargo install pueue --locked`. Works only under a fresh mktemp directory,
# stops every daemon and job it started by pid (or by the process group it
# created with setsid), and removes the directory at exit.
#
# Workloads (N = 1000, 200 with --quick; medians of REPS runs):
#   submit      bash loop of N enqueues of `true` while a long job holds the
#               queue (pueue: a paused group), ms per request
#   dispatch    idle queue: from just before the enqueue command until the job
#               `sh -c 'date +%s%N > F'` writes its time; p50/p99 of LAT samples
#   round trip  enqueue `true` and wait for its end: spoolq run; tsp -f;
#               pueue add + wait; nq + nq -w; p50/p99 of LAT samples
#               (pueue: PUEUE_RT samples, as `pueue wait` takes about 2 s)
#   throughput  N jobs of `true`, 2 at a time, from the first enqueue to the
#               last end; pueue gets PUEUE_N jobs (it runs about 6 jobs/s)
#   queued      memory held per queued request after the submit loop: the
#               daemon's growth plus every process waiting for a slot (PSS)
#   idle        daemon CPU over IDLE seconds with nothing to do; all daemons
#               are measured in the same window
# spoolq is measured as shipped (fsync) and with --no-fsync: none of the
# peers flushes anything to disk.
set -u
export LC_ALL=C
HERE=$(cd "$(dirname "$0")" && pwd)

QUICK=0; INSTALL=1; ONLY="spoolq,pueue,nq,tsp"
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --no-install) INSTALL=0 ;;
    --only) ONLY=$2; shift ;;
    -h|--help) sed -n '2,32p' "$0"; exit 0 ;;
    *) echo "peers.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
if [ "$QUICK" = 1 ]; then
  N=200; PUEUE_N=40; REPS=1; LAT=20; PUEUE_RT=5; IDLE=5; TSP_MAX=200
else
  N=1000; PUEUE_N=200; REPS=3; LAT=100; PUEUE_RT=20; IDLE=60; TSP_MAX=900
fi
# task-spooler accepts about 1000 connections and every queued or running
# job holds one, so its held queue stops at TSP_MAX.
wants() { case ",$ONLY," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }

log() { echo "[$(date +%T)] $*" >&2; }
die() { log "$*"; exit 1; }

# ---------------------------------------------------------------- install ---
if [ "$INSTALL" = 1 ]; then
  if { wants nq && ! command -v nq >/dev/null; } || { wants tsp && ! command -v tsp >/dev/null; }; then
    SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
    log "installing nq and task-spooler with apt-get"
    { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nq task-spooler >/dev/null; } \
      || die "apt-get install nq task-spooler failed"
  fi
  if wants pueue && ! command -v pueued >/dev/null; then
    log "installing pueue with cargo install (a few minutes)"
    cargo install pueue --locked >&2 || die "cargo install pueue failed"
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
fi
for t in pueue nq tsp; do
  b=$t; [ "$t" = pueue ] && b=pueued
  if wants "$t" && ! command -v "$b" >/dev/null; then
    log "$b not found: leaving $t out"
    ONLY=$(echo ",$ONLY," | sed "s/,$t,/,/; s/^,//; s/,$//")
  fi
done

SQ=
if wants spoolq; then
  SQ=${SPOOLQ_BIN:-}
  if [ -z "$SQ" ]; then
    SQ="${CARGO_TARGET_DIR:-$HERE/../target}/release/spoolq"
    if [ ! -x "$SQ" ]; then
      log "building $SQ"
      (cd "$HERE/.." && cargo build --release --bin spoolq >&2) || die "cargo build failed"
    fi
  fi
  [ -x "$SQ" ] || die "no spoolq binary at $SQ"
  if [ -z "${SPOOLQ_SERVE_ARGS+set}" ]; then
    help=$("$SQ" serve --help 2>/dev/null)
    SPOOLQ_SERVE_ARGS=
    off="--no-cgroups --shared-tmp --no-landlock --no-seccomp"
    SPOOLQ_SERVE_ARGS=$off
    for flag in $off; do
      case $help in *"$flag"*) ;; *) SPOOLQ_SERVE_ARGS= ;; esac
    done
  fi
fi

# ---------------------------------------------------------------- helpers ---
ROOT=$(mktemp -d "${TMPDIR:-/tmp}/spoolq-peers.XXXXXX")
# Every process we start is tracked by pid and start time, and signalled
# only while that pid still is that process: a stale pid, reused by some
# other process, is never signalled. No process-group or -1 kills.
declare -A OWN   # pid -> start time (clock ticks since boot)
cleanup() {
  stop_pids "${!OWN[@]}"
  rm -rf "$ROOT"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A sleep that forks nothing: read with a timeout from a pipe nobody writes.
exec {SNOOZE_FD}<> <(:)
snooze() { read -r -t "$1" -u "$SNOOZE_FD" _ || true; }

now_us() { local t=$EPOCHREALTIME; echo "${t/./}"; }

# Start time of a live (not zombie) process, from builtins only.
start_of() {
  local line f
  read -r line 2>/dev/null < "/proc/$1/stat" || return 1
  read -ra f <<< "${line##*) }"
  [ "${f[0]}" != Z ] && echo "${f[19]}"
}
# track PID...: remember processes we started (positive pids above 1 only).
track() {
  local p st
  for p in "$@"; do
    [[ "$p" =~ ^[0-9]+$ ]] && [ "$p" -gt 1 ] || { log "not tracking pid '$p'"; continue; }
    st=$(start_of "$p") && OWN[$p]=$st
  done
}
owned() { [ -n "${OWN[$1]:-}" ] && [ "$(start_of "$1")" = "${OWN[$1]}" ]; }
# Stop tracked processes: TERM, up to 5 s, then KILL; reap our children.
stop_pids() {
  local p i=0 left
  for p in "$@"; do owned "$p" && kill -TERM "$p" 2>/dev/null; done
  while [ $i -lt 500 ]; do
    left=0; for p in "$@"; do owned "$p" && { left=1; break; }; done
    [ $left = 0 ] && break
    snooze 0.01; i=$((i + 1))
  done
  for p in "$@"; do
    owned "$p" && kill -KILL "$p" 2>/dev/null
    wait "$p" 2>/dev/null
    unset "OWN[$p]"
  done
  return 0
}
stop_pid() { [ -n "${1:-}" ] && stop_pids "$1"; return 0; }
# Members of the session we created with setsid (its leader's pid).
session_members() { ps -eo pid=,sid= | awk -v g="$1" '$2==g{print $1}'; }
# wait_until TIMEOUT_S CMD...: poll CMD every 10 ms until it succeeds.
wait_until() {
  local lim=$(($1 * 100)) i=0; shift
  until "$@"; do
    i=$((i + 1)); [ $i -ge $lim ] && return 1
    snooze 0.01
  done
}
# median / nearest-rank percentile P of the numbers on stdin
median() { sort -g | awk '{v[NR]=$1} END{if(!NR){print "NA";exit} if(NR%2)print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'; }
pctl() { sort -g | awk -v p="$1" '{v[NR]=$1} END{if(!NR){print "NA";exit} r=int(p/100*NR); if(r<p/100*NR)r++; if(r<1)r=1; print v[r]}'; }
per_ms() { awk -v a="$1" -v b="$2" -v n="$3" 'BEGIN{printf "%.3f", (b-a)/1000/n}'; }
rate() { awk -v a="$1" -v b="$2" -v n="$3" 'BEGIN{printf "%.1f", n/((b-a)/1e6)}'; }
pss_kb() { local v; v=$(awk '/^Pss:/{print $2}' "/proc/$1/smaps_rollup" 2>/dev/null); echo "${v:-0}"; }
pss_sum_kb() { local s=0 p; for p in "$@"; do s=$((s + $(pss_kb "$p"))); done; echo "$s"; }
# CPU time of a process in ms, from the schedstat of each of its threads.
cpu_ms() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{s+=$1} END{printf "%.2f", s/1e6}'; }

declare -A R   # R[tool.figure]=value
put() { R[$1.$2]=$3; log "$1 $2 = $3"; }

# --------------------------------------------------------- tool adapters ---
# Each implementation I has: I_start NAME SLOTS [hold] (a fresh queue; sets
# DPID to its daemon's pid, if any; `hold`: enqueued jobs wait), I_add CMD...
# and I_add_sh 'SHELL TEXT' (enqueue quietly), I_roundtrip (enqueue `true`
# and wait for its end), I_wait_all COUNT (until COUNT jobs ended), I_waiters
# (pids of processes that wait for a slot), I_stop.

# spoolq: one server per spool; a running `sleep` in its one slot holds it.
# SQ_FLAGS is empty or --no-fsync.
spoolq_start() {
  S=$ROOT/$1; mkdir -p "$S"
  "$SQ" --spool "$S" $SQ_FLAGS serve --max-jobs "$2" $SPOOLQ_SERVE_ARGS 2>>"$S.log" &
  DPID=$!; track "$DPID"
  wait_until 10 test -s "$S/status.json" || die "spoolq server did not start"
  if [ "${3:-}" = hold ]; then
    "$SQ" --spool "$S" submit -- sleep 3600 >/dev/null
    wait_until 10 grep -q '"running": 1' "$S/status.json" || die "spoolq blocker did not start"
  fi
}
spoolq_add() { "$SQ" --spool "$S" $SQ_FLAGS submit -- "$@" >/dev/null; }
spoolq_add_sh() { "$SQ" --spool "$S" $SQ_FLAGS submit -- sh -c "$1" >/dev/null; }
spoolq_roundtrip() { "$SQ" --spool "$S" $SQ_FLAGS run -- true; }
spoolq_done() { local a; shopt -s nullglob; a=("$S"/4-complete/*); shopt -u nullglob; [ ${#a[@]} -ge "$1" ]; }
spoolq_wait_all() { wait_until 600 spoolq_done "$1"; }
spoolq_waiters() { :; }
# SIGTERM lets running jobs finish; a second one, once the server says it is
# stopping, stops them (the blocker) at once.
spoolq_stop() {
  owned "$DPID" && kill -TERM "$DPID" 2>/dev/null
  wait_until 5 grep -q '"mode": "stopping"' "$S/status.json"
  owned "$DPID" && kill -TERM "$DPID" 2>/dev/null
  stop_pid "$DPID"
}
spoolq_version() { "$SQ" --version | awk '{print $2}'; }

# pueue: a daemon per config; a paused group holds jobs. pueue passes the
# command to a shell itself.
pueue_start() {
  local d=$ROOT/$1; mkdir -p "$d/data" "$d/run"
  CFG=$d/pueue.yml
  cat > "$CFG" <<EOF
shared:
  pueue_directory: $d/data
  runtime_directory: $d/run
  use_unix_socket: true
  unix_socket_path: $d/run/pueue.socket
  pid_path: $d/run/pueue.pid
daemon:
  pause_group_on_failure: false
  pause_all_on_failure: false
EOF
  pueued -c "$CFG" >"$d/daemon.log" 2>&1 &
  DPID=$!; track "$DPID"
  wait_until 10 test -S "$d/run/pueue.socket" || die "pueued did not start"
  pueue -c "$CFG" parallel "$2" >/dev/null
  if [ "${3:-}" = hold ]; then pueue -c "$CFG" pause >/dev/null; fi
}
pueue_add() { pueue -c "$CFG" add -- "$*" >/dev/null; }
pueue_add_sh() { pueue -c "$CFG" add -- "$1" >/dev/null; }
pueue_roundtrip() { local id; id=$(pueue -c "$CFG" add -p -- true) && pueue -c "$CFG" wait -q "$id" >/dev/null; }
pueue_wait_all() { pueue -c "$CFG" wait -q >/dev/null; }
pueue_waiters() { :; }
pueue_stop() {
  pueue -c "$CFG" shutdown >/dev/null 2>&1
  wait_until 5 eval '! kill -0 "$DPID" 2>/dev/null'
  stop_pid "$DPID"
}
pueue_version() { pueue --version | awk '{print $2}'; }

# nq: no daemon and no slot count: a queue directory runs one job at a time,
# so 2 at a time means two directories used in turn. A running `sleep`
# holds a queue. Every waiting job is two nq processes.
nq_start() {
  Q1=$ROOT/$1.a; Q2=$ROOT/$1.b; mkdir -p "$Q1" "$Q2"; DPID=; NQ_SLOTS=$2; BLOCKER=
  if [ "${3:-}" = hold ]; then
    local f; f=$(NQDIR=$Q1 nq sleep 3600); BLOCKER=${f##*.}; track "$BLOCKER"
  fi
}
nq_add() {
  local q=$Q1
  if [ "$NQ_SLOTS" = 2 ]; then NQ_TURN=$((${NQ_TURN:-0} + 1)); [ $((NQ_TURN % 2)) = 0 ] && q=$Q2; fi
  NQDIR=$q nq -q "$@"
}
nq_add_sh() { nq_add sh -c "$1"; }
nq_roundtrip() { local f; f=$(NQDIR=$Q1 nq true) && NQDIR=$Q1 nq -w "$f"; }
nq_wait_all() { NQDIR=$Q1 nq -w; NQDIR=$Q2 nq -w; }
nq_waiters() { session_members "$1"; }
nq_stop() { stop_pid "$BLOCKER"; }
nq_version() { dpkg-query -W -f='${Version}' nq; }

# task-spooler: the first client starts a server per socket; every queued
# job is a client process (in a session of its own) waiting for it. A
# running `sleep` in its one slot holds it.
tsp_start() {
  export TS_SOCKET=$ROOT/$1.sock TMPDIR=$ROOT/$1.tmp
  mkdir -p "$TMPDIR"
  tsp -S "$2"
  DPID=$(ss -xlpn 2>/dev/null | awk -v s="$TS_SOCKET" '$5==s' | sed -n 's/.*pid=\([0-9]*\).*/\1/p' | head -1)
  [ -n "$DPID" ] || die "cannot find the tsp server"
  track "$DPID"; BLOCKER=
  if [ "${3:-}" = hold ]; then
    local id; id=$(tsp sleep 3600)
    wait_until 10 tsp_running "$id" || log "tsp: the blocker did not start"
    BLOCKER=$(tsp -p "$id"); track "$BLOCKER"
    track $(tsp_waiters)   # the client waiting for the blocker
  fi
}
tsp_running() { [ "$(tsp -s "$1")" = running ]; }
tsp_add() { tsp "$@" >/dev/null; }
tsp_add_sh() { tsp sh -c "$1" >/dev/null; }
tsp_roundtrip() { tsp -f true >/dev/null; }
tsp_idle() { ! tsp -l | awk 'NR>1 && ($2=="running"||$2=="queued"||$2=="allocating"){f=1} END{exit !f}'; }
tsp_wait_all() { tsp -w >/dev/null 2>&1; wait_until 600 tsp_idle; }
# Client processes of our socket other than the server.
tsp_waiters() {
  local p
  for p in /proc/[0-9]*; do
    [ "$(cat "$p/comm" 2>/dev/null)" = tsp ] || continue
    [ "${p#/proc/}" = "$DPID" ] && continue
    tr '\0' '\n' 2>/dev/null < "$p/environ" | grep -qxF "TS_SOCKET=$TS_SOCKET" && echo "${p#/proc/}"
  done
}
tsp_stop() {
  local w; w=$(tsp_waiters); track $w
  stop_pid "$BLOCKER"; stop_pid "$DPID"; stop_pids $w
  unset TS_SOCKET TMPDIR
}
tsp_version() { dpkg-query -W -f='${Version}' task-spooler; }

export -f spoolq_add pueue_add nq_add tsp_add
# use TOOL: the implementation I of a column and its settings.
use() {
  T=$1; I=$1; SQ_FLAGS=
  if [ "$T" = spoolq-nofsync ]; then I=spoolq; SQ_FLAGS=--no-fsync; fi
}

# ---------------------------------------------------------------- workloads --
# `enqueue_loop PGFILE COUNT`: COUNT enqueues of `true` from a bash loop in a
# session of its own (so that nq's waiting processes can be found as its
# members); returns when the loop has finished, with its members tracked.
enqueue_loop() {
  export SQ S SQ_FLAGS CFG=${CFG:-} Q1=${Q1:-} Q2=${Q2:-} NQ_SLOTS=${NQ_SLOTS:-1} NQ_TURN=0
  setsid bash -c 'echo $$ > "$1"; for i in $(seq "$2"); do '"${I}_add"' true || exit 1; done' bash "$1" "$2" </dev/null \
    || log "$T: the enqueue loop failed"
  local sid; sid=$(cat "$1")
  [[ "$sid" =~ ^[0-9]+$ ]] && [ "$sid" -gt 1 ] && track $(session_members "$sid")
}

w_submit() {
  local n=$N v=() r t0 t1 base pg w held
  [ "$I" = tsp ] && n=$TSP_MAX
  for r in $(seq "$REPS"); do
    "${I}_start" "$T-submit$r" 1 hold
    base=0; [ -n "$DPID" ] && base=$(pss_kb "$DPID")
    t0=$(now_us)
    enqueue_loop "$ROOT/$T-submit$r.pg" "$n"
    t1=$(now_us)
    v+=("$(per_ms "$t0" "$t1" "$n")")
    pg=$(cat "$ROOT/$T-submit$r.pg")
    if [ "$r" = "$REPS" ]; then
      snooze 1
      w=$("${I}_waiters" "$pg")
      held=$(( $(pss_sum_kb $w) - base ))
      [ -n "$DPID" ] && held=$((held + $(pss_kb "$DPID")))
      put "$T" queued_kb "$(awk -v k="$held" -v n="$n" 'BEGIN{printf "%.2f", k/n}')"
      put "$T" queued_procs "$(awk -v p="$(echo $w | wc -w)" -v n="$n" 'BEGIN{printf "%.1f", p/n}')"
    fi
    stop_pids $(session_members "$pg")
    "${I}_stop"
  done
  put "$T" submit_ms "$(printf '%s\n' "${v[@]}" | median)"
}

w_dispatch() {
  local i f t0 ts v=() missed=0
  "${I}_start" "$T-dispatch" 2
  for i in $(seq "$LAT"); do
    f=$ROOT/$T-dispatch.$i
    t0=$(now_us)
    "${I}_add_sh" "date +%s%N > $f"
    if ! wait_until 10 test -s "$f"; then
      log "$T: dispatch sample $i timed out"
      missed=$((missed + 1)); [ $missed -ge 3 ] && { log "$T: giving up on dispatch"; break; }
      continue
    fi
    ts=$(cat "$f")
    v+=("$(awk -v a="$t0" -v b="$ts" 'BEGIN{printf "%.3f", (b/1000-a)/1000}')")
    # Let the job end and the queue settle before the next sample.
    snooze 0.15
  done
  "${I}_stop"
  put "$T" dispatch_p50 "$(printf '%s\n' "${v[@]}" | pctl 50)"
  put "$T" dispatch_p99 "$(printf '%s\n' "${v[@]}" | pctl 99)"
}

w_roundtrip() {
  local i t0 t1 v=() n=$LAT
  [ "$I" = pueue ] && n=$PUEUE_RT
  "${I}_start" "$T-roundtrip" 2
  for i in $(seq "$n"); do
    t0=$(now_us)
    "${I}_roundtrip" >/dev/null || log "$T: round trip $i failed"
    t1=$(now_us)
    v+=("$(per_ms "$t0" "$t1" 1)")
  done
  "${I}_stop"
  put "$T" roundtrip_p50 "$(printf '%s\n' "${v[@]}" | pctl 50)"
  put "$T" roundtrip_p99 "$(printf '%s\n' "${v[@]}" | pctl 99)"
}

w_throughput() {
  local n=$N r t0 t1 v=()
  [ "$I" = pueue ] && n=$PUEUE_N
  for r in $(seq "$REPS"); do
    "${I}_start" "$T-tp$r" 2
    t0=$(now_us)
    enqueue_loop "$ROOT/$T-tp$r.pg" "$n"
    "${I}_wait_all" "$n" || log "$T: not every job ended"
    t1=$(now_us)
    v+=("$(rate "$t0" "$t1" "$n")")
    log "$T throughput run $r: ${v[-1]} jobs/s ($n jobs)"
    "${I}_stop"
  done
  put "$T" throughput "$(printf '%s\n' "${v[@]}" | median)"
  put "$T" throughput_n "$n"
}

# Every daemon started together and left alone for IDLE seconds.
w_idle() {
  local t p
  declare -A P C0
  for t in "$@"; do
    use "$t"
    case $t in
      nq) put nq idle_cpu_ms_min "n/a"; put nq idle_rss_mb "no daemon"; continue ;;
      spoolq-nofsync) continue ;;
    esac
    "${I}_start" "$T-idle" 2
    P[$t]=$DPID
  done
  snooze 1
  for t in "${!P[@]}"; do C0[$t]=$(cpu_ms "${P[$t]}"); done
  log "idle: leaving ${!P[*]} alone for $IDLE s"
  snooze "$IDLE"
  for t in "${!P[@]}"; do
    p=${P[$t]}
    put "$t" idle_cpu_ms_min "$(awk -v a="${C0[$t]}" -v b="$(cpu_ms "$p")" -v s="$IDLE" 'BEGIN{printf "%.2f", (b-a)*60/s}')"
    put "$t" idle_rss_mb "$(awk '/^VmRSS:/{printf "%.1f", $2/1024}' "/proc/$p/status")"
  done
  for t in "${!P[@]}"; do
    use "$t"
    DPID=${P[$t]}; S=$ROOT/$t-idle; CFG=$ROOT/$t-idle/pueue.yml; BLOCKER=
    [ "$t" = tsp ] && export TS_SOCKET=$ROOT/$t-idle.sock
    "${I}_stop"
  done
}

# -------------------------------------------------------------------- main --
TOOLS=()
wants spoolq && TOOLS+=(spoolq spoolq-nofsync)
for t in pueue nq tsp; do wants "$t" && TOOLS+=("$t"); done
[ ${#TOOLS[@]} -gt 0 ] || die "no tool to measure"
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
START=$(date -u +%Y-%m-%dT%H:%M:%SZ)
T0=$(now_us)
declare -A VER
for t in "${TOOLS[@]}"; do use "$t"; VER[$t]=$("${I}_version"); done
log "peers: ${TOOLS[*]} in $ROOT (load $LOAD0)"
for t in "${TOOLS[@]}"; do
  use "$t"
  w_submit; w_dispatch; w_roundtrip; w_throughput
done
w_idle "${TOOLS[@]}"
LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)

# ------------------------------------------------------------------ report --
PEERS=(); for t in "${TOOLS[@]}"; do case $t in spoolq*) ;; *) PEERS+=("$t") ;; esac; done
# vs TOOL KEY low|high: how many times better TOOL is than the best peer.
vs() {
  local s=${R[$1.$2]:-} best
  best=$(for p in "${PEERS[@]}"; do echo "${R[$p.$2]:-}"; done | grep -E '^[0-9.]+$' | sort -g \
    | if [ "$3" = high ]; then tail -1; else head -1; fi)
  if [[ -n "$best" && "$s" =~ ^[0-9.]+$ ]]; then
    awk -v s="$s" -v b="$best" -v h="$3" 'BEGIN{ if (s<=0||b<=0) {print "-"; exit} printf "%.2f", (h=="high") ? s/b : b/s }'
  else echo "-"; fi
}
row() { # LABEL KEY UNIT [low|high]
  local line="| $1 | $3 |" t
  for t in "${TOOLS[@]}"; do line+=" ${R[$t.$2]:-} |"; done
  if wants spoolq; then
    if [ -n "${4:-}" ] && [ ${#PEERS[@]} -gt 0 ]; then
      line+=" $(vs spoolq "$2" "$4") | $(vs spoolq-nofsync "$2" "$4") |"
    else line+=" | |"; fi
  fi
  echo "$line"
}
echo
echo '```'
echo "benches/peers.sh$([ "$QUICK" = 1 ] && echo ' --quick') at $START, took $(( ($(now_us) - T0) / 1000000 )) s; $(nproc) CPUs, kernel $(uname -r)"
echo "load average at start: $LOAD0; at end: $LOAD1"
echo "versions: $(for t in "${TOOLS[@]}"; do [ "$t" = spoolq-nofsync ] || printf '%s %s; ' "$t" "${VER[$t]}"; done)"
wants spoolq && echo "spoolq serve --max-jobs N ${SPOOLQ_SERVE_ARGS:-}"
echo "N=$N (pueue throughput: $PUEUE_N; tsp held queue: $TSP_MAX); $REPS runs per median; $LAT latency samples (pueue round trip: $PUEUE_RT); idle ${IDLE} s"
echo '```'
echo
hdr="| figure | unit |"; sep="|---|---|"
for t in "${TOOLS[@]}"; do
  case $t in spoolq-nofsync) hdr+=" spoolq --no-fsync |" ;; *) hdr+=" $t |" ;; esac
  sep+="---:|"
done
if wants spoolq; then hdr+=" spoolq vs best peer | --no-fsync vs best peer |"; sep+="---:|---:|"; fi
echo "$hdr"; echo "$sep"
row "submit, bash loop, queue held" submit_ms "ms/req" low
row "dispatch p50 (enqueue -> job runs)" dispatch_p50 ms low
row "dispatch p99" dispatch_p99 ms low
row "round trip p50 (enqueue true, wait)" roundtrip_p50 ms low
row "round trip p99" roundtrip_p99 ms low
row "throughput, 2 at a time" throughput "jobs/s" high
row "jobs in the throughput run" throughput_n jobs
row "memory per queued request (PSS)" queued_kb kB low
row "processes per queued request" queued_procs "" low
row "idle daemon CPU" idle_cpu_ms_min "ms/min" low
row "idle daemon RSS" idle_rss_mb MB low
echo
echo "\"vs best peer\": how many times better than the best of the peers (> 1: spoolq is better)."
echo "nq runs one job at a time per queue directory: 2 at a time uses two directories in turn."
