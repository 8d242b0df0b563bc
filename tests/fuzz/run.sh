#!/usr/bin/env bash
# run.sh BUILD_DIR SECONDS: runs each fuzz target of BUILD_DIR (configured
# with CC=clang -Dfuzz=true) for SECONDS on a copy of its seed corpus, and
# prints its executions and coverage; exits non-zero on the first target that
# finds a crash or a failed property (the input is left in BUILD_DIR/fuzz-out).
#   CC=clang meson setup build-fuzz -Dfuzz=true -Db_sanitize=address,undefined -Db_lundef=false
#   ninja -C build-fuzz && tests/fuzz/run.sh build-fuzz 3600
set -u -o pipefail
[ $# -eq 2 ] || { echo "usage: $0 BUILD_DIR SECONDS" >&2; exit 2; }
build=$1 secs=$2
here=$(cd "$(dirname "$0")" && pwd) || exit 2
out=$build/fuzz-out
mkdir -p "$out" || exit 2
status=0
for name in parsers writes paths api; do
	bin=$build/tests/fuzz/fuzz_$name
	[ -x "$bin" ] || { echo "run.sh: no $bin (configure with -Dfuzz=true)" >&2; exit 2; }
	work=$(mktemp -d) || exit 2
	cp "$here/corpus/$name"/* "$work/" 2>/dev/null
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		"$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
		-artifact_prefix="$out/$name-" "$work" >"$out/$name.log" 2>&1
	rc=$?
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out/$name.log")
	cov=$(grep -o 'cov: [0-9]*' "$out/$name.log" | tail -1)
	echo "fuzz_$name: ${secs}s, ${execs:-?} executions, ${cov:-cov: ?} edges, corpus $(ls "$work" | wc -l) inputs, exit $rc"
	if [ "$rc" -ne 0 ]; then
		grep -E -A30 'ERROR:|property failed|runtime error' "$out/$name.log" | head -60 >&2
		status=1
	fi
	rm -rf "$work"
done
exit $status
