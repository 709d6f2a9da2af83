#!/bin/sh
# The kernel-DLM suite (issue 6), run from the host:
#   tests/vm/suite.sh [extra cargo xtask vmtest options]
# Builds our libraries and dlmd (release), builds tests/vm/kclib.c four
# ways (Debian's libdlm3 and ours, lt and threads), then boots both Debian
# kernels (6.1 and 6.12) with one node and with two nodes and runs the
# kernel_* tests of the dlm-tests crate in the guests. Exit status 0 when
# everything passed. Honours CARGO_TARGET_DIR and DLM_VMTEST_CACHE.
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
target=${CARGO_TARGET_DIR:-$root/target}

cargo build --release -p dlm-pthread -p dlm-lt -p dlmd

# Debian's header and libraries for the comparison builds
if [ ! -e /usr/include/libdlm.h ] || [ ! -e /usr/lib/x86_64-linux-gnu/libdlm_lt.so ]; then
	echo "suite.sh: installing libdlm-dev (Debian's libdlm, for comparison)"
	apt-get install -y --no-remove libdlm-dev
fi

out=$target/kclib
mkdir -p "$out/lib"
for l in libdlm libdlm_lt; do
	ln -sf "$target/release/$l.so" "$out/lib/$l.so.3"
	ln -sf "$l.so.3" "$out/lib/$l.so"
done
src=tests/vm/kclib.c
cc="gcc -std=gnu11 -O2 -Wall -Werror"
$cc -o "$out/kclib-deb-lt" $src -ldlm_lt
$cc -D_REENTRANT -pthread -o "$out/kclib-deb-thr" $src -ldlm
$cc -Iinclude -o "$out/kclib-ours-lt" $src -L"$out/lib" -Wl,-rpath,"$out/lib" -ldlm_lt
$cc -Iinclude -D_REENTRANT -pthread -o "$out/kclib-ours-thr" $src -L"$out/lib" -Wl,-rpath,"$out/lib" -ldlm

exec cargo xtask vmtest --kernel all --nodes all \
	--file "$target/release/dlmd:/vmtest/dlmd" \
	--file "$out/kclib-deb-lt" --file "$out/kclib-deb-thr" \
	--file "$out/kclib-ours-lt" --file "$out/kclib-ours-thr" \
	--cargo-test '-p dlm-tests --test kernel_scenarios --test kernel_race --test kernel_two_nodes --test kernel_clib --test kernel_speed' \
	"$@"
