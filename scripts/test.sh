#!/usr/bin/env bash
# Runs every test tier in order and closes with one line adding them up. A tier that cannot run
# (no tests found, a tool missing) fails the whole run: nothing is skipped quietly. Failed tests are
# named after the total, so the tail of a CI log says which.
set -uo pipefail
cd "$(dirname "$0")/.."
TIERS=(${TEST_TIERS:-unit integration node16 system})
summary=$(mktemp)
export TEST_SUMMARY_FILE=$summary
rc=0
npm run build --silent || exit 1
for tier in "${TIERS[@]}"; do
  echo "=== tier: $tier"
  before=$(wc -l < "$summary")
  TEST_TIER=$tier npm run --silent "test:$tier" || rc=1
  if [ "$(wc -l < "$summary")" = "$before" ]; then
    echo "tier $tier did not report: it did not run" >&2
    rc=1
  elif tail -n 1 "$summary" | grep -q '"passed":0,'; then
    echo "tier $tier ran no test" >&2
    rc=1
  fi
done
python3 - "$summary" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
p = sum(r["passed"] for r in rows); f = sum(r["failed"] for r in rows); s = sum(r["skipped"] for r in rows)
print(f"total: {p} passed, {f} failed, {s} skipped")
for r in rows:
    for t in r.get("failures", []):
        print(f"failed in {r['tier']}: {t}")
PY
rm -f "$summary"
exit $rc
