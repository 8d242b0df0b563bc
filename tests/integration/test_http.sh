#!/usr/bin/env bash
# test_http: the namespace over HTTP (README, "Control grammar" and "Remote") with curl and jq.
# Every read route of the seed (/api/mma/workers, /api/state, /api/gui/state,
# /api/mma/workers/ID, ..., a directory listing) and every control route
# (POST spawn, kill, pause, resume, inject, mutate, create, usage, budget),
# each checked on the mount too; every status of the error table and 401,
# 403 (Host), 405, 411, 413 and 404, each body the error object with its
# status and path, and the same object in last_error for failed writes;
# ?token=; GET /api/P and the mount's P are the same bytes while nothing
# changes; Server-Sent Events (id: is the seq, no gap, no duplicate,
# Last-Event-ID resumes, channels filter, since=abc is 400, a heartbeat
# comes after ~10 s of silence, a closed stream is let go); --no-auth is
# refused on a non-loopback address and serves without a token on loopback;
# the token file (0600, 64 hex digits) and --token-file; --max-body refuses
# a body before reading it; requests kept alive and pipelined on one
# connection, and a 30 MB log read slowly arriving whole while other clients
# are answered (http_streams.py).
. "$(dirname "$0")/lib.sh"

command -v curl >/dev/null || _skip_or_fail "curl is missing"
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3

orchfs_start_api --max-workers 2
cd "$M" || exit 1

