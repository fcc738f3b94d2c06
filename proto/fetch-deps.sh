#!/usr/bin/env bash
# Fetches the protovalidate schema (buf/validate/validate.proto) into
# proto/third_party from protovalidate's Go module, at a pinned version.
set -euo pipefail
version="v1.2.2"
here="$(cd "$(dirname "$0")" && pwd)"
dest="$here/third_party/buf/validate"
if [[ -f "$dest/validate.proto" ]] && grep -q "$version" "$here/third_party/VERSION" 2>/dev/null; then
  exit 0
fi
echo "==> fetching protovalidate $version (Go module proxy)"
dir="$(go mod download -json "github.com/bufbuild/protovalidate@$version" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')"
mkdir -p "$dest"
install -m 0644 "$dir/proto/protovalidate/buf/validate/validate.proto" "$dest/validate.proto"
echo "$version" > "$here/third_party/VERSION"
