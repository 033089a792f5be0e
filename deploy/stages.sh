# Stage timing for deploy/demo.sh and deploy/test.sh (source it; it defines, runs nothing).
#   stage NAME CMD...      runs CMD in the foreground, records its wall time and bytes received
#   stage_bg NAME CMD...   starts CMD in the background (output in $STAGE_LOGS/NAME.log)
#   stage_wait NAME        waits for it; on failure prints its log's tail and exits
#   stages_report          prints the table (also at exit, so a failed setup still shows where)
# Bytes received are read from /proc/net/dev (all interfaces but loopback): exact for stages run
# alone, shared between stages that overlap.

STAGE_LOGS="${STAGE_LOGS:-$(mktemp -d /tmp/mmsearch-stages.XXXXXX)}"
STAGE_T0=$SECONDS
declare -a STAGE_ROWS=()
declare -A STAGE_PID=() STAGE_START=() STAGE_RX=()

_rx_bytes() { awk -F'[: ]+' 'NR > 2 && $2 != "lo" {s += $3} END {printf "%d", s}' /proc/net/dev; }

_stage_row() { # NAME SECONDS RX_BYTES NOTE
  STAGE_ROWS+=("$(awk -v n="$1" -v s="$2" -v b="$3" -v note="${4:-}" 'BEGIN {printf "%-28s %6ds %6.1f min %9.1f MB  %s", n, s, s / 60, b / 1e6, note}')")
}

stage() {
  local name=$1; shift
  local t=$SECONDS rx; rx=$(_rx_bytes)
  echo "== stage: $name" >&2
  "$@"
  _stage_row "$name" $((SECONDS - t)) $(( $(_rx_bytes) - rx ))
}

stage_bg() {
  local name=$1; shift
  STAGE_START[$name]=$SECONDS; STAGE_RX[$name]=$(_rx_bytes)
  echo "== stage (background, log $STAGE_LOGS/$name.log): $name" >&2
  "$@" > "$STAGE_LOGS/$name.log" 2>&1 &
  STAGE_PID[$name]=$!
}

stage_wait() {
  local name=$1
  if ! wait "${STAGE_PID[$name]}"; then
    echo "stage $name failed; the end of $STAGE_LOGS/$name.log:" >&2
    tail -40 "$STAGE_LOGS/$name.log" >&2
    exit 1
  fi
  _stage_row "$name" $((SECONDS - STAGE_START[$name])) $(( $(_rx_bytes) - STAGE_RX[$name] )) "(overlapped)"
}

stages_report() {
  [ ${#STAGE_ROWS[@]} -eq 0 ] && return 0
  {
    echo
    echo "== timing ($(nproc) cores; load now $(cut -d' ' -f1-3 /proc/loadavg))"
    printf '%s\n' "${STAGE_ROWS[@]}"
    awk -v s=$((SECONDS - STAGE_T0)) 'BEGIN {printf "%-28s %6ds %6.1f min\n", "total (wall)", s, s / 60}'
  } >&2
  STAGE_ROWS=()
}
