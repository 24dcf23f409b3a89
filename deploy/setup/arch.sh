# shellcheck shell=bash
# Sourced by deploy/setup-host for --role arch: the busybox-static debs the busybox builder
# unpacks, and a running LXD with a dir pool, an isolated bridge and a default profile on them.

POOL=default
BRIDGE=icefloebr0
CIDR="${ICEFLOE_BRIDGE_CIDR:-198.51.100.1/24}"

busybox_debs() {
    # Debian serves every arch from one mirror; Ubuntu's main archive has amd64+i386 only.
    local deb_arches=(amd64 i386 arm64) a
    if [ "$OS_ID" = ubuntu ]; then
        case "$HOST_ARCH" in
            amd64) deb_arches=(amd64 i386) ;;
            *) deb_arches=("$HOST_ARCH") ;;
        esac
    fi
    local debs="$STATE/debs"
    dry "download busybox-static debs for ${deb_arches[*]} into $debs" && return
    local foreign added=()
    foreign="$(dpkg --print-foreign-architectures)"
    for a in "${deb_arches[@]}"; do
        [ "$a" = "$HOST_ARCH" ] && continue
        grep -qx "$a" <<<"$foreign" || { dpkg --add-architecture "$a"; added+=("$a"); }
    done
    if [ "${#added[@]}" -gt 0 ]; then
        say "added dpkg architectures ${added[*]}"
        APT_UPDATED=0
        apt_update
    fi
    mkdir -p "$debs"
    local got=() have=() failed=()
    for a in "${deb_arches[@]}"; do
        if compgen -G "$debs/busybox-static_*_$a.deb" >/dev/null; then have+=("$a"); continue; fi
        if ! apt-cache show "busybox-static:$a" >/dev/null 2>&1; then apt_update; fi
        # apt warns when root downloads into a directory _apt cannot write; harmless.
        if (cd "$debs" && apt-get download -q "busybox-static:$a") >>"$LOG" 2>&1 \
            && compgen -G "$debs/busybox-static_*_$a.deb" >/dev/null; then
            got+=("$a")
        else
            failed+=("$a")
        fi
    done
    [ "${#have[@]}" -eq 0 ] || say "busybox-static debs already present: ${have[*]}"
    [ "${#got[@]}" -eq 0 ] || say "downloaded busybox-static debs: ${got[*]}"
    for a in "${failed[@]}"; do
        if [ "$a" = "$HOST_ARCH" ] || { [ "$a" = i386 ] && [ "$HOST_ARCH" = amd64 ]; }; then
            die "could not download busybox-static:$a: check apt sources and network (log: $LOG)"
        fi
        say "busybox-static:$a not available here, skipped"
    done
}

lxd_daemon() {
    dry "start the LXD daemon unless it runs" && return
    local unit=lxd
    if systemd_is_init && systemctl list-unit-files snap.lxd.daemon.service >/dev/null 2>&1 \
        && systemctl cat snap.lxd.daemon.service >/dev/null 2>&1; then
        unit=snap.lxd.daemon
    fi
    start_daemon LXD lxd "$unit" lxd waitready
}

lxd_pool() {
    dry "create the LXD storage pool $POOL (dir) unless it exists" && return
    if lxc storage show "$POOL" >/dev/null 2>&1; then
        say "storage pool $POOL: exists"
    else
        run "lxc storage create $POOL dir" lxc storage create "$POOL" dir
        say "storage pool $POOL: created (dir)"
    fi
}

lxd_bridge() {
    dry "create the LXD bridge $BRIDGE ($CIDR; no NAT, no forwarding, no IPv6) unless it exists" && return
    if lxc network show "$BRIDGE" >/dev/null 2>&1; then
        CIDR="$(lxc network get "$BRIDGE" ipv4.address)"
        # Container traffic must never leave this machine: no NAT, no forwarding.
        local kv fixed=()
        for kv in ipv4.nat=false ipv4.routing=false; do
            [ "$(lxc network get "$BRIDGE" "${kv%%=*}")" = false ] && continue
            run "lxc network set $BRIDGE $kv" lxc network set "$BRIDGE" "$kv"
            fixed+=("$kv")
        done
        say "bridge $BRIDGE: exists ($CIDR)${fixed:+, set ${fixed[*]}}"
        return
    fi
    local why
    why="$(cidr_problem "$CIDR")"
    [ -z "$why" ] || die "bridge not created: $why; set ICEFLOE_BRIDGE_CIDR to a free private range, e.g. 10.213.7.1/24"
    run "lxc network create $BRIDGE" lxc network create "$BRIDGE" \
        ipv4.address="$CIDR" ipv4.nat=false ipv4.routing=false ipv6.address=none ipv4.dhcp=true
    say "bridge $BRIDGE: created ($CIDR; no NAT, no forwarding, no IPv6)"
}

lxd_profile() {
    dry "give LXD's default profile a root disk on $POOL and eth0 on $BRIDGE where missing" && return
    local devices net
    devices="$(lxc profile device list default 2>>"$LOG")" || die "cannot read the default profile: is LXD healthy? (log: $LOG)"
    if grep -qx root <<<"$devices"; then
        say "profile default: root disk present"
    else
        run "lxc profile device add default root" \
            lxc profile device add default root disk path=/ pool="$POOL"
        say "profile default: root disk on pool $POOL added"
    fi
    if grep -qx eth0 <<<"$devices"; then
        net="$(lxc profile device get default eth0 network 2>/dev/null || true)"
        say "profile default: eth0 present (network ${net:-?})"
    else
        run "lxc profile device add default eth0" \
            lxc profile device add default eth0 nic name=eth0 network="$BRIDGE"
        say "profile default: eth0 on $BRIDGE added"
    fi
}

lxd_summary() {
    local info
    info="$(lxc query /1.0 2>>"$LOG")" || die "lxc query /1.0 failed: is LXD healthy? (log: $LOG)"
    python3 "$HOSTCHECK" lxd-summary <<<"$info"
}
