#!/usr/bin/env bash
# Builds the libFuzzer targets (Fuzz/, a package of its own; see docs/reliability.md) with
# coverage and AddressSanitizer, then runs each for the given seconds (default 60), starting from
# the committed seed corpus (Fuzz/Corpus/<target>/) plus what earlier runs found. New corpus
# entries go to .build-fuzz/corpus/<target>/ (never into the committed corpus); a crash, a broken
# property or a hang (one input over 25 s) is saved under .build-fuzz/artifacts/<target>/ and
# fails the script with the reproducer's path and the command that replays it.
#
#   scripts/fuzz.sh                  # every target, 60 s each
#   scripts/fuzz.sh 20               # every target, 20 s each (what check.sh runs)
#   scripts/fuzz.sh 600 FuzzConfig   # one target
#   FUZZ_RUNS=10000000 scripts/fuzz.sh 0 FuzzCanonicalPath   # a number of executions instead of a time
#   FUZZ_CONFIG=release scripts/fuzz.sh 600   # optimised targets (separate build in .build-fuzz-release;
#                                             # same corpus), several times the executions per second
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-60}
shift || true
all_targets=(FuzzCanonicalPath FuzzPaymentHeader FuzzFacilitatorAnswer FuzzFacilitatorHTTP FuzzUpstreamResponse FuzzConfig FuzzRoundTrip)
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=("${all_targets[@]}")

scratch=.build-fuzz   # corpus, artifacts, logs and reports (whatever the build configuration)
config=${FUZZ_CONFIG:-debug}
case "$config" in
  debug) build_dir=$scratch ;;
  release) build_dir=.build-fuzz-release ;;
  *) echo "FUZZ_CONFIG must be debug or release, not $config" >&2; exit 2 ;;
esac
bash scripts/setup.sh
echo "== build the fuzz targets ($config, -sanitize=fuzzer,address, scratch path $build_dir)"
build_start=$(date +%s)
# SwiftPM keeps its build plan for the Fuzz package and did not notice a source file added to the
# gateway's targets (the build then failed: a type in the new file not found); removing the plan
# makes it plan again (seconds), while the compiled objects are kept.
rm -f "$build_dir/$config.yaml"
build=(swift build --package-path Fuzz --scratch-path "$build_dir" -c "$config" -Xswiftc -sanitize=fuzzer,address -Xswiftc -warnings-as-errors)
# Some targets reach internals through @testable imports, which an optimised build must allow.
[ "$config" = release ] && build+=(-Xswiftc -enable-testing)
"${build[@]}" 2>&1 | grep -v "Cannot export local symbol" || { echo "fuzz build failed" >&2; exit 1; }
bin=$("${build[@]}" --show-bin-path)
echo "   built in $(( $(date +%s) - build_start )) s"

# Swift's own crash backtracer would race libFuzzer's and ASan's reports: theirs name the input.
export SWIFT_BACKTRACE=enable=no
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1}

report="$scratch/fuzz-report-$(date +%Y%m%d-%H%M%S)-$$.txt"
mkdir -p "$scratch"
printf '%-22s %8s %12s %9s %8s  %s\n' target seconds executions exec/s corpus result | tee "$report"
failed=0
for target in "${targets[@]}"; do
  [ -x "$bin/$target" ] || { echo "no fuzz target $target in $bin" >&2; exit 1; }
  corpus="$scratch/corpus/$target"
  artifacts="$scratch/artifacts/$target"
  mkdir -p "$corpus" "$artifacts" "Fuzz/Corpus/$target"
  log="$scratch/logs/$target.log"
  mkdir -p "$(dirname "$log")"
  limit=(-max_total_time="$seconds")
  [ -n "${FUZZ_RUNS:-}" ] && limit=(-runs="$FUZZ_RUNS")
  start=$(date +%s)
  status=0
  "$bin/$target" "${limit[@]}" -timeout=25 -rss_limit_mb=3072 -print_final_stats=1 \
    -artifact_prefix="$artifacts/" "$corpus" "Fuzz/Corpus/$target" >"$log" 2>&1 || status=$?
  elapsed=$(( $(date +%s) - start ))
  runs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*$' || true)
  [ -z "$runs" ] && runs=$(grep -oE '^#[0-9]+' "$log" | tail -1 | tr -d '#' || true)
  rate=$(( ${runs:-0} / (elapsed > 0 ? elapsed : 1) ))
  entries=$(find "$corpus" -type f | wc -l)
  if [ "$status" -eq 0 ]; then
    result=ok
  else
    result="FAILED (exit $status)"
    failed=1
  fi
  printf '%-22s %8s %12s %9s %8s  %s\n' "$target" "$elapsed" "${runs:-?}" "$rate" "$entries" "$result" | tee -a "$report"
  if [ "$status" -ne 0 ]; then
    grep -E 'PROPERTY FAILED|ERROR: (AddressSanitizer|libFuzzer)|Fatal error|SUMMARY|Test unit written' "$log" | head -20 | sed 's/^/    /'
    for artifact in $(grep -o "Test unit written to .*" "$log" | sed 's/Test unit written to //'); do
      echo "    reproducer: $artifact"
      echo "    replay:     SWIFT_BACKTRACE=enable=no $bin/$target $artifact"
    done
    echo "    full log:   $log"
  fi
done
echo "(table in $report)"
exit "$failed"
