#!/usr/bin/env bash
# Builds h2spec (HTTP/2 conformance, 146 cases) offline: the library from
# ../shared/tools/h2spec/src (MIT) with Debian's Go packages (installed by that folder's
# build.sh list when missing), and tools/h2spec/main.go as its command.
#   tools/h2spec.sh OUT      # builds OUT (default target/h2spec)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
src=${H2SPEC_SRC:-$root/../shared/tools/h2spec/src/github.com/summerwind/h2spec}
out=${1:-$root/target/h2spec}
[[ $out = /* ]] || out=$root/$out   # go build runs in a scratch directory
[[ -d "$src" ]] || { echo "no h2spec source at $src" >&2; exit 2; }
pkgs=(golang-go golang-golang-x-net-dev golang-github-spf13-cobra-dev golang-github-fatih-color-dev
      golang-github-mattn-go-colorable-dev golang-github-mattn-go-isatty-dev golang-github-spf13-pflag-dev
      golang-github-inconshreveable-mousetrap-dev golang-golang-x-sys-dev)
missing=(); for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ((${#missing[@]})); then
  sudo=""; [[ $(id -u) -eq 0 ]] || sudo="sudo"
  $sudo apt-get update -qq && $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
mkdir -p "$work/src/github.com/summerwind" "$(dirname "$out")"
cp -r "$src" "$work/src/github.com/summerwind/h2spec"
chmod -R u+w "$work"
mkdir -p "$work/src/github.com/summerwind/h2spec/cmd/ringway-h2spec"
cp "$root/tools/h2spec/main.go" "$work/src/github.com/summerwind/h2spec/cmd/ringway-h2spec/"
cd "$work/src/github.com/summerwind/h2spec"
GO111MODULE=off GOPATH="$work:/usr/share/gocode" GOCACHE="$work/cache" GOFLAGS= \
  go build -o "$out" ./cmd/ringway-h2spec
echo "built $out"
