#!/usr/bin/env bash
# bench_http.sh: requests per second of orchfs's HTTP API (libwebsockets)
# against nginx serving the very same bytes as static files, on loopback.
# A benchmark only: it prints numbers and fails only if something breaks
# (a tool is missing, a server does not start, the bodies differ), never
# because a number is slow.
#
#   meson test -C build --benchmark http_vs_nginx -v
#   tests/bench/bench_http.sh ORCHFS
#   ORCHFS_BENCH_STATE=DIR ...   # orchfs on a copy of DIR as its state (tests/bench/lib.sh)
#
# Needs wrk, nginx (Debian: nginx-light; nginx's own service is not used, an
# nginx with a config in the temp directory is started here), curl, jq,
# python3 (to find free ports), fusermount3. Installs nothing.
#
# What it does: starts orchfs (fresh state dir and mount in a temp dir, free
# ports), spawns BENCH_WORKERS `true` workers through the mount, waits until
# all have exited and pauses the pipeline, so the documents are realistic and
# fixed. It copies the exact bytes of GET /api/mma/pipeline/status and
# GET /api/mma/workers into files under an nginx root (one worker process,
# access_log off, default_type application/json, sendfile on, keep-alive
# unlimited like orchfs's), checks once that both servers return identical
# bodies, then runs `wrk -t1 -cC -d${BENCH_SECS}s --latency` (C = 10, then
# 100) on both paths of both servers, alternating, BENCH_ROUNDS rounds each,
# and prints the median requests/s and p99 latency per target and the
# ratios orchfs/nginx.
#
# The machine this was written on has 2 cores: wrk (one thread) and the
# server under test share them, so the figures are those of a loaded box,
# for comparing the two servers with each other, not absolute capacity.
# orchfs also answers with ~5 security headers nginx does not send; the
# header sizes are printed.
#
# Knobs (environment): BENCH_ROUNDS (default 3), BENCH_SECS (wrk -d, default 5),
# BENCH_CONNS (wrk -c, each in turn, default "10 100"), BENCH_WORKERS (default 20).
set -u -o pipefail
# shellcheck source=tests/bench/lib.sh
. "$(dirname "$0")/lib.sh" || exit 2

usage() { echo "usage: $0 ORCHFS" >&2; exit 2; }
[ $# -eq 1 ] || usage
orchfs=$1
rounds=${BENCH_ROUNDS:-3}
secs=${BENCH_SECS:-5}
read -r -a conns_list <<<"${BENCH_CONNS:-10 100}"
nworkers=${BENCH_WORKERS:-20}
mount_wait_s=10     # orchfs, until it mounts
start_wait_s=10     # nginx, until it answers
stop_wait_s=10      # orchfs, after unmount, before SIGKILL

for v in "$rounds" "$secs" "${conns_list[@]}" "$nworkers"; do
	case $v in ''|*[!0-9]*|0) echo "BENCH_ROUNDS, BENCH_SECS, BENCH_CONNS and BENCH_WORKERS must be numbers >= 1" >&2; exit 2;; esac
done
[ -x "$orchfs" ] || { echo "not executable: $orchfs" >&2; exit 2; }
# nginx lives in /usr/sbin, which a user's PATH may lack
PATH=$PATH:/usr/sbin:/sbin
missing=""
for tool in wrk nginx curl jq python3 mountpoint fusermount3 timeout cmp awk sort; do
	command -v "$tool" >/dev/null || missing="$missing $tool"
done
if [ -n "$missing" ]; then
	echo "bench_http: missing:$missing" >&2
	echo "bench_http: on Debian: apt-get install -y wrk nginx-light curl jq python3 fuse3 (nothing is installed by this script)" >&2
	exit 2
fi

ngx_pid=""
bench_tmp orchfs-hbench
mnt=$tmp/mnt
state=$tmp/state
www=$tmp/www
ngx=$tmp/nginx
mkdir -p "$mnt" "$state" "$www/api/mma/pipeline" "$ngx/tmp" || exit 1

# cleanup stops nginx first
# shellcheck disable=SC2317 # run by bench_cleanup
bench_stop_others() {
	local i
	[ -n "$ngx_pid" ] || return 0
	kill -TERM "$ngx_pid" 2>/dev/null
	for ((i = 0; i < 100; i++)); do kill -0 "$ngx_pid" 2>/dev/null || break; sleep 0.05; done
	kill -KILL "$ngx_pid" 2>/dev/null
	wait "$ngx_pid" 2>/dev/null
}

