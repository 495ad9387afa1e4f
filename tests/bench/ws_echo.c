/* ws_echo: the console bench's floor. A TLS websocket server that echoes
 * the payload itself, in one C process with nothing behind it: TLS both
 * ways, the handshake, unmasking and framing, which every console proxy
 * must do, without the console hop, the second process or a ticket. No
 * proxy can beat it on the same machine with the same client, so its
 * figures bound what the bench's goals can ask of vpsd-edge here.
 *
 * One connection at a time, blocking; each TLS read's payload goes back as
 * one unmasked binary frame (the client counts payload, not frames).
 *
 *   ws_echo PORT CERT KEY    prints "ready" once listening; SIGTERM ends it
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>

#include "ws_frame.h"

#define BUF_SIZE (64 * 1024)
#define HEADER_ROOM 10 /* an unmasked server frame's longest header */

/* Unmasks the data frames' payload of in[0, n) into out; returns its
 * length, or -1 at a close frame. */
static ssize_t rx_feed(struct ws_rx *r, const unsigned char *in, size_t n, unsigned char *out)
{
        size_t produced = 0;

        while (n) {
                if (r->payload_left) {
                        size_t take = r->payload_left < n ? (size_t)r->payload_left : n;
                        if (r->opcode <= 2) {
                                unsigned char m[8];
                                uint64_t m8, v;
                                size_t i = 0;
                                for (int k = 0; k < 8; k++)
                                        m[k] = r->mask[(r->mask_at + (unsigned)k) & 3];
                                memcpy(&m8, m, 8);
                                for (; i + 8 <= take; i += 8) {
                                        memcpy(&v, in + i, 8);
                                        v ^= m8;
                                        memcpy(out + produced + i, &v, 8);
                                }
                                for (; i < take; i++)
                                        out[produced + i] = in[i] ^ r->mask[(r->mask_at + i) & 3];
                                r->mask_at += (unsigned)take;
                                produced += take;
                        }
                        r->payload_left -= take;
                        in += take;
                        n -= take;
                        continue;
                }
                n--;
                if (ws_rx_header_byte(r, *in++) && r->opcode == 8)
                        return -1;
        }
        return (ssize_t)produced;
}

static bool handshake(SSL *ssl)
{
        static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
        char request[8192], key[128] = "", accept[64], reply[256];
        unsigned char digest[SHA_DIGEST_LENGTH];
        size_t got = 0;

        /* Byte by byte to the blank line: frames behind it stay unread. */
        while (got < sizeof(request) - 1) {
                if (SSL_read(ssl, request + got, 1) != 1)
                        return false;
                got++;
                if (got >= 4 && memcmp(request + got - 4, "\r\n\r\n", 4) == 0)
                        break;
        }
        request[got] = '\0';
        for (char *line = strtok(request, "\r\n"); line; line = strtok(NULL, "\r\n"))
                if (strncasecmp(line, "Sec-WebSocket-Key:", 18) == 0)
                        sscanf(line + 18, " %100s", key);
        if (!key[0])
                return false;
        strcat(key, guid);
        SHA1((const unsigned char *)key, strlen(key), digest);
        EVP_EncodeBlock((unsigned char *)accept, digest, sizeof(digest));
        int n = snprintf(reply, sizeof(reply),
                         "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                         "Sec-WebSocket-Accept: %s\r\n\r\n",
                         accept);
        return SSL_write(ssl, reply, n) == n;
}

static void serve(SSL *ssl)
{
        static unsigned char in[BUF_SIZE], frame[HEADER_ROOM + BUF_SIZE];
        struct ws_rx rx = { 0 };

        if (!handshake(ssl))
                return;
        for (;;) {
                int n = SSL_read(ssl, in, sizeof(in));
                if (n <= 0)
                        return;
                ssize_t len = rx_feed(&rx, in, (size_t)n, frame + HEADER_ROOM);
                if (len < 0)
                        return;
                if (len == 0)
                        continue;
                /* The header goes right before the payload: one write. */
                size_t h = len < 126 ? 2 : len <= 0xffff ? 4 : 10;
                unsigned char *f = frame + HEADER_ROOM - h;
                f[0] = 0x82;
                if (h == 2) {
                        f[1] = (unsigned char)len;
                } else if (h == 4) {
                        f[1] = 126;
                        f[2] = (unsigned char)(len >> 8);
                        f[3] = (unsigned char)len;
                } else {
                        f[1] = 127;
                        for (int i = 0; i < 8; i++)
                                f[2 + i] = (unsigned char)((uint64_t)len >> (56 - 8 * i));
                }
                if (SSL_write(ssl, f, (int)(h + (size_t)len)) != (int)(h + (size_t)len))
                        return;
        }
}

int main(int argc, char **argv)
{
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        int one = 1, listener;
        SSL_CTX *ctx;

        if (argc != 4) {
                fprintf(stderr, "usage: ws_echo PORT CERT KEY\n");
                return 2;
        }
        signal(SIGPIPE, SIG_IGN);
        ctx = SSL_CTX_new(TLS_server_method());
        SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
        /* Many records a read from the socket: blocking reads never leave
         * one unread, and the floor should cost as little as it can. */
        SSL_CTX_set_read_ahead(ctx, 1);
        SSL_CTX_set_default_read_buffer_len(ctx, 256 * 1024);
        if (SSL_CTX_use_certificate_chain_file(ctx, argv[2]) != 1 ||
            SSL_CTX_use_PrivateKey_file(ctx, argv[3], SSL_FILETYPE_PEM) != 1) {
                fprintf(stderr, "ws_echo: cannot load %s and %s\n", argv[2], argv[3]);
                return 1;
        }
        sa.sin_port = htons((uint16_t)atoi(argv[1]));
        listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(listener, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(listener, 64) < 0) {
                perror("ws_echo: listen");
                return 1;
        }
        printf("ready\n");
        fflush(stdout);
        for (;;) {
                int fd = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
                if (fd < 0)
                        continue;
                setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
                SSL *ssl = SSL_new(ctx);
                SSL_set_fd(ssl, fd);
                if (SSL_accept(ssl) == 1)
                        serve(ssl);
                SSL_free(ssl);
                close(fd);
        }
}
