/* Tests `serial` (a known output line) and `echo` (input through the UART's receive
 * buffer, polled, echoed back line by line until the input has been quiet a while). */
#include "guest.h"
#include "x86.h"

#define ECHO_LINE_MAX 64
#define ECHO_FIRST_US 1000000 /* wait for the first input byte */
#define ECHO_IDLE_US 200000   /* quiet time after input that ends the test */

void test_serial(struct test *t) {
    (void)t;
    kprintf("vmmtest: fact serial_line=the quick brown fox\n");
}

static void echo_line(char *line, u32 *len, u32 *lines) {
    line[*len] = 0;
    kprintf("vmmtest: fact echo=%s\n", line);
    *len = 0;
    (*lines)++;
}

void test_echo(struct test *t) {
    char line[ECHO_LINE_MAX + 1];
    u32 len = 0, lines = 0, limit = ECHO_FIRST_US;
    lapic_enable();
    kprintf("vmmtest: echo ready\n");
    lapic_clock_start();
    while (lapic_clock_us() < limit) {
        int c = serial_try_getc();
        if (c < 0) continue;
        lapic_clock_start(); /* idle time counts from the last byte */
        limit = ECHO_IDLE_US;
        if (c == '\r') continue;
        if (c == '\n') {
            echo_line(line, &len, &lines);
            continue;
        }
        if (len == ECHO_LINE_MAX) echo_line(line, &len, &lines);
        line[len++] = (char)c;
    }
    lapic_clock_stop();
    if (len) echo_line(line, &len, &lines);
    check(t, lines > 0, "no input");
}
