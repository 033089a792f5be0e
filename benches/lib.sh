# Shared by the benches/run_*.sh scripts (source it; it defines, runs nothing).

# The release profile: the same optimised build the demo and `deploy/test.sh` use, so the
# RocksDB build is shared. Name the packages: the tools are in mmsearch-tools (tools/).
OPT3_BUILD=(build --release)

# One JSON line describing the machine and its load right now.
machine() {
  printf '{"measure":"machine","date":"%s","nproc":%s,"cpu":"%s","mem_total_kb":%s,"rustc":"%s","commit":"%s","load":"%s"}\n' \
    "$(date -u +%FT%TZ)" "$(nproc)" "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)" \
    "$(awk '/MemTotal/ {print $2}' /proc/meminfo)" "$(rustc --version)" "$(git rev-parse --short HEAD)" \
    "$(cut -d' ' -f1-3 /proc/loadavg)"
}

# start_server STDOUT_FILE STDERR_FILE ARGS...: `mmsearch serve ARGS` in the background; sets
# SERVER, stops it on exit, returns once it prints its "listening on" line (10 min at most).
start_server() {
  local out=$1 err=$2; shift 2
  "$BIN/mmsearch" serve "$@" > "$out" 2> "$err" &
  SERVER=$!
  trap 'kill -TERM $SERVER 2>/dev/null || true; wait $SERVER 2>/dev/null || true' EXIT
  for _ in $(seq 1 6000); do
    grep -q "listening on" "$out" && return 0
    kill -0 "$SERVER" 2>/dev/null || { echo "server exited; see $err" >&2; return 1; }
    sleep 0.1
  done
  echo "server did not start listening; see $err" >&2
  return 1
}

# fresh_demo_work: the Vendure demo catalogue ($DEMO) fetched if missing, an empty $WORK/data.
fresh_demo_work() {
  [ -f "$DEMO/catalog.jsonl" ] || python3 deploy/demo/fetch_vendure.py
  rm -rf "$WORK/data"
  mkdir -p "$WORK"
}

# start_demo_server ARGS...: start_server on $WORK/data at $LISTEN (no auth) with ARGS; the first
# call of a run ingests the demo catalogue, later ones (other configs, same data) reuse it.
start_demo_server() {
  start_server "$WORK/serve.out" "$WORK/serve.log" --data-dir "$WORK/data" --listen "$LISTEN" --insecure-no-auth "$@"
  if [ -z "${DEMO_INGESTED:-}" ]; then
    "$BIN/mmsearch" ingest --server "http://$LISTEN" "$DEMO/catalog.jsonl" > /dev/null
    DEMO_INGESTED=1
  fi
}

# stop_server: SIGTERM, wait for the clean exit.
stop_server() {
  kill -TERM "$SERVER"; wait "$SERVER" || true
  trap - EXIT
}
