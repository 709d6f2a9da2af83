# Smoke: Debian's libdlm_lt (no threads) against the kernel DLM on this node:
# create a lockspace, EX lock/unlock, 1000 lock pairs, 1000 conversions, release.
# On a multi-node run each node uses its own lockspace.
LSNAME=smoke_lt$DLM_VMTEST_NODE dlmtest_lt single 1000 | tee out.txt
grep -q 'dlm_ls_lock_wait(EX,res1) r=0 errno=0 sb_status=0' out.txt || exit 1
grep -q 'failed' out.txt && exit 1
grep -q 'dlm_release_lockspace r=0' out.txt || exit 1
