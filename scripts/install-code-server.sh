#!/usr/bin/env bash
# Installs the pinned code-server into tools/code-server (idempotent).
# Why the extra steps: code-server's native modules need libkrb5-dev; @vscode/ripgrep's postinstall
# downloads from GitHub unless its cache is seeded with Debian's rg; node-pty runs `npx node-gyp`,
# which needs npm_config_yes=true. docs/ARCHITECTURE.md ("Running a real VS Code") has the details.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dir="$root/tools/code-server"
want="4.100.3"

node_major="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$node_major" != "20" ]; then
  echo "install-code-server: code-server $want needs Node 20 (found $(node --version))" >&2
  exit 1
fi

have="$(node -p "try { require('$dir/node_modules/code-server/package.json').version } catch { '' }" 2>/dev/null || true)"
if [ "$have" = "$want" ] && [ -x "$dir/node_modules/code-server/lib/vscode/node_modules/@vscode/ripgrep/bin/rg" ]; then
  exit 0
fi

missing=()
dpkg -s libkrb5-dev >/dev/null 2>&1 || missing+=(libkrb5-dev)
command -v rg >/dev/null 2>&1 || missing+=(ripgrep)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = "0" ]; then
    echo "install-code-server: installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "install-code-server: missing Debian packages: ${missing[*]} (run: sudo apt-get install ${missing[*]})" >&2
    exit 1
  fi
fi

tmp="${TMPDIR:-/tmp}"
cache="$tmp/vscode-ripgrep-cache-1.15.11"
tarball="$cache/ripgrep-v13.0.0-10-x86_64-unknown-linux-musl.tar.gz"
if [ ! -f "$tarball" ]; then
  mkdir -p "$cache"
  stage="$(mktemp -d)"
  cp "$(command -v rg)" "$stage/rg"
  tar czf "$tarball" -C "$stage" rg
  rm -rf "$stage"
fi

echo "install-code-server: installing code-server $want into tools/code-server (about a minute)"
cd "$dir"
if [ -f package-lock.json ]; then
  npm_config_yes=true npm ci --unsafe-perm --no-audit --no-fund --loglevel=error
else
  npm_config_yes=true npm install --unsafe-perm --no-audit --no-fund --loglevel=error
fi
