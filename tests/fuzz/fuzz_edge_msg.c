/* libFuzzer target: edge_msg_decode() on arbitrary bytes (what vpsd reads
 * from the edge, which parses the internet). An accepted message encodes
 * back to the same bytes; a refusal says why and leaves the output alone. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/edge_proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct edge_msg m, untouched;
        struct error err = { 0 };
        uint8_t again[EDGE_MSG_MAX];
        int n;

        memset(&m, 0xa5, sizeof(m));
        untouched = m;
        if (edge_msg_decode(data, size, &m, &err) < 0) {
                if (err.code != -EBADMSG || err.msg[0] == '\0' || memcmp(&m, &untouched, sizeof(m)) != 0)
                        abort();
                return 0;
        }
        n = edge_msg_encode(&m, again, sizeof(again));
        if (n < 0 || (size_t)n != size || memcmp(again, data, size) != 0)
                abort();
        return 0;
}
