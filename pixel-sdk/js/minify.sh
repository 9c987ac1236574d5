#!/usr/bin/env bash
# A deliberately conservative minifier for js/clickstamp.js (stdin to stdout), so the
# build needs no npm packages. It relies on the loader's style rules (comments only on
# lines of their own, every statement ending in a semicolon) and only ever:
#   - drops comment lines and blank lines,
#   - drops indentation and trailing blanks,
#   - joins a line onto the previous one when that one ends in `{ ; , (`, where a
#     newline can never end a statement (no automatic semicolon insertion applies).
# The node tests run the minified output, so a rule the source broke shows up there.
set -euo pipefail
LC_ALL=C sed -e '/^[[:space:]]*\/\//d' -e 's/^[[:space:]]*//' -e 's/[[:space:]]*$//' -e '/^$/d' \
    | LC_ALL=C sed -e ':a' -e 'N' -e '$!ba' -e 's/\([{;,(]\)\n/\1/g'
