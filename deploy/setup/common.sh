# shellcheck shell=bash
# Sourced by deploy/setup-host: messages, quiet steps into the log, apt, the programs check,
# and the one way a daemon is started. Expects STATE, LOG, DRY and HOSTCHECK to be set.

say() { printf 'setup-host: %s\n' "$*"; }
die() { printf 'setup-host: %s\n' "$*" >&2; exit 1; }

# dry WHAT: with --dry-run say "would WHAT" and succeed (the caller returns), else fail.
dry() { [ "$DRY" -eq 1 ] || return 1; say "would $*"; }

# run STEP CMD...: run quietly into the log; on failure one line with the last error.
run() {
    local step="$1"; shift
    if ! "$@" >>"$LOG" 2>&1; then
        local last
        last="$(grep -E '^(E|Error|ERROR):' "$LOG" | tail -n 1 | cut -c1-200)"
        [ -n "$last" ] || last="$(grep -v '^\s*$' "$LOG" | tail -n 1 | cut -c1-200)"
        die "$step failed: ${last:-no output} (full log: $LOG)"
    fi
}

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

APT_UPDATED=0
apt_update() {
    [ "$APT_UPDATED" -eq 1 ] && return 0
    APT_UPDATED=1
    local try
    for try in 1 2 3; do
        apt-get update -q >>"$LOG" 2>&1 && return 0
    done
    # A mirror mid-sync fails one index now and then; installs may still work.
    say "warning: apt-get update reported errors 3 times, going on: $(grep '^E:' "$LOG" | head -n 1 | cut -c1-160)"
}

# install_packages PKG...: install those not installed yet; sets NEWLY to what it installed.
NEWLY=()
install_packages() {
    local p missing=()
    for p in "$@"; do installed "$p" || missing+=("$p"); done
    dry "install the packages missing of: $* (missing here: ${missing[*]:-none})" && return
    if [ "${#missing[@]}" -eq 0 ]; then
        say "packages: already installed"
        return
    fi
    say "installing ${missing[*]}"
    apt_update
    run "apt-get install ${missing[*]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
    NEWLY=("${missing[@]}")
}

# require_programs PROGRAM=PACKAGE...: a package that installed without its program (or a
# Recommends we skipped) is named here, not later mid-pipeline.
require_programs() {
    local pair absent=()
    dry "check the programs: ${*%%=*}" && return
    for pair in "$@"; do
        command -v "${pair%%=*}" >/dev/null || absent+=("${pair%%=*} (package ${pair#*=})")
    done
    [ "${#absent[@]}" -eq 0 ] || die "installed, yet missing: ${absent[*]}; install those packages and run me again"
    say "programs: all present ($#)"
}

systemd_is_init() { [ "$(cat /proc/1/comm 2>/dev/null)" = systemd ] && [ -d /run/systemd/system ]; }

# start_daemon NAME PROGRAM UNIT READY...: unless `READY --timeout=1` succeeds, start the
# daemon (systemd's UNIT, or without an init system PROGRAM detached from this shell, its log
# and pid in $STATE) and wait until `READY --timeout=60` does.
start_daemon() {
    local name="$1" prog="$2" unit="$3"; shift 3
    if "$@" --timeout=1 >/dev/null 2>&1; then
        say "$name daemon: already running"
        return
    fi
    if systemd_is_init; then
        run "systemctl start $unit" systemctl start "$unit"
        say "$name daemon: started with systemd"
    else
        local pid
        pid="$(cat "$STATE/$prog.pid" 2>/dev/null || true)"
        if [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$prog" ]; then
            say "$name daemon: pid $pid is starting, waiting for it"
        else
            # Detached, so the daemon outlives the script.
            nohup setsid "$prog" --group root --logfile "$STATE/$prog.log" \
                </dev/null >>"$STATE/$prog.out" 2>&1 &
            echo $! >"$STATE/$prog.pid"
            say "$name daemon: started, pid $(cat "$STATE/$prog.pid"), log $STATE/$prog.log"
        fi
    fi
    "$@" --timeout=60 >>"$LOG" 2>&1 \
        || die "$name did not become ready within 60 s: read $STATE/$prog.log and $STATE/$prog.out"
}

# cidr_problem CIDR: nothing when CIDR is free for a new bridge here, else the reason.
cidr_problem() { ip -4 route show | python3 "$HOSTCHECK" cidr "$1"; }
