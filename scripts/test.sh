#!/usr/bin/env bash
# Set up what is missing and run the whole test suite: the project's venv, the data tools'
# venv (the client examples' tests), the teacher's venv and the student's training venv (TRL on
# the teacher's torch), Chromium and Playwright (the page's tests). Each step is idempotent.
# The tests start the real local teacher themselves (its model converted on first use, then
# cached in CORD_HOME).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/tools_venv.sh >/dev/null
bash deploy/local/setup.sh >/dev/null # the teacher venv: the student venv reuses its torch
bash scripts/student_venv.sh >/dev/null
bash scripts/ui_deps.sh
exec .venv/bin/python -m pytest -q --durations=25 "$@"
