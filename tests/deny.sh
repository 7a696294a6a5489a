#!/usr/bin/env bash
# The dependency graph against deny.toml with cargo-deny (installed into
# .tools/ once): licences, duplicate crates and sources always; RustSec
# advisories from a database that is fetched only when
# KUBESURGE_ADVISORY_FETCH=1 (it lives on github.com), else read offline
# from the copy an earlier fetch left under $CARGO_HOME/advisory-dbs, else
# not checked. The last line says which of the three happened.
set -euo pipefail
cd "$(dirname "$0")/.."

version=0.20.2
deny=.tools/cargo-deny/bin/cargo-deny
if ! "$deny" --version 2>/dev/null | grep -qx "cargo-deny $version"; then
  echo "tests/deny.sh: installing cargo-deny $version into .tools/cargo-deny" >&2
  cargo install --quiet --locked cargo-deny --version "$version" --root .tools/cargo-deny
fi

# cargo-deny reads the whole lock file, every platform's crates included;
# a build downloads only this platform's, so fetch the rest first.
cargo fetch --locked --quiet
"$deny" --offline check licenses bans sources

dbs="${CARGO_HOME:-$HOME/.cargo}/advisory-dbs"
if [ "${KUBESURGE_ADVISORY_FETCH:-0}" = 1 ]; then
  "$deny" check advisories
  echo "advisories: checked against the RustSec database, fetched now"
elif compgen -G "$dbs/*/.git" >/dev/null; then
  "$deny" --offline check advisories
  echo "advisories: checked offline against the RustSec database copy in $dbs (not fetched: KUBESURGE_ADVISORY_FETCH=1 fetches it)"
else
  echo "advisories: not checked: no RustSec database on this machine and fetching it from github.com is off (KUBESURGE_ADVISORY_FETCH=1 fetches it)"
fi
