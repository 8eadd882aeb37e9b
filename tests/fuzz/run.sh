#!/bin/sh
# Run libFuzzer targets for a bounded time each (make fuzz calls this).
#
#   tests/fuzz/run.sh BUILDDIR SECONDS TARGET...
#
# Each target fuzzes a throw-away copy of tests/fuzz/corpus/<target>/ (new
# inputs never go into the repository) with the flags of
# tests/fuzz/<target>.options, if any (-dict=NAME is taken relative to
# tests/fuzz).  A crash, a broken CHECK, a leak or a timeout is a finding:
# the reproducer is kept in BUILDDIR/findings/<target>/ (emptied when the
# target runs again) and its path printed; the script then exits 1.  libFuzzer stops itself after SECONDS
# (-max_total_time); timeout(1) guards against one that does not.
# FUZZ_PARALLEL=N runs N targets at a time (default 1).
set -u

[ $# -ge 3 ] || { echo "usage: $0 BUILDDIR SECONDS TARGET..." >&2; exit 2; }
builddir=$1 seconds=$2
shift 2
case $seconds in '' | *[!0-9]*) echo "$0: SECONDS must be a number" >&2; exit 2 ;; esac
parallel=${FUZZ_PARALLEL:-1}
fuzzdir=$(cd "$(dirname "$0")" && pwd)
builddir=$(cd "$builddir" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/mappend-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM
# AddressSanitizer fills and quarantines every allocation by default; the
# lexer targets' evbuffers made that most of their time.  The quarantine
# still holds 64 MB of freed memory, plenty for these inputs.
export ASAN_OPTIONS=${ASAN_OPTIONS:-max_malloc_fill_size=0:quarantine_size_mb=64}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}

# run_one TARGET: fuzz it; its verdict goes to $work/NAME.rc
run_one() {
	bin=$1
	name=$(basename "$bin")
	corpus=$work/corpus/$name
	found=$builddir/findings/$name
	log=$builddir/logs/$name.log
	rm -rf "$found"
	mkdir -p "$corpus" "$found" "$builddir/logs"
	if [ -d "$fuzzdir/corpus/$name" ]; then
		cp -R "$fuzzdir/corpus/$name/." "$corpus/"
	fi
	opts=""
	if [ -f "$fuzzdir/$name.options" ]; then
		opts=$(sed "s|-dict=|-dict=$fuzzdir/|g" "$fuzzdir/$name.options")
	fi
	# shellcheck disable=SC2086 # opts are separate flags
	timeout -k 10 $((seconds + 120)) "$bin" -max_total_time="$seconds" \
		-timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
		-artifact_prefix="$found/" $opts "$corpus" >"$log" 2>&1
	echo $? >"$work/$name.rc"
}

# summary NAME: one line from libFuzzer's last status and final stats
summary() {
	log=$builddir/logs/$1.log
	last=$(grep -E '^#[0-9]+' "$log" | tail -n 1)
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
	rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
	cov=$(printf '%s\n' "$last" | sed -n 's/.* cov: \([0-9]*\).*/\1/p')
	ft=$(printf '%s\n' "$last" | sed -n 's/.* ft: \([0-9]*\).*/\1/p')
	corp=$(printf '%s\n' "$last" | sed -n 's/.* corp: \([0-9]*\).*/\1/p')
	printf '%-22s %10s execs %7s/s  cov: %-5s ft: %-6s corpus: %s\n' "$1" \
		"${execs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}"
}

echo "fuzzing $# targets for $seconds s each, $parallel at a time"
running=0
for bin in "$@"; do
	run_one "$bin" &
	running=$((running + 1))
	if [ "$running" -ge "$parallel" ]; then
		wait
		running=0
	fi
done
wait

status=0
for bin in "$@"; do
	name=$(basename "$bin")
	rc=$(cat "$work/$name.rc" 2>/dev/null || echo missing)
	summary "$name"
	if [ "$rc" != 0 ]; then
		status=1
		echo "*** $name: FINDING (exit $rc); log: $builddir/logs/$name.log" >&2
		grep -E 'ERROR:|broken promise|runtime error|SUMMARY' "$builddir/logs/$name.log" |
			head -n 5 >&2
		for f in "$builddir/findings/$name"/*; do
			[ -e "$f" ] || continue
			echo "    reproducer: $f" >&2
			echo "    replay:     $bin $f" >&2
		done
		[ "$rc" = 124 ] && echo "    (stopped by timeout(1): libFuzzer did not stop in time)" >&2
	fi
done
exit $status
