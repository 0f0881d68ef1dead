# pids.sh -- sourced by start-slurm.sh and stop-slurm.sh (after they set W,
# the cluster's WORKDIR): the one test of "this pid file names a daemon of
# ours", so that neither script signals a process by name or a reused pid.

# pid_alive PIDFILE -> true if the PID in it is a live (non-zombie) process
# whose command line mentions this WORKDIR (guards against PID reuse).
pid_alive() {
    local f=$1 pid
    [ -s "$f" ] || return 1
    pid=$(cat "$f")
    [ -r "/proc/$pid/cmdline" ] || return 1
    [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ] || return 1
    tr '\0' ' ' < "/proc/$pid/cmdline" | grep -qF -- "$W/" || return 1
}
