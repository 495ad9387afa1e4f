/* console.ticket: a console ticket for the operator, minted with vpsd's
 * own key (docs/console.md), with the page's URL when the console runs. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/json.h"
#include "common/util.h"
#include "node/logbook.h"
#include "common/ticket.h"
#include "node/vpsd.h"

/* https://HOST:PORT/KIND.html#ticket=…: HOST is the address listened on,
 * or the node's name when that is every address. */
static void page_url(struct vpsd *v, enum console_kind kind, const char *ticket, char *buf, size_t size)
{
        char address[64], host[256] = "localhost";
        unsigned port;

        if (config_console_listen(&v->cfg, address, sizeof(address), &port) < 0) {
                buf[0] = '\0';
                return;
        }
        if (strcmp(address, "0.0.0.0") == 0 || strcmp(address, "::") == 0)
                gethostname(host, sizeof(host) - 1);
        else if (strchr(address, ':'))
                snprintf(host, sizeof(host), "[%s]", address);
        else
                snprintf(host, sizeof(host), "%s", address);
        snprintf(buf, size, "https://%s:%u/%s.html#ticket=%s", host, port, console_kind_name(kind), ticket);
}

void control_console_ticket(struct control_call *call, struct json_object *params, void *userdata)
{
        static const char *const allowed[] = { "uuid", "kind", NULL };
        struct vpsd *v = userdata;
        enum console_kind kind = CONSOLE_VNC;
        const char *uuid = NULL, *kind_name = NULL;
        char ticket[EDGE_TICKET_MAX + 1], url[EDGE_TICKET_MAX + 400], actor[32];
        struct json_object *o;
        struct error err = { 0 };

        if (control_params_check(params, allowed, &err) < 0 || json_get_string(params, "uuid", true, &uuid, &err) < 0 ||
            json_get_string(params, "kind", false, &kind_name, &err) < 0) {
                control_call_fail(call, -EINVAL, err.msg);
                return;
        }
        if (kind_name && console_kind_parse(kind_name, &kind) < 0) {
                control_call_fail(call, -EINVAL, "parameter `kind`: vnc or serial");
                return;
        }
        if (!v->console) {
                control_call_fail(call, -EBADFD, "the console is off: set console_listen in vpsd.conf");
                return;
        }
        if (console_ticket_new(v->console, uuid, kind, ticket, sizeof(ticket), &err) < 0) {
                control_call_fail(call, err.code, err.msg);
                return;
        }
        snprintf(actor, sizeof(actor), "operator uid=%u", (unsigned)control_call_peer_uid(call));
        logbook_audit(v->store, actor, "console.ticket", uuid, "ok", console_kind_name(kind));
        page_url(v, kind, ticket, url, sizeof(url));
        o = json_object_new_object();
        json_object_object_add(o, "uuid", json_object_new_string(uuid));
        json_object_object_add(o, "kind", json_object_new_string(console_kind_name(kind)));
        json_object_object_add(o, "ticket", json_object_new_string(ticket));
        json_object_object_add(o, "expires_at", json_object_new_int64(time_now_wall() + TICKET_LIFETIME_MAX));
        json_object_object_add(o, "url", json_object_new_string(url));
        control_call_reply(call, o);
}
