/* From the project VM kit; `cargo xtask vmtest` builds it on the host and runs it in
 * single-node guests without a cluster manager (vmtest.cm=none) as /usr/sbin/nocmd. */
/* nocmd: minimal dlm_controld stand-in for a single node (nodeid 1), no cluster manager.
 * Listens for kobject uevents /kernel/dlm/<ls> and does what guest/dlm_uevent.sh does, without forking. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <fcntl.h>
#include <errno.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <linux/netlink.h>
static int wr(const char *p, const char *v) {
    int fd = open(p, O_WRONLY); if (fd < 0) return -1;
    int r = write(fd, v, strlen(v)); close(fd); return r < 0 ? -1 : 0;
}
static unsigned fnv(const char *s) { unsigned h = 2166136261u; while (*s) { h ^= (unsigned char)*s++; h *= 16777619u; } return (h & 0x7fffffff) | 1; }
int main(void) {
    int s = socket(AF_NETLINK, SOCK_DGRAM, NETLINK_KOBJECT_UEVENT);
    struct sockaddr_nl a = { .nl_family = AF_NETLINK, .nl_groups = 1 };
    if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof a)) { perror("nocmd socket"); return 1; }
    int rb = 16 << 20; setsockopt(s, SOL_SOCKET, SO_RCVBUFFORCE, &rb, sizeof rb);
    static char buf[16384], p[512], v[32];
    for (;;) {
        int n = recv(s, buf, sizeof buf - 1, 0);
        if (n <= 0) { if (errno == EINTR || errno == ENOBUFS) continue; perror("recv"); continue; }
        buf[n] = 0;
        const char *action = NULL, *devpath = NULL;
        for (char *q = buf; q < buf + n; q += strlen(q) + 1) {
            if (!strncmp(q, "ACTION=", 7)) action = q + 7;
            else if (!strncmp(q, "DEVPATH=", 8)) devpath = q + 8;
        }
        if (!action || !devpath || strncmp(devpath, "/kernel/dlm/", 12)) continue;
        const char *ls = devpath + 12;
        if (!strcmp(action, "online")) {
            snprintf(p, sizeof p, "/sys/kernel/config/dlm/cluster/spaces/%s", ls); mkdir(p, 0755);
            snprintf(p, sizeof p, "/sys/kernel/config/dlm/cluster/spaces/%s/nodes/1", ls); mkdir(p, 0755);
            snprintf(p, sizeof p, "/sys/kernel/config/dlm/cluster/spaces/%s/nodes/1/nodeid", ls); wr(p, "1");
            snprintf(v, sizeof v, "%u", fnv(ls));
            snprintf(p, sizeof p, "/sys/kernel/dlm/%s/id", ls); wr(p, v);
            snprintf(p, sizeof p, "/sys/kernel/dlm/%s/control", ls); wr(p, "1");
            snprintf(p, sizeof p, "/sys/kernel/dlm/%s/event_done", ls); if (wr(p, "0")) fprintf(stderr, "nocmd: event_done %s failed\n", ls);
        } else if (!strcmp(action, "offline")) {
            snprintf(p, sizeof p, "/sys/kernel/dlm/%s/control", ls); wr(p, "0");
            snprintf(p, sizeof p, "/sys/kernel/config/dlm/cluster/spaces/%s/nodes/1", ls); rmdir(p);
            snprintf(p, sizeof p, "/sys/kernel/config/dlm/cluster/spaces/%s", ls); rmdir(p);
            snprintf(p, sizeof p, "/sys/kernel/dlm/%s/event_done", ls); if (wr(p, "0")) fprintf(stderr, "nocmd: event_done %s failed\n", ls);
        }
    }
}
