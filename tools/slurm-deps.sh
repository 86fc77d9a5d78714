#!/usr/bin/env bash
# Slurm for `make test-slurm`: Debian's slurm-wlm (Slurm 22.05: slurmctld, slurmd and the client
# commands), installed when sbatch is missing and this is root on a Debian-like machine. The tests
# start their own one-node cluster in a temp folder (tests/slurm_cluster.py); nothing runs as a
# service. Exits non-zero when Slurm is missing and cannot be installed (test-slurm then fails).
set -u
command -v sbatch >/dev/null 2>&1 && command -v slurmctld >/dev/null 2>&1 && command -v slurmd >/dev/null 2>&1 && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "slurm-deps: slurm-wlm is missing and cannot be installed here (not root or no apt-get)" >&2
  exit 1
fi
echo "slurm-deps: installing slurm-wlm"
export DEBIAN_FRONTEND=noninteractive
if ! (apt-get update -qq && apt-get install -y -qq --no-install-recommends slurm-wlm) >/tmp/slurm-deps.log 2>&1; then
  echo "slurm-deps: could not install slurm-wlm (see /tmp/slurm-deps.log)" >&2
  exit 1
fi
