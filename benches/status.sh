#!/usr/bin/env bash
# `owui-agent status` benchmark: round trips against a running daemon that
# runs every check of role `allinone` against real local services, then the
# daemon's RSS and CPU over a quiet minute.
#
#   bash benches/status.sh            # print the results table
#   bash benches/status.sh --write    # ... and write its section of docs/performance.md
#
# Environment:
#   BENCH_N=1000       round trips per measurement
#   BENCH_IDLE_S=60    length of the idle window, seconds
#   BENCH_DIR=         where the scratch directory goes (default: mktemp -d's)
#   BENCH_WRITE=1      same as --write
#   PERF_DOC=          the document --write updates (default docs/performance.md);
#                      only the part between the status-bench markers is replaced
#
# Targets (the issue): status p99 < 50 ms; daemon RSS < 20 MiB; idle CPU
# < 0.5 % of one core.
#
# Method (also written into docs/performance.md):
# - A scratch node root of role `allinone`: one small python3 HTTP server
#   answers Open WebUI /health, /health/db ({"status": true}) and /api/config, Ollama
#   /api/version ({"version": "0.0.0"}), vLLM and llama-server /health (200) and
#   llama-server's /models (no model failed); a real
#   redis-server and a real PostgreSQL (initdb into the scratch directory,
#   unix socket only) on free ports; the role's systemd units in a real
#   systemd booted with systemd-nspawn from the tree the agent's systemd
#   tests cache under /var/tmp (BENCH_NSPAWN_ROOTFS to name another; without
#   one, or without root, the unit checks are left unknown and the results
#   say so); disks = ["/"]; proc/meminfo copied from /proc. Everything else
#   in agent.toml is left at its default (interval_s = 15, timeout_s = 5,
#   audit_interval_s = 300), except metrics_listen, which is moved to a free
#   loopback port so it cannot collide (it stays on).
# - The release binary runs `--root NODE run`; measuring starts after its
#   `agent.ready` event (first pass of every check done), once every service
#   and unit check reports healthy.
# - `status --json`: a python3 loop runs the release binary BENCH_N times
#   (subprocess.run, stdout read from a pipe and checked to come from the
#   daemon) and takes time.perf_counter_ns() around each run: process
#   start-up, config load, socket round trip, JSON parse and print. The same
#   loop over /bin/true gives the cost of the launcher itself, over
#   `owui-agent --version` the cost of starting the binary.
# - Raw socket: the same loop connects to run/owui-agent/agent.sock, sends
#   "status\n" and reads to EOF: the daemon alone, no process start-up.
# - Idle: BENCH_IDLE_S seconds with nothing asking; CPU is the change in
#   utime + stime (/proc/PID/stat, all threads, exited ones included) over the
#   wall time; RSS is VmRSS at the end, VmHWM the peak since start.

set -euo pipefail

# shellcheck source=benches/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_args "$@"

N=${BENCH_N:-1000}
IDLE_S=${BENCH_IDLE_S:-60}
DOC=${PERF_DOC:-$REPO/docs/performance.md}
(( N >= 10 && IDLE_S >= 1 )) || { echo "need BENCH_N >= 10 and BENCH_IDLE_S >= 1" >&2; exit 2; }


for t in python3 redis-server awk; do
    command -v "$t" >/dev/null || die "$t is required"
done

build_release owui-agent
AGENT=$RELEASE/owui-agent
[[ -x $AGENT ]] || die "$AGENT not found"

# --- scratch node and services ---------------------------------------------------

if [[ -n ${BENCH_DIR:-} ]]; then
    mkdir -p "$BENCH_DIR"
    W=$(mktemp -d "$BENCH_DIR/owui-status-bench.XXXXXX")
else
    W=$(mktemp -d -t owui-status-bench.XXXXXX)
fi
# World-traversable, so that PostgreSQL (running as its own user) reaches its
# directory inside; the node root itself stays private to us.
chmod 0755 "$W"
NODE=$W/node
DAEMON_PID= HTTP_PID= REDIS_PID= PG_DATA= PG_USER= NSPAWN_PID= LEADER=

