/* The kernel command line (boot_params.hdr.cmd_line_ptr) and the protocol's tokens:
 * tests=a,b,c  end=exit:N|reset|triplefault|halt|unsupported  boottimer. Other tokens are ignored. */
#include "guest.h"

#define CMDLINE_MAX 4096

static char cmdline_copy[CMDLINE_MAX];

static int token_is(const char *tok, usize len, const char *word) {
    usize n = strlen(word);
    return len == n && str_eq_n(tok, word, n);
}

static int token_has_prefix(const char *tok, usize len, const char *prefix) {
    usize n = strlen(prefix);
    return len >= n && str_eq_n(tok, prefix, n);
}

static void parse_end(struct cmdline *out, const char *v, usize len) {
    u64 code;
    if (token_is(v, len, "reset"))
        out->end = END_RESET;
    else if (token_is(v, len, "triplefault"))
        out->end = END_TRIPLEFAULT;
    else if (token_is(v, len, "halt"))
        out->end = END_HALT;
    else if (token_is(v, len, "unsupported"))
        out->end = END_UNSUPPORTED;
    else if (token_has_prefix(v, len, "exit:") && parse_u64(v + 5, len - 5, &code) == 0 && code < 256) {
        out->end = END_EXIT;
        out->exit_code = (u8)code;
    } else
        out->bad_end = 1;
}

void cmdline_parse(struct cmdline *out) {
    const char *src = (const char *)zp_cmdline_ptr();
    usize n = 0;
    if (src)
        while (n < CMDLINE_MAX - 1 && src[n]) {
            cmdline_copy[n] = src[n];
            n++;
        }
    cmdline_copy[n] = 0;
    memset(out, 0, sizeof(*out));
    out->text = cmdline_copy;
    out->end = END_DEFAULT;

    for (usize i = 0; i < n;) {
        while (i < n && cmdline_copy[i] == ' ') i++;
        usize start = i;
        while (i < n && cmdline_copy[i] != ' ') i++;
        const char *tok = cmdline_copy + start;
        usize len = i - start;
        if (len == 0) break;
        if (token_has_prefix(tok, len, "tests=")) {
            out->tests = tok + 6;
            out->tests_len = len - 6;
        } else if (token_has_prefix(tok, len, "end=")) {
            parse_end(out, tok + 4, len - 4);
        } else if (token_is(tok, len, "boottimer")) {
            out->boottimer = 1;
        }
    }
}
