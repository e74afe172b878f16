#!/usr/bin/env bash
# Run anyio's own test suite against the nursery_io backend (not run by CI).
#
#   tests/anyio_backend/run_anyio_suite.sh [nursery_io|trio] [extra pytest args...]
#
# Downloads the anyio sdist (its tests/ and pyproject.toml) into $ANYIO_SUITE_DIR
# (default /tmp/anyio-suite), builds a venv there with anyio's test dependency group and
# this checkout of nursery_io (editable), and runs the suite keeping only the items of
# one backend (plus the unparametrized ones). "trio" gives the baseline. anyio's suite
# is loaded with no edits: the PYTEST_PLUGINS plugin registers the backend name, and
# localhost_shim makes "localhost" resolve to ::1 on machines whose /etc/hosts lacks it.
# The results go to $ANYIO_SUITE_DIR/<backend>.xml and <backend>.log.
set -euo pipefail

BACKEND="${1:-nursery_io}"
shift || true
ANYIO_VERSION="${ANYIO_VERSION:-4.16.0}"
SUITE_DIR="${ANYIO_SUITE_DIR:-/tmp/anyio-suite}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
PYTHON="${PYTHON:-$REPO/.venv/bin/python}"
SDIST="$SUITE_DIR/anyio-$ANYIO_VERSION"
VENV="$SUITE_DIR/venv"

mkdir -p "$SUITE_DIR"
if [ ! -d "$SDIST" ]; then
    "$PYTHON" -m pip download --no-deps --no-binary :all: "anyio==$ANYIO_VERSION" -d "$SUITE_DIR"
    tar -xzf "$SUITE_DIR/anyio-$ANYIO_VERSION.tar.gz" -C "$SUITE_DIR"
fi
if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/pip" install -q --upgrade pip
    # --group reads anyio's [dependency-groups] from the sdist's pyproject.toml.
    (cd "$SDIST" && "$VENV/bin/pip" install -q "anyio[trio]==$ANYIO_VERSION" --group test)
    "$VENV/bin/pip" install -q -e "$REPO"
fi

cd "$SDIST"
set +e
PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 \
PYTEST_PLUGINS=nursery_io_anyio_plugin \
PYTHONPATH="$HERE/suite_plugins" \
ANYIO_ONLY_BACKEND="$BACKEND" \
ANYIO_KEEP_UNPARAMETRIZED=1 \
timeout "${SUITE_TIMEOUT:-900}" "$VENV/bin/python" -m pytest \
    -p only_backend -p localhost_shim -p no:cacheprovider \
    --deselect tests/test_lazyimport.py::test_sourceless_install \
    --junitxml="$SUITE_DIR/$BACKEND.xml" \
    "$@" 2>&1 | tee "$SUITE_DIR/$BACKEND.log"
status=${PIPESTATUS[0]}
set -e
"$PYTHON" "$HERE/suite_plugins/summarize.py" "$SUITE_DIR/$BACKEND.xml"
exit "$status"
