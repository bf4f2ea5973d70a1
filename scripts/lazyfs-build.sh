#!/usr/bin/env bash
# Builds LazyFS, the power-loss test tool (a FUSE file system that forgets unsynced writes on
# command), into the cache directory the tests look in (test/support/lazyfs.ts): $LOGMTA_LAZYFS_BUILD,
# else ${XDG_CACHE_HOME:-$HOME/.cache}/logmta/lazyfs. LazyFS is not part of the project: its
# source is ../shared/tools/lazyfs beside the repository (for a git worktree, beside the main
# checkout), and nothing of it is copied into the repository. A build already there is reused.
# Prints the binary's path. Where the tool or /dev/fuse is missing it says so and exits 0: the
# LazyFS tests then skip with that reason. A failed build exits 1.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
home=${HOME:-$(getent passwd "$(id -u)" | cut -d: -f6)}
out=${LOGMTA_LAZYFS_BUILD:-${XDG_CACHE_HOME:-$home/.cache}/logmta/lazyfs}
tool=""
for root in "$repo" "$(git -C "$repo" rev-parse --path-format=absolute --git-common-dir 2>/dev/null | sed 's#/\.git$##')"; do
  if [ -n "$root" ] && [ -x "$root/../shared/tools/lazyfs/build.sh" ]; then tool="$root/../shared/tools/lazyfs"; break; fi
done
if [ -z "$tool" ]; then echo "lazyfs: ../shared/tools/lazyfs not found; LazyFS tests will skip" >&2; exit 0; fi
if [ ! -e /dev/fuse ]; then echo "lazyfs: no /dev/fuse; LazyFS tests will skip" >&2; exit 0; fi
mkdir -p "$out"
bin=$(bash "$tool/build.sh" "$out") || { echo "lazyfs: build failed; see $out/build.log" >&2; exit 1; }
echo "$bin"
