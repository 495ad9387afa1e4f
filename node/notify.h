/* The service manager's readiness protocol (sd_notify): one datagram with
 * "READY=1" and friends to the socket named by $NOTIFY_SOCKET. No-op when
 * it is unset, as when vpsd runs by hand or in tests. */
#pragma once

/* 0 when sent or when there is no manager to tell; -errno otherwise. */
int notify_send(const char *state);