# --- helpers ---
# req METHOD PATH [BODY] [curl args...]: one request to /api/PATH (PATH may
# carry a query); sets CODE, BODY, CTYPE. The body, when given, is sent from
# a file (so a leading @ is not special), with its Content-Length.
req() {
	local method=$1 path=$2 body=${3-} args=() out
	shift 3 2>/dev/null || shift $#
	if [ "$method" == POST ]; then
		printf '%s' "$body" >"$T/req.body"
		args+=(--data-binary "@$T/req.body")
	else
		args+=(-X "$method")
	fi
	out=$(curl -s --max-time 10 -o "$T/resp.body" -w '%{http_code} %{content_type}' \
		-H "$AUTH" "${args[@]}" "$@" "$HTTP/api/$path")
	CODE=${out%% *}
	CTYPE=${out#* }
	BODY=$(cat "$T/resp.body")
}
get() { req GET "$1" "" "${@:2}"; }
post() { req POST "$1" "$2" "${@:3}"; }
# curl_resp ARGS...: a request made with these curl args (a URL among them);
# sets CODE, BODY and CTYPE from what came back.
curl_resp() {
	local out
	out=$(curl -s --max-time 10 -o "$T/resp.body" -w '%{http_code} %{content_type}' "$@")
	CODE=${out%% *}
	CTYPE=${out#* }
	BODY=$(cat "$T/resp.body")
}
# curl_code ARGS...: the status of a request made with these curl args.
curl_code() { curl -s --max-time 10 -o "$T/resp.body" -w '%{http_code}' "$@"; }

# error_object_ok DOC STATUS ERRNO PATH: DOC is exactly the error object:
# {"error":{"status","errno","message","path","ts"}} with these values (ERRNO "*"
# for any), a message and the time as events tell it.
error_object_ok() {
	jq -e --argjson s "$2" --arg e "$3" --arg p "$4" '
		(keys == ["error"]) and (.error | keys == ["errno", "message", "path", "status", "ts"]) and
		(.error.ts | test("^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z$")) and
		.error.status == $s and ($e == "*" or .error.errno == $e) and
		(.error.errno | type == "string" and length > 0) and
		(.error.message | type == "string" and length > 0) and .error.path == $p' \
		<<<"$1" >/dev/null 2>&1
}

# expect_http_error NAME STATUS ERRNO PATH [last_error]: the last response
# (req) was STATUS with the error object for PATH; with "last_error", the
# mount's last_error holds the very same bytes.
expect_http_error() {
	local name=$1 status=$2 errno=$3 path=$4 why=()
	[ "$CODE" == "$status" ] || why+=("HTTP status $CODE, want $status")
	[[ $CTYPE == application/json* ]] || why+=("content type [$CTYPE]")
	error_object_ok "$BODY" "$status" "$errno" "$path" || why+=("body is not the error object ($status $errno $path)")
	if [ "${5:-}" == last_error ] && [ "$(cat last_error)" != "$BODY" ]; then
		why+=("last_error differs: $(cat last_error)")
	fi
	if [ ${#why[@]} -eq 0 ]; then
		pass "$name ($status $(jq -r .error.errno <<<"$BODY"): $(jq -r .error.message <<<"$BODY"))"
		return 0
	fi
	fail "$name" "$(
		IFS=';'
		echo "${why[*]}"
	); body: ${BODY:0:300}"
}

# expect_ok NAME JQ_FILTER: the last response was 200 with a JSON body for
# which JQ_FILTER is true.
expect_ok() {
	if [ "$CODE" == 200 ] && jqe "$2" <<<"$BODY"; then
		pass "$1"
		return 0
	fi
	fail "$1" "HTTP $CODE, body: ${BODY:0:300}"
}

state_seq() { jq -r '.seq' state.json; }
w_is() { status_is "mma/workers/$1/status" "$2"; }

# A heartbeat watcher, started first so that its ~10 s of silence overlap the
# rest of the test: a stream of the system channel, which is quiet after
# daemon.started (seq 1), with each line stamped with the time it came.
HB_START=$(date +%s%N)
(curl -s -N --max-time 13 -H "$AUTH" "$HTTP/api/events?channels=system" |
	while IFS= read -r line; do printf '%s %s\n' "$(date +%s%N)" "$line"; done >"$T/heartbeat.out") &
HB_PID=$!

# --- the token file: made at first start, mode 0600, 64 hex digits ---
check "the token file is made in the state directory" test -f "$S/token"
expect_eq "the token file's mode is 0600" "$(stat -c %a "$S/token")" 600
check "the token is 64 hex digits and a newline" \
	eval '[ "$(wc -c <"$S/token")" -eq 65 ] && grep -Eqx "[0-9a-f]{64}" "$S/token"'

# ==== controls: each POST has its effect on the mount ====
post mma/workers/spawn 'sleep 30'
expect_ok "POST spawn (a command line) returns the worker" '.id | type == "number"'
W1=$(jq -r .id <<<"$BODY")
check "spawn: the worker runs, on the mount" w_is "$W1" running
[[ $CTYPE == application/json* ]] && pass "a result is application/json" || fail "a result is application/json" "$CTYPE"

post mma/workers/spawn '{"command":"echo out-of-$ORCHFS_WORKER_ID; exit 3","model":"m1"}'
expect_ok "POST spawn (JSON) returns the worker" '.id | type == "number"'
W2=$(jq -r .id <<<"$BODY")
wait_for "spawn (JSON): the worker fails with code 3, on the mount" 5 w_is "$W2" failed
check "its info.json has exit_code 3 and model m1" jqe '.exit_code == 3 and .model == "m1"' "mma/workers/$W2/info.json"

post mma/workers/kill "$W1"
expect_ok "POST kill returns the worker" ".id == $W1"
wait_for "kill: the worker is killed, on the mount" 5 w_is "$W1" killed

post mma/pipeline/pause ''
expect_ok "POST pause (an empty body, Content-Length: 0) returns the pipeline" '.status == "paused"'
expect_eq "pause: the mount's pipeline/status" "$(cat mma/pipeline/status)" paused
post mma/pipeline/pause 'freeze'
expect_ok "POST pause 'freeze' freezes" '.status == "frozen"'
expect_eq "freeze: the mount's pipeline/status" "$(cat mma/pipeline/status)" frozen
post mma/pipeline/resume 'go'
expect_ok "POST resume returns the pipeline" '.status == "running"'
expect_eq "resume: the mount's pipeline/status" "$(cat mma/pipeline/status)" running
post mma/pipeline/pause 'pause'
expect_eq "paused again (for the plan)" "$(cat mma/pipeline/status)" paused

post mma/tracks/create '{"id":"ht","title":"HTTP track","budget_usd":5,"tasks":[{"id":"h1","command":"true"},{"id":"h2","command":"true","deps":["h1"]}]}'
expect_ok "POST tracks/create returns the track" '.id == "ht" and .task_count == 2'
check "create: the track is on the mount" jqe '.id == "ht" and .title == "HTTP track"' mma/tracks/ht/info.json
expect_eq "create: tasks/h2/deps on the mount" "$(cat mma/tasks/h2/deps)" h1

post mma/dag/mutate 'hold h2'
expect_ok "POST dag/mutate (line form) applies" '.applied == 1'
expect_eq "mutate: h2 is held, on the mount" "$(cat mma/tasks/h2/status)" held
post mma/dag/mutate '[{"op":"release","task":"h2"},{"op":"add_task","track":"ht","task":{"id":"h3","command":"true","deps":["h2"]}}]'
expect_ok "POST dag/mutate (a JSON array) applies both" '.applied == 2'
expect_eq "mutate: h2 is released (blocked on h1)" "$(cat mma/tasks/h2/status)" blocked
expect_eq "mutate: h3 was added, depending on h2" "$(cat mma/tasks/h3/deps 2>&1)" h2

post mma/tracks/ht/budget '12.5'
expect_ok "POST tracks/ID/budget returns the track" '.budget_usd == 12.5'
expect_eq "budget: the mount's tracks/ht/budget" "$(cat mma/tracks/ht/budget)" 12.500000

post "mma/workers/$W2/usage" 'model=m1 in=1000 out=2000'
expect_ok "POST workers/ID/usage (line form) returns the totals" '.input_tokens == 1000 and .output_tokens == 2000 and .reports == 1'
post "mma/workers/$W2/usage" '{"model":"m2","input_tokens":1000000,"output_tokens":0}'
expect_ok "POST workers/ID/usage (JSON) adds up" '.input_tokens == 1001000 and .reports == 2'
check "usage: the mount's workers/ID/usage has both reports" \
	jqe '.input_tokens == 1001000 and .output_tokens == 2000 and .models.m1.input_tokens == 1000 and .models.m2.input_tokens == 1000000' "mma/workers/$W2/usage"
# m1: 1000 x 3 + 2000 x 15 = 33000; m2: 1e6 x 0.8 = 800000 micro-USD
check "usage: metrics/financial.json costs 0.833 USD in total" \
	jqe '(.total.cost_usd * 1000000 | round) == 833000' metrics/financial.json

printf '# Notes\nsome context\n' >"$T/notes.md"
post context/inject "$T/notes.md"
expect_ok "POST context/inject returns the entry" '.name == "notes.md" and .kind == "file"'
check "inject: context/files/notes.md on the mount has the file's bytes" cmp -s "$T/notes.md" context/files/notes.md
post context/inject '{"text":"hello there","name":"greet"}'
expect_ok "POST context/inject (JSON text) returns the entry" '.name == "greet" and .kind == "text"'
post context/remove 'greet'
check "POST context/remove: the entry is gone from the mount" eval '[ "$CODE" == 200 ] && [ ! -e context/files/greet ]'

post mma/pipeline/max_workers '3'
expect_eq "POST pipeline/max_workers: the mount reads 3" "$(cat mma/pipeline/max_workers)" 3

post mma/pipeline/resume ''
wait_for "the plan runs to done after resume" 10 status_is mma/tracks/ht/status "done"

# ==== reads: every route of the seed ====
get mma/workers
expect_ok "GET /api/mma/workers is workers.json" ".workers | map(.id) | index($W1) != null and index($W2) != null"
[[ $CTYPE == application/json* ]] && pass "a JSON file is application/json" || fail "a JSON file is application/json" "$CTYPE"
get context/state
expect_ok "GET /api/context/state is context/state.json" '.entries | map(.name) == ["notes.md"]'
get metrics/financial
expect_ok "GET /api/metrics/financial is financial.json" '(.total.cost_usd * 1000000 | round) == 833000'
get system/telemetry
expect_ok "GET /api/system/telemetry is telemetry.json" '(.uptime_s | type == "number") and .http.requests > 0 and (.websocket | type == "object")'
get state
expect_ok "GET /api/state is state.json (with the current seq)" '(.seq | type == "number") and (.tracks | map(.id) == ["ht"]) and (.pipeline.status == "running")'
state_keys=$(jq -c 'keys' <<<"$BODY")
get gui/state
expect_ok "GET /api/gui/state is state.json too" '(.seq | type == "number") and (.tracks | map(.id) == ["ht"])'
expect_eq "/api/gui/state has state.json's keys" "$(jq -c keys <<<"$BODY")" "$state_keys"
get "mma/workers/$W2"
expect_ok "GET /api/mma/workers/ID is its info.json" ".id == $W2 and .status == \"failed\" and .exit_code == 3"
get mma/tracks/ht
expect_ok "GET /api/mma/tracks/ID is its info.json" '.id == "ht" and (.tasks | map(.id) == ["h1", "h2", "h3"])'
get mma/tasks/h3
expect_ok "GET /api/mma/tasks/ID is its info.json" '.id == "h3" and .status == "done" and .deps == ["h2"]'
get mma/pipeline/status
expect_eq "GET /api/mma/pipeline/status is the word and its newline" "$CODE $BODY" "200 running"
expect_eq "... as text/plain" "$(cut -d';' -f1 <<<"$CTYPE")" text/plain
check "... with the newline" eval '[ "$(od -An -c "$T/resp.body" | tr -d " ")" == "running\\n" ]'
get mma/dag
expect_ok "GET /api/mma/dag is dag.json" '(.nodes | length == 3) and (.edges | length == 2)'
get mma/tasks
expect_ok "GET /api/mma/tasks is a directory listing" '.path == "mma/tasks" and (.entries | map(.name) | sort == ["h1", "h2", "h3"]) and (.entries | all(.type == "dir"))'
get ""
expect_ok "GET /api/ lists the root" '.path == "" and (.entries | map(.name) | index("mma") != null and index("state.json") != null)'
get "mma/workers/$W2/log"
expect_eq "GET /api/mma/workers/ID/log is the log" "$CODE $BODY" "200 out-of-$W2"
get mma/tasks/h3/deps
expect_eq "GET /api/mma/tasks/ID/deps" "$CODE $BODY" "200 h2"
get "mma/workers/$W2/status"
expect_eq "GET /api/mma/workers/ID/status" "$CODE $BODY" "200 failed"
get README
check "GET /api/README" eval '[ "$CODE" == 200 ] && cmp -s "$T/resp.body" README'

# ==== ?token= ====
expect_eq "GET ?token= without a header is served" \
	"$(curl_code "$HTTP/api/mma/pipeline/status?token=$TOKEN")" 200
printf 'true' >"$T/req.body"
expect_eq "POST ?token= without a header is served" \
	"$(curl_code --data-binary "@$T/req.body" "$HTTP/api/mma/workers/spawn?token=$TOKEN")" 200
check "... and spawned a worker" jqe '.id | type == "number"' "$T/resp.body"

# ==== the error table, over HTTP, each also in last_error ====
ensure_idle() { poll 5 jqe '.running == 0' mma/workers.json; }
ensure_idle
post mma/pipeline/pause ''
views() {
	cat mma/dag.json mma/tracks.json metrics/financial.json mma/pipeline/status mma/pipeline/max_workers mma/workers.json
	jq -c '.entries' context/state.json
}
before=$(views)
seq_before=$(state_seq)

post mma/workers/spawn '{"command":'
expect_http_error "400 EINVAL: spawn with bad JSON" 400 EINVAL mma/workers/spawn last_error
post mma/dag/mutate 'frobnicate h1'
expect_http_error "400 EINVAL: an unknown DAG operation" 400 EINVAL mma/dag/mutate last_error
post mma/tracks/ht/budget 'ten'
expect_http_error "400 EINVAL: a budget that is not a number" 400 EINVAL mma/tracks/ht/budget last_error
post mma/workers/kill '999'
expect_http_error "404 ENOENT: kill an unknown worker" 404 ENOENT mma/workers/kill last_error
post mma/dag/mutate 'hold nosuch'
expect_http_error "404 ENOENT: mutate an unknown task" 404 ENOENT mma/dag/mutate last_error
post context/remove 'nosuch'
expect_http_error "404 ENOENT: remove an unknown context entry" 404 ENOENT context/remove last_error
post mma/tracks/create '{"id":"ht","tasks":[]}'
expect_http_error "409 EEXIST: create a track that exists" 409 EEXIST mma/tracks/create last_error
post mma/workers/kill "$W2"
expect_http_error "409 EBUSY: kill a worker that has ended" 409 EBUSY mma/workers/kill last_error
post mma/dag/mutate 'add_dep h1 h3'
expect_http_error "409 ELOOP: a cycle" 409 ELOOP mma/dag/mutate last_error
check "the ELOOP message names the cycle as dag.dot draws it" grep -qF 'h3 -> h1 -> h2 -> h3' <<<"$(jq -r .error.message <<<"$BODY")"
head -c $((1048576 + 1)) /dev/zero | tr '\0' ' ' >"$T/big"
curl_resp -H "$AUTH" -H 'Expect:' --data-binary "@$T/big" "$HTTP/api/mma/dag/mutate"
expect_http_error "413 EFBIG: a body over 1 MiB" 413 EFBIG mma/dag/mutate last_error
if [ "$(id -u)" -eq 0 ]; then
	unreadable=/proc/sys/vm/drop_caches   # write-only, even for root
else
	unreadable=$T/secret.txt
	echo secret >"$unreadable"
	chmod 000 "$unreadable"
fi
post context/inject "$unreadable"
expect_http_error "403 EACCES: inject a file that cannot be read" 403 EACCES context/inject last_error
get mma/workers/999
expect_http_error "404 ENOENT: GET an unknown worker" 404 ENOENT mma/workers/999
get mma/tasks/nosuch/info.json
expect_http_error "404 ENOENT: GET an unknown task's file" 404 ENOENT mma/tasks/nosuch/info.json
get nosuch
expect_http_error "404: an unknown path" 404 ENOENT nosuch
post nosuch/file 'x'
expect_http_error "404: POST to an unknown path" 404 ENOENT nosuch/file
curl_resp -H "$AUTH" "$HTTP/nosuch"
expect_http_error "404: a path outside /api/" 404 ENOENT /nosuch

# --- 405: methods ---
req PUT mma/workers/spawn ''
expect_http_error "405: PUT" 405 ENOTSUP mma/workers/spawn
req DELETE "mma/workers/$W1" ''
expect_http_error "405: DELETE" 405 ENOTSUP "mma/workers/$W1"
get mma/workers/spawn
expect_http_error "405: GET of a control file" 405 EACCES mma/workers/spawn
get mma/dag/mutate
expect_http_error "405: GET of another control file" 405 EACCES mma/dag/mutate
post README 'hello'
expect_http_error "405: POST to a document (README)" 405 EACCES README
post mma/workers.json '{}'
expect_http_error "405: POST to a document (workers.json)" 405 EACCES mma/workers.json

# --- framing: one Content-Length, digits only; no Transfer-Encoding ---
# raw_post HEADERS BODY: a POST to spawn with these extra header lines
# (CRLF-separated), as bytes on a socket; sets CODE, BODY and CTYPE
raw_post() {
	local out
	out=$(timeout 10 "$PY" - "$HTTP_PORT" "$(cat "$S/token")" "$1" "$2" <<'EOF'
import socket, sys
port, tok, extra, body = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
s = socket.create_connection(("127.0.0.1", port), timeout=5)
head = "POST /api/mma/workers/spawn HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nAuthorization: Bearer %s\r\n" % (port, tok)
s.sendall((head + extra.replace("|", "\r\n") + "\r\n\r\n" + body).encode())
data = b""
try:
    while True:
        d = s.recv(65536)
        if not d:
            break
        data += d
        if b"\r\n\r\n" in data and data.rstrip().endswith(b"}"):
            break
except socket.timeout:
    pass
print(data.decode(errors="replace").replace("\r", ""))
EOF
)
	CODE=$(sed -n '1s/^HTTP\/1.1 \([0-9]*\).*/\1/p' <<<"$out")
	CTYPE=$(sed -n 's/^[Cc]ontent-[Tt]ype: *//p' <<<"$out" | head -1)
	BODY=$(sed -n '/^{/,$p' <<<"$out")
}
seq_framing=$(state_seq)
raw_post "Transfer-Encoding: chunked" $'4\r\ntrue\r\n0\r\n\r\n'
expect_http_error "400: a chunked POST (Transfer-Encoding is refused)" 400 EINVAL mma/workers/spawn
raw_post "Content-Length: 4|Transfer-Encoding: chunked" $'4\r\ntrue\r\n0\r\n\r\n'
expect_http_error "400: Content-Length and chunked both (a smuggling shape)" 400 EINVAL mma/workers/spawn
raw_post "Content-Length: -1" "true"
expect_http_error "400: Content-Length: -1" 400 EINVAL mma/workers/spawn
raw_post "Content-Length: +4" "true"
expect_http_error "400: Content-Length: +4" 400 EINVAL mma/workers/spawn
raw_post "X-Nothing: 1" ""
expect_http_error "411: a POST with no Content-Length" 411 EINVAL mma/workers/spawn
expect_eq "no framing refused above started anything" "$(state_seq)" "$seq_framing"
# an h2c upgrade (HTTP/2 in clear) is refused with the error object, not taken
read -r CODE CTYPE < <(curl -s --max-time 10 -o "$T/resp.body" -w '%{http_code} %{content_type}\n' -H "$AUTH" \
	-H 'Connection: Upgrade, HTTP2-Settings' -H 'Upgrade: h2c' -H 'HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA' \
	"$HTTP/api/mma/pipeline/status")
BODY=$(cat "$T/resp.body")
expect_http_error "400: an h2c upgrade is refused" 400 EINVAL ""

# --- 401: the token ---
auth_err() { # NAME CURL_ARGS... -> 401 with the error object for "state"
	local name=$1
	shift
	curl_resp "$@"
	expect_http_error "$name" 401 EACCES state
}
auth_err "401: no token" "$HTTP/api/state"
wrong=$(printf '%s' "$TOKEN" | tr '0-9a-f' '1-9a-f0')
auth_err "401: a wrong token of the right length" -H "Authorization: Bearer $wrong" "$HTTP/api/state"
auth_err "401: a token one character short" -H "Authorization: Bearer ${TOKEN:0:63}" "$HTTP/api/state"
auth_err "401: a token one character long" -H "Authorization: Bearer ${TOKEN}0" "$HTTP/api/state"
auth_err "401: a token of another length" -H "Authorization: Bearer abc" "$HTTP/api/state"
auth_err "401: not a bearer token" -H "Authorization: Basic $(printf 'u:%s' "$TOKEN" | base64 -w0)" "$HTTP/api/state"
auth_err "401: a wrong ?token=" "$HTTP/api/state?token=$wrong"
printf 'sleep 30' >"$T/req.body"
curl_resp --data-binary "@$T/req.body" "$HTTP/api/mma/workers/spawn"
expect_http_error "401: a POST without a token" 401 EACCES mma/workers/spawn

# --- 403: a foreign Host ---
curl_resp -H "$AUTH" -H "Host: evil.example:$HTTP_PORT" "$HTTP/api/state"
expect_http_error "403: a foreign Host" 403 EACCES state
curl_resp --data-binary "@$T/req.body" \
	-H "$AUTH" -H "Host: evil.example:$HTTP_PORT" "$HTTP/api/mma/workers/spawn"
expect_http_error "403: a POST with a foreign Host" 403 EACCES mma/workers/spawn
# a name, not an address, that begins like one: DNS rebinding would reach us
for name in 127.0.0.1.evil.example 127.evil.example localhost.evil.example; do
	expect_eq "403: Host $name:PORT is not the listener's own name" \
		"$(curl_code -H "$AUTH" -H "Host: $name:$HTTP_PORT" "$HTTP/api/state")" 403
done
expect_eq "Host: localhost:PORT is the listener's own name" \
	"$(curl_code -H "$AUTH" -H "Host: localhost:$HTTP_PORT" "$HTTP/api/mma/pipeline/status")" 200

after=$(views)
expect_eq "no refused request changed anything" "$after" "$before"
expect_eq "no refused request published an event" "$(state_seq)" "$seq_before"

# --- a worker's own token: it reads, and reports its own usage, only ---
ww=$(spawn "env | grep ^ORCHFS_ > $T/wenv; exec sleep 30")
poll 5 test -s "$T/wenv"
wurl=$(sed -n 's/^ORCHFS_URL=//p' "$T/wenv")
wtok=$(sed -n 's/^ORCHFS_TOKEN=//p' "$T/wenv")
expect_eq "a worker is given ORCHFS_URL" "$wurl" "$HTTP"
check "and ORCHFS_TOKEN, its own (w$ww.…), not the daemon's" eval '[[ "$wtok" == w$ww.* ]]'
check "the daemon's token is nowhere in its environment" eval '! grep -q "$TOKEN" "$T/wenv"'
WAUTH="Authorization: Bearer $wtok"
expect_eq "with it, the worker reads" "$(curl_code -H "$WAUTH" "$HTTP/api/mma/pipeline/status")" 200
expect_eq "... and reports its own usage" \
	"$(curl_code -H "$WAUTH" --data-binary 'model=m1 in=3 out=4' "$HTTP/api/mma/workers/$ww/usage")" 200
check "... which counts" jqe '.input_tokens == 3 and .output_tokens == 4' "mma/workers/$ww/usage"
seq_before=$(jq .seq state.json)
curl_resp -H "$WAUTH" --data-binary true "$HTTP/api/mma/workers/spawn"
expect_eq "it may not spawn: 403" "$CODE" 403
check "... with the error object saying whose token it is" \
	jqe '.error.errno == "EACCES" and (.error.message | test("worker '"$ww"'"))' <<<"$BODY"
expect_eq "nor kill itself" "$(curl_code -H "$WAUTH" --data-binary "$ww" "$HTTP/api/mma/workers/kill")" 403
expect_eq "nor report another worker's usage" \
	"$(curl_code -H "$WAUTH" --data-binary 'model=m1 in=3 out=4' "$HTTP/api/mma/workers/$W2/usage")" 403
expect_eq "the refusals changed nothing" "$(jq .seq state.json)" "$seq_before"
expect_eq "another worker's token is no token" \
	"$(curl_code -H "Authorization: Bearer w$ww.${wtok#*.}0" "$HTTP/api/state")" 401
echo "$ww" >mma/workers/kill
# the example agent reports through the mount, or without it over HTTP
agent=$(cd "$(dirname "$0")/../../contrib/workers" && pwd)/fake-agent.sh
wa=$(spawn "env -u ORCHFS_MOUNT sh $agent far 0 m1 100 10")
wm=$(spawn "sh $agent near 0 m1 7 3")
wait_for "fake-agent.sh without the mount ends" 10 status_is "mma/workers/$wa/status" exited
check "... having reported its usage over HTTP with its own token" \
	jqe '.input_tokens == 100 and .output_tokens == 10' "mma/workers/$wa/usage"
wait_for "fake-agent.sh with the mount ends" 10 status_is "mma/workers/$wm/status" exited
check "... having reported its usage through the mount" \
	jqe '.input_tokens == 7 and .output_tokens == 3' "mma/workers/$wm/usage"

# --- a big log is sent from its file, a piece at a time ---
wbig=$(spawn 'head -c 30000000 /dev/zero | tr "\\0" x')
wait_for "a worker writing a 30 MB log exits" 10 status_is "mma/workers/$wbig/status" exited
rss() { awk '/^VmRSS:/ { print $2 }' "/proc/$DAEMON_PID/status"; }
rss0=$(rss)
curl_resp -H "$AUTH" "$HTTP/api/mma/workers/$wbig/log"
rss1=$(rss)
expect_eq "GET of a 30 MB log: 200, text, its bytes" "$CODE $CTYPE $(wc -c <"$T/resp.body")" \
	"200 text/plain; charset=utf-8 30000000"
check "... the same bytes as the mount's" cmp -s "$T/resp.body" "mma/workers/$wbig/log"
# (under AddressSanitizer freed memory is held in quarantine: no measure there)
if ! grep -q libasan "/proc/$DAEMON_PID/maps"; then
	check "... and the daemon did not hold it: RSS grew $(((rss1 - rss0) / 1024)) MiB (< 8)" \
		test $((rss1 - rss0)) -lt 8192
fi
rm -f "$T/resp.body"

# --- one connection's requests, kept alive and pipelined; the big log read
# slowly (past libwebsockets' 5 s for a transaction) while others are answered
out=$(timeout 60 "$PY" "$LIB_DIR/http_streams.py" "$HTTP_PORT" "$TOKEN" "$M" "$wbig")
rc=$?
while read -r verdict what; do
	check "$what" test "$verdict" == ok
done <<<"$out"
check "http_streams.py ran to its end" test "$rc" -eq 0

# ==== the same bytes on both transports, while nothing changes ====
# The pipeline is paused and every worker has ended.
ensure_idle
seq_before=$(state_seq)
files=(mma/workers.json mma/tracks.json mma/dag.json mma/dag.dot metrics/financial.json
	"mma/workers/$W2/info.json" "mma/workers/$W1/info.json" mma/tracks/ht/info.json
	mma/tasks/h2/info.json mma/pipeline/status mma/pipeline/max_workers context/aggregate
	"context/files/notes.md" mma/tracks/ht/budget "mma/workers/$W2/usage" "mma/workers/$W2/trace"
	mma/tasks/h3/deps README)
for f in "${files[@]}"; do
	curl -s --max-time 10 -H "$AUTH" -o "$T/api.bytes" "$HTTP/api/$f"
	check "GET /api/$f has the mount's bytes" cmp "$T/api.bytes" "$f"
done
declare -A alias=([mma/workers]=mma/workers.json [mma/tracks]=mma/tracks.json [mma/dag]=mma/dag.json
	[metrics/financial]=metrics/financial.json ["mma/workers/$W2"]="mma/workers/$W2/info.json"
	[mma/tracks/ht]=mma/tracks/ht/info.json [mma/tasks/h1]=mma/tasks/h1/info.json)
for a in "${!alias[@]}"; do
	curl -s --max-time 10 -H "$AUTH" -o "$T/api.bytes" "$HTTP/api/$a"
	check "GET /api/$a has the bytes of the mount's ${alias[$a]}" cmp "$T/api.bytes" "${alias[$a]}"
done
expect_eq "nothing changed during the comparison" "$(state_seq)" "$seq_before"

# ==== Server-Sent Events ====
# sse_ids FILE: the id: lines' numbers.
sse_ids() { sed -n 's/^id: //p' "$1" | tr -d '\r'; }
# sse_data_ok FILE: every event is id: N then data: {"seq":N,...}.
sse_data_ok() {
	awk '/^id: / { id = $2; next } /^data: / { if (id == "") exit 1; print id, substr($0, 7); id = "" }' "$1" |
		while read -r id json; do
			[ "$(jq -r .seq <<<"$json")" == "$id" ] || exit 1
		done
}
sse() { curl -s -N --max-time "$2" -H "$AUTH" "${@:3}" "$HTTP/api/events$1"; }
S0=$(state_seq)
sse '?since=0' 1.5 >"$T/all.sse"
expect_eq "since=0 replays every event: id: 1..seq, in order" "$(sse_ids "$T/all.sse" | tr '\n' ' ')" "$(seq 1 "$S0" | tr '\n' ' ')"
check "each data: line is the event whose seq is the id" sse_data_ok "$T/all.sse"
check "the stream is text/event-stream" \
	eval 'curl -s -N --max-time 1 -o /dev/null -w "%{content_type}" -H "$AUTH" "$HTTP/api/events" | grep -q "^text/event-stream"'
want=$(sed -n 's/^data: //p' "$T/all.sse" | jq -r 'select(.channel == "dag" or .channel == "pipeline") | .seq' | tr '\n' ' ')
sse '?since=0&channels=dag,pipeline' 1 >"$T/dag.sse"
expect_eq "channels=dag,pipeline: only those, all of them" "$(sse_ids "$T/dag.sse" | tr '\n' ' ')" "$want"
check "channels=dag,pipeline: every event is of those channels" \
	eval 'sed -n "s/^data: //p" "$T/dag.sse" | jq -se "length > 0 and all(.channel == \"dag\" or .channel == \"pipeline\")" >/dev/null'
K=$((S0 - 7))
sse '' 1 -H "Last-Event-ID: $K" >"$T/resume.sse"
expect_eq "Last-Event-ID: K resumes at K+1" "$(sse_ids "$T/resume.sse" | tr '\n' ' ')" "$(seq $((K + 1)) "$S0" | tr '\n' ' ')"
sse "?since=$K&token=$TOKEN" 1 >"$T/tok.sse"
expect_eq "?token= works for the stream" "$(sse_ids "$T/tok.sse" | tr '\n' ' ')" "$(seq $((K + 1)) "$S0" | tr '\n' ' ')"

# live: a stream from now, then a burst of events through the mount
S1=$(state_seq)
curl -s -N --max-time 10 -H "$AUTH" "$HTTP/api/events?since=$S1" >"$T/live.sse" &
LIVE=$!
post mma/pipeline/resume ''
for i in 1 2 3 4 5 6; do spawn "echo $i" >/dev/null; done
post mma/dag/mutate '{"op":"add_task","track":"ht","task":{"id":"h4","command":"true"}}'
poll 5 jqe '.running == 0' mma/workers.json
poll 5 status_is mma/tasks/h4/status "done"
S2=$(state_seq)
wait_for "the live stream reaches the last seq ($S2)" 5 grep -qx "id: $S2" "$T/live.sse"
kill "$LIVE" 2>/dev/null
wait "$LIVE" 2>/dev/null
expect_eq "the live stream: id: S+1..S' with no gap and no duplicate" \
	"$(sse_ids "$T/live.sse" | tr '\n' ' ')" "$(seq $((S1 + 1)) "$S2" | tr '\n' ' ')"
check "the live stream: data matches id" sse_data_ok "$T/live.sse"

curl_resp -H "$AUTH" "$HTTP/api/events?since=abc"
expect_http_error "since=abc is 400" 400 EINVAL events
curl_resp -H "$AUTH" "$HTTP/api/events?since=999999999999"
expect_http_error "a since that has not happened yet is 400, as on the mount" 400 EINVAL events
check "... saying so" grep -q "has not happened yet" "$T/resp.body"
curl_resp -H "$AUTH" "$HTTP/api/events?channels=bogus"
expect_http_error "channels=bogus is 400" 400 EINVAL events
curl_resp -H "$AUTH" -H "Last-Event-ID: x1" "$HTTP/api/events"
expect_http_error "Last-Event-ID: x1 is 400" 400 EINVAL events
curl_resp "$HTTP/api/events"
expect_http_error "the stream wants a token" 401 EACCES events

# a stream whose client went away is let go: no socket left in CLOSE-WAIT
# (a socket left there spins the service thread on its pending FIN)
sse '?since=1' 1 >/dev/null
closewait() { ss -Htn state close-wait "( sport = :$HTTP_PORT )" 2>/dev/null | grep -q .; }
if command -v ss >/dev/null; then
	wait_for "a closed stream's socket is closed by the daemon too" 2 eval '! closewait'
fi

# ==== the heartbeat: a comment after ~10 s of silence ====
wait "$HB_PID" 2>/dev/null
check "the quiet stream sent nothing but comments" \
	eval '! cut -d" " -f2- "$T/heartbeat.out" | grep -v "^\$" | grep -v "^:" | grep -q .'
hb_late=$(awk -v s="$HB_START" '$2 == ":" && ($1 - s) / 1e9 >= 9 { n++ } END { print n + 0 }' "$T/heartbeat.out")
check "a heartbeat comment came after ~10 s of silence" test "$hb_late" -ge 1

# ==== --no-auth, --token-file, --max-body: more daemons ====
M1=$M
cd / || exit 1
# --no-auth is refused on a non-loopback address: non-zero exit, a message
for which in http ws; do
	na=$(mktemp -d /tmp/orchfs-test.XXXXXX)
	_TMPDIRS+=("$na")
	mkdir -p "$na/mnt" "$na/state"
	port=$(free_port)
	if [ $which == http ]; then listen=(--http "0.0.0.0:$port" --ws off); else listen=(--http off --ws "0.0.0.0:$port"); fi
	rc=0
	timeout 10 "$ORCHFS" -f --state-dir "$na/state" "${listen[@]}" --no-auth "$na/mnt" >"$na/out" 2>&1 || rc=$?
	mountpoint -q "$na/mnt" && fusermount3 -uz "$na/mnt"
	check "--no-auth with --$which 0.0.0.0 is refused (exit $rc)" eval '[ $rc -ne 0 ] && [ $rc -ne 124 ]'
	check "... with a message naming --no-auth" grep -q -- '--no-auth' "$na/out"
done

# --no-auth on loopback serves without a token
orchfs_start_api --no-auth
expect_eq "--no-auth on loopback: GET without a token" "$(curl_code "$HTTP/api/mma/pipeline/status")" 200
printf 'true' >"$T/req.body"
expect_eq "--no-auth on loopback: POST without a token" \
	"$(curl_code --data-binary "@$T/req.body" "$HTTP/api/mma/workers/spawn")" 200
check "--no-auth makes no token file" test ! -e "$S/token"
expect_eq "--no-auth still checks Host" \
	"$(curl_code -H "Host: evil.example:$HTTP_PORT" "$HTTP/api/state")" 403

# --token-file: that file's token, no STATE_DIR/token; --max-body 1000
tokdir=$(mktemp -d /tmp/orchfs-test.XXXXXX)
_TMPDIRS+=("$tokdir")
mytoken=0123456789abcdef0123456789abcdef
printf '%s\n' "$mytoken" >"$tokdir/tok"
chmod 600 "$tokdir/tok"
orchfs_start_api --token-file "$tokdir/tok" --max-body 1000
check "--token-file: no token file in the state directory" test ! -e "$S/token"
expect_eq "--token-file: its token is accepted" \
	"$(curl_code -H "Authorization: Bearer $mytoken" "$HTTP/api/mma/pipeline/status")" 200
expect_eq "--token-file: the first daemon's token is not" \
	"$(curl_code -H "Authorization: Bearer $(cat "$(dirname "$M1")/state/token")" "$HTTP/api/mma/pipeline/status")" 401
AUTH="Authorization: Bearer $mytoken"
cd "$M" || exit 1
seq_before=$(state_seq)
head -c 2000 /dev/zero | tr '\0' ' ' >"$T/2000"
curl_resp -H "$AUTH" --data-binary "@$T/2000" "$HTTP/api/mma/dag/mutate"
expect_http_error "--max-body 1000: a body of 2000 bytes is 413" 413 EFBIG mma/dag/mutate last_error
{ printf 'hold nosuch'; head -c 989 /dev/zero | tr '\0' ' '; } >"$T/1000"
curl_resp -H "$AUTH" --data-binary "@$T/1000" "$HTTP/api/mma/dag/mutate"
expect_http_error "--max-body 1000: a body of exactly 1000 bytes is taken (404 for its one op)" 404 ENOENT mma/dag/mutate last_error
# Refused before reading: the headers say 100 MB, no byte of the body is
# sent, and the answer comes anyway.
early=$(timeout 10 "$PY" - "$HTTP_PORT" "$mytoken" <<'EOF'
import socket, sys
port, tok = int(sys.argv[1]), sys.argv[2]
s = socket.create_connection(("127.0.0.1", port), timeout=5)
s.sendall(("POST /api/mma/workers/spawn HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
           "Authorization: Bearer %s\r\nContent-Length: 100000000\r\n\r\n" % (port, tok)).encode())
data = b""
try:
    while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < 10:
        d = s.recv(65536)
        if not d:
            break
        data += d
        if b"}}" in data:
            break
except socket.timeout:
    pass
print(data.decode(errors="replace").replace("\r", ""))
EOF
)
check "a 100 MB Content-Length is answered 413 before the body is sent" grep -q '^HTTP/1.1 413' <<<"$early"
BODY=$(sed -n '/^{/,$p' <<<"$early")
CODE=$(sed -n '1s/^HTTP\/1.1 \([0-9]*\).*/\1/p' <<<"$early")
CTYPE=$(sed -n 's/^[Cc]ontent-[Tt]ype: *//p' <<<"$early" | head -1)
expect_http_error "... with the error object" 413 EFBIG mma/workers/spawn
expect_eq "the refused bodies changed nothing" "$(state_seq)" "$seq_before"

# a --token-file that does not exist yet is made, 0600, 64 hex digits
orchfs_start_api --token-file "$tokdir/new-token"
check "--token-file FILE that does not exist is made" test -f "$tokdir/new-token"
expect_eq "... mode 0600" "$(stat -c %a "$tokdir/new-token")" 600
check "... 64 hex digits" grep -Eqx '[0-9a-f]{64}' "$tokdir/new-token"
expect_eq "... and its token is the one accepted" \
	"$(curl_code -H "Authorization: Bearer $(cat "$tokdir/new-token")" "$HTTP/api/state")" 200

check "the first daemon is still up" kill -0 "${_DAEMONS[0]}"
check "its mount still answers" status_is "$M1/mma/pipeline/status" running

finish