# --- orchfs
read -r p_http p_ws p_ngx < <(bench_free_ports python3 3) || exit 1
bench_orchfs_api "$mnt" "$state" "$tmp/orchfs.log" "$p_http" "$p_ws" || exit 1
token=$(cat "$state/token") || exit 1
auth="Authorization: Bearer $token"
orch_url=http://127.0.0.1:$p_http
ngx_url=http://127.0.0.1:$p_ngx

for ((i = 0; i < nworkers; i++)); do
	echo true >"$mnt/mma/workers/spawn" || { echo "spawn failed: $(cat "$mnt/last_error")" >&2; exit 1; }
done
for ((i = 0; ; i++)); do
	running=$(jq -r '.running' "$mnt/mma/workers.json" 2>/dev/null)
	[ "$running" = 0 ] && break
	[ "$i" -ge 200 ] && { echo "workers still running after 10s" >&2; exit 1; }
	sleep 0.05
done
echo pause >"$mnt/mma/pipeline/pause" || exit 1
[ "$(cat "$mnt/mma/pipeline/status")" = paused ] || { echo "the pipeline did not pause" >&2; exit 1; }

paths=(mma/pipeline/status mma/workers)
for p in "${paths[@]}"; do
	code=$(timeout 10 curl -sS -o "$www/api/$p" -w '%{http_code}' -H "$auth" "$orch_url/api/$p") || {
		echo "curl $orch_url/api/$p failed" >&2; exit 1; }
	[ "$code" = 200 ] || { echo "GET /api/$p from orchfs: HTTP $code: $(cat "$www/api/$p")" >&2; exit 1; }
done
# The mount should hold the same bytes (README, "Remote"); a difference is reported, not fatal.
cmp -s "$www/api/mma/pipeline/status" "$mnt/mma/pipeline/status" ||
	echo "warning: GET /api/mma/pipeline/status differs from the mount's file" >&2
cmp -s "$www/api/mma/workers" "$mnt/mma/workers.json" ||
	echo "warning: GET /api/mma/workers differs from the mount's workers.json" >&2

# --- nginx
chmod -R a+rX "$www"
user_line=""
[ "$(id -u)" -eq 0 ] && user_line="user $(id -un) $(id -gn);"
cat >"$ngx/nginx.conf" <<EOF
# written by bench_http.sh; serves $www on 127.0.0.1:$p_ngx
$user_line
worker_processes 1;
daemon off;
pid $ngx/nginx.pid;
error_log $ngx/error.log warn;
events { worker_connections 1024; }
http {
	access_log off;
	default_type application/json;
	sendfile on;
	keepalive_requests 100000000;
	client_body_temp_path $ngx/tmp/body;
	proxy_temp_path $ngx/tmp/proxy;
	fastcgi_temp_path $ngx/tmp/fastcgi;
	uwsgi_temp_path $ngx/tmp/uwsgi;
	scgi_temp_path $ngx/tmp/scgi;
	server {
		listen 127.0.0.1:$p_ngx;
		root $www;
	}
}
EOF
nginx -p "$ngx" -e "$ngx/error.log" -c "$ngx/nginx.conf" >"$ngx/stdout.log" 2>&1 &
ngx_pid=$!
for ((i = 0; ; i++)); do
	if ! kill -0 "$ngx_pid" 2>/dev/null; then
		echo "nginx exited at start; its log:" >&2; cat "$ngx/stdout.log" "$ngx/error.log" >&2 2>/dev/null
		ngx_pid=""; exit 1
	fi
	curl -s -o /dev/null "$ngx_url/api/mma/pipeline/status" && break
	[ "$i" -ge $((start_wait_s * 20)) ] && { echo "nginx did not answer in ${start_wait_s}s" >&2; exit 1; }
	sleep 0.05
done

# --- the same bodies, once
for p in "${paths[@]}"; do
	timeout 10 curl -sS -o "$tmp/orch.body" -D "$tmp/orch.hdr" -H "$auth" "$orch_url/api/$p" || exit 1
	timeout 10 curl -sS -o "$tmp/ngx.body" -D "$tmp/ngx.hdr" "$ngx_url/api/$p" || exit 1
	if ! cmp -s "$tmp/orch.body" "$tmp/ngx.body"; then
		echo "bodies differ for /api/$p:" >&2
		cmp "$tmp/orch.body" "$tmp/ngx.body" >&2
		exit 1
	fi
	printf '/api/%-20s body %6d bytes identical; headers orchfs %d bytes, nginx %d bytes\n' "$p" \
		"$(wc -c <"$tmp/orch.body")" "$(wc -c <"$tmp/orch.hdr")" "$(wc -c <"$tmp/ngx.hdr")"
