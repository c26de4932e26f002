/* memhog MIB: allocates MIB mebibytes one at a time and writes every page, so the memory
 * is really used; prints the running total every 16 MiB on stderr. Exits 0 if it got
 * them all (the limit it was meant to hit was not there); the OOM killer ends it otherwise.
 * For the real-KVM tier's OOM cases (busybox has no such tool). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    long mib = argc > 1 ? atol(argv[1]) : 0;
    if (mib <= 0) {
        fprintf(stderr, "usage: memhog MIB\n");
        return 2;
    }
    for (long i = 1; i <= mib; i++) {
        char *chunk = malloc(1 << 20);
        if (!chunk) {
            fprintf(stderr, "memhog: malloc failed at %ld MiB\n", i);
            return 3;
        }
        memset(chunk, 0x5a, 1 << 20);
        if (i % 16 == 0)
            fprintf(stderr, "memhog: %ld MiB\n", i);
    }
    fprintf(stderr, "memhog: got all %ld MiB\n", mib);
    return 0;
}
