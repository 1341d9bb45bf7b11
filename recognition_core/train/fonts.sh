#!/usr/bin/env bash
# Installs the fonts the synthetic plate renderer uses (Debian packages).
set -euo pipefail
packages=(fonts-dejavu-core fonts-wqy-zenhei fonts-wqy-microhei fonts-noto-cjk fonts-liberation fonts-roboto-unhinted)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
sudo_=""
[ "$(id -u)" -ne 0 ] && sudo_="sudo"
$sudo_ apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq "${missing[@]}"