done
echo "orchfs $orch_url (pid $orch_pid), nginx $ngx_url (pid $ngx_pid); $nworkers exited workers, pipeline paused"
echo "wrk -t1 -c{${conns_list[*]}} -d${secs}s --latency, $rounds rounds, alternating; $(nproc) CPUs shared by wrk and the server"

# --- wrk
declare -A rps=() p99=()
odd=0
# p99 of wrk's latency distribution, in microseconds
us() { awk '{ v = $1; u = 1; if (v ~ /us$/) u = 1; else if (v ~ /ms$/) u = 1000; else if (v ~ /s$/) u = 1000000;
	sub(/[a-z]+$/, "", v); printf "%.0f", v * u }' <<<"$1"; }
for ((r = 1; r <= rounds; r++)); do
	for conns in "${conns_list[@]}"; do
		for p in "${paths[@]}"; do
			for srv in orchfs nginx; do
				if [ "$srv" = orchfs ]; then
					out=$(timeout $((secs + 30)) wrk -t1 -c"$conns" -d"${secs}s" --latency -H "$auth" "$orch_url/api/$p" 2>&1)
				else
					out=$(timeout $((secs + 30)) wrk -t1 -c"$conns" -d"${secs}s" --latency "$ngx_url/api/$p" 2>&1)
				fi
				rc=$?
				v=$(printf '%s\n' "$out" | awk '/^Requests\/sec:/ { print $2 }')
				case $v in ''|*[!0-9.]*) echo "wrk failed (rc=$rc) on $srv /api/$p:" >&2; printf '%s\n' "$out" >&2; exit 1;; esac
				l=$(us "$(printf '%s\n' "$out" | awk '$1 == "99%" { print $2 }')")
				rps[$srv:$p:$conns]+="$v "
				p99[$srv:$p:$conns]+="$l "
				extra=$(printf '%s\n' "$out" | grep -E 'Non-2xx|Socket errors' | tr -s ' \n' ' ')
				[ -n "$extra" ] && odd=1
				printf 'round %d -c%-3s %-6s /api/%-20s %10s req/s  p99 %sus %s\n' "$r" "$conns" "$srv" "$p" "$v" "$l" "$extra"
			done
		done
	done
done

echo "--- medians of $rounds rounds (wrk -t1 -d${secs}s)"
printf '%-26s %5s %9s %9s %7s %10s %10s %7s\n' path conns orchfs nginx ratio p99_us p99_ngx ratio
for conns in "${conns_list[@]}"; do
	for p in "${paths[@]}"; do
		o=$(bench_median %.0f "${rps[orchfs:$p:$conns]}")
		n=$(bench_median %.0f "${rps[nginx:$p:$conns]}")
		ol=$(bench_median %.0f "${p99[orchfs:$p:$conns]}")
		nl=$(bench_median %.0f "${p99[nginx:$p:$conns]}")
		printf '%-26s %5s %9s %9s %7s %10s %10s %7s\n' "/api/$p" "$conns" "$o" "$n" "$(bench_ratio "$o" "$n")" \
			"$ol" "$nl" "$(bench_ratio "$ol" "$nl")"
		bench_row "GET /api/$p req/s, -c$conns" "$o" nginx "$n" "$(bench_ratio "$o" "$n")" \
			"$(bench_spread %.0f "${rps[orchfs:$p:$conns]}")"
		bench_row "GET /api/$p p99 us, -c$conns" "$ol" nginx "$nl" "$(bench_ratio "$ol" "$nl")" \
			"$(bench_spread %.0f "${p99[orchfs:$p:$conns]}")"
	done
done
[ "$odd" = 1 ] && echo "note: wrk saw non-2xx responses or socket errors (see the rounds above)"
if [ -s "$ngx/error.log" ]; then
	echo "note: nginx error log:"; tail -5 "$ngx/error.log"
fi
if [ -s "$tmp/orchfs.log" ]; then
	echo "note: orchfs log (last lines):"; tail -5 "$tmp/orchfs.log"
fi
exit 0
