#!/usr/bin/env bash
# `make fuzz`: builds every libFuzzer target in Tests/Fuzz (Swift,
# -sanitize=fuzzer,address, with leak detection) and runs each until it has
# executed FUZZ_RUNS inputs, FUZZ_JOBS targets at a time. Prints a table and
# exits non-zero on a crash, a property failure, a leak, a hang, running out
# of memory, or a target that did not reach FUZZ_RUNS within its time bound.
#
#   FUZZ_RUNS=10000000   executions per target
#   FUZZ_JOBS=2          targets run at once
#   FUZZ_MAX_TIME=1200   seconds per target before it counts as too slow
#   FUZZ_TARGETS="..."   a subset (default: every Tests/Fuzz/*.swift but Support)
#
# Seeds come from Tests/Fuzz/corpus/<target>/ and are copied to
# build/fuzz/work/<target>/ first, so the committed corpus never grows.
# Whatever fails is saved as build/fuzz/artifacts/<target>-crash-<sha1>
# (or -leak-, -timeout-, -oom-); replay it, with allocation stacks, with
#   SWIFT_BACKTRACE=enable=no build/fuzz/<target> build/fuzz/artifacts/<file>
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
OUT=$ROOT/build/fuzz
RUNS=${FUZZ_RUNS:-10000000}
JOBS=${FUZZ_JOBS:-2}
MAX_TIME=${FUZZ_MAX_TIME:-1200}
SWIFTC=${SWIFTC:-swiftc}
if [ -n "${FUZZ_TARGETS:-}" ]; then
    read -r -a TARGETS <<< "$FUZZ_TARGETS"
