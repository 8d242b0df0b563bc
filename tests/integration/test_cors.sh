#!/usr/bin/env bash
# test_cors: --allow-origin (README, "Security"): a page of the user's own
# may call the API, with real curl and a real WebSocket client (python3's
# websockets): its preflight gets 204 with the allowed methods and headers,
# its GET and POST answers (errors too) carry Access-Control-Allow-Origin
# and Vary: Origin, its WebSocket upgrade is accepted; its token is still
# asked; any other foreign Origin is refused as before (403, no CORS
# header); and a malformed --allow-origin is refused at the start (exit 2).
. "$(dirname "$0")/lib.sh"

PY=/usr/bin/python3
if ! [ -x "$PY" ] || ! "$PY" -c 'import websockets' 2>/dev/null; then
	_skip_or_fail "no $PY with the websockets module"
fi
command -v curl >/dev/null || _skip_or_fail "curl is missing"

PAGE=http://localhost:3000
orchfs_start_api --allow-origin "$PAGE" --allow-origin https://app.example
cd "$M" || exit 1

# hdr FILE NAME: a header's value in a curl -D dump, "" when absent
hdr() { tr -d '\r' <"$1" | awk -v n="$2" 'tolower($0) ~ "^" tolower(n) ":" { sub(/^[^:]*: */, ""); print; exit }'; }
code() { tr -d '\r' <"$1" | awk 'NR == 1 { print $2 }'; }

curl -s -D "$T/h" -o "$T/b" -X OPTIONS -H "Origin: $PAGE" -H 'Access-Control-Request-Method: POST' \
	-H 'Access-Control-Request-Headers: authorization, content-type' "$HTTP/api/mma/pipeline/pause"
expect_eq "a preflight from the allowed page: 204" "$(code "$T/h")" 204
expect_eq "... naming it in Access-Control-Allow-Origin" "$(hdr "$T/h" access-control-allow-origin)" "$PAGE"
expect_eq "... Allow-Methods" "$(hdr "$T/h" access-control-allow-methods)" "GET, POST"
expect_eq "... Allow-Headers" "$(hdr "$T/h" access-control-allow-headers)" \
	"Authorization, Content-Type, Last-Event-ID"
expect_eq "... Vary: Origin" "$(hdr "$T/h" vary)" Origin
expect_eq "... and no body" "$(wc -c <"$T/b")" 0
curl -s -D "$T/h" -o /dev/null -X OPTIONS -H 'Origin: https://app.example' "$HTTP/api/state"
expect_eq "the second --allow-origin's preflight: 204" "$(code "$T/h")" 204

curl -s -D "$T/h" -o "$T/b" -H "Origin: $PAGE" -H "$AUTH" "$HTTP/api/mma/pipeline/status"
expect_eq "a GET from the allowed page: 200 with the file" "$(code "$T/h") $(cat "$T/b")" "200 running"
expect_eq "... and Access-Control-Allow-Origin" "$(hdr "$T/h" access-control-allow-origin)" "$PAGE"
expect_eq "... and Vary: Origin" "$(hdr "$T/h" vary)" Origin
curl -s -D "$T/h" -o "$T/b" -H "Origin: $PAGE" -H "$AUTH" -H 'Content-Type: text/plain' \
	--data-binary freeze "$HTTP/api/mma/pipeline/pause"
expect_eq "a POST from the allowed page: 200" "$(code "$T/h")" 200
check "... it did pause the pipeline" grep -qx frozen mma/pipeline/status
expect_eq "... with Access-Control-Allow-Origin" "$(hdr "$T/h" access-control-allow-origin)" "$PAGE"
curl -s -D "$T/h" -o "$T/b" -H "Origin: $PAGE" "$HTTP/api/state"
expect_eq "the allowed page without a token: still 401" "$(code "$T/h")" 401
expect_eq "... which it may read (Access-Control-Allow-Origin)" \
	"$(hdr "$T/h" access-control-allow-origin)" "$PAGE"
curl -s -N -m 1 -D "$T/h" -o /dev/null -H "Origin: $PAGE" -H "$AUTH" "$HTTP/api/events"
expect_eq "an event stream for the allowed page: Access-Control-Allow-Origin" \
	"$(hdr "$T/h" access-control-allow-origin)" "$PAGE"

