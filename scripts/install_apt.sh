#!/usr/bin/env bash
# Installs the Debian packages the stack and its tests need, when running as root and any is missing.
set -euo pipefail
# kamailio, haproxy, redis-server and postgresql: the cluster (`make cluster`, tests/cluster)
packages=(espeak-ng sox sip-tester baresip-core chromium tshark fonts-wqy-microhei kamailio haproxy redis-server postgresql)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "Missing Debian packages: ${missing[*]}. Install them with: sudo apt-get install ${missing[*]}" >&2
  exit 1
fi
echo "Installing Debian packages: ${missing[*]}"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
