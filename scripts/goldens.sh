#!/usr/bin/env bash
# Regenerate every PyTorch golden in fixtures/goldens/. Needs Debian's python3-torch:
#   apt-get install python3-torch      (torch 1.13 for /usr/bin/python3)
set -euo pipefail
cd "$(dirname "$0")/goldens"
for f in $(ls *.py | grep -v '^common.py$'); do
  /usr/bin/python3 "$f"
done
