#!/usr/bin/env bash
# Builds the Debian package: renders the manual page and shell completions from the binary into target/assets,
# then runs cargo-deb. Extra arguments go to cargo-deb (CI passes `--profile dev` to reuse its test build).
#   bash deploy/debian/build.sh            # release build: target/debian/hattrick_<version>-1_<arch>.deb
set -euo pipefail
cd "$(dirname "$0")/../.."
profile=release
prev_arg=""
for arg in "$@"; do
  case "$prev_arg-$arg" in
    --profile-*) profile="$arg" ;;
  esac
  prev_arg="$arg"
done
dir=$([ "$profile" = dev ] && echo debug || echo "$profile")
cargo build --profile "$profile" -p hattrick --bin hattrick
bin="target/$dir/hattrick"
mkdir -p target/assets
"$bin" manpage >target/assets/hattrick.1
"$bin" completions bash >target/assets/hattrick.bash
"$bin" completions zsh >target/assets/_hattrick
"$bin" completions fish >target/assets/hattrick.fish
cargo deb -p hattrick --no-build "$@"
