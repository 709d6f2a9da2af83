# Smoke, two nodes: node 1 holds EX on resA; node 2's NOQUEUE EX on resA gets
# EAGAIN, and its blocking EX is granted once node 1 unlocks.
[ "$DLM_VMTEST_NODES" = 2 ] || exit 77
HOLD=6
if [ "$DLM_VMTEST_NODE" = 1 ]; then
  LSNAME=smoke2 dlmtest_lt hold resA $HOLD 1 > hold.txt 2>&1 &
  pid=$!
  i=0
  until grep -q '^HOLD: EX on resA r=0 st=0' hold.txt; do
    i=$((i+1)); [ $i -gt 300 ] && { cat hold.txt; kill $pid; exit 1; }
    kill -0 $pid 2>/dev/null || { cat hold.txt; exit 1; }
    sleep 0.1
  done
  vmtest-barrier held || exit 1
  wait $pid; rc=$?
  cat hold.txt
  vmtest-barrier tried || exit 1
  [ $rc = 0 ] && grep -q 'HOLD: unlocked r=0' hold.txt
else
  vmtest-barrier held || exit 1
  LSNAME=smoke2 dlmtest_lt try resA | tee try.txt
  vmtest-barrier tried || exit 1
  grep -E -q 'TRY: NOQUEUE EX on resA (r=-1 errno=11|.* sb_status=11 )' try.txt || { echo "FAIL: NOQUEUE EX was not refused with EAGAIN"; exit 1; }
  grep -q 'TRY: blocking EX r=0 st=0' try.txt || { echo "FAIL: blocking EX not granted"; exit 1; }
  grep -q 'TRY: release r=0' try.txt || exit 1
fi
