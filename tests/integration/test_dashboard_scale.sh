#!/usr/bin/env bash
# test_dashboard_scale: the dashboard against a daemon holding 10,000
# finished workers (README, "The dashboard"): over interleaved rounds, the
# page's first render (navigation to the first drawing of the snapshot)
# has a median under 2 s, the workers table keeps only its visible rows in
# the DOM and shows the oldest worker within a frame or two of a scroll to its
# end; and it prints the scheduler's tick p99 (system/telemetry.json) after a
# burst of `true` tasks with the page open against the same burst without it
# (medians: a figure, not a check, as the machine's noise is larger than
# the bound). Prints the figures.
# SCALE_WORKERS, ROUNDS and BURST shrink or grow it.
ORCHFS_TEST_TIMEOUT=170
. "$(dirname "$0")/lib.sh"

chromium_require
N=${SCALE_WORKERS:-10000}

orchfs_start_api --max-workers 64 --web-root "$LIB_DIR/../../contrib/web"

# N finished workers: a plan of N `true` tasks run to its end
t0=$(date +%s.%N)
"$PY" -c "import json, sys; json.dump({'id': 'many', 'title': 'many', 'tasks': [{'id': f'm{i}', 'command': 'true'} for i in range($N)]}, sys.stdout)" \
	>"$T/many.json"
cat "$T/many.json" >"$M/mma/tracks/create"   # cat: 128 KiB writes, which the mount joins
poll 100 grep -qx done "$M/mma/tracks/many/status"
expect_eq "$N tasks run to their end" "$(cat "$M/mma/tracks/many/status")" done
workers=$(jq .total "$M/mma/workers.json")
log "$workers workers in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s"
check "the daemon holds $N finished workers" test "$workers" -ge "$N"

out=$(cd "$LIB_DIR" && HTTP=$HTTP TOKEN=$TOKEN M=$M T=$T ROUNDS=${ROUNDS:-4} BURST=${BURST:-2000} \
	PYTHONPATH=$LIB_DIR timeout 120 "$PY" "$LIB_DIR/dashboard.py" scale 2>"$T/py.err")
rc=$?
relay_checks <<<"$out"
[ "$rc" -eq 0 ] || fail "dashboard.py scale exited $rc" "$(tail -5 "$T/py.err" | tr '\n' ' ')"
finish
