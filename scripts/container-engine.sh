#!/usr/bin/env bash
# container-engine.sh — provide a local container engine for the testcontainers (Redis) test tier.
#
# Why: these machines have the docker CLI but no Docker engine, and no image registry is reachable, so
# nothing can be pulled. This script installs Debian's podman (+ runc), builds a Redis image locally
# FROM scratch out of the host's redis-server binary and its libraries, and serves podman's
# Docker-compatible API on a unix socket that the docker SDK / testcontainers talk to.
# A real, working Docker engine is never touched: if one answers, the script does nothing.
#
# Usage (as root):
#   eval "$(scripts/container-engine.sh start)"   # provision (idempotent; fast when done) + print exports
#   eval "$(scripts/container-engine.sh env)"     # exports only; non-zero exit if the service is down
#   scripts/container-engine.sh stop              # stop the service this script started (pidfile)
# stdout carries only `export NAME=value` lines; every human message goes to stderr.
#
# Environment knobs: TEST_REDIS_IMAGE (default redis:7), LLM_STARTER_PODMAN_STATE (state dir, default
# /var/lib/llm-starter-podman). Engine settings live in "$STATE_DIR/containers.conf", handed to podman
# through CONTAINERS_CONF, so /etc/containers is left alone.
set -euo pipefail

STATE_DIR="${LLM_STARTER_PODMAN_STATE:-/var/lib/llm-starter-podman}"
CONF="$STATE_DIR/containers.conf"
PIDFILE="$STATE_DIR/podman-service.pid"
LOGFILE="$STATE_DIR/podman-service.log"
SOCK_PATH="/run/podman/podman.sock"
SOCK_URL="unix://$SOCK_PATH"
IMAGE="${TEST_REDIS_IMAGE:-redis:7}"
IMAGE_LABEL="io.llm-starter.built-by=container-engine.sh"

