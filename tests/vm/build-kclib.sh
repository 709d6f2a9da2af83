#!/bin/sh
# Builds our libraries, dlmd, dlm and dlm-test-client (release), then
# tests/vm/kclib.c four ways (Debian's libdlm3 and ours, lt and threads)
# into $CARGO_TARGET_DIR/kclib (default target/kclib): the programs
# tests/vm/suite.sh and tests/vm/profile.sh put in the guests.
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
target=${CARGO_TARGET_DIR:-$root/target}

cargo build --release -p dlm-pthread -p dlm-lt -p dlmd -p dlm-cli
cargo build --release -p dlm-tests --bin dlm-test-client

# Debian's header and libraries for the comparison builds
if [ ! -e /usr/include/libdlm.h ] || [ ! -e /usr/lib/x86_64-linux-gnu/libdlm_lt.so ]; then
	echo "build-kclib.sh: installing libdlm-dev (Debian's libdlm, for comparison)"
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
