#!/usr/bin/env bash
# Starter data the tests read, installed once: Debian packages need root (CI runs as root);
# without root, print the one command that gets them and carry on (those tests then skip).
set -uo pipefail
debs=()
[ -f /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz ] || debs+=(dataset-fashion-mnist)
if [ ${#debs[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${debs[@]}" >/dev/null
  else
    echo "starter data missing; to get it: sudo apt-get install -y ${debs[*]}"
  fi
fi
exit 0
