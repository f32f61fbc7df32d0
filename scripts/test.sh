#!/bin/sh
# Installs what is missing, checks the tree (scripts/tidy.sh), builds Tally
# and runs every test: the Check suites (ctest) in a Release build and again
# in a Debug build under ASan/UBSan, then a short libFuzzer smoke run of
# every target (fuzz/smoke.sh).
set -eu
cd "$(dirname "$0")/.."
TALLY_WITH_FUZZ=1 sh scripts/deps.sh
JOBS=$(nproc)

echo "== tidy"
sh scripts/tidy.sh

echo "== release build and tests"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$JOBS"
(cd build && ctest --output-on-failure -j "$JOBS")

echo "== ASan/UBSan build and tests"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DTALLY_SANITIZE=ON >/dev/null
cmake --build build-asan -j "$JOBS"
# test_tidy checks scripts/tidy.sh, not C code: the release run covers it.
# tests/lsan.supp: fontconfig's own caches (tally statement), nothing of Tally's.
SUPP="$(pwd)/tests/lsan.supp" # the repository's, named before the cd
(cd build-asan && ASAN_OPTIONS=detect_leaks=1 LSAN_OPTIONS=suppressions="$SUPP" ctest --output-on-failure -j "$JOBS" -E '^test_tidy$')

if [ -x fuzz/smoke.sh ] || [ -f fuzz/smoke.sh ]; then
    echo "== fuzz smoke"
    sh fuzz/smoke.sh
fi
echo "== all tests passed"