log() { printf 'container-engine: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

pm() { CONTAINERS_CONF="$CONF" podman "$@"; }

# Fully qualified reference, so that a Docker-API client asking for "redis:7" finds it locally
# ("redis:7" -> "docker.io/library/redis:7", "me/img" -> "docker.io/me/img:latest").
normalize_image() {
    local ref="$1" first rest name tag
    [[ "$ref" != *@* ]] || die "digest references are not supported: $ref"
    first="${ref%%/*}"
    if [[ "$ref" == */* && ( "$first" == *.* || "$first" == *:* || "$first" == localhost ) ]]; then
        rest="$ref"                                   # already has a registry host
    elif [[ "$ref" == */* ]]; then
        rest="docker.io/$ref"
    else
        rest="docker.io/library/$ref"
    fi
    name="${rest##*/}"
    if [[ "$name" == *:* ]]; then tag=""; else tag=":latest"; fi
    printf '%s%s\n' "$rest" "$tag"
}

print_exports() {
    printf 'export DOCKER_HOST=%q\n' "$SOCK_URL"
    printf 'export TESTCONTAINERS_RYUK_DISABLED=true\n'
    printf 'export TESTCONTAINERS_CONNECTION_MODE=docker_host\n'
    printf 'export TEST_REDIS_IMAGE=%q\n' "$IMAGE"
}

# Does the podman socket answer the Docker API ping?
service_answers() {
    [[ -S "$SOCK_PATH" ]] || return 1
    if command -v curl >/dev/null 2>&1; then
        [[ "$(curl -s --max-time 3 --unix-socket "$SOCK_PATH" http://d/_ping 2>/dev/null)" == "OK" ]]
    else
        DOCKER_HOST="$SOCK_URL" timeout 5 docker version >/dev/null 2>&1
    fi
}

# A real Docker engine (anything other than our podman socket) that already works: default context/socket,
# or whatever DOCKER_HOST points to.
real_docker_answers() {
    command -v docker >/dev/null 2>&1 || return 1
    if [[ -n "${DOCKER_HOST:-}" && "$DOCKER_HOST" != "$SOCK_URL" ]]; then
        timeout 10 docker info >/dev/null 2>&1 && return 0
    fi
    env -u DOCKER_HOST timeout 10 docker info >/dev/null 2>&1
}

# PID from our pidfile, if that process is still our `podman system service`.
our_service_pid() {
    local pid
    [[ -f "$PIDFILE" ]] || return 1
    pid="$(cat "$PIDFILE" 2>/dev/null || true)"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    [[ -r "/proc/$pid/cmdline" ]] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q 'podman system service' || return 1
    printf '%s\n' "$pid"
}

# Never raise a limit: the sandbox has no CAP_SYS_RESOURCE. Take min(wanted, current soft limit).


ensure_packages() {
    local need=()
    command -v podman >/dev/null 2>&1 || need+=(podman)
    command -v runc >/dev/null 2>&1 || need+=(runc)
    # The real binary is /usr/bin/redis-check-rdb from redis-tools (redis-server is a symlink to it);
    # redis-tools avoids the redis-server package, whose postinst may start a system Redis on port 6379.
    if ! command -v redis-server >/dev/null 2>&1 && ! command -v redis-check-rdb >/dev/null 2>&1; then
        need+=(redis-tools)
    fi
    (( ${#need[@]} == 0 )) && return 0
    command -v apt-get >/dev/null 2>&1 || die "missing ${need[*]} and no apt-get (Debian expected)"
    log "installing ${need[*]} (apt-get update + install)..."
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq "${need[@]}" >&2
}

# "soft:hard" of one limit of process $1, as containers.conf spells it (-1 for unlimited);
# $2 is the row's name in /proc/PID/limits.
process_limit() {
    awk -v name="$2" 'index($0, name) == 1 {
        n = split(substr($0, length(name) + 1), f, " ")
        soft = (f[1] == "unlimited") ? -1 : f[1]; hard = (f[2] == "unlimited") ? -1 : f[2]
        print soft ":" hard
    }' "/proc/$1/limits"
}

# Containers get exactly the limits the engine process holds (podman adjusts its own at start, so
# they are read from it, not from this shell): some sandboxes forbid raising an rlimit (no
# CAP_SYS_RESOURCE), and some, seen here, even refuse runc lowering one in the container's init
# ("error setting rlimit type 7: operation not permitted"). Equal values are the one choice both
# accept. Without a running service, this script's own limits are the first guess.
write_config() {
    local pid="${1:-$$}" nofile nproc tmp
    nofile="$(process_limit "$pid" "Max open files")"
    nproc="$(process_limit "$pid" "Max processes")"
    mkdir -p "$STATE_DIR"
    tmp="$(mktemp "$STATE_DIR/containers.conf.XXXXXX")"
    cat >"$tmp" <<EOF
# Written by scripts/container-engine.sh; used through CONTAINERS_CONF (not /etc/containers).
[containers]
# The limits the engine process holds: neither raised nor lowered (see write_config).
default_ulimits = ["nofile=$nofile", "nproc=$nproc"]
# No journald here.
log_driver = "k8s-file"

[engine]
# crun fails on this host's hybrid cgroup layout; no systemd to manage cgroups.
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
    if [[ -f "$CONF" ]] && cmp -s "$tmp" "$CONF"; then
        rm -f "$tmp"
        return 1                                      # unchanged
    fi
    chmod 644 "$tmp"
    mv -f "$tmp" "$CONF"
    log "wrote $CONF (nofile=$nofile nproc=$nproc)"
    return 0                                          # changed
}

ensure_image() {
    local ref bin ctx lib
    ref="$(normalize_image "$IMAGE")"
    if pm image exists "$ref"; then
        log "image $ref present"
        return 0
    fi
    bin="$(command -v redis-server || command -v redis-check-rdb)"
    bin="$(readlink -f "$bin")"
    log "building $ref FROM scratch from $bin and its libraries..."
    if ldd "$bin" | grep -q 'not found'; then
        die "$bin has unresolved libraries: $(ldd "$bin" | grep 'not found' | tr -s ' \t\n' ' ')"
    fi
    ctx="$(mktemp -d)"
    # shellcheck disable=SC2064
    trap "rm -rf '$ctx'" EXIT
    mkdir -p "$ctx/rootfs/usr/bin" "$ctx/rootfs/data" "$ctx/rootfs/tmp"
    chmod 1777 "$ctx/rootfs/tmp"
    # Copied as redis-server: the binary picks its mode from argv[0] (redis-check-rdb vs redis-server).
    cp -L "$bin" "$ctx/rootfs/usr/bin/redis-server"
    # Every library ldd lists ("name => /path (addr)") plus the dynamic loader ("/lib64/ld-... (addr)").
    while read -r lib; do
        [[ -n "$lib" ]] || continue
        mkdir -p "$ctx/rootfs$(dirname "$lib")"
        cp -L "$lib" "$ctx/rootfs$lib"
    done < <(ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' | sort -u)
    cat >"$ctx/Containerfile" <<'EOF'
FROM scratch
COPY rootfs/ /
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
WORKDIR /data
EXPOSE 6379
CMD ["redis-server", "--bind", "0.0.0.0", "--port", "6379", "--protected-mode", "no", "--save", "", "--appendonly", "no"]
EOF
    pm build --quiet --pull=never --label "$IMAGE_LABEL" -t "$ref" -f "$ctx/Containerfile" "$ctx" >/dev/null
    rm -rf "$ctx"
    trap - EXIT
    log "built $ref"
}

start_service() {
    local pid i
    if service_answers; then
        log "podman service already answers at $SOCK_URL"
        return 0
    fi
    if pid="$(our_service_pid)"; then                 # ours, but not answering: restart it
        log "restarting unresponsive podman service (pid $pid)"
        stop_service
    fi
    rm -f "$PIDFILE"
    mkdir -p "$(dirname "$SOCK_PATH")"
    [[ -S "$SOCK_PATH" ]] && rm -f "$SOCK_PATH"       # stale socket: nothing answered on it
    log "starting podman system service at $SOCK_URL (log: $LOGFILE)"
    # Detached (own session), no tie to our stdout: `eval "$(... start)"` must not wait for it.
    CONTAINERS_CONF="$CONF" setsid podman system service --time=0 "$SOCK_URL" \
        </dev/null >>"$LOGFILE" 2>&1 9>&- &
    pid=$!
    echo "$pid" >"$PIDFILE"
    for ((i = 0; i < 200; i++)); do
        service_answers && { log "podman service up (pid $pid)"; return 0; }
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    tail -n 20 "$LOGFILE" >&2 || true
    die "podman service did not come up at $SOCK_URL"
}

stop_service() {
    local pid i
    if ! pid="$(our_service_pid)"; then
        rm -f "$PIDFILE"
        log "no podman service started by this script is running"
        return 0
    fi
    log "stopping podman service (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "still running after 10 s: SIGKILL $pid"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$PIDFILE"
}

# Serialize start/stop (two concurrent starts must not race for the socket). fd 9 is closed for the service.
lock() {
    mkdir -p "$STATE_DIR"
    exec 9>"$STATE_DIR/lock"
    flock -w 120 9 || die "could not lock $STATE_DIR/lock"
}

cmd_start() {
    if [[ "${DOCKER_HOST:-}" != "$SOCK_URL" ]] && real_docker_answers; then
        log "a Docker engine already answers (DOCKER_HOST=${DOCKER_HOST:-default}): nothing to do, nothing to export"
        return 0
    fi
    [[ "$(id -u)" == 0 ]] || die "run as root (rootful podman serving $SOCK_URL)"
    lock
    ensure_packages
    if write_config "$(our_service_pid || echo $$)" && our_service_pid >/dev/null; then
        log "engine configuration changed: restarting the podman service"
        stop_service
    fi
    ensure_image
    start_service
    if write_config "$(our_service_pid)"; then   # the first guess differed from the engine's own
        log "containers get the engine's own limits: restarting the podman service"
        stop_service
        start_service
    fi
    print_exports
}

cmd_env() {
    service_answers || die "no podman service answers at $SOCK_URL (run: $0 start)"
    print_exports
}

case "${1:-start}" in
    start) cmd_start ;;
    env) cmd_env ;;
    stop) lock; stop_service ;;
    -h | --help | help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//' ;;
    *) die "unknown command '$1' (expected start, env or stop)" ;;
esac