as_pg() {
    if [[ -n $PG_USER ]]; then (cd / && runuser -u "$PG_USER" -- "$@"); else "$@"; fi
}

cleanup() {
    set +e
    stop_pid "$DAEMON_PID"
    if [[ -n $NSPAWN_PID ]] && kill -0 "$NSPAWN_PID" 2>/dev/null; then
        # SIGTERM halts the container; killing its PID 1 ends it at once.
        kill -TERM "$NSPAWN_PID" 2>/dev/null
        for ((i = 0; i < 150; i++)); do kill -0 "$NSPAWN_PID" 2>/dev/null || break; sleep 0.1; done
        [[ -n $LEADER ]] && kill -0 "$NSPAWN_PID" 2>/dev/null && kill -KILL "$LEADER" 2>/dev/null
        stop_pid "$NSPAWN_PID"
    fi
    stop_pid "$HTTP_PID"
    stop_pid "$REDIS_PID"
    [[ -n $PG_DATA && -f $PG_DATA/postmaster.pid ]] &&
        as_pg pg_ctl -D "$PG_DATA" -m immediate -w stop >/dev/null 2>&1
    rm -rf "$W"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_port() { # wait_port PORT WHAT
    local i
    for ((i = 0; i < 200; i++)); do
        python3 -c 'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 0.2).close()' "$1" 2>/dev/null && return 0
        sleep 0.05
    done
    die "$2 did not come up on port $1"
}

mkdir -p "$NODE/etc/owui" "$NODE/proc" "$W/redis"
cp /proc/meminfo "$NODE/proc/meminfo"

log "scratch $W"
HTTP_PORT=$(free_port)
python3 - "$HTTP_PORT" >/dev/null 2>&1 <<'PY' &
import http.server, sys
ANSWERS = {
    "/health": b'{"status": true}',       # Open WebUI (and vLLM: any 2xx)
    "/health/db": b'{"status": true}',    # Open WebUI
    "/api/version": b'{"version": "0.0.0"}',  # Ollama
    "/api/config": b'{"name": "Open WebUI"}',  # Open WebUI, an administrator exists
    "/models": b'{"data": [], "object": "list"}',  # llama-server's router, no model failed
}
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as uvicorn and Ollama do
    def do_GET(self):
        body = ANSWERS.get(self.path)
        self.send_response(200 if body else 404)
        body = body or b'{"detail": "not found"}'
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
HTTP_PID=$!
wait_port "$HTTP_PORT" "the HTTP stand-in"

REDIS_PORT=$(free_port)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$W/redis" >/dev/null 2>&1 &
REDIS_PID=$!
wait_port "$REDIS_PORT" "redis-server"
REDIS_VERSION=$(redis-server --version | awk '{ print $3 }' | sed 's/^v=//')

# PostgreSQL: a real server in the scratch directory, unix socket only.
PG_NOTE=
PG_PORT=$(free_port)
if command -v initdb >/dev/null && command -v pg_ctl >/dev/null; then
    if (( EUID == 0 )); then
        if getent passwd postgres >/dev/null && command -v runuser >/dev/null; then
            PG_USER=postgres
        else
            PG_NOTE="running as root without a postgres user to run the server as"
        fi
    fi
else
    PG_NOTE="initdb/pg_ctl are not installed"
fi
if [[ -z $PG_NOTE ]]; then
    mkdir -p "$W/pg/sock"
    [[ -n $PG_USER ]] && chown -R "$PG_USER" "$W/pg"
    if as_pg initdb -D "$W/pg/data" -U postgres -A trust --no-sync >"$W/initdb.log" 2>&1; then
        PG_DATA=$W/pg/data
        if ! as_pg pg_ctl -D "$PG_DATA" -l "$W/pg/server.log" -w -t 30 \
            -o "-c listen_addresses='' -c unix_socket_directories='$W/pg/sock' -p $PG_PORT -c fsync=off" \
            start >/dev/null 2>&1; then
            PG_NOTE="the server did not start (see its log)"
            cat "$W/pg/server.log" >&2 || true
        fi
    else
        PG_NOTE="initdb failed"
        cat "$W/initdb.log" >&2
    fi
fi
if [[ -z $PG_NOTE ]]; then
    PG_CONNINFO="host=$W/pg/sock port=$PG_PORT user=postgres dbname=postgres"
    PG_DESC="$(postgres --version | awk '{ print $3 }') (initdb into the scratch directory, unix socket only, fsync off)"
else
    # No server: the check connects to a closed port and fails at once.
    PG_CONNINFO="host=127.0.0.1 port=$(free_port) user=postgres dbname=postgres"
    PG_DESC="none ($PG_NOTE): the check connects to a closed loopback port and fails"
    log "no PostgreSQL: $PG_NOTE"
fi

METRICS_PORT=$(free_port)
URL=http://127.0.0.1:$HTTP_PORT
printf 'node = "bench-aio"\nrole = "allinone"\n' >"$NODE/etc/owui/seed.toml"
write_config() { # write_config SYSTEMD_BUS_ADDRESS
    cat >"$NODE/etc/owui/agent.toml" <<EOF
[bundles.podman]
driver = "vfs"
graph_root = "/var/lib/containers/storage"
run_root = "/run/containers/storage"

[health]
open_webui_url = "$URL"
ollama_url = "$URL"
vllm_url = "$URL"
llama_server_url = "$URL"
postgres = "$PG_CONNINFO"
redis = "127.0.0.1:$REDIS_PORT"
disks = ["/"]
systemd_bus = "$1"

[daemon]
metrics_listen = "127.0.0.1:$METRICS_PORT"
EOF
}
SOCK=$NODE/run/owui-agent/agent.sock

# systemd: the role's units (as the agent lists them: a one-shot status with
# no bus) in a real systemd, booted with systemd-nspawn from the tree the
# agent's systemd tests build and cache under /var/tmp.
write_config "unix:path=$W/no-bus"
"$AGENT" --root "$NODE" status --json >"$W/oneshot.json" || true
UNITS=$(python3 -c 'import json, sys
for c in json.load(open(sys.argv[1]))["checks"]:
    if c["kind"] == "systemd":
        print(c["name"].removeprefix("unit:"))' "$W/oneshot.json")
ROOTFS=${BENCH_NSPAWN_ROOTFS:-$(ls -1dt /var/tmp/owui-nspawn-rootfs-* 2>/dev/null | grep -v '\.tmp-' | head -n 1 || true)}
SD_NOTE=
if [[ -z $UNITS ]]; then
    SD_NOTE="the role has no unit checks"
elif (( EUID != 0 )); then
    SD_NOTE="systemd-nspawn needs root"
elif ! command -v systemd-nspawn >/dev/null || ! command -v busctl >/dev/null; then
    SD_NOTE="systemd-nspawn or busctl is not installed"
elif [[ -z $ROOTFS || ! -d $ROOTFS ]]; then
    SD_NOTE="no container tree (the agent's systemd tests build it under /var/tmp; or set BENCH_NSPAWN_ROOTFS)"
fi
sd_state() {
    busctl --address="unix:path=/proc/$LEADER/root/run/dbus/system_bus_socket" \
        get-property org.freedesktop.systemd1 /org/freedesktop/systemd1 \
        org.freedesktop.systemd1.Manager SystemState 2>/dev/null || true
}
if [[ -z $SD_NOTE ]]; then
    mkdir -p "$W/units/multi-user.target.wants"
    for u in $UNITS; do
        printf '[Unit]\nDescription=benchmark stand-in for %s\n[Service]\nExecStart=/bin/sleep infinity\n[Install]\nWantedBy=multi-user.target\n' \
            "$u" >"$W/units/$u"
        ln -s "../$u" "$W/units/multi-user.target.wants/$u"
    done
    log "booting systemd in a container ($ROOTFS) with units: $(echo $UNITS)"
    systemd-nspawn -D "$ROOTFS" -b --register=no --keep-unit --private-network \
        -M "owui-bench-$$" --console=pipe --volatile=overlay \
        "--bind-ro=$W/units:/usr/local/lib/systemd/system" </dev/null >"$W/nspawn.log" 2>&1 &
    NSPAWN_PID=$!
    for ((i = 0; i < 600; i++)); do
        kill -0 "$NSPAWN_PID" 2>/dev/null || break
        if [[ -z $LEADER ]]; then
            for c in $(cat /proc/"$NSPAWN_PID"/task/*/children 2>/dev/null); do
                grep -qE '^NSpid:.*[[:space:]]1$' "/proc/$c/status" 2>/dev/null && LEADER=$c
            done
        fi
        [[ -n $LEADER && $(sd_state) == *'"running"'* ]] && break
        sleep 0.1
    done
    [[ -n $LEADER && $(sd_state) == *'"running"'* ]] ||
        { cat "$W/nspawn.log" >&2; die "the container's systemd did not reach state running within 60 s"; }
    BUS="unix:path=/proc/$LEADER/root/run/dbus/system_bus_socket"
    SD_DESC="systemd $(chroot "$ROOTFS" systemctl --version 2>/dev/null | awk 'NR == 1 { print $2 }') booted with systemd-nspawn (Debian tree $(basename "$ROOTFS")), the role's $(echo $UNITS | wc -w) units as \`ExecStart=/bin/sleep infinity\` services"
else
    BUS="unix:path=$W/no-bus"
    SD_DESC="none ($SD_NOTE): the unit checks find no bus and are unknown"
    log "no systemd: $SD_NOTE"
fi
write_config "$BUS"

# --- the daemon ------------------------------------------------------------------

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
log "starting the daemon (load average $LOAD_START)"
"$AGENT" --root "$NODE" run >"$W/daemon.log" 2>"$W/daemon.err" &
DAEMON_PID=$!
for ((i = 0; ; i++)); do
    grep -q '"agent.ready"' "$W/daemon.log" 2>/dev/null && break
    kill -0 "$DAEMON_PID" 2>/dev/null || { cat "$W/daemon.err" >&2; die "the daemon exited"; }
    (( i < 600 )) || die "no agent.ready event within 60 s"
    sleep 0.1
done
[[ -S $SOCK ]] || die "no socket at $SOCK"

# The first pass decides every state; every service check must be healthy, or
# the node under test is not the one described.
"$AGENT" --root "$NODE" status --json >"$W/status.json" && RC_EXPECT=0 || RC_EXPECT=$?
CHECKS=$(PG_MISSING=${PG_NOTE:+1} SD_MISSING=${SD_NOTE:+1} python3 - "$W/status.json" <<'PY'
import json, os, sys
doc = json.load(open(sys.argv[1]))
skip = {"postgres"} if os.environ.get("PG_MISSING") else set()
if os.environ.get("SD_MISSING"):
    skip.add("systemd")
if not doc["daemon"]["running"]:
    sys.exit("status did not come from the daemon: " + doc["daemon"]["detail"])
bad = [c for c in doc["checks"]
       if c["kind"] in ("http", "redis", "postgres", "systemd") and c["state"] != "healthy"
       and c["kind"] not in skip]
print(", ".join(f'{c["name"]} {c["state"]}' for c in doc["checks"]))
for c in bad:
    print(f'{c["name"]}: {c["state"]}: {c["detail"]}', file=sys.stderr)
sys.exit(3 if bad else 0)
PY
) || die "the node is not set up as intended (status exit $RC_EXPECT): $CHECKS"
DOC_BYTES=$(stat -c %s "$W/status.json")
NCHECKS=$(python3 -c 'import json, sys; print(len(json.load(open(sys.argv[1]))["checks"]))' "$W/status.json")
log "checks: $CHECKS"
log "status --json exits $RC_EXPECT (the overall state); document $DOC_BYTES bytes"

ticks() { awk '{ print $14 + $15 }' "/proc/$DAEMON_PID/stat"; }
kib() { awk -v k="$1:" '$1 == k { print $2 }' "/proc/$DAEMON_PID/status"; }
RSS_READY=$(kib VmRSS)
HZ=$(getconf CLK_TCK)

# --- round trips -----------------------------------------------------------------

# timing.py MODE N ARGS...: prints the N durations in ns, one a line.
cat >"$W/timing.py" <<'PY'
import json, socket, subprocess, sys, time
mode, n = sys.argv[1], int(sys.argv[2])
args = sys.argv[3:]
out = []
if mode == "exec":
    expect = int(args.pop(0))
    check = args[0].endswith("owui-agent") and "status" in args
    for _ in range(n):
        t0 = time.perf_counter_ns()
        r = subprocess.run(args, stdout=subprocess.PIPE)
        out.append(time.perf_counter_ns() - t0)
        if r.returncode != expect:
            sys.exit(f"{args}: exit {r.returncode}, expected {expect}")
        # Without a daemon answering, status would quietly run the checks
        # itself: every answer must say it came from the daemon.
        if check and json.loads(r.stdout)["daemon"]["running"] is not True:
            sys.exit(f"status did not come from the daemon: {r.stdout[:300]!r}")
elif mode == "socket":
    path = args[0]
    size = None
    for _ in range(n):
        t0 = time.perf_counter_ns()
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(path)
        s.sendall(b"status\n")
        chunks = []
        while True:
            b = s.recv(65536)
            if not b:
                break
            chunks.append(b)
        s.close()
        out.append(time.perf_counter_ns() - t0)
        body = b"".join(chunks)
        if not body.startswith(b'{"schema"'):
            sys.exit(f"socket answered {body[:200]!r}")
        size = len(body)
    print(f"# {size}", file=sys.stderr)
print("\n".join(map(str, out)))
PY

# stats FILE: p50 p99 max mean in ms (nearest-rank percentiles)
stats() {
    sort -n "$1" | awk '{ v[NR] = $1; s += $1 }
        END {
            p50 = v[int(NR * 0.50 + 0.999999)]; p99 = v[int(NR * 0.99 + 0.999999)]
            printf "%.2f %.2f %.2f %.2f\n", p50 / 1e6, p99 / 1e6, v[NR] / 1e6, s / NR / 1e6
        }'
}

log "warm-up: 20 status runs"
python3 "$W/timing.py" exec 20 "$RC_EXPECT" "$AGENT" --root "$NODE" status --json >/dev/null

log "status --json x $N"
T0=$(ticks)
python3 "$W/timing.py" exec "$N" "$RC_EXPECT" "$AGENT" --root "$NODE" status --json >"$W/t_status"
T1=$(ticks)
read -r S_P50 S_P99 S_MAX S_MEAN <<<"$(stats "$W/t_status")"

log "raw socket x $N"
python3 "$W/timing.py" socket "$N" "$SOCK" >"$W/t_socket" 2>"$W/socket.err"
T2=$(ticks)
read -r K_P50 K_P99 K_MAX K_MEAN <<<"$(stats "$W/t_socket")"
SOCK_BYTES=$(sed -n 's/^# //p' "$W/socket.err")

log "launcher baseline: /bin/true x $N"
python3 "$W/timing.py" exec "$N" 0 /bin/true >"$W/t_true"
read -r B_P50 B_P99 B_MAX B_MEAN <<<"$(stats "$W/t_true")"

log "start-up baseline: owui-agent --version x $N"
python3 "$W/timing.py" exec "$N" 0 "$AGENT" --version >"$W/t_version"
read -r U_P50 U_P99 U_MAX U_MEAN <<<"$(stats "$W/t_version")"

# Daemon CPU per answered request, from the two round-trip phases (the
# checks' own runs in those seconds are included: an upper bound).
CPU_PER_REQ=$(awk -v t="$(( T2 - T0 ))" -v hz="$HZ" -v n="$N" \
    'BEGIN { printf "%.2f", t / hz * 1000 / (2 * n) }')

# --- idle --------------------------------------------------------------------------

log "idle for $IDLE_S s"
I0=$(ticks)
W0=$(date +%s%N)
sleep "$IDLE_S"
I1=$(ticks)
W1=$(date +%s%N)
kill -0 "$DAEMON_PID" 2>/dev/null || die "the daemon died"
IDLE_CPU=$(awk -v t="$(( I1 - I0 ))" -v hz="$HZ" -v w="$(( W1 - W0 ))" \
    'BEGIN { printf "%.3f", 100 * (t / hz) / (w / 1e9) }')
IDLE_TICKS=$(( I1 - I0 ))
RSS_END=$(kib VmRSS)
HWM=$(kib VmHWM)
THREADS=$(kib Threads)
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
"$AGENT" --root "$NODE" status --json >"$W/status-end.json" || true
CHECKS_END=$(python3 - "$W/status-end.json" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
assert doc["daemon"]["running"], doc["daemon"]
print(", ".join(f'{c["name"]} {c["state"]}' for c in doc["checks"]))
PY
)
HARDENING_STATE=$(python3 -c 'import json, sys
print(next(c["state"] for c in json.load(open(sys.argv[1]))["checks"] if c["name"] == "hardening"))' "$W/status-end.json")
HARDENING_DETAIL=$(python3 -c 'import json, sys
c = next(c for c in json.load(open(sys.argv[1]))["checks"] if c["name"] == "hardening")
print(c["detail"] or c["last_error"] or "")' "$W/status-end.json")

# --- results -----------------------------------------------------------------------

mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
lt() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a < b) }' && echo PASS || echo MISS; }
V_P99=$(lt "$S_P99" 50)
V_RSS=$(lt "$RSS_END" 20480)
V_CPU=$(lt "$IDLE_CPU" 0.5)

CMD="bash benches/status.sh --write"
[[ $IDLE_S != 60 ]] && CMD="BENCH_IDLE_S=$IDLE_S $CMD"
[[ $N != 1000 ]] && CMD="BENCH_N=$N $CMD"

table() {
    cat <<EOF
| Measurement | Value | Target | Result |
|---|---|---|---|
| \`status --json\` round trip, p50 | $S_P50 ms | — | — |
| \`status --json\` round trip, p99 | $S_P99 ms | < 50 ms | $V_P99 |
| \`status --json\` round trip, max / mean | $S_MAX / $S_MEAN ms | — | — |
| raw socket round trip (daemon only), p50 / p99 / max | $K_P50 / $K_P99 / $K_MAX ms | (diagnostic) | — |
| launcher baseline (\`/bin/true\`), p50 / p99 | $B_P50 / $B_P99 ms | (diagnostic) | — |
| start-up baseline (\`owui-agent --version\`), p50 / p99 | $U_P50 / $U_P99 ms | (diagnostic) | — |
| daemon CPU per request (upper bound) | $CPU_PER_REQ ms | (diagnostic) | — |
| daemon RSS (VmRSS) after $IDLE_S s idle | $(mib "$RSS_END") MiB | < 20 MiB | $V_RSS |
| daemon peak RSS (VmHWM) since start | $(mib "$HWM") MiB | (information) | — |
| daemon CPU over $IDLE_S s idle | $IDLE_CPU % of one core ($IDLE_TICKS ticks of 1/$HZ s) | < 0.5 % | $V_CPU |
EOF
}

echo
echo "N = $N round trips each; status document $DOC_BYTES bytes (socket answer $SOCK_BYTES bytes)."
echo
table
echo
echo "checks at the end: $CHECKS_END"


if [[ $WRITE == 1 ]]; then
    CPU=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
    MEM=$(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
    MISSES=()
    for v in "status p99 < 50 ms:$V_P99" "RSS < 20 MiB:$V_RSS" "idle CPU < 0.5 %:$V_CPU"; do
        [[ ${v##*:} == MISS ]] && MISSES+=("${v%:*}")
    done
    if (( ${#MISSES[@]} )); then
        VERDICT="**Missed in this run:** $(IFS=';'; echo "${MISSES[*]}" | sed 's/;/; /g')."
    else
        VERDICT="Every target was met in this run."
    fi
    LOADNOTE=
    if awk -v l="${LOAD_START%% *}" 'BEGIN { exit !(l > 1) }'; then
        LOADNOTE="
- The machine was busy when the run started (load average $LOAD_START on $(nproc) cores): other work shows in the tail of the round trips (p99, max) first."
    fi
    cat >"$W/section.md" <<EOF
<!-- status-bench:begin -->
## \`owui-agent status\` and the daemon

\`owui-agent status --json\` against a running daemon that runs every check of
role \`allinone\` against real local services, then the daemon at rest for
$IDLE_S s, measured in one run of:

\`\`\`sh
$CMD
\`\`\`

### Machine

- Date: $(date -u '+%Y-%m-%d %H:%M UTC')
- CPU: $CPU, $(nproc) cores online; memory $MEM
- Kernel: $(uname -sr)
- Binary: \`cargo build --release -p owui-agent\` at commit $(cd "$REPO" && git rev-parse --short HEAD)$(cd "$REPO" && git diff --quiet HEAD -- agent bundle Cargo.toml Cargo.lock || echo ' (with uncommitted changes)')
- Services: Python $(python3 -c 'import platform; print(platform.python_version())') \`http.server\` for Open WebUI, Ollama and vLLM; redis-server $REDIS_VERSION; PostgreSQL: $PG_DESC; systemd: $SD_DESC
- Load average at start / end: $LOAD_START / $LOAD_END

### Results

N = $N round trips per row; the status document is $DOC_BYTES bytes.

$(table)

Check states at the end: $CHECKS_END.
\`hardening\` is $HARDENING_STATE on the scratch root: $HARDENING_DETAIL.

### Method

- The node root has role \`allinone\`, so every check of the catalog runs ($NCHECKS in
  all): \`open-webui\`, \`open-webui-db\`, \`ollama\`, \`vllm\` (HTTP, one python3
  \`http.server\` answering \`{"status": true}\` / \`{"version": "0.0.0"}\` / 200 with
  keep-alive), \`redis\` (a real redis-server), \`postgresql\` and the \`unit:*\` checks
  (see Services), \`disk:/\`, \`memory\` (a copy of /proc/meminfo) and \`hardening\`.
  agent.toml sets only those endpoints, \`systemd_bus\` and \`disks = ["/"]\`; the
  daemon runs with its defaults otherwise: \`interval_s = 15\`, \`timeout_s = 5\`,
  \`audit_interval_s = 300\`, Prometheus metrics on (moved to a free loopback port).
  It is not started by systemd itself (no NOTIFY_SOCKET), so its STATUS= line is
  computed every 10 s and sent nowhere.
- Measuring starts after the daemon's \`agent.ready\` event, once every service and
  unit check reports healthy; 20 unmeasured runs warm the page cache first.
- \`status --json\`: a python3 loop runs the release binary $N times with
  \`subprocess.run\` and takes \`time.perf_counter_ns()\` around each run. stdout goes
  to a pipe (the $DOC_BYTES bytes fit its buffer) and every answer is parsed and must say
  \`"daemon": {"running": true}\` (without a daemon, \`status\` quietly runs the checks
  itself), and every run must exit with the code of the overall state
  seen before. This is what an operator waits for: process start-up, config
  load, the socket round trip, JSON parse and print. The same loop over \`/bin/true\`
  (launcher baseline) is what the loop itself costs; over \`owui-agent --version\`
  (start-up baseline), what starting the binary costs before it reads any file.
- Raw socket: connect to \`run/owui-agent/agent.sock\`, send \`status\\n\`, read to EOF,
  $N times: the daemon alone (accept, \`spawn_blocking\` document assembly, which reads
  the bundle generations from disk, JSON encoding).
- Percentiles are nearest-rank over the $N samples.
- Daemon CPU per request: utime + stime of the daemon across both round-trip phases
  divided by the $((2 * N)) requests; check runs in those seconds are included.
- Idle: $IDLE_S s with nothing asking. CPU = change in utime + stime
  (\`/proc/PID/stat\`, which includes threads that have exited) over the wall time;
  every check runs once per 15 s in that time. RSS: \`VmRSS\` from
  \`/proc/PID/status\` at the end; \`VmHWM\` is the peak since the daemon started,
  including the round trips. The daemon had $THREADS threads; VmRSS was
  $(mib "$RSS_READY") MiB right after \`agent.ready\`.

### Notes

- $VERDICT$LOADNOTE
<!-- status-bench:end -->
EOF
    replace_section "$DOC" '<!-- status-bench:begin -->' '<!-- status-bench:end -->' "$W/section.md"
    log "wrote $DOC"
fi
