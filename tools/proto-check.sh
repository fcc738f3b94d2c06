#!/usr/bin/env bash
# The proto gates CI runs: buf lint, buf breaking against the previous commit
# of main, and "regenerating changes nothing".
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
export PATH="$root/.venv/bin:$PATH"

echo "==> buf lint"
(cd proto && buf lint)

against="${PROTO_AGAINST:-HEAD~1}"
if git rev-parse --verify --quiet "$against^{commit}" >/dev/null &&
   git cat-file -e "$against:proto/buf.yaml" 2>/dev/null; then
  echo "==> buf breaking against $against"
  # buf's registry is out of reach, so the previous schema is built here,
  # with the same third-party protos beside it, rather than by buf from git.
  prev="$(mktemp -d)"
  trap 'rm -rf "$prev"' EXIT
  git archive "$against" proto | tar -x -C "$prev"
  cp -r proto/third_party "$prev/proto/"
  (cd "$prev/proto" && buf build -o "$prev/previous.binpb")
  (cd proto && buf build -o "$prev/current.binpb")
  (cd proto && buf breaking "$prev/current.binpb" --against "$prev/previous.binpb" \
    --config '{"version":"v2","breaking":{"use":["FILE"]}}')
else
  echo "==> buf breaking: skipped ($against has no proto/ to compare with)"
fi

echo "==> generated code is up to date"
make --no-print-directory proto >/dev/null
if ! git diff --quiet --exit-code -- libs/protos || [[ -n "$(git status --porcelain -- libs/protos)" ]]; then
  git status --short -- libs/protos
  echo "libs/protos differs from what proto/ generates: run 'make proto' and commit" >&2
  exit 1
fi
