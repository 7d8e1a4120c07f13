#!/usr/bin/env bash
# Runs the Python, Go and Mojo host tests; exits non-zero if any failed.
# Usage: OMENDB_LIB_DIR=target/release scripts/hosts/all.sh
set -uo pipefail
DIR="$(cd "$(dirname "$0")" && pwd)"
failed=()
for host in python go mojo; do
  echo "=================== $host" >&2
  if ! "$DIR/$host.sh"; then
    failed+=("$host")
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "host tests FAILED: ${failed[*]}" >&2
  exit 1
fi
echo "host tests passed: python go mojo" >&2
