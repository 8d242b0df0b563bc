#!/usr/bin/env bash
# test_hostile: at least 30 bad inputs to every control file and POST route,
# each through the mount, over HTTP and, when a JSON string can carry it,
# over WebSocket (hostile.py): empty, huge, binary, NUL,
# bytes that are not UTF-8, huge and negative numbers, deep JSON, unknown
# fields, wrong types. Each is refused with the same errno on both, an error
# object that is valid UTF-8 JSON, and last_error equal to it; and nothing
# else changes (the documents are the same before and after).
. "$(dirname "$0")/lib.sh"

orchfs_start_api --max-workers 2
cd "$M" || exit 1

ctl_write mma/tracks/create '{"id":"h","tasks":[{"id":"h1","command":"true"},{"id":"h2","command":"sleep 60","deps":["h1"]}]}'
wait_for "setup: h2 runs" 5 status_is mma/tasks/h2/status running
w=$(jq -r '.worker' mma/tasks/h1/info.json)
printf 'hostile\n' >"$T/note.txt"
ctl_write context/inject "$T/note.txt"
views() {
	cat mma/dag.json mma/tracks.json metrics/financial.json mma/pipeline/status mma/pipeline/max_workers
	jq -c 'del(.workers[].runtime_s)' mma/workers.json
	jq -c '.entries' context/state.json
}
before=$(views)
seq_before=$(jq .seq state.json)

out=$(/usr/bin/python3 "$(dirname "$0")/hostile.py" "$M" "$HTTP" "$WSURL" "$S/token" "$w" h 2>&1)
rc=$?
echo "$out" | tail -40
check "every hostile input is refused alike on every transport, as the error object" test "$rc" -eq 0
fewest=$(sed -n 's/.*(at least \([0-9]*\) each).*/\1/p' <<<"$out")
check "at least 30 inputs a control file ($fewest)" test "${fewest:-0}" -ge 30
expect_eq "nothing changed" "$(views)" "$before"
check "no event was published" jqe --argjson s "$seq_before" '.seq == $s' state.json
check "the daemon is still up" kill -0 "$DAEMON_PID"

finish