for origin in http://evil.example http://localhost:3001 "$PAGE/" https://localhost:3000 null; do
	curl -s -D "$T/h" -o "$T/b" -X OPTIONS -H "Origin: $origin" "$HTTP/api/state"
	expect_eq "a preflight from $origin: 403" "$(code "$T/h")" 403
	expect_eq "... without Access-Control-Allow-Origin" "$(hdr "$T/h" access-control-allow-origin)" ""
	curl -s -D "$T/h" -o "$T/b" -H "Origin: $origin" -H "$AUTH" "$HTTP/api/state"
	expect_eq "a GET from $origin: 403 as before" "$(code "$T/h")" 403
	expect_eq "... without Access-Control-Allow-Origin" "$(hdr "$T/h" access-control-allow-origin)" ""
done
check "the 403 is the error object" jqe '.error.status == 403 and .error.errno == "EACCES"' "$T/b"
curl -s -D "$T/h" -o /dev/null -H "$AUTH" "$HTTP/api/state"
expect_eq "no Origin (curl, a script): 200, no CORS header" \
	"$(code "$T/h") $(hdr "$T/h" access-control-allow-origin)" "200 "
curl -s -D "$T/h" -o /dev/null -X OPTIONS -H "Origin: $PAGE" -H "Host: evil.example:$HTTP_PORT" "$HTTP/api/state"
expect_eq "a preflight with a foreign Host: 403 (DNS rebinding)" "$(code "$T/h")" 403
# a refused preflight is logged as every 401 and 403 is (README, "Logs")
curl -s -D "$T/h" -o /dev/null -X OPTIONS -H 'Origin: http://preflight-only.example' "$HTTP/api/state"
expect_eq "a preflight alone from a foreign page: 403" "$(code "$T/h")" 403
wait_for "... and the daemon's log says so" 3 \
	grep -q 'WARN http: refused 403 to .*Origin "http://preflight-only.example" may not call' "$DAEMON_LOG"
wait_for "... as it does the foreign Host's" 3 grep -q 'WARN http: refused 403 to .*Host "evil.example:' "$DAEMON_LOG"

cat >"$T/ws.py" <<'EOF'
# PASS NAME / FAIL NAME: WHY lines for test_cors.sh
import asyncio, os, websockets

WSURL, TOKEN = os.environ["WSURL"], os.environ["TOKEN"]


def check(name, ok, why=""):
    print(("PASS " if ok else "FAIL ") + name + ("" if ok else ": " + str(why)[:300]), flush=True)


async def status_of(origin, token=TOKEN):
    hdr = {"Authorization": "Bearer " + token} if token else {}
    try:
        ws = await websockets.connect(WSURL + "/", subprotocols=["orchfs.v1"], origin=origin,
                                      extra_headers=hdr, open_timeout=5, close_timeout=2)
    except websockets.exceptions.InvalidStatusCode as e:
        return e.status_code
    await ws.send('{"op":"read","path":"mma/pipeline/status","id":1}')
    r = await ws.recv()
    await ws.close()
    return 101 if '"ok":true' in r else r


async def main():
    st = await status_of("http://localhost:3000")
    check("a WebSocket from the allowed page is accepted and answers", st == 101, st)
    st = await status_of("https://app.example")
    check("a WebSocket from the second allowed page is accepted", st == 101, st)
    st = await status_of("http://localhost:3000", token=None)
    check("the allowed page's WebSocket without a token: 401", st == 401, st)
    for origin in ["http://evil.example", "http://localhost:3001", "http://localhost:3000/x"]:
        st = await status_of(origin)
        check("a WebSocket from %s: 403" % origin, st == 403, st)

asyncio.run(main())
EOF
out=$("$PY" "$T/ws.py" 2>"$T/py.err") || fail "ws.py exited $?" "$(tail -3 "$T/py.err")"
relay_checks <<<"$out"

# a malformed --allow-origin: refused before anything starts
for bad in localhost:3000 http://localhost:3000/ 'http://localhost:3000/app' http://x:0 '*'; do
	"$ORCHFS" --allow-origin "$bad" --state-dir "$T/never" "$T/mnt" >"$T/err" 2>&1
	rc=$?
	expect_eq "--allow-origin $bad: exit 2" "$rc" 2
	check "... with a message naming it" grep -qF -- "--allow-origin \"$bad\"" "$T/err"
done
check "... and no state directory made" test ! -e "$T/never"

finish
