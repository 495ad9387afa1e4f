/* libwebsockets' own messages into our log (common/log.h), one line each,
 * errors as errors and the rest as warnings. */
#pragma once

/* Call once per process, before creating a context. */
void lws_log_setup(void);
