/* From the project VM kit; `cargo xtask vmtest` builds it on the host (with Debian's
 * libdlm-dev) for its built-in smoke test, run inside the guest. */
/* dlmtest: exercise libdlm against the kernel DLM.
 * usage: dlmtest single [N]          create ls, EX lock/unlock, N timed pairs, release
 *        dlmtest hold   RES SECS     create/open ls, hold EX on RES for SECS, unlock
 *        dlmtest try    RES          NOQUEUE EX on RES, print result; then blocking EX wait
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <unistd.h>
#include <time.h>
#include <stdint.h>
#include <libdlm.h>

static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec/1e9;}

static dlm_lshandle_t open_ls(const char *name){
    double t0=now();
    dlm_lshandle_t ls = dlm_create_lockspace(name, 0600);
    double t1=now();
    if(!ls){ printf("dlm_create_lockspace(%s) failed: errno=%d %s\n",name,errno,strerror(errno)); exit(1);}
    printf("dlm_create_lockspace(%s) ok in %.3f ms\n",name,(t1-t0)*1e3);
#ifdef _REENTRANT
    /* libdlm.so (pthread build): *_wait calls from a non-AST thread block on a condvar
       that only the AST thread signals, so dlm_ls_pthread_init() is mandatory. */
    { int r = dlm_ls_pthread_init(ls); printf("dlm_ls_pthread_init r=%d\n",r); }
