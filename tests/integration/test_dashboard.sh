#!/usr/bin/env bash
# test_dashboard: the web dashboard (README, "The dashboard"). Its files are
# served at / of the HTTP listener without the token (right Content-Type, no
# listing, no way out of --web-root by "..", an encoded "..", or a symlink;
# a foreign Host refused; /api/ still needs the token); the page's own origin
# passes the WebSocket listener's Origin check without --allow-origin, others
# do not; the URL with the token is printed on a terminal at start, and never
# logged; then headless Chromium over the DevTools protocol (cdp.py,
# dashboard.py) drives the page on the demo plan, with no console error
# allowed: tracks and DAG statuses as on the mount, a change through the mount
# in the page within a second, pause/resume/max_workers/release clicks,
# errors shown beside their control, a worker's log followed and the worker
# killed, context injected and removed, a wrong token told clearly, a 200-task
# plan drawn readably, a daemon restart the page reconnects and resumes after,
# a close as too slow (1013, in a flood while the browser's network process
# is stopped) it resumes after without missing an event, and a restart with
# another token it asks for.
# Screenshots go to $OUT (the build directory).
# Environment: OUT (where the screenshots go; default the test's temp dir).
ORCHFS_TEST_TIMEOUT=170
. "$(dirname "$0")/lib.sh"

chromium_require
SRC_WEB=$(cd "$LIB_DIR/../../contrib/web" && pwd)

# The served root: a copy of the dashboard with traps in it.
WEB=$(mktemp -d /tmp/orchfs-web.XXXXXX)
_TMPDIRS+=("$WEB")
cp -r "$SRC_WEB"/. "$WEB/"
mkdir -p "$WEB/sub"
echo inner >"$WEB/sub/inner.txt"
ln -s /etc/passwd "$WEB/passwd"
ln -s /etc "$WEB/etc"
ln -s sub/inner.txt "$WEB/inner-link.txt"
echo secret >"$WEB.secret"   # beside the root, not in it
_TMPDIRS+=("$WEB.secret")

orchfs_start_api --max-workers 2 --web-root "$WEB" --pricing "$LIB_DIR/../../contrib/pricing.json"
OUT=${OUT:-$T}
# the demo plan's workers run as sh contrib/workers/..., from the daemon's directory
ln -s "$(cd "$LIB_DIR/../../contrib" && pwd)" "$T/work/contrib"

# --- the files ---
code() { curl -s -o /dev/null -w '%{http_code}' "$@"; }
ctype() { curl -s -o /dev/null -w '%{content_type}' "$@"; }
expect_eq "GET / without a token: 200" "$(code "$HTTP/")" 200
expect_eq "... it is index.html, as text/html" "$(ctype "$HTTP/")" "text/html; charset=utf-8"
check "... the same bytes as the file" cmp -s <(curl -s "$HTTP/") "$SRC_WEB/index.html"
expect_eq "app.js is text/javascript" "$(ctype "$HTTP/app.js")" "text/javascript; charset=utf-8"
expect_eq "app.css is text/css" "$(ctype "$HTTP/app.css")" "text/css; charset=utf-8"
expect_eq "index.html by its name" "$(code "$HTTP/index.html")" 200
expect_eq "/config.json names the WebSocket port" "$(curl -s "$HTTP/config.json" | jq -c .)" "{\"ws_port\":$WS_PORT,\"tls\":false}"
expect_eq "a symlink that stays inside the root is served" "$(curl -s "$HTTP/inner-link.txt")" inner
for p in /nosuch.js /sub /sub/ /passwd /etc/passwd /etc/hostname /../../etc/passwd /sub/../../etc/passwd \
	/%2e%2e/%2e%2e/etc/passwd /sub/%2e%2e/%2e%2e/etc/passwd "/..%2f..%2fetc/passwd" "/$(basename "$WEB").secret" \
	"/..%2f$(basename "$WEB").secret" //etc/passwd; do
	c=$(code --path-as-is "$HTTP$p")
	body=$(curl -s --path-as-is "$HTTP$p")
	if [ "$c" == 404 ] && jq -e '.error.errno == "ENOENT"' >/dev/null 2>&1 <<<"$body"; then
		pass "GET $p: 404 with the error object"
	else
		fail "GET $p: 404 with the error object" "$c ${body:0:120}"
	fi
done
expect_eq "POST to a page: 405" "$(code -d x "$HTTP/index.html")" 405
expect_eq "a foreign Host: 403" "$(code -H "Host: evil.example:$HTTP_PORT" "$HTTP/")" 403
expect_eq "a foreign Origin: 403" "$(code -H "Origin: http://evil.example" "$HTTP/app.js")" 403
expect_eq "the page's own Origin: 200" "$(code -H "Origin: $HTTP" "$HTTP/app.js")" 200
expect_eq "/api/ still needs the token" "$(code "$HTTP/api/state")" 401
expect_eq "... and takes it" "$(code -H "$AUTH" "$HTTP/api/state")" 200
check "the log names the dashboard, without the token" grep -q "INFO dashboard: $HTTP/ " "$DAEMON_LOG"
check "... and never holds the token" eval "! grep -qF \"$TOKEN\" \"$DAEMON_LOG\""

