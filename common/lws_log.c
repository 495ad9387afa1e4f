#include "lws_log.h"

#include <libwebsockets.h>
#include <stdio.h>
#include <string.h>

#include "common/log.h"

static void emit(int level, const char *line)
{
        char text[512];
        size_t n;

        snprintf(text, sizeof(text), "%s", line);
        n = strlen(text);
        while (n && (text[n - 1] == '\n' || text[n - 1] == '\r'))
                text[--n] = '\0';
        log_write(level == LLL_ERR ? LOG_LEVEL_ERROR : LOG_LEVEL_WARN, "libwebsockets", "line=\"%s\"", text);
}

void lws_log_setup(void)
{
        lws_set_log_level(LLL_ERR | LLL_WARN, emit);
}
