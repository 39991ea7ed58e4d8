#!/usr/bin/env bash
# Pack, install the tarball offline with no scripts into a new project, and check it works.
set -euo pipefail
cd "$(dirname "$0")/.."
node test/install/run.mjs