# --- the WebSocket Origin check: the page's own origin without --allow-origin ---
ws_origin() {   # ORIGIN -> "open" or the HTTP status of the refusal
	HTTP_PORT=$HTTP_PORT WS_PORT=$WS_PORT TOKEN=$TOKEN "$PY" - "$1" <<'EOF'
import asyncio, os, sys, websockets
async def main():
    url = f"ws://127.0.0.1:{os.environ['WS_PORT']}/?token={os.environ['TOKEN']}"
    try:
        async with websockets.connect(url, subprotocols=["orchfs.v1"], origin=sys.argv[1], open_timeout=5):
            print("open")
    except websockets.exceptions.InvalidStatusCode as e:
        print(e.status_code)
asyncio.run(main())
EOF
}
expect_eq "WebSocket from the page's origin ($HTTP): accepted" "$(ws_origin "$HTTP")" open
expect_eq "... from localhost on the same port: accepted" "$(ws_origin "http://localhost:$HTTP_PORT")" open
expect_eq "... from another port: 403" "$(ws_origin "http://127.0.0.1:1")" 403
expect_eq "... from another host: 403" "$(ws_origin "http://evil.example:$HTTP_PORT")" 403

# --- the URL with the token: on a terminal, never in the log ---
if command -v script >/dev/null; then
	M2=$T/mnt2 S2=$T/state2
	mkdir -p "$M2"
	_MOUNTS+=("$M2")
	hp2=$(free_port)
	script -qec "$ORCHFS --state-dir $S2 --http 127.0.0.1:$hp2 --ws off --web-root $WEB $M2" /dev/null \
		>"$T/tty.out" 2>&1 </dev/null
	poll 5 mountpoint -q "$M2"
	T2=$(cat "$S2/token" 2>/dev/null)
	check "started on a terminal: it prints the dashboard's URL with the token in the fragment" \
		grep -qF "dashboard: http://127.0.0.1:$hp2/#token=$T2" "$T/tty.out"
	check "... and its log does not hold the token" eval "! grep -qF \"$T2\" \"$S2/orchfs.log\""
	fusermount3 -u "$M2"
	poll 5 eval "! pgrep -f -- '--state-dir $S2 ' >/dev/null"
else
	log "skip - the URL on a terminal: no script(1)"
fi
mkdir -p "$T/mnt3"
"$ORCHFS" -f --state-dir "$T/state3" --http "127.0.0.1:$(free_port)" --ws off --web-root "$T/nowhere" \
	"$T/mnt3" >"$T/bad.out" 2>&1
expect_eq "--web-root naming no folder: exit 2" "$?" 2
check "... saying why" grep -q -- "--web-root .*nowhere" "$T/bad.out"

# --- the page, in Chromium ---
py() {   # MODE: runs one mode of dashboard.py (bounded) and counts its checks
	local out rc=0
	out=$(cd "$LIB_DIR" && HTTP=$HTTP TOKEN=$TOKEN M=$M T=$T OUT=$OUT PYTHONPATH=$LIB_DIR S=$S \
		ORCHFS=$ORCHFS HTTP_PORT=$HTTP_PORT WS_PORT=$WS_PORT WEB=$WEB PRICING=$SRC_WEB/../pricing.json \
		timeout 90 "$PY" "$LIB_DIR/dashboard.py" "$@" 2>"$T/py.err") || rc=$?
	relay_checks <<<"$out"
	[ "$rc" -eq 0 ] || fail "dashboard.py $1 exited $rc" "$(tail -5 "$T/py.err" | tr '\n' ' ')"
}

echo pause >"$M/mma/pipeline/pause"
cat "$LIB_DIR/../../contrib/demo-plan.json" >"$M/mma/tracks/create"
# the demo's workers run from the tree (sh contrib/workers/...)
py main
py wrongtoken

# 200 tasks in 20 layers, each task depending on one to three of the layer before
"$PY" - "$T/big.json" <<'EOF'
import json, random, sys
random.seed(13)
layers = [[f"b{l:02d}-{i}" for i in range(10)] for l in range(20)]
tasks = []
for l, layer in enumerate(layers):
    for t in layer:
        deps = random.sample(layers[l - 1], random.randint(1, 3)) if l else []
        tasks.append({"id": t, "command": "true", "deps": deps})
json.dump({"id": "big", "title": "200 tasks", "tasks": tasks, "depth": 20}, open(sys.argv[1], "w"))
EOF
echo pause >"$M/mma/pipeline/pause"
py dag200
check "the daemon is up after the browser tests" kill -0 "$DAEMON_PID"
py restart
finish
