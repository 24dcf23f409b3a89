# shellcheck shell=bash
# Sourced by deploy/setup-host for --role dev (deploy/test, deploy/run-local): what only the
# project's own tests use. Incus beside LXD, nginx's own service kept off, the [dev] venv of
# this checkout, the browser tests' npm packages.

INCUS="${ICEFLOE_INCUS:-1}"
INCUS_CIDR="${ICEFLOE_INCUS_CIDR:-198.18.0.1/24}"
INCUS_BRIDGE=icefloeinc0

# Tests start their own nginx; the package's service (port 80) must not run.
nginx_service_off() {
    [[ " ${NEWLY[*]} " == *" nginx "* ]] || return 0
    if [ -d /run/systemd/system ]; then
        run "systemctl disable --now nginx" systemctl disable --now nginx
    else
        invoke-rc.d nginx stop >>"$LOG" 2>&1 || true
    fi
}

# Incus beside LXD (tests/server/test_incus_client.py): incus-base (incusd, containers only) and
# incus-client; the `incus` package would also pull QEMU. Debian 12 has them in
# bookworm-backports, Debian 13 and Ubuntu 24.04 in their own archives. They share liblxc with
# LXD: an install that would upgrade or remove LXD's packages is refused.
incus_packages() {
    [[ "$INCUS" =~ ^[01]$ ]] || die "ICEFLOE_INCUS is 0 or 1, not '$INCUS'"
    if [ "$INCUS" = 0 ]; then
        say "Incus: skipped (ICEFLOE_INCUS=0)"
        return
    fi
    dry "install incus-base incus-client (bookworm-backports on Debian 12) unless installed" && return
    local from=()
    if [ "${VERSION_CODENAME:-}" = bookworm ]; then
        from=(-t bookworm-backports)
        if ! grep -qsE '^[^#]*bookworm-backports' /etc/apt/sources.list \
            /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; then
            cat >/etc/apt/sources.list.d/bookworm-backports.sources <<'EOF'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
            say "apt source bookworm-backports: added (Incus 6.0)"
            APT_UPDATED=0
        fi
    fi
    if installed incus-base && installed incus-client; then
        say "Incus packages: already installed"
        return
    fi
    apt_update
    local candidate plan touched
    candidate="$(apt-cache policy incus-base 2>/dev/null | awk '/Candidate:/ {print $2}')"
    if [ -z "$candidate" ] || [ "$candidate" = "(none)" ]; then
        INCUS=0
        say "Incus: no incus-base package for ${PRETTY_NAME:-this system}; Incus and its tests skipped"
        return
    fi
    plan="$(apt-get -s install "${from[@]}" --no-install-recommends incus-base \
        incus-client 2>>"$LOG")" || die "apt-get cannot install incus-base incus-client (log: $LOG)"
    touched="$(grep -E '^(Inst \S+ \[|Remv )' <<<"$plan" | cut -d' ' -f2 | cut -d: -f1 \
        | grep -xE 'lxd|lxd-client|liblxc1|liblxc-common|lxcfs' | tr '\n' ' ' || true)"
    [ -z "$touched" ] || die "installing Incus would upgrade or remove ${touched}(LXD's); not done"
    run "apt-get install incus-base incus-client" apt-get install -y -q \
        --no-install-recommends "${from[@]}" incus-base incus-client
    say "Incus packages: installed ($(dpkg-query -W -f='${Version}' incus-base))"
}

# Its own daemon (/var/lib/incus), storage pool and bridge: nothing of LXD's is touched.
incus_host() {
    [ "$INCUS" = 1 ] || return 0
    dry "start the Incus daemon unless it runs; pool $POOL (dir), bridge $INCUS_BRIDGE ($INCUS_CIDR; no NAT, no forwarding, no IPv6), default profile on them" && return
    start_daemon Incus incusd incus incus admin waitready
    if incus network show "$INCUS_BRIDGE" >/dev/null 2>&1; then
        INCUS_CIDR="$(incus network get "$INCUS_BRIDGE" ipv4.address)"
    else
        local why
        why="$(cidr_problem "$INCUS_CIDR")"
        [ -z "$why" ] || die "Incus bridge not created: $why; set ICEFLOE_INCUS_CIDR to a free private range"
    fi
    # A preseed creates what is missing and sets what exists to these values.
    run "incus admin init --preseed" incus admin init --preseed <<EOF
storage_pools:
- name: $POOL
  driver: dir
networks:
- name: $INCUS_BRIDGE
  type: bridge
  config:
    ipv4.address: $INCUS_CIDR
    ipv4.nat: "false"
    ipv4.routing: "false"
    ipv6.address: none
profiles:
- name: default
  devices:
    root: {type: disk, path: /, pool: $POOL}
    eth0: {type: nic, name: eth0, network: $INCUS_BRIDGE}
EOF
    say "Incus: pool $POOL (dir), bridge $INCUS_BRIDGE ($INCUS_CIDR; no NAT, no forwarding, no IPv6), default profile on them"
}

