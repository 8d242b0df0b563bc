#!/usr/bin/env bash
# test_sdnotify: systemd's Type=notify without systemd (README, "The daemon"):
# a datagram socket stands in for NOTIFY_SOCKET; orchfs sends
# "READY=1\nMAINPID=<pid>" exactly once, and only when the mount answers and
# the HTTP listener accepts; with -f and daemonized (MAINPID then is the
# daemon, not the process that was started); to a path and to an abstract
# socket ('@'); and without NOTIFY_SOCKET nothing is sent and all works.
. "$(dirname "$0")/lib.sh"

command -v python3 >/dev/null || _skip_or_fail "python3 is missing"
[ -e /dev/fuse ] || _skip_or_fail "/dev/fuse is missing: cannot mount orchfs"
T=$(mktemp -d /tmp/orchfs-test.XXXXXX)
_TMPDIRS+=("$T")

cat >"$T/notify.py" <<'EOF'
# notify.py SOCKET MOUNT HTTP_PORT ORCHFS ARGS...: binds SOCKET, starts
# ORCHFS ARGS... with NOTIFY_SOCKET=SOCKET and prints PASS/FAIL lines.
import os, socket, subprocess, sys, time

sock_name, mnt, port, argv = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
foreground = "-f" in argv


def check(name, ok, why=""):
    print(("PASS " if ok else "FAIL ") + name + ("" if ok else ": " + str(why)[:300]), flush=True)


def mount_answers():
    try:
        with open(os.path.join(mnt, "mma/pipeline/status")) as f:
            return os.path.ismount(mnt) and f.read() == "running\n"
    except OSError:
        return False


def http_accepts():
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind("\0" + sock_name[1:] if sock_name.startswith("@") else sock_name)
env = dict(os.environ, NOTIFY_SOCKET=sock_name)
# not our stdout: a daemon holding it would keep the test waiting for EOF
p = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
what = "-f" if foreground else "daemonized"
s.settimeout(10)
try:
    msg = s.recv(4096).decode()
except socket.timeout:
    msg = None
# the mount and the listener are looked at the moment READY=1 came
answers, accepts = mount_answers(), http_accepts()
check(what + ": a notification came", msg is not None)
if msg is not None:
    fields = dict(l.split("=", 1) for l in msg.split("\n") if "=" in l)
    check(what + ": it is READY=1", fields.get("READY") == "1", msg)
    check(what + ": the mount answered when it came", answers)
    check(what + ": the HTTP listener accepted when it came", accepts)
    pid = int(fields.get("MAINPID", "0"))
    if foreground:
        check(what + ": MAINPID is the process started", pid == p.pid, (pid, p.pid))
    else:
        p.wait(timeout=10)
        check(what + ": the process started has exited 0 (it forked)", p.returncode == 0, p.returncode)
        try:
            comm = open("/proc/%d/comm" % pid).read().strip()
        except OSError as e:
            comm = repr(e)
        check(what + ": MAINPID is the daemon that forked off", pid != p.pid and comm == "orchfs", (pid, comm))
    s.settimeout(1)
    try:
        again = s.recv(4096).decode()
    except socket.timeout:
        again = None
    check(what + ": nothing more is sent", again is None, again)
    print("MAINPID " + str(pid), flush=True)
EOF

run() {   # run NAME SOCKET [ARGS]: one daemon on $T/NAME with the API on a free port
	local name=$1 sock=$2 port out rc line
	shift 2
	port=$(free_port)
	mkdir -p "$T/$name.mnt"
	_MOUNTS+=("$T/$name.mnt")
	out=$(python3 "$T/notify.py" "$sock" "$T/$name.mnt" "$port" "$ORCHFS" --state-dir "$T/$name.state" \
		--http "127.0.0.1:$port" --ws off "$@" "$T/$name.mnt" 2>"$T/$name.log")
	rc=$?
	while IFS= read -r line; do
		case $line in
		PASS\ *) pass "$name: ${line#PASS }" ;;
		FAIL\ *) fail "$name: ${line#FAIL }" ;;
		MAINPID\ *) _DAEMONS+=("${line#MAINPID }"); echo "${line#MAINPID }" >>"$_WATCHDOG_PIDS" ;;
		esac
	done <<<"$out"
	[ "$rc" -eq 0 ] || fail "$name: notify.py exited $rc" "$(tail -3 "$T/$name.log" | tr '\n' ' ')"
	poll 5 fusermount3 -u "$T/$name.mnt"
	poll 10 eval "! mountpoint -q $T/$name.mnt"
}

run fg "$T/notify.sock" -f
run bg "$T/notify2.sock"
run abstract "@orchfs-test-$$-$RANDOM" -f

# without NOTIFY_SOCKET: the daemon starts as ever
mkdir -p "$T/plain.mnt"
(unset NOTIFY_SOCKET; exec "$ORCHFS" --state-dir "$T/plain.state" --http off --ws off "$T/plain.mnt") 2>"$T/plain.log"
expect_eq "without NOTIFY_SOCKET: the daemon starts (exit 0)" "$?" 0
_MOUNTS+=("$T/plain.mnt")
check "... and its mount answers" poll 5 grep -qx running "$T/plain.mnt/mma/pipeline/status"
check "... and it said nothing about a socket" test ! -s "$T/plain.log"
# just started, its notifier may still hold the mount for a moment (EBUSY)
poll 5 fusermount3 -u "$T/plain.mnt"

finish
