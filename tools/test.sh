#!/usr/bin/env bash
# The test command of README.md: installs what the tests need, then runs every test
# (unit tests, the notebooks under nbval, the book build and its browser check).
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m pip install -q -c constraints.txt -e ".[test]"

# The browser check of the built book needs Chromium; install it where we can (root + apt).
if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
        echo "note: chromium is not installed; the browser check will be skipped" >&2
    fi
fi

# Lint and type check (configuration in pyproject.toml) before the tests.
python3 -m ruff check .   # the package, tests, tools and notebooks (pyproject.toml says what each ignores)
python3 -m mypy

set +e
BNCOURSE_STRICT=1 python3 -m pytest -n 2 --dist loadfile "$@"
rc=$?
if [ "$rc" -eq 5 ]; then   # pytest: no tests collected
    echo "pytest collected no tests"
    rc=0
fi
exit "$rc"