#endif
    return ls;
}
static int lock_ex(dlm_lshandle_t ls,const char *res,uint32_t flags,struct dlm_lksb *lksb){
    memset(lksb,0,sizeof(*lksb));
    int r = dlm_ls_lock_wait(ls, LKM_EXMODE, lksb, flags, res, strlen(res), 0, NULL, NULL, NULL);
    return r;
}
int main(int argc,char**argv){
    setvbuf(stdout,NULL,_IONBF,0);
    const char *mode = argc>1?argv[1]:"single";
    const char *lsname = getenv("LSNAME")?getenv("LSNAME"):"testls";
    struct dlm_lksb lksb;
    if(!strcmp(mode,"single")){
        int n = argc>2?atoi(argv[2]):1000;
        dlm_lshandle_t ls=open_ls(lsname);
        int r=lock_ex(ls,"res1",0,&lksb);
        printf("dlm_ls_lock_wait(EX,res1) r=%d errno=%d sb_status=%d lkid=0x%x\n",r,r?errno:0,lksb.sb_status,lksb.sb_lkid);
        r=dlm_ls_unlock_wait(ls,lksb.sb_lkid,0,&lksb);
        printf("dlm_ls_unlock_wait r=%d sb_status=%d (EUNLOCK=%d)\n",r,lksb.sb_status,EUNLOCK);
        double t0=now();
        for(int i=0;i<n;i++){
            r=lock_ex(ls,"res2",0,&lksb);
            if(r||lksb.sb_status){printf("lock %d failed r=%d st=%d\n",i,r,lksb.sb_status);break;}
            r=dlm_ls_unlock_wait(ls,lksb.sb_lkid,0,&lksb);
            if(r||lksb.sb_status!=EUNLOCK){printf("unlock %d failed r=%d st=%d\n",i,r,lksb.sb_status);break;}
        }
        double t1=now();
        printf("%d EX lock+unlock pairs: %.3f s total, %.1f us/pair\n",n,t1-t0,(t1-t0)/n*1e6);
        /* convert test: NL -> EX via LKF_CONVERT, reuse lock */
        r=dlm_ls_lock_wait(ls,LKM_NLMODE,&lksb,0,"res3",4,0,NULL,NULL,NULL);
        printf("NL lock r=%d st=%d\n",r,lksb.sb_status);
        t0=now();
        for(int i=0;i<n;i++){
            r=dlm_ls_lock_wait(ls,LKM_EXMODE,&lksb,LKF_CONVERT,"res3",4,0,NULL,NULL,NULL);
            if(r||lksb.sb_status){printf("conv up %d failed r=%d st=%d\n",i,r,lksb.sb_status);break;}
            r=dlm_ls_lock_wait(ls,LKM_NLMODE,&lksb,LKF_CONVERT,"res3",4,0,NULL,NULL,NULL);
            if(r||lksb.sb_status){printf("conv down %d failed r=%d st=%d\n",i,r,lksb.sb_status);break;}
        }
        t1=now();
        printf("%d NL->EX->NL convert pairs: %.3f s total, %.1f us/pair\n",n,t1-t0,(t1-t0)/n*1e6);
        dlm_ls_unlock_wait(ls,lksb.sb_lkid,0,&lksb);
        t0=now();
        r=dlm_release_lockspace(lsname,ls,1);
        t1=now();
        printf("dlm_release_lockspace r=%d errno=%d in %.3f ms\n",r,r?errno:0,(t1-t0)*1e3);
        return 0;
    } else if(!strcmp(mode,"hold")){
        const char *res=argv[2]; int secs=atoi(argv[3]);
        dlm_lshandle_t ls=open_ls(lsname);
        int hm = (getenv("HOLDMODE") && !strcmp(getenv("HOLDMODE"),"NL")) ? LKM_NLMODE : LKM_EXMODE;
        memset(&lksb,0,sizeof lksb);
        int r=dlm_ls_lock_wait(ls,hm,&lksb,0,res,strlen(res),0,NULL,NULL,NULL);
        printf("HOLD: %s on %s r=%d st=%d lkid=0x%x; sleeping %d s\n",hm==LKM_NLMODE?"NL":"EX",res,r,lksb.sb_status,lksb.sb_lkid,secs);
        sleep(secs);
        r=dlm_ls_unlock_wait(ls,lksb.sb_lkid,0,&lksb);
        printf("HOLD: unlocked r=%d st=%d\n",r,lksb.sb_status);
        int post=argc>4?atoi(argv[4]):2;
        sleep(post);
        r=dlm_release_lockspace(lsname,ls,1);
        printf("HOLD: release r=%d\n",r);
        return 0;
    } else if(!strcmp(mode,"bench")){
        const char *res=argv[2]; int n=atoi(argv[3]);
        dlm_lshandle_t ls=open_ls(lsname);
        double t0=now(); int i, r=0;
        for(i=0;i<n;i++){
            r=lock_ex(ls,res,0,&lksb); if(r||lksb.sb_status){printf("lock %d failed r=%d st=%d\n",i,r,lksb.sb_status);break;}
            r=dlm_ls_unlock_wait(ls,lksb.sb_lkid,0,&lksb); if(r||lksb.sb_status!=EUNLOCK){printf("unlock %d failed\n",i);break;}
        }
        double t1=now();
        printf("BENCH: %d EX lock+unlock pairs on %s: %.3f s, %.1f us/pair\n",i,res,t1-t0,(t1-t0)/(i?i:1)*1e6);
        r=dlm_release_lockspace(lsname,ls,1);
        printf("BENCH: release r=%d\n",r);
        return 0;
    } else if(!strcmp(mode,"try")){
        const char *res=argv[2];
        dlm_lshandle_t ls=open_ls(lsname);
        if(getenv("TRYDELAY")) sleep(atoi(getenv("TRYDELAY")));
        int r=lock_ex(ls,res,LKF_NOQUEUE,&lksb);
        printf("TRY: NOQUEUE EX on %s r=%d errno=%d(%s) sb_status=%d (EAGAIN=%d)\n",res,r,r?errno:0,r?strerror(errno):"-",lksb.sb_status,EAGAIN);
        if(r==0 && lksb.sb_status==0){ printf("TRY: unexpectedly granted\n"); }
        else {
            double t0=now();
            r=lock_ex(ls,res,0,&lksb);
            double t1=now();
            printf("TRY: blocking EX r=%d st=%d granted after %.3f s\n",r,lksb.sb_status,t1-t0);
        }
        r=dlm_ls_unlock_wait(ls,lksb.sb_lkid,0,&lksb);
        printf("TRY: unlock r=%d st=%d\n",r,lksb.sb_status);
        r=dlm_release_lockspace(lsname,ls,1);
        printf("TRY: release r=%d\n",r);
        return 0;
    }
    return 2;
}
