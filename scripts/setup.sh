#!/usr/bin/env bash
# Installs every Debian package dpo_hpc needs to build, test and run its demo.
# Idempotent; run as root (or with sudo). Safe to run again.
set -euo pipefail

packages=(
  build-essential cmake pkg-config git ca-certificates
  openmpi-bin libopenmpi-dev
  libhdf5-openmpi-dev hdf5-tools
  libconfig-dev
  libjansson-dev libpcre2-dev libutf8proc-dev
  libopenblas-openmp-dev
  libblas-dev
  libomp-dev
  python3 python3-yaml
  gnuplot-nox
  shellcheck
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ "${#missing[@]}" -gt 0 ]; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "setup: all packages already installed"
fi
