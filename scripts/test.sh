#!/usr/bin/env bash
# Set up Moss with its test extras, install what the tests start (PostgreSQL, Chromium),
# and run the whole test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test

# Services and tools the tests start themselves: a PostgreSQL server, a headless Chromium
# (Playwright drives Debian's, never a downloaded one), fonts for Chinese text and emoji, and
# bubblewrap, the code sandbox's namespaces.
missing=()
command -v bwrap >/dev/null || missing+=(bubblewrap)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
[ -x /usr/bin/chromium ] || missing+=(chromium)
fc-list 2>/dev/null | grep -qi "wenquanyi\|noto sans cjk" || missing+=(fonts-wqy-microhei)
fc-list 2>/dev/null | grep -qi "color emoji" || missing+=(fonts-noto-color-emoji)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    echo "moss test: installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "error: the tests need: sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi

set +e
.venv/bin/python -m pytest -ra --durations=25 "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "error: pytest collected no tests" >&2
  exit 1
fi
exit "$rc"
