#!/usr/bin/env bash
# test_tls: --tls-cert/--tls-key (README, "Security"): the API over HTTPS and
# WSS with a real certificate, checked against it by real curl and Python's
# websockets: a GET answers over HTTP/1.1 (what the listener offers, also to
# a client that would take h2), a document past 64 KiB arrives byte for byte
# as the mount has it, a POST changes the pipeline, and a WSS subscriber
# receives every event in order, a 70,000-byte one whole; plain HTTP on the
# TLS port gets no answer.
. "$(dirname "$0")/lib.sh"

PY=/usr/bin/python3
if ! [ -x "$PY" ] || ! "$PY" -c 'import websockets' 2>/dev/null; then
	_skip_or_fail "no $PY with the websockets module"
fi
command -v curl >/dev/null || _skip_or_fail "curl is missing"
command -v openssl >/dev/null || _skip_or_fail "openssl is missing"

CERTS=$(mktemp -d /tmp/orchfs-tls.XXXXXX)
_TMPDIRS+=("$CERTS")
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1 \
	-addext subjectAltName=IP:127.0.0.1 -keyout "$CERTS/key.pem" -out "$CERTS/cert.pem" \
	2>"$CERTS/openssl.err" || _fail_now "openssl could not make a certificate: $(cat "$CERTS/openssl.err")"

orchfs_start_api --tls-cert "$CERTS/cert.pem" --tls-key "$CERTS/key.pem"
cd "$M" || exit 1
HTTPS=https://127.0.0.1:$HTTP_PORT
WSS=wss://127.0.0.1:$WS_PORT
tls_curl() { curl -s --cacert "$CERTS/cert.pem" -H "$AUTH" "$@"; }

check "the daemon says https:// and wss://" grep -q "http: $HTTPS" "$DAEMON_LOG"
check "... for both listeners" grep -q "ws: $WSS" "$DAEMON_LOG"
expect_eq "GET over HTTPS, the certificate checked: 200, HTTP/1.1" \
	"$(tls_curl -o "$T/status" -w '%{http_code} %{http_version}' "$HTTPS/api/mma/pipeline/status")" "200 1.1"
expect_eq "... with the file" "$(cat "$T/status")" running
expect_eq "... a client that offers h2 is answered over HTTP/1.1" \
	"$(tls_curl --http2 -o /dev/null -w '%{http_code} %{http_version}' "$HTTPS/api/mma/pipeline/status")" "200 1.1"
expect_eq "... without the token: 401" \
	"$(curl -s --cacert "$CERTS/cert.pem" -o /dev/null -w '%{http_code}' "$HTTPS/api/mma/pipeline/status")" 401

echo pause >mma/pipeline/pause   # the track's task waits: its info.json stays as it is
title=$(head -c 70000 /dev/zero | tr '\0' w)
printf '{"id":"wide","title":"%s","tasks":[{"id":"w1","command":"true"}]}' "$title" >mma/tracks/create
check "a track with a 70,000-byte title" test -e mma/tracks/wide/info.json
tls_curl -o "$T/info.json" "$HTTPS/api/mma/tracks/wide/info.json"
check "its info.json over HTTPS (past 64 KiB) is the mount's, byte for byte" cmp -s "$T/info.json" mma/tracks/wide/info.json
expect_eq "POST over HTTPS: 200" \
	"$(tls_curl -o /dev/null -w '%{http_code}' --data-binary 3 "$HTTPS/api/mma/pipeline/max_workers")" 200
expect_eq "... and it is applied" "$(cat mma/pipeline/max_workers)" 3
check "plain HTTP on the TLS port gets no HTTP answer" \
	test "$(curl -s -m 5 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$HTTP_PORT/api/mma/pipeline/status")" != 200

cat >"$T/wss.py" <<'EOF'
# PASS NAME or FAIL NAME: WHY lines, which test_tls.sh counts.
import asyncio, json, os, ssl
import websockets

M, WSS, TOKEN, CERT = os.environ["M"], os.environ["WSS"], os.environ["TOKEN"], os.environ["CERT"]


def check(name, ok, why=""):
    print(("PASS " if ok else "FAIL ") + name + ("" if ok else ": " + str(why)[:400]), flush=True)


def produce():
    with open(os.path.join(M, "mma/tracks/create"), "w") as f:
        f.write(json.dumps({"id": "mid", "title": "m" * 300, "tasks": [{"id": "m1", "command": "true"}]}))
    for i in range(200):
        with open(os.path.join(M, "mma/pipeline/max_workers"), "w") as f:
            f.write("%d\n" % (1 + i % 4))


async def main():
    ctx = ssl.create_default_context(cafile=CERT)
    async with websockets.connect(WSS, ssl=ctx, subprotocols=["orchfs.v1"], open_timeout=5,
                                  extra_headers={"Authorization": "Bearer " + TOKEN}, max_size=None) as ws:
        await ws.send(json.dumps({"op": "subscribe", "since": 0, "id": 1}))
        reply = json.loads(await asyncio.wait_for(ws.recv(), 5))
        check("WSS: subscribe since 0 is answered", reply.get("id") == 1 and reply.get("ok") is True, reply)
        await asyncio.get_running_loop().run_in_executor(None, produce)
        with open(os.path.join(M, "state.json")) as f:
            last = json.load(f)["seq"]
        got = []
        while not got or got[-1]["seq"] < last:
            got.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))
        check("WSS: every event 1..%d, in order" % last, [e["seq"] for e in got] == list(range(1, last + 1)),
              [e["seq"] for e in got][:20])
        titles = {e["data"]["track"]: len(e["data"]["title"]) for e in got if e["type"] == "track.created"}
        check("WSS: the 70,000-byte event and a 300-byte one, whole", titles == {"wide": 70000, "mid": 300}, titles)


asyncio.run(main())
EOF
out=$(M=$M WSS=$WSS TOKEN=$TOKEN CERT=$CERTS/cert.pem timeout 60 "$PY" "$T/wss.py" 2>"$T/py.err") ||
	fail "wss.py exited $?" "$(tail -5 "$T/py.err" | tr '\n' ' ')"
relay_checks <<<"$out"
check "the daemon is up after the TLS tests" kill -0 "$DAEMON_PID"

finish
