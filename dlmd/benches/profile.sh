#!/bin/sh
# Instructions per synchronous lock+unlock pair on dlmd, for dlmd itself
# and for each client, counted with callgrind on this host:
#   dlmd/benches/profile.sh
# Builds dlmd, dlm-test-client and our libdlm_lt (release) and
# tests/vm/kclib.c against that libdlm_lt, starts a private dlmd under
# callgrind, and runs each client under callgrind with 1000 and with 2000
# EX lock_wait+unlock_wait pairs on one resource: our libdlm_lt
# (`kclib bench`), the safe Rust API (`dlm-test-client bench`) and the
# protocol's floor, the raw client of dlmd/benches/dlmd.rs
# (DLMD_BENCH_SYNC_ONLY, which runs its own dlmd: only its client side is
# counted). The difference of the two counts divided by 1000 is the cost
# of one pair, start-up excluded; for dlmd the same is taken from a dlmd
# that served only that client. Prints one line per program; the
# callgrind files stay in $target/dlmd-profile (callgrind_annotate).
# Honours CARGO_TARGET_DIR. Needs valgrind and gcc.
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
target=${CARGO_TARGET_DIR:-$root/target}
for tool in valgrind callgrind_annotate gcc; do
	if ! command -v $tool > /dev/null; then
		echo "profile.sh: needs $tool (apt-get install -y valgrind gcc)" >&2
		exit 1
	fi
done

cargo build --release -q -p dlm-lt -p dlmd
cargo build --release -q -p dlm-tests --bin dlm-test-client
out=$target/dlmd-profile
rm -rf "$out"
mkdir -p "$out/lib" "$out/run"
ln -sf "$target/release/libdlm_lt.so" "$out/lib/libdlm_lt.so.3"
ln -sf libdlm_lt.so.3 "$out/lib/libdlm_lt.so"
gcc -std=gnu11 -O2 -Wall -Werror -Iinclude -o "$out/kclib-ours-lt" tests/vm/kclib.c \
	-L"$out/lib" -Wl,-rpath,"$out/lib" -ldlm_lt
cargo bench -q -p dlmd --bench dlmd --no-run 2> /dev/null || true
# The raw client: the bench binary (not the daemon, also dlmd-*).
rawbench=$(grep -l DLMD_BENCH_SYNC_ONLY $(ls -t "$target"/release/deps/dlmd-* | grep -v '\.d$') 2> /dev/null | head -1 || true)

sock=$out/run/dlmd.sock
export DLM_BACKEND=dlmd DLMD_SOCKET=$sock
cg="valgrind --tool=callgrind --callgrind-out-file"

# summary: total instructions of a callgrind file
ir() { sed -n 's/^summary: //p' "$1" | cut -d' ' -f1; }

# run_pair NAME N COMMAND...: dlmd and the client under callgrind.
run_pair() {
	name=$1 n=$2
	shift 2
	rm -f "$sock"
	$cg="$out/cg.dlmd.$name.$n" "$target/release/dlmd" --foreground > "$out/dlmd.$name.$n.log" 2>&1 &
	dpid=$!
	i=0
	while [ ! -S "$sock" ]; do
		i=$((i + 1))
		if [ $i -gt 600 ]; then
			echo "profile.sh: dlmd did not start" >&2
			exit 1
		fi
		sleep 0.1
	done
	$cg="$out/cg.$name.$n" "$@" > /dev/null 2>&1
	kill -TERM $dpid
	wait $dpid || true
}

for n in 1000 2000; do
	run_pair ours-lt $n "$out/kclib-ours-lt" bench "p$n" $n
	run_pair rust-api $n "$target/release/dlm-test-client" bench "r$n" $n
done
for name in ours-lt rust-api; do
	c=$((($(ir "$out/cg.$name.2000") - $(ir "$out/cg.$name.1000")) / 1000))
	d=$((($(ir "$out/cg.dlmd.$name.2000") - $(ir "$out/cg.dlmd.$name.1000")) / 1000))
	echo "$name: client $c, dlmd $d instructions per pair"
done
if [ -n "$rawbench" ]; then
	for n in 10000 20000; do
		DLMD_BENCH_CPUS=free DLMD_BENCH_SYNC_ONLY=$n \
			$cg="$out/cg.raw.$n" "$rawbench" --bench > /dev/null 2>&1 || true
	done
	# Each run makes n/10 warm-up pairs and n measured ones.
	c=$((($(ir "$out/cg.raw.20000") - $(ir "$out/cg.raw.10000")) / 11000))
	echo "raw protocol client (dlmd/benches/dlmd.rs): client $c instructions per pair"
fi
