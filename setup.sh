#!/bin/sh
# The README's set-up: Graphviz (and, on Debian, Chromium for the browser test of report.html)
# where they are missing, then the virtual environment. Run from the repository's root:
#   sh setup.sh
# The system packages need root (or sudo without a password) and apt-get; without them this
# step is skipped with a note, and everything else works: report.html then shows circuits as
# tables, and the browser test is skipped.
set -eu

missing=""
command -v dot >/dev/null 2>&1 || missing="$missing graphviz"
if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1 \
    && ! command -v google-chrome >/dev/null 2>&1; then
    # only Debian's `chromium` is a plain package (Ubuntu's installs a snap)
    if [ -r /etc/os-release ] && . /etc/os-release && [ "${ID:-}" = debian ]; then
        missing="$missing chromium"
    fi
fi

if [ -n "$missing" ]; then
    if [ "$(id -u)" = 0 ]; then
        as_root=""
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        as_root="sudo -n"
    else
        as_root="none"
    fi
    if [ "$as_root" != none ] && command -v apt-get >/dev/null 2>&1; then
        echo "setup: installing$missing (apt-get)"
        # shellcheck disable=SC2086  # $missing is a list of package names
        if ! { $as_root apt-get update -qq \
            && DEBIAN_FRONTEND=noninteractive $as_root apt-get install -y -qq --no-install-recommends $missing \
            >/dev/null; }; then
            echo "setup: could not install$missing; going on without (see the README's set-up)" >&2
        fi
    else
        echo "setup: not installing$missing (needs root or sudo, and apt-get): report.html will show" \
            "circuits as tables, and the browser test is skipped" >&2
    fi
fi

python3 -m venv .venv
.venv/bin/pip install -q -c constraints.txt -e '.[test]'
