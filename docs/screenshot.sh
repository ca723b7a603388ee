#!/usr/bin/env bash
# Regenerate docs/report-mistakes.png: the page of examples/mistakes (grade --html) in headless Chromium.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
.venv/bin/grader grade examples/mistakes --out "$tmp/report.json" --html "$tmp/report.html" --quiet
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking \
  --disable-component-update --disable-sync --hide-scrollbars --user-data-dir="$tmp/profile" \
  --window-size=1100,1900 --screenshot=docs/report-mistakes.png "file://$tmp/report.html" 2>/dev/null
echo "wrote docs/report-mistakes.png"
