#!/bin/sh
# The kernel-DLM suite (issue 6), run from the host:
#   tests/vm/suite.sh [extra cargo xtask vmtest options]
# Builds our libraries, dlmd and the kclib programs (tests/vm/build-kclib.sh),
# then boots both Debian kernels (6.1 and 6.12) with one node and with two
# nodes and runs the kernel_* tests of the dlm-tests crate in the guests. Exit status 0 when
# everything passed. Honours CARGO_TARGET_DIR and DLM_VMTEST_CACHE.
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
target=${CARGO_TARGET_DIR:-$root/target}

tests/vm/build-kclib.sh
out=$target/kclib

exec cargo xtask vmtest --kernel all --nodes all \
	--file "$target/release/dlmd:/vmtest/dlmd" --file "$target/release/dlm" \
	--file "$target/release/dlm-test-client" \
	--file "$out/kclib-deb-lt" --file "$out/kclib-deb-thr" \
	--file "$out/kclib-ours-lt" --file "$out/kclib-ours-thr" \
	--cargo-test '-p dlm-tests --test kernel_scenarios --test kernel_race --test kernel_two_nodes --test kernel_clib --test kernel_speed --test kernel_rust --test kernel_cli --test kernel_owners --test kernel_forceunlock' \
	"$@"
