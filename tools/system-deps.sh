#!/usr/bin/env bash
# Debian packages some tests drive for real: chromium (the serve page in a headless browser) and
# tmux (trainmon and a Ctrl-Z in a real terminal). Installed with apt-get when missing and this is
# root on a Debian-like machine (`make test` and `make test-tui` run this first, and say so);
# otherwise the tests that need them skip with the reason. Never fails the build.
set -u
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v tmux >/dev/null 2>&1 || need+=(tmux)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "system-deps: missing ${need[*]} (not root or no apt-get): the tests that need them will skip"
  exit 0
fi
echo "system-deps: running as root: installing ${need[*]} with apt-get (for the tests that drive them)"
export DEBIAN_FRONTEND=noninteractive
(apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}") >/tmp/system-deps.log 2>&1 \
  || echo "system-deps: could not install ${need[*]} (see /tmp/system-deps.log): the tests that need them will skip"
exit 0
