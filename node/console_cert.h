/* The console's TLS identity when the operator names none: a self-signed
 * certificate and its key, made once at first start and kept. Good for a
 * demo or a node behind a proxy; a public node names its own pair
 * (console_cert, console_key). */
#pragma once

#include "common/error.h"

/* Makes cert_path (0644) and key_path (0600, root's) if either is missing:
 * an EC P-256 key, a certificate for common_name valid ten years. */
int console_cert_ensure(const char *cert_path, const char *key_path, const char *common_name, struct error *err);
