#!/usr/bin/env bash
# Build (once) the virtualenv that clients/train_student.py runs in: TRL, peft and datasets
# on top of the teacher venv's torch and transformers, which it reuses rather than installs
# again (a .pth file puts the teacher's site-packages on its path, after its own, so pip
# counts them as installed; a package it must upgrade lands in the student venv and
# shadows the teacher's copy, which pip leaves alone). Prints the venv's python.
# Reused while the pins below are unchanged and the venv still imports them.
set -euo pipefail
cd "$(dirname "$0")/.."
home="${CORD_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/cord-proxy}"
teacher="$home/teacher-venv"
venv="$home/student-venv"
# trl 1.13.0 is the last release with trl.experimental.prm (PRMTrainer); 1.14.0 dropped it.
requirements=(trl==1.13.0 peft==0.21.2 datasets==5.2.0)
check='import torch, transformers, trl, peft, datasets
from trl.experimental.prm import PRMTrainer'

if [[ ! -x "$teacher/bin/python" || ! -f "$teacher/.cord-installed" ]]; then
  echo "[student] the teacher venv $teacher is missing: run \`bash deploy/local/setup.sh\`" \
    "or \`cord-proxy up\` first (it holds the torch and transformers this venv reuses)" >&2
  exit 1
fi

mkdir -p "$home"
exec 9>"$home/student-venv.lock"
flock 9
ready() {
  [[ -f "$venv/.complete" && "$(cat "$venv/.complete")" == "${requirements[*]}" ]] &&
    TRL_EXPERIMENTAL_SILENCE=1 "$venv/bin/python" -c "$check" 2>/dev/null
}
if ready; then
  echo "[student] reusing $venv" >&2
  echo "$venv/bin/python"
  exit 0
fi

started=$SECONDS
echo "[student] creating $venv on the teacher venv's python" >&2
rm -rf "$venv"
# the teacher's python makes a venv of its base interpreter: the same version, so the
# teacher's compiled packages load
"$teacher/bin/python" -m venv "$venv"
site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')"
teacher_site="$("$teacher/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')"
echo "$teacher_site" >"$site/cord-teacher-packages.pth"
echo "[student] reusing $teacher_site through $site/cord-teacher-packages.pth:" \
  "$("$venv/bin/python" -c 'import torch, transformers, accelerate as a
print(f"torch {torch.__version__}, transformers {transformers.__version__}, accelerate {a.__version__}")')" >&2

echo "[student] installing ${requirements[*]}" >&2
log="$venv/pip-install.log"
"$venv/bin/pip" install --progress-bar off "${requirements[@]}" >"$log" 2>&1 || {
  tail -n 30 "$log" >&2
  echo "[student] pip install failed (log: $log): check that the package registry is reachable and rerun" >&2
  exit 1
}
grep -E '^Successfully installed' "$log" | sed 's/^/[student] /' >&2 || true
if grep -qiE '^(Collecting|Downloading) (torch|transformers)[-= ]' "$log"; then
  echo "[student] pip fetched torch or transformers instead of reusing the teacher's: see $log" >&2
  exit 1
fi
TRL_EXPERIMENTAL_SILENCE=1 "$venv/bin/python" -c "$check" >&2 || {
  echo "[student] the student venv does not import TRL's trainers: delete $venv and rerun" >&2
  exit 1
}
echo "${requirements[*]}" >"$venv/.complete"
echo "[student] ready in $((SECONDS - started))s: $venv ($(du -sh "$venv" | cut -f1))" >&2
echo "$venv/bin/python"
