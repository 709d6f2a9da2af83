# Smoke: Debian's libdlm (threads build, AST thread) against the kernel DLM.
LSNAME=smoke_th$DLM_VMTEST_NODE dlmtest single 300 | tee out.txt
grep -q 'dlm_ls_pthread_init r=0' out.txt || exit 1
grep -q 'dlm_ls_lock_wait(EX,res1) r=0 errno=0 sb_status=0' out.txt || exit 1
grep -q 'failed' out.txt && exit 1
grep -q 'dlm_release_lockspace r=0' out.txt || exit 1
