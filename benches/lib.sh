# Shared by the benchmark scripts (sourced, not run).

# The repository the sourcing script belongs to.
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

die() { printf 'bench: %s\n' "$*" >&2; exit 1; }
log() { printf '[bench] %s\n' "$*" >&2; }

# bench_args "$@": the arguments every benchmark takes. --write (or
# BENCH_WRITE=1) sets WRITE=1; --help prints the script's header comment.
bench_args() {
    WRITE=${BENCH_WRITE:-0}
    local arg
    for arg in "$@"; do
        case $arg in
            --write) WRITE=1 ;;
            -h | --help)
                sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
                exit 0
                ;;
            *)
                echo "unknown argument: $arg (try --help)" >&2
                exit 2
                ;;
        esac
    done
}

# build_release CRATE...: builds the crates' release binaries and sets
# RELEASE to the directory that holds them (the workspace's target dir).
build_release() {
    local args=() crate
    for crate in "$@"; do args+=(-p "$crate"); done
    log "building release binaries: $*"
    (cd "$REPO" && cargo build --release --quiet "${args[@]}")
    RELEASE=$(cd "$REPO" && cargo metadata --format-version 1 --no-deps |
        sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')/release
}

# replace_section DOC BEGIN END SECTION_FILE: the lines from BEGIN to END
# (inclusive) become SECTION_FILE (which carries the markers); appended when
# the markers are absent; the document is created with a header when absent.
# Everything else in DOC (other benchmarks' sections) is kept as it is.
replace_section() {
    local doc=$1 begin=$2 end=$3 section=$4 nb ne
    if [[ ! -f $doc ]]; then
        mkdir -p "$(dirname "$doc")"
        printf '# Performance\n' >"$doc"
    fi
    nb=$(grep -cxF -- "$begin" "$doc" || true)
    ne=$(grep -cxF -- "$end" "$doc" || true)
    if (( nb == 0 && ne == 0 )); then
        { printf '\n'; cat "$section"; } >>"$doc"
        return
    fi
    (( nb == 1 && ne == 1 )) || die "$doc: expected one $begin and one $end line"
    awk -v b="$begin" -v e="$end" -v f="$section" '
        $0 == b { while ((getline l < f) > 0) print l; skip = 1; next }
        $0 == e { if (!skip) { bad = 1 } skip = 0; next }
        !skip { print }
        END { exit bad }' "$doc" >"$doc.tmp.$$" || { rm -f "$doc.tmp.$$"; die "$doc: $end before $begin"; }
    mv "$doc.tmp.$$" "$doc"
}

# stop_pid PID: SIGTERM, wait up to 10 s, then SIGKILL (PID a child of this shell).
stop_pid() {
    local pid=$1 i
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null || true
}

# free_port: a TCP port on 127.0.0.1 that nothing listens on now.
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
