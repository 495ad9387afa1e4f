/* Connections open at once from each client address, held to
 * max_per_address: one address cannot take the edge's file descriptors
 * (two a session) from every other customer, with TLS handshakes it never
 * finishes or requests it never sends. Counted from the accept to the
 * wsi's end, whatever the connection became (page, websocket, upload).
 * A small chained table: the edge holds at most a few thousand
 * connections. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "console/edge.h"

struct edge_peer {
        struct edge_peer *next;
        unsigned char address[16]; /* IPv6, or IPv4 mapped into it */
        unsigned open;
        bool warned; /* the refusal was logged since the peer was last under its limit */
};

static void peer_key(const struct sockaddr_storage *sa, unsigned char key[16])
{
        memset(key, 0, 16);
        if (sa->ss_family == AF_INET) {
                key[10] = key[11] = 0xff;
                memcpy(key + 12, &((const struct sockaddr_in *)sa)->sin_addr, 4);
        } else if (sa->ss_family == AF_INET6) {
                memcpy(key, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
        }
}

static struct edge_peer **peer_link(struct edge *edge, const unsigned char key[16])
{
        uint32_t h = 2166136261u; /* FNV-1a */
        struct edge_peer **link;

        for (int i = 0; i < 16; i++)
                h = (h ^ key[i]) * 16777619u;
        for (link = &edge->peers[h % EDGE_PEER_BUCKETS]; *link; link = &(*link)->next)
                if (memcmp((*link)->address, key, 16) == 0)
                        break;
        return link;
}

int edge_address_text(const struct sockaddr_storage *sa, char *buf, size_t size)
{
        const void *addr;
        int family;

        if (sa->ss_family == AF_INET) {
                family = AF_INET;
                addr = &((const struct sockaddr_in *)sa)->sin_addr;
        } else if (sa->ss_family == AF_INET6) {
                const struct in6_addr *a6 = &((const struct sockaddr_in6 *)sa)->sin6_addr;
                /* An IPv4 client on an IPv6 socket is the IPv4 address it is. */
                family = IN6_IS_ADDR_V4MAPPED(a6) ? AF_INET : AF_INET6;
                addr = family == AF_INET ? (const void *)&a6->s6_addr[12] : (const void *)a6;
        } else {
                return -EAFNOSUPPORT;
        }
        return inet_ntop(family, addr, buf, (socklen_t)size) ? 0 : -errno;
}

struct edge_peer *edge_peer_admit(struct edge *edge, const struct sockaddr_storage *sa)
{
        unsigned char key[16];
        struct edge_peer **link, *p;

        peer_key(sa, key);
        link = peer_link(edge, key);
        p = *link;
        if (!p) {
                p = calloc(1, sizeof(*p));
                if (!p)
                        return NULL;
                memcpy(p->address, key, 16);
                *link = p;
        }
        if (edge->config.max_per_address && p->open >= edge->config.max_per_address) {
                if (!p->warned) {
                        char text[INET6_ADDRSTRLEN] = "?";
                        edge_address_text(sa, text, sizeof(text));
                        log_warn("edge: connections refused: too many open from one address", "address=%s open=%u",
                                 text, p->open);
                        p->warned = true;
                }
                return NULL;
        }
        p->open++;
        return p;
}

void edge_peer_release(struct edge *edge, struct edge_peer *p)
{
        struct edge_peer **link;

        if (--p->open < edge->config.max_per_address)
                p->warned = false;
        if (p->open)
                return;
        link = peer_link(edge, p->address);
        *link = p->next;
        free(p);
}

void edge_peers_free(struct edge *edge)
{
        for (size_t i = 0; i < EDGE_PEER_BUCKETS; i++)
                while (edge->peers[i]) {
                        struct edge_peer *p = edge->peers[i];
                        edge->peers[i] = p->next;
                        free(p);
                }
        edge->accepting = NULL;
}
