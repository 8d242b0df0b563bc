#!/usr/bin/env bash
# test_nonroot: what an ordinary user needs (README, "The daemon"): run as
# nobody, with a PATH that lacks fusermount3, orchfs says what is missing
# (fusermount3, and /dev/fuse when nobody may not open it) and how to fix it,
# exits 1, and has created nothing: no state directory, no token. Needs root
# to become nobody (setpriv); skipped otherwise.
. "$(dirname "$0")/lib.sh"

[ "$(id -u)" -eq 0 ] || _skip_or_fail "not root: cannot run orchfs as another user"
command -v setpriv >/dev/null || _skip_or_fail "setpriv is missing"
id nobody >/dev/null 2>&1 || _skip_or_fail "no user nobody"
T=$(mktemp -d /tmp/orchfs-test.XXXXXX)
_TMPDIRS+=("$T")
chmod 0755 "$T"
mkdir -m 0777 "$T/home" "$T/mnt"
BIN=$(readlink -f "$ORCHFS")
SETPRIV=$(command -v setpriv)
as_nobody() {   # as_nobody PATH CMD...: CMD as nobody with that PATH, in $T/home
	local path=$1
	shift
	(cd "$T/home" && env -i HOME="$T/home" PATH="$path" \
		"$SETPRIV" --reuid=nobody --regid=nogroup --clear-groups -- "$@")
}
check "nobody can run the daemon's binary" as_nobody /usr/bin:/bin "$BIN" --version >/dev/null
if as_nobody /usr/bin:/bin sh -c 'exec 3<>/dev/fuse' 2>/dev/null; then dev_ok=1; else dev_ok=0; fi
FM_DIR=$(dirname "$(command -v fusermount3 || echo /usr/bin/fusermount3)")

mkdir -m 0700 "$T/nopath"   # an empty directory: PATH with no fusermount3
as_nobody "$T/nopath" "$BIN" --state-dir "$T/home/state" --http off --ws off "$T/mnt" \
	>"$T/out" 2>"$T/err"
expect_eq "without fusermount3 in PATH: exit 1" "$?" 1
check "... saying fusermount3 is not in PATH" grep -q 'fusermount3 is not in PATH' "$T/err"
check "... and the fix (install fuse3)" grep -q 'install fuse3' "$T/err"
if [ "$dev_ok" -eq 0 ]; then
	check "... and that /dev/fuse cannot be opened (nobody may not here)" \
		grep -q 'cannot open /dev/fuse read-write' "$T/err"
	check "... with its mode and a fix" grep -qE '\(mode 0[0-7]{3}, .*fix: ' <(tr '\n' ' ' <"$T/err")
else
	check "... and nothing about /dev/fuse, which nobody may open here" eval '! grep -q /dev/fuse "$T/err"'
fi
check "... nothing on stdout" test ! -s "$T/out"
check "... no state directory made" test ! -e "$T/home/state"
check "... no default state directory either" test ! -e "$T/home/.local"
check "... the mountpoint untouched" eval '[ -z "$(ls -A "$T/mnt")" ] && ! mountpoint -q "$T/mnt"'

as_nobody "$T/nopath" "$BIN" "$T/mnt" >/dev/null 2>"$T/err2"
expect_eq "with the defaults (no --state-dir): exit 1 too" "$?" 1
check "... and still nothing made under HOME" test ! -e "$T/home/.local"

# with fusermount3 in PATH only /dev/fuse can be missing
as_nobody "$FM_DIR" "$BIN" --state-dir "$T/home/state" --http off --ws off "$T/mnt" \
	>/dev/null 2>"$T/err3"
rc=$?
check "with fusermount3 in PATH: nothing said about it" eval '! grep -q fusermount3 "$T/err3"'
if [ "$dev_ok" -eq 0 ]; then
	expect_eq "... but /dev/fuse still closed to nobody: exit 1" "$rc" 1
	check "... no state directory made" test ! -e "$T/home/state"
else
	mountpoint -q "$T/mnt" && { _MOUNTS+=("$T/mnt"); fusermount3 -u "$T/mnt"; }
fi

finish
