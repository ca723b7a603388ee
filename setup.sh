#!/usr/bin/env bash
# Quick start, step 1: set everything up in .venv, then run the main job:
# grade the reference solutions and the example submission with mistakes.
#   PYTHON=python3.12 ./setup.sh            another interpreter
#   TORCH_SPEC='torch>=2.2' ./setup.sh      another torch (the default pin takes the CPU build)
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}

# Debian packages, installed when run as root with apt-get (one apt-get update), else a note:
# bubblewrap gives the strongest isolation (without it the grader falls back, see README);
# graphviz's `dot` lays out the graphs of `grade --html` (without it the page has tables only).
# chromium: the test suite opens the HTML pages in it (the page tests fail without it).
# APT_EXTRA adds packages.
missing=()
command -v bwrap >/dev/null 2>&1 || missing+=(bubblewrap)
command -v dot >/dev/null 2>&1 || missing+=(graphviz)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
# libseccomp (Debian installs it by default) builds the exercise children's syscall filter.
/sbin/ldconfig -p 2>/dev/null | grep -q 'libseccomp\.so\.2' || missing+=(libseccomp2)
for pkg in ${APT_EXTRA:-}; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    case " ${missing[*]} " in *" bubblewrap "*)
      echo "note: bubblewrap (bwrap) is not installed; grading will use a weaker isolation level" >&2;; esac
    case " ${missing[*]} " in *" graphviz "*)
      echo "note: graphviz (dot) is not installed; the HTML page will show its tables without the graphs" >&2;; esac
    case " ${missing[*]} " in *" chromium "*)
      echo "note: chromium is not installed; the test suite's page tests need it" >&2;; esac
    for pkg in ${APT_EXTRA:-}; do
      case " ${missing[*]} " in *" $pkg "*) echo "note: $pkg is not installed (not root, or no apt-get)" >&2;; esac
    done
  fi
fi

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
# torch first and pinned: an open range in a fresh environment may pull a multi-GB CUDA build.
.venv/bin/pip install --quiet --disable-pip-version-check "$TORCH_SPEC"
.venv/bin/pip install --quiet --disable-pip-version-check -e '.[test]'

mkdir -p out
echo "== grading the reference solutions (solutions/) =="
.venv/bin/grader grade solutions --out out/solutions.json --min-score 100
echo
echo "== grading an example submission with typical mistakes (examples/mistakes/) =="
.venv/bin/grader grade examples/mistakes --out out/mistakes.json --html out/mistakes.html
