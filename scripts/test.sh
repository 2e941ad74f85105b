#!/usr/bin/env bash
# The whole test suite: lint + format check, type check, then every node:test file under test/.
set -euo pipefail
cd "$(dirname "$0")/.."
npx biome check .
npx tsc --noEmit
mapfile -t files < <(find test -name '*.test.ts' | sort)
exec node --import tsx --test --test-reporter=spec --test-concurrency=2 --test-timeout=300000 "${files[@]}"
