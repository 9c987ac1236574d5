#!/usr/bin/env bash
# Rebuild pixel-sdk/dist/ from source, byte for byte the same on every machine with the
# same toolchain:
#
#   dist/clickstamp.js             the loader, as written (js/clickstamp.js)
#   dist/clickstamp.min.js         the loader with comments and layout stripped
#   dist/clickstamp_pixel.js       wasm-bindgen glue (--target no-modules)
#   dist/clickstamp_pixel_bg.wasm  the WASM core
#   dist/BUILDINFO                 the toolchain that produced the above
#
# The WASM is built with rustup's wasm32 target when it is installed, else with
# Debian's rustc-web + -Zbuild-std (see .ci/wasm-check). Different compilers give
# different bytes; BUILDINFO says which one made the committed dist/.
#
# Env: PIXEL_TARGET_DIR  cargo target dir for the wasm build (default target/wasm-pixel;
#                        never the main one, whose release profile and rustc differ)
#      PIXEL_DIST        output dir (default pixel-sdk/dist)
set -euo pipefail

SDK="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$SDK/.." && pwd)"
DIST="${PIXEL_DIST:-$SDK/dist}"
TARGET=wasm32-unknown-unknown
TARGET_DIR="${PIXEL_TARGET_DIR:-$ROOT/target/wasm-pixel}"
GLUE_GLOBAL=__clickstamp_wasm
# Budgets from the issue, in bytes of gzip -9 output.
LOADER_GZ_MAX=2500
WASM_GZ_MAX=40000

log() { echo "pixel-build: $*" >&2; }
die() { log "$*"; exit 1; }

WB_VERSION="$(sed -n 's/^wasm-bindgen = { version = "=\([0-9.]*\)".*/\1/p' "$ROOT/Cargo.toml")"
[[ -n "$WB_VERSION" ]] || die "no exact wasm-bindgen pin (=x.y.z) in Cargo.toml"
command -v wasm-bindgen >/dev/null 2>&1 \
    || die "wasm-bindgen CLI missing: cargo install wasm-bindgen-cli --version $WB_VERSION"
have="$(wasm-bindgen --version | awk '{print $2}')"
[[ "$have" == "$WB_VERSION" ]] \
    || die "wasm-bindgen CLI is $have, the crate is pinned to $WB_VERSION: cargo install wasm-bindgen-cli --version $WB_VERSION --force"

# The size profile for the wasm only, through the environment so the workspace's
# release profile (the proxy's) stays as it is.
export CARGO_PROFILE_RELEASE_OPT_LEVEL=z
export CARGO_PROFILE_RELEASE_LTO=true
export CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1
export CARGO_PROFILE_RELEASE_PANIC=abort
# strip only debuginfo: full stripping would also drop the target_features section
# wasm-bindgen reads; it removes the name and producers sections itself below.
export CARGO_PROFILE_RELEASE_STRIP=debuginfo
export CARGO_PROFILE_RELEASE_DEBUG=false
# Panic locations embed source paths; map the machine-specific prefixes to fixed
# ones so the bytes do not depend on where the checkout or the cargo home lives.
cargo_home="${CARGO_HOME:-$HOME/.cargo}"
flags=(
    "--remap-path-prefix=$cargo_home=/cargo"
    "--remap-path-prefix=$TARGET_DIR=/target"
    "--remap-path-prefix=$ROOT=/clickstamp"
)
CARGO_ENCODED_RUSTFLAGS="$(IFS=$'\x1f'; echo "${flags[*]}")"
export CARGO_ENCODED_RUSTFLAGS
unset RUSTFLAGS

cd "$ROOT"
if command -v rustup >/dev/null 2>&1 && rustup target list --installed 2>/dev/null | grep -qx "$TARGET"; then
    toolchain="$(rustc --version) (rustup, $TARGET)"
    log "$toolchain"
    cargo build --locked --release -p clickstamp-pixel --lib --target "$TARGET" \
        --target-dir "$TARGET_DIR"
else
    # Debian's wasm32 std ships as source only: rebuild it with -Zbuild-std, which
    # RUSTC_BOOTSTRAP unlocks on this stable compiler. Linker choice as .ci/wasm-check.
    [[ -x /usr/bin/rustc && -x /usr/bin/cargo && -d /usr/lib/rustlib/src/rust/library ]] \
        || die "no wasm32 toolchain: rustup target add $TARGET, or apt-get install rustc-web cargo-web rust-web-src lld-22"
    linker=""
    for cand in rust-lld /usr/lib/llvm-22/bin/wasm-ld wasm-ld-22; do
        if command -v "$cand" >/dev/null 2>&1; then linker="$(command -v "$cand")"; break; fi
    done
    [[ -n "$linker" ]] || die "no rust-lld or wasm-ld (apt-get install lld-22)"
    toolchain="$(/usr/bin/rustc --version) (Debian rustc-web, build-std)"
    log "$toolchain, linker $linker"
    PATH="/usr/bin:$PATH" \
    RUSTC=/usr/bin/rustc \
    RUSTC_BOOTSTRAP=1 \
    CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER="$linker" \
        /usr/bin/cargo build --locked --release -p clickstamp-pixel --lib --target "$TARGET" \
        --target-dir "$TARGET_DIR" -Zbuild-std=std,panic_abort
fi
wasm="$TARGET_DIR/$TARGET/release/clickstamp_pixel.wasm"
[[ -f "$wasm" ]] || die "$wasm was not produced"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# no-modules: a classic script defining one global, so the ES5 loader can load it with
# a <script> element from any path, no module support or bundler needed.
wasm-bindgen --target no-modules --no-modules-global "$GLUE_GLOBAL" --no-typescript \
    --remove-name-section --remove-producers-section \
    --out-dir "$work" --out-name clickstamp_pixel "$wasm"

# wasm-opt is deliberately not run: whether a machine has it (and which version) would
# change the committed bytes, and the core is well inside its budget without it.

mkdir -p "$DIST"
rm -f "$DIST"/clickstamp* "$DIST/BUILDINFO"
cp "$work/clickstamp_pixel_bg.wasm" "$work/clickstamp_pixel.js" "$DIST/"
cp "$SDK/js/clickstamp.js" "$DIST/clickstamp.js"
"$SDK/js/minify.sh" <"$SDK/js/clickstamp.js" >"$DIST/clickstamp.min.js"
{
    echo "rustc: $toolchain"
    echo "wasm-bindgen: $WB_VERSION --target no-modules --no-modules-global $GLUE_GLOBAL"
    echo "wasm-opt: not used"
} >"$DIST/BUILDINFO"

# Sizes, and the budgets.
fail=0
printf '%-28s %9s %9s\n' file raw gzip >&2
for f in clickstamp.js clickstamp.min.js clickstamp_pixel.js clickstamp_pixel_bg.wasm; do
    raw=$(wc -c <"$DIST/$f")
    gz=$(gzip -9 -n -c "$DIST/$f" | wc -c)
    printf '%-28s %9d %9d\n' "$f" "$raw" "$gz" >&2
    case "$f" in
        clickstamp.min.js) ((gz <= LOADER_GZ_MAX)) || { log "loader over budget: $gz > $LOADER_GZ_MAX gzipped"; fail=1; } ;;
        clickstamp_pixel_bg.wasm) ((gz <= WASM_GZ_MAX)) || { log "wasm over budget: $gz > $WASM_GZ_MAX gzipped"; fail=1; } ;;
    esac
done
exit "$fail"
