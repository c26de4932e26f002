/* vsock round trip for the real-KVM tier, one static binary for both ends.
 *
 *   vsock-echo PORT                 guest: listen on vsock PORT, accept one stream, read a
 *                                   line, answer "echo:<line>\n", exit 0
 *   vsock-echo host UDS PORT MSG    host: connect to vmm's Unix socket UDS, send
 *                                   "CONNECT PORT\n" (Firecracker's protocol), expect "OK ",
 *                                   send MSG, print the guest's answer; retried for 30 s
 *                                   while the guest is not listening yet
 * Busybox has no AF_VSOCK or Unix-socket client, hence this program. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <linux/vm_sockets.h>

static int read_line(int fd, char *buf, size_t cap) {
    size_t n = 0;
    while (n + 1 < cap) {
        char c;
        ssize_t r = read(fd, &c, 1);
        if (r <= 0) return -1;
        if (c == '\n') break;
        buf[n++] = c;
    }
    buf[n] = 0;
    return (int)n;
}

static int guest(unsigned port) {
    int s = socket(AF_VSOCK, SOCK_STREAM, 0);
    struct sockaddr_vm addr = {.svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY, .svm_port = port};
    if (s < 0 || bind(s, (struct sockaddr *)&addr, sizeof addr) || listen(s, 1)) {
        printf("vsock listen on port %u: %s\n", port, strerror(errno));
        return 1;
    }
    int c = accept(s, NULL, NULL);
    char line[256], reply[300];
    if (c < 0 || read_line(c, line, sizeof line) < 0) {
        printf("vsock accept/read: %s\n", strerror(errno));
        return 1;
    }
    int n = snprintf(reply, sizeof reply, "echo:%s\n", line);
    if (write(c, reply, (size_t)n) != n) return 1;
    printf("received=%s\n", line);
    close(c);
    return 0;
}

static int host_once(const char *uds, const char *port, const char *msg, char *answer, size_t cap) {
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    strncpy(addr.sun_path, uds, sizeof addr.sun_path - 1);
    if (s < 0 || connect(s, (struct sockaddr *)&addr, sizeof addr)) return close(s), -1;
    char cmd[64], ok[64];
    int n = snprintf(cmd, sizeof cmd, "CONNECT %s\n", port);
    if (write(s, cmd, (size_t)n) != n || read_line(s, ok, sizeof ok) < 0 || strncmp(ok, "OK ", 3))
        return close(s), -1;
    n = snprintf(cmd, sizeof cmd, "%s\n", msg);
    if (write(s, cmd, (size_t)n) != n || read_line(s, answer, cap) < 0) return close(s), -1;
    close(s);
    return 0;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IONBF, 0);
    if (argc == 2) return guest((unsigned)atoi(argv[1]));
    if (argc == 5 && !strcmp(argv[1], "host")) {
        char answer[300];
        struct timespec pause = {0, 100 * 1000 * 1000};
        for (int i = 0; i < 300; i++) { /* 30 s: the guest boots and starts listening */
            if (host_once(argv[2], argv[3], argv[4], answer, sizeof answer) == 0) {
                printf("answer=%s\n", answer);
                return 0;
            }
            nanosleep(&pause, NULL);
        }
        printf("no answer from the guest on port %s through %s\n", argv[3], argv[2]);
        return 1;
    }
    fprintf(stderr, "usage: vsock-echo PORT | vsock-echo host UDS PORT MSG\n");
    return 2;
}
