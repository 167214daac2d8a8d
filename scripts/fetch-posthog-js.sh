#!/usr/bin/env bash
# Fetch the pinned posthog-js release (PostHog's browser SDK with the support widget) into
# var/posthog-js/<version>/package/, whose dist/ ticketwire serves as /static/*.js.
# Idempotent: does nothing when that version is already unpacked. Needs npm (Node 20).
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION="$(sed -n 's/^POSTHOG_JS_VERSION = "\(.*\)"$/\1/p' channels/widget/__init__.py)"
# npm's dist.integrity of that tarball (`npm view posthog-js@$VERSION dist.integrity`).
POSTHOG_JS_INTEGRITY="sha512-vji+h92IHaLlFSEnRH1hwe8uLWGOdDUImmPXexj/+V7Xm7HTxIQisYE/Kom7Aaw4DRpzfdhQxiyAN1YVYR4G8Q=="
DEST="var/posthog-js/${VERSION}"

if [ -z "$VERSION" ]; then
  echo "fetch-posthog-js: cannot read POSTHOG_JS_VERSION from channels/widget/__init__.py" >&2
  exit 1
fi
if [ -f "$DEST/package/dist/conversations.js" ] && [ -f "$DEST/package/dist/array.js" ]; then
  exit 0
fi
command -v npm >/dev/null 2>&1 || { echo "fetch-posthog-js: npm is required (apt-get install npm)" >&2; exit 1; }

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
echo "fetching posthog-js@${VERSION}"
(cd "$tmp" && npm pack --silent "posthog-js@${VERSION}" >/dev/null)
tarball="$tmp/posthog-js-${VERSION}.tgz"
actual="sha512-$(openssl dgst -sha512 -binary "$tarball" | base64 -w0)"
if [ "$actual" != "$POSTHOG_JS_INTEGRITY" ]; then
  echo "fetch-posthog-js: integrity mismatch for posthog-js@${VERSION}: $actual" >&2
  exit 1
fi
mkdir -p "$tmp/unpacked"
tar -xzf "$tarball" -C "$tmp/unpacked" package/dist package/package.json package/LICENSE
rm -rf "$DEST"
mkdir -p "$(dirname "$DEST")"
mv "$tmp/unpacked" "$DEST"
echo "posthog-js@${VERSION} ready in $DEST/package/dist"
