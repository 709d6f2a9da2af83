/*
 * Prints every size, offset and constant of libdlm.h: compiled against
 * our header and against Debian's, the outputs must be identical.
 */
#include <sys/types.h>
#include <stddef.h>
#include <stdio.h>
#include <libdlm.h>

#define P(x) printf("%s %lld\n", #x, (long long)(x))

int main(void)
{
	P(sizeof(struct dlm_lksb)); P(_Alignof(struct dlm_lksb));
	P(offsetof(struct dlm_lksb, sb_status)); P(offsetof(struct dlm_lksb, sb_lkid));
	P(offsetof(struct dlm_lksb, sb_flags)); P(offsetof(struct dlm_lksb, sb_lvbptr));
	P(sizeof(dlm_lshandle_t));
	P(DLM_LVB_LEN); P(DLM_LOCKSPACE_LEN); P(DLM_RESNAME_MAXLEN);
	P(DLM_SBF_DEMOTED); P(DLM_SBF_VALNOTVALID); P(DLM_SBF_ALTMODE);
	P(DLM_LSFL_TIMEWARN); P(DLM_LSFL_FS); P(DLM_LSFL_NEWEXCL);
	P(LKM_NLMODE); P(LKM_CRMODE); P(LKM_CWMODE); P(LKM_PRMODE); P(LKM_PWMODE); P(LKM_EXMODE);
	P(LKF_NOQUEUE); P(LKF_CANCEL); P(LKF_CONVERT); P(LKF_VALBLK); P(LKF_QUECVT);
	P(LKF_IVVALBLK); P(LKF_CONVDEADLK); P(LKF_PERSISTENT); P(LKF_NODLCKWT);
	P(LKF_NODLCKBLK); P(LKF_EXPEDITE); P(LKF_NOQUEUEBAST); P(LKF_HEADQUE);
	P(LKF_NOORDER); P(LKF_ORPHAN); P(LKF_ALTPR); P(LKF_ALTCW); P(LKF_FORCEUNLOCK);
	P(LKF_TIMEOUT); P(LKF_WAIT); P(ECANCEL); P(EUNLOCK); P(EINPROG);
	/* Function types: assigning each function to a pointer of the
	 * original's exact type fails to compile (-Werror) on a mismatch. */
	int (*kv)(uint32_t *, uint32_t *, uint32_t *) = dlm_kernel_version;
	void (*lv)(uint32_t *, uint32_t *, uint32_t *) = dlm_library_version;
	int (*l)(uint32_t, struct dlm_lksb *, uint32_t, const void *, unsigned int, uint32_t,
		 void (*)(void *), void *, void (*)(void *), void *) = dlm_lock;
	int (*u)(uint32_t, uint32_t, struct dlm_lksb *, void *) = dlm_unlock;
	int (*lw)(uint32_t, struct dlm_lksb *, uint32_t, const void *, unsigned int, uint32_t,
		  void *, void (*)(void *), void *) = dlm_lock_wait;
	int (*uw)(uint32_t, uint32_t, struct dlm_lksb *) = dlm_unlock_wait;
	int (*gf)(void) = dlm_get_fd;
	int (*d)(int) = dlm_dispatch;
	dlm_lshandle_t (*c)(const char *, mode_t) = dlm_create_lockspace;
	int (*r)(const char *, dlm_lshandle_t, int) = dlm_release_lockspace;
	dlm_lshandle_t (*o)(const char *) = dlm_open_lockspace;
	int (*cl)(dlm_lshandle_t) = dlm_close_lockspace;
	int (*lgf)(dlm_lshandle_t) = dlm_ls_get_fd;
	dlm_lshandle_t (*n)(const char *, mode_t, uint32_t) = dlm_new_lockspace;
	int (*ll)(dlm_lshandle_t, uint32_t, struct dlm_lksb *, uint32_t, const void *, unsigned int,
		  uint32_t, void (*)(void *), void *, void (*)(void *), void *) = dlm_ls_lock;
	int (*lx)(dlm_lshandle_t, uint32_t, struct dlm_lksb *, uint32_t, const void *, unsigned int,
		  uint32_t, void (*)(void *), void *, void (*)(void *), uint64_t *, uint64_t *) = dlm_ls_lockx;
	int (*lu)(dlm_lshandle_t, uint32_t, uint32_t, struct dlm_lksb *, void *) = dlm_ls_unlock;
	int (*llw)(dlm_lshandle_t, uint32_t, struct dlm_lksb *, uint32_t, const void *, unsigned int,
		   uint32_t, void *, void (*)(void *), void *) = dlm_ls_lock_wait;
	int (*luw)(dlm_lshandle_t, uint32_t, uint32_t, struct dlm_lksb *) = dlm_ls_unlock_wait;
	int (*dc)(dlm_lshandle_t, uint32_t, uint32_t) = dlm_ls_deadlock_cancel;
	int (*pu)(dlm_lshandle_t, int, int) = dlm_ls_purge;
#ifdef _REENTRANT
	int (*lr)(const char *, int, int, int *) = lock_resource;
	int (*ur)(int) = unlock_resource;
	int (*pi)(void) = dlm_pthread_init;
	int (*lpi)(dlm_lshandle_t) = dlm_ls_pthread_init;
	int (*pc)(void) = dlm_pthread_cleanup;
	printf("threads %d\n", lr != 0 && ur != 0 && pi != 0 && lpi != 0 && pc != 0);
#endif
	printf("functions %d\n", kv != 0 && lv != 0 && l != 0 && u != 0 && lw != 0 && uw != 0 &&
	       gf != 0 && d != 0 && c != 0 && r != 0 && o != 0 && cl != 0 && lgf != 0 && n != 0 &&
	       ll != 0 && lx != 0 && lu != 0 && llw != 0 && luw != 0 && dc != 0 && pu != 0);
	return 0;
}