# promtool (tests/deploy/test_prometheus_rules.py checks and unit-tests deploy/prometheus/): only
# Debian's `prometheus` package has it. Its daemon must not run here, and with no init system its
# postinst would start it (and fail the install if it did not start): the one apt-get call runs
# with a policy-rc.d that denies every start (the host's own, if any, put back after), and the
# service is then disabled.
prometheus_tools() {
    dry "install prometheus (for promtool) with its daemon neither started nor enabled" && return
    if installed prometheus; then
        say "prometheus (promtool): already installed"
        return
    fi
    local policy=/usr/sbin/policy-rc.d saved="$STATE/policy-rc.d.host" ok=0
    [ ! -e "$policy" ] || cp -p "$policy" "$saved"
    printf '#!/bin/sh\n# deploy/setup-host: no service starts while prometheus installs\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    apt_update
    apt-get install -y -q --no-install-recommends prometheus >>"$LOG" 2>&1 && ok=1
    if [ -e "$saved" ]; then mv -f "$saved" "$policy"; else rm -f "$policy"; fi
    [ "$ok" -eq 1 ] || die "apt-get install prometheus failed: $(grep -E '^E:' "$LOG" | tail -n 1 | cut -c1-200) (full log: $LOG)"
    if systemd_is_init; then
        run "systemctl disable prometheus" systemctl disable prometheus
    else
        run "update-rc.d prometheus disable" update-rc.d prometheus disable
    fi
    say "prometheus (promtool): installed, its daemon not started and disabled"
}

dev_venv() {
    local venv="$REPO/.venv"
    dry "make $venv with requirements.lock and this checkout as -e .[dev]" && return
    local stamp="$venv/.icefloe-deps.sha256" want_sum
    if [ ! -x "$venv/bin/python" ]; then
        run "python3 -m venv $venv" python3 -m venv "$venv"
        say "venv: created $venv"
    fi
    want_sum="$(cat "$REPO/requirements.lock" "$REPO/pyproject.toml" | sha256sum | cut -d' ' -f1)"
    if [ "$(cat "$stamp" 2>/dev/null || true)" = "$want_sum" ]; then
        say "venv: dependencies up to date"
        return
    fi
    say "venv: installing dependencies"
    run "pip install -r requirements.lock" \
        "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$REPO/requirements.lock"
    run "pip install -e .[dev]" \
        "$venv/bin/python" -m pip install -q --disable-pip-version-check --no-deps -e "${REPO}[dev]"
    echo "$want_sum" >"$stamp"
}

browser_test_tools() {
    local web="$REPO/tests/web"
    dry "npm ci in $web (axe-core for the browser tests)" && return
    local stamp="$web/node_modules/.icefloe-lock.sha256" web_sum
    web_sum="$(sha256sum "$web/package-lock.json" | cut -d' ' -f1)"
    if [ "$(cat "$stamp" 2>/dev/null || true)" = "$web_sum" ]; then
        say "browser test tools: up to date"
        return
    fi
    run "npm ci in tests/web" npm ci --prefix "$web" --no-audit --no-fund
    echo "$web_sum" >"$stamp"
    say "browser test tools: axe-core installed in tests/web"
}

incus_summary() {
    [ "$INCUS" = 1 ] || return 0
    printf '; Incus %s, bridge %s' \
        "$(incus version 2>/dev/null | awk '/^Server version:/ {print $3}')" "$INCUS_CIDR"
}
