#!/bin/sh
# User-space cost of our libdlm_lt against Debian's on the kernel DLM:
#   tests/vm/profile.sh [6.1|6.12]          (default 6.12)
# Builds what tests/vm/suite.sh builds (tests/vm/build-kclib.sh), boots
# one guest with the host's valgrind in it, and counts the user-space
# instructions and memory accesses (callgrind) of `kclib bench` with 1000
# and with 2000 EX lock_wait+unlock_wait pairs, through Debian's libdlm_lt
# and through ours, and of the same pairs through the safe Rust API
# (`dlm-test-client bench`). The difference of the two counts divided by 1000 is
# the cost of one pair, start-up excluded; unlike the timings of
# tests/tests/kernel_speed.rs it does not move with the machine's load.
# Prints one line per library; the callgrind file of the 2000-pair run
# goes to $target/kclib/callgrind.<lib> (read it with callgrind_annotate).
# Honours CARGO_TARGET_DIR and DLM_VMTEST_CACHE.
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
target=${CARGO_TARGET_DIR:-$root/target}
kernel=${1:-6.12}

for tool in valgrind.bin callgrind_annotate gzip base64; do
	if ! command -v $tool > /dev/null; then
		echo "profile.sh: needs valgrind; run: apt-get install -y valgrind" >&2
		exit 1
	fi
done

tests/vm/build-kclib.sh

guest=$(mktemp -d)
trap 'rm -rf "$guest"' EXIT
cat > "$guest/profile.sh" << 'EOF'
#!/bin/sh
cd /tmp
for lib in deb-lt ours-lt rust-api; do
	env=env
	case $lib in
	deb-lt) env="env -u LD_LIBRARY_PATH" prog=/vmtest/bin/kclib-deb-lt ;;
	ours-lt) prog=/vmtest/bin/kclib-ours-lt ;;
	rust-api) prog=/vmtest/bin/dlm-test-client ;;
	esac
	for n in 1000 2000; do
		$env valgrind.bin --tool=callgrind --cache-sim=yes --dump-instr=yes \
			--callgrind-out-file=/tmp/cg.$lib.$n \
			$prog bench p$n$lib $n > /dev/null 2>&1
		echo "@@IR $lib $n $(sed -n 's/^summary: //p' /tmp/cg.$lib.$n)"
	done
	echo "@@CG $lib $(gzip -c /tmp/cg.$lib.2000 | base64 -w0)"
done
EOF
chmod +x "$guest/profile.sh"

vg=/usr/libexec/valgrind
cargo xtask vmtest --kernel "$kernel" --nodes 1 --mem 2048 \
	--file "$target/kclib/kclib-deb-lt" --file "$target/kclib/kclib-ours-lt" \
	--file "$target/release/dlm-test-client" \
	--file "$(command -v valgrind.bin)" --file "$(command -v gzip)" --file "$(command -v base64)" \
	--file "$vg/callgrind-amd64-linux:$vg/callgrind-amd64-linux" \
	--file "$vg/vgpreload_core-amd64-linux.so:$vg/vgpreload_core-amd64-linux.so" \
	--file "$vg/default.supp:$vg/default.supp" \
	--scripts "$guest" > "$target/kclib/profile.log" 2>&1 ||
	{ tail -20 "$target/kclib/profile.log"; exit 1; }

log=${DLM_VMTEST_CACHE:-$root/.cache/vm}/logs/$kernel-n1-node1.log
for lib in deb-lt ours-lt rust-api; do
	sed -n "s/.*@@CG $lib //p" "$log" | tr -d '\r' | base64 -d | gunzip > "$target/kclib/callgrind.$lib"
	# summary: Ir Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw
	one=$(sed -n "s/.*@@IR $lib 1000 //p" "$log" | tr -d '\r')
	two=$(sed -n "s/.*@@IR $lib 2000 //p" "$log" | tr -d '\r')
	if [ -z "$one" ] || [ -z "$two" ]; then
		echo "profile.sh: no count for $lib; guest log: $log" >&2
		exit 1
	fi
	set -- $one $two
	echo "kernel $kernel $lib per pair: $(((${10} - $1) / 1000)) instructions," \
		"$(((${11} - $2) / 1000)) reads, $(((${12} - $3) / 1000)) writes" \
		"(callgrind file: $target/kclib/callgrind.$lib)"
done
