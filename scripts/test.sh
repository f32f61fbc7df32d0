#!/bin/sh
# Installs what is missing, builds Tally and runs every test: the Check
# suites (ctest) in a release build and again under ASan/UBSan, then a short
# libFuzzer smoke run of the codec and request decoder.
set -eu
cd "$(dirname "$0")/.."
TALLY_WITH_FUZZ=1 sh scripts/deps.sh
JOBS=$(nproc)

echo "== release build and tests"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$JOBS"
(cd build && ctest --output-on-failure -j "$JOBS")

echo "== ASan/UBSan build and tests"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DTALLY_SANITIZE=ON >/dev/null
cmake --build build-asan -j "$JOBS"
(cd build-asan && ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure -j "$JOBS")

if [ -x fuzz/smoke.sh ] || [ -f fuzz/smoke.sh ]; then
    echo "== fuzz smoke"
    sh fuzz/smoke.sh
fi
echo "== all tests passed"
