#!/usr/bin/env bash
# Installs the RustSec advisory database snapshot (../shared/data/rustsec-advisory-db.bundle,
# beside the repository) as cargo-deny's local copy, for `cargo deny --offline check
# advisories` on a machine that cannot reach github.com. A copy already there that is at least
# as new as the snapshot is kept. Exits non-zero when there is no snapshot.
#
#   scripts/advisory-db-offline.sh [BUNDLE]
set -euo pipefail
cd "$(dirname "$0")/.."

bundle=${1:-../shared/data/rustsec-advisory-db.bundle}
if [ ! -f "$bundle" ]; then
  echo "advisory-db-offline: no snapshot at $bundle" >&2
  exit 1
fi

# cargo-deny keeps each database under $CARGO_HOME/advisory-dbs/<name>-<hash of its URL>; this
# is the directory of its default URL, https://github.com/rustsec/advisory-db (cargo-deny
# 0.20, as the test command installs). Should a later version name it otherwise, its
# `--offline` check fails ("cannot change to ..."), it does not pass.
db_dir="${CARGO_HOME:-$HOME/.cargo}/advisory-dbs/advisory-db-3157b0e258782691"

commit_time() { git -C "$1" show -s --format=%ct HEAD 2>/dev/null || echo 0; }

snapshot=$(mktemp -d)
trap 'rm -rf "$snapshot"' EXIT
git -c advice.detachedHead=false -c init.defaultBranch=main clone --quiet "$bundle" "$snapshot/db"
# The snapshot is a shallow history: its commit's parent is not in the bundle, and git
# (cargo-deny runs `git show HEAD`) refuses the commit until the clone says it is shallow.
head=$(git -C "$snapshot/db" rev-parse HEAD)
if ! git -C "$snapshot/db" cat-file -e "$(git -C "$snapshot/db" cat-file -p "$head" | sed -n 's/^parent //p' | head -1)^{commit}" 2>/dev/null; then
  echo "$head" >"$snapshot/db/.git/shallow"
fi

if [ "$(commit_time "$db_dir")" -ge "$(commit_time "$snapshot/db")" ]; then
  echo "advisory-db-offline: keeping $db_dir ($(git -C "$db_dir" show -s --format='%h %cI' HEAD)), not older than the snapshot"
  exit 0
fi
rm -rf "$db_dir"
mkdir -p "$(dirname "$db_dir")"
mv "$snapshot/db" "$db_dir"
echo "advisory-db-offline: $db_dir is the snapshot $(git -C "$db_dir" show -s --format='%h %cI' HEAD)"
