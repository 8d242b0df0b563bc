#!/usr/bin/env bash
# test_python_client: contrib/python/orchfs_client.py against a live daemon.
# Mounts an orchfs with its HTTP listener on a free loopback port, then runs
# the unittest contrib/python/test_orchfs_client.py with ORCHFS_API,
# ORCHFS_TOKEN_FILE and ORCHFS_MOUNT in its environment: every client method
# is called and its effect checked through the client and through the mount
# (spawn, kill, pause/freeze/resume, context, DAG cycles, tracks, usage and
# cost, a bad token, the SSE stream with since and Last-Event-ID resumption).
# The unittest bounds each network call (5 s); timeout(1) bounds the whole.
. "$(dirname "$0")/lib.sh"

ROOT=$(cd "$LIB_DIR/../.." && pwd)
PY=/usr/bin/python3
[ -x "$PY" ] || _skip_or_fail "$PY is missing"

orchfs_start_api --max-workers 4
check "the token file exists" test -s "$S/token"

# from the source root (unittest takes a relative file name), not the mount
cd "$ROOT" || exit 1
ORCHFS_API=$HTTP ORCHFS_TOKEN_FILE=$S/token ORCHFS_MOUNT=$M PYTHONDONTWRITEBYTECODE=1 \
	timeout 90 "$PY" -m unittest -v contrib/python/test_orchfs_client.py 2>&1 | tee "$T/unittest.out"
rc=${PIPESTATUS[0]}
check "the Python client's unittest passes (exit $rc)" test "$rc" -eq 0
check "the unittest ran tests and skipped none" \
	grep -qE '^OK$' "$T/unittest.out"

finish