else
    # The slowest first, so that two at a time finish close together.
    TARGETS=(jsonpath defaults engine_response classify splice)
    for f in "$HERE"/*.swift; do
        t=$(basename "$f" .swift)
        [ "$t" = Support ] || [[ " ${TARGETS[*]} " == *" $t "* ]] || TARGETS+=("$t")
    done
fi

# Per target: the longest input libFuzzer may make. Short inputs find the
# same bugs faster; long ones drift towards deep nesting, which costs about a
# microsecond a level. The nesting bound itself (2048, as jansson's) is
# covered by JSONSpliceTests.testDepthIsBounded, not here.
max_len() {
    case "$1" in
        splice|classify) echo 1024 ;;
        jsonpath) echo 256 ;;
        *) echo 512 ;;
    esac
}

mkdir -p "$OUT/artifacts"

# ---- build -----------------------------------------------------------------
# The sources are copied first: other work may change them while swiftc runs.
# All of Sources/SageMakerSessions is compiled into each target as one
# module, so a target may use internal API (as @testable unit tests do).
build() {
    local t=$1 src=$OUT/src
    "$SWIFTC" -sanitize=fuzzer,address -parse-as-library -O -g \
        -module-name "Fuzz_$t" \
        -Xfrontend -disable-implicit-concurrency-module-import \
        -Xfrontend -disable-implicit-string-processing-module-import \
        -I "$ROOT/CInterop/CJansson" -I "$ROOT/CInterop/CAtomics" \
        "$src"/*.swift "$HERE/Support.swift" "$HERE/$t.swift" \
        -ljansson -use-ld=lld -o "$OUT/$t.new" > "$OUT/$t.build.log" 2>&1 \
        && mv "$OUT/$t.new" "$OUT/$t" || touch "$OUT/$t.build-failed"
}

for attempt in 1 2 3; do
    rm -rf "$OUT/src" && mkdir -p "$OUT/src" && cp "$ROOT"/Sources/SageMakerSessions/*.swift "$OUT/src/"
    rm -f "$OUT"/*.build-failed
    running=0
    for t in "${TARGETS[@]}"; do
        if [ "$running" -ge "$JOBS" ]; then
            wait -n
            running=$((running - 1))
        fi
        echo "building $t"
        build "$t" &
        running=$((running + 1))
    done
    wait
    failed=()
    for t in "${TARGETS[@]}"; do
        [ -e "$OUT/$t.build-failed" ] && failed+=("$t")
    done
    [ ${#failed[@]} -eq 0 ] && break
    echo "build failed for ${failed[*]} (attempt $attempt):" >&2
    grep -E "error:" "$OUT/${failed[0]}.build.log" | head -20 >&2
    [ "$attempt" -lt 3 ] && { echo "retrying in 60 s (sources may be mid-edit)" >&2; sleep 60; }
done
[ ${#failed[@]} -eq 0 ] || exit 2

# ---- run -------------------------------------------------------------------
# Leave malloc_context_size alone: at 0 or 1 LeakSanitizer reports nothing
# (the self-test below catches that).
ASAN=detect_leaks=1

# First, that a leak is reported at all: a target that leaks on purpose.
selftest() {
    local dir=$OUT/selftest
    rm -rf "$dir" && mkdir -p "$dir/corpus"
    printf 'SJ..' > "$dir/corpus/leak"
    "$SWIFTC" -sanitize=fuzzer,address -parse-as-library -O -g -module-name FuzzSelfTest \
        -I "$ROOT/CInterop/CJansson" "$HERE/selftest/leak.swift" -ljansson -use-ld=lld \
        -o "$dir/leak" > "$dir/build.log" 2>&1 || { echo "self-test: build failed, see $dir/build.log" >&2; return 1; }
    SWIFT_BACKTRACE=enable=no ASAN_OPTIONS=$ASAN "$dir/leak" -runs=100 -detect_leaks=1 \
        -artifact_prefix="$dir/" "$dir/corpus" > "$dir/run.log" 2>&1
    if grep -q "LeakSanitizer: detected memory leaks" "$dir/run.log"; then
        echo "self-test: leaks are reported"
    else
        echo "self-test FAILED: a deliberate leak was not reported (see $dir/run.log)" >&2
        return 1
    fi
}
selftest || exit 3

run() {
    local t=$1 work=$OUT/work/$t
    rm -rf "$work" && mkdir -p "$work"
    cp "$HERE/corpus/$t"/* "$work/"
    rm -f "$OUT/artifacts/$t-"*
    local start=$SECONDS
    # SWIFT_BACKTRACE: a Swift trap is reported by libFuzzer; the Swift
    # backtracer would otherwise hold the log open after the process died.
    SWIFT_BACKTRACE=enable=no \
    ASAN_OPTIONS=$ASAN \
    timeout --kill-after=30 $((MAX_TIME + 120)) \
        "$OUT/$t" -runs="$RUNS" -max_total_time="$MAX_TIME" -timeout=10 \
        -rss_limit_mb=2048 -max_len="$(max_len "$t")" -detect_leaks=1 \
        -print_final_stats=1 -artifact_prefix="$OUT/artifacts/$t-" \
        "$work" > "$OUT/$t.log" 2>&1
    echo $? > "$OUT/$t.rc"
    echo $((SECONDS - start)) > "$OUT/$t.seconds"
    echo "finished $t"
}

echo "running ${TARGETS[*]}: $RUNS executions each, $JOBS at a time"
running=0
for t in "${TARGETS[@]}"; do
    if [ "$running" -ge "$JOBS" ]; then
        wait -n
        running=$((running - 1))
    fi
    run "$t" &
    running=$((running + 1))
done
wait

# ---- report ----------------------------------------------------------------
status=0
printf '\n%-16s %12s %8s %9s  %s\n' target executions seconds exec/s result
for t in "${TARGETS[@]}"; do
    rc=$(cat "$OUT/$t.rc" 2>/dev/null || echo "?")
    secs=$(cat "$OUT/$t.seconds" 2>/dev/null || echo 0)
    done_line=$(grep -E '^Done [0-9]+ runs' "$OUT/$t.log" | tail -1)
    execs=$(sed -E 's/^Done ([0-9]+) runs.*/\1/' <<< "$done_line")
    [ -n "$execs" ] || execs=$(grep -oE '^#[0-9]+' "$OUT/$t.log" | tail -1 | tr -d '#')
    execs=${execs:-0}
    artifact=$(ls "$OUT/artifacts/$t-"* 2>/dev/null | head -1)
    if [ -n "$artifact" ]; then
        result="FAIL: $(basename "$artifact" | sed -E "s/^$t-([a-z-]+)-.*/\1/") ($artifact)"
    elif [ "$rc" != 0 ]; then
        result="FAIL: exit $rc (see $OUT/$t.log)"
    elif [ "$execs" -lt "$RUNS" ]; then
        result="FAIL: fewer than $RUNS executions in ${MAX_TIME}s"
    else
        result=ok
    fi
    [ "$result" = ok ] || status=1
    printf '%-16s %12s %8s %9s  %s\n' "$t" "$execs" "$secs" "$(( execs / (secs > 0 ? secs : 1) ))" "$result"
done
for t in "${TARGETS[@]}"; do
    if [ "$(cat "$OUT/$t.rc" 2>/dev/null)" != 0 ]; then
        echo; echo "--- $t: the end of $OUT/$t.log"
        grep -vE '^#[0-9]+|^\s+NEW_FUNC' "$OUT/$t.log" | tail -25
    fi
done
exit $status
