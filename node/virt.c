#include "virt.h"

#include <errno.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "node/domain.h"

struct virt {
        uv_loop_t *loop;
        char uri[256];
        pthread_mutex_t lock; /* guards conn: opened lazily, reopened when dead */
        virConnectPtr conn;
};

struct virt_job {
        uv_work_t work;
        struct virt *virt;
        enum virt_op op;
        char *arg;
        virt_done_fn done;
        void *userdata;
        int status;
        enum virt_state state;
        char message[512];
};

static const char *const op_names[] = {
        [VIRT_DEFINE_START] = "define and start", [VIRT_START] = "start",   [VIRT_SHUTDOWN] = "shutdown",
        [VIRT_DESTROY] = "destroy",               [VIRT_UNDEFINE] = "undefine", [VIRT_STATE] = "state",
};

const char *virt_state_name(enum virt_state state)
{
        switch (state) {
        case VIRT_STATE_OFF:
                return "off";
        case VIRT_STATE_RUNNING:
                return "running";
        default:
                return "absent";
        }
}

/* libvirt's default error handler prints to stderr; errors are read from
 * the thread-local last error instead and reported by the caller. */
static void quiet_errors(void *userdata, virErrorPtr error)
{
        (void)userdata;
        (void)error;
}

int virt_new(uv_loop_t *loop, const char *uri, struct virt **ret_virt, struct error *err)
{
        struct virt *v = calloc(1, sizeof(*v));

        if (!v)
                return error_set(err, -ENOMEM, "out of memory");
        if (str_copy(v->uri, sizeof(v->uri), uri) < 0) {
                free(v);
                return error_set(err, -EINVAL, "libvirt URI too long");
        }
        if (virInitialize() < 0) {
                free(v);
                return error_set(err, -EIO, "libvirt: cannot initialise");
        }
        virSetErrorFunc(NULL, quiet_errors);
        pthread_mutex_init(&v->lock, NULL);
        v->loop = loop;
        *ret_virt = v;
        return 0;
}

struct virt *virt_free(struct virt *v)
{
        if (!v)
                return NULL;
        if (v->conn)
                virConnectClose(v->conn);
        pthread_mutex_destroy(&v->lock);
        free(v);
        return NULL;
}

/* Runs on a pool thread: the connection, opened or reopened as needed,
 * with a reference the caller drops. */
static virConnectPtr conn_get(struct virt *v)
{
        virConnectPtr c;

        pthread_mutex_lock(&v->lock);
        if (v->conn && virConnectIsAlive(v->conn) != 1) {
                virConnectClose(v->conn);
                v->conn = NULL;
        }
        if (!v->conn) {
                v->conn = virConnectOpen(v->uri);
                if (v->conn)
                        virConnSetErrorFunc(v->conn, NULL, quiet_errors);
        }
        c = v->conn;
        if (c)
                virConnectRef(c);
        pthread_mutex_unlock(&v->lock);
        return c;
}

static int job_fail(struct virt_job *j, int code)
{
        const char *what = virGetLastErrorMessage();

        j->status = code;
        snprintf(j->message, sizeof(j->message), "libvirt %s `%.128s`: %s", op_names[j->op],
                 j->op == VIRT_DEFINE_START ? "domain" : j->arg, what ? what : "unknown error");
        return code;
}

static enum virt_state domain_state(virDomainPtr d)
{
        int active = d ? virDomainIsActive(d) : -1;

        if (!d)
                return VIRT_STATE_ABSENT;
        return active == 1 ? VIRT_STATE_RUNNING : VIRT_STATE_OFF;
}

static bool no_domain_error(void)
{
        virErrorPtr e = virGetLastError();

        return e && e->code == VIR_ERR_NO_DOMAIN;
}

static void job_run(uv_work_t *work)
{
        struct virt_job *j = work->data;
        virConnectPtr c = conn_get(j->virt);
        virDomainPtr d = NULL;

        if (!c) {
                job_fail(j, -ECONNREFUSED);
                return;
        }
        if (j->op == VIRT_DEFINE_START) {
                d = virDomainDefineXML(c, j->arg);
                if (!d || (virDomainIsActive(d) != 1 && virDomainCreate(d) < 0))
                        job_fail(j, -EIO);
                j->state = domain_state(d);
                goto out;
        }
        d = virDomainLookupByName(c, j->arg);
        if (!d) {
                j->state = VIRT_STATE_ABSENT;
                /* Gone is what destroy and undefine want; for the others it is an error. */
                if (!no_domain_error())
                        job_fail(j, -EIO);
                else if (j->op != VIRT_DESTROY && j->op != VIRT_UNDEFINE && j->op != VIRT_STATE)
                        job_fail(j, -ENOENT);
                goto out;
        }
        switch (j->op) {
        case VIRT_START:
                if (virDomainIsActive(d) != 1 && virDomainCreate(d) < 0)
                        job_fail(j, -EIO);
                break;
        case VIRT_SHUTDOWN:
                if (virDomainShutdownFlags(d, VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN) < 0)
                        job_fail(j, -EIO);
                break;
        case VIRT_DESTROY:
        case VIRT_UNDEFINE:
                if (virDomainIsActive(d) == 1 && virDomainDestroy(d) < 0)
                        job_fail(j, -EIO);
                else if (j->op == VIRT_UNDEFINE && virDomainUndefine(d) < 0)
                        job_fail(j, -EIO);
                break;
        default:
                break;
        }
        j->state = j->op == VIRT_UNDEFINE && j->status == 0 ? VIRT_STATE_ABSENT : domain_state(d);
out:
        if (d)
                virDomainFree(d);
        virConnectClose(c);
}

static void job_done(uv_work_t *work, int status)
{
        struct virt_job *j = work->data;

        if (status == UV_ECANCELED && j->status == 0) {
                j->status = -ECANCELED;
                snprintf(j->message, sizeof(j->message), "libvirt %s: cancelled", op_names[j->op]);
        }
        j->done(j->status, j->state, j->message, j->userdata);
        free(j->arg);
        free(j);
}

int virt_submit(struct virt *v, enum virt_op op, const char *arg, virt_done_fn done, void *userdata,
                struct error *err)
{
        struct virt_job *j = calloc(1, sizeof(*j));
        int r;

        if (!j || !(j->arg = strdup(arg))) {
                free(j);
                return error_set(err, -ENOMEM, "out of memory");
        }
        j->work.data = j;
        j->virt = v;
        j->op = op;
        j->done = done;
        j->userdata = userdata;
        r = uv_queue_work(v->loop, &j->work, job_run, job_done);
        if (r < 0) {
                free(j->arg);
                free(j);
                return error_set(err, r, "queue libvirt %s: %s", op_names[op], uv_strerror(r));
        }
        return 0;
}

struct virt_list_job {
        uv_work_t work;
        struct virt *virt;
        char *prefix;
        char owner[72];
        virt_list_fn done;
        void *userdata;
        int status;
        char message[512];
        char **names;
        enum virt_state *states;
        size_t n, n_foreign;
};

/* Whether the domain's metadata names another owner. */
static bool foreign(virDomainPtr domain, const char *owner)
{
        char *md = virDomainGetMetadata(domain, VIR_DOMAIN_METADATA_ELEMENT, DOMAIN_METADATA_URI, 0);
        bool other;

        if (!md) /* no owner recorded */
                return false;
        other = !strstr(md, owner);
        free(md);
        return other;
}

static void list_run(uv_work_t *work)
{
        struct virt_list_job *j = work->data;
        virConnectPtr c = conn_get(j->virt);
        virDomainPtr *domains = NULL;
        int n;

        if (!c) {
                j->status = -ECONNREFUSED;
                snprintf(j->message, sizeof(j->message), "libvirt list: %s", virGetLastErrorMessage());
                return;
        }
        n = virConnectListAllDomains(c, &domains, 0);
        if (n < 0) {
                j->status = -EIO;
                snprintf(j->message, sizeof(j->message), "libvirt list: %s", virGetLastErrorMessage());
                virConnectClose(c);
                return;
        }
        j->names = calloc((size_t)n + 1, sizeof(char *));
        j->states = calloc((size_t)n + 1, sizeof(enum virt_state));
        for (int i = 0; i < n; i++) {
                const char *name = virDomainGetName(domains[i]);
                if (j->names && j->states && name && strncmp(name, j->prefix, strlen(j->prefix)) == 0 &&
                    j->owner[0] && foreign(domains[i], j->owner))
                        j->n_foreign++;
                else if (j->names && j->states && name && strncmp(name, j->prefix, strlen(j->prefix)) == 0) {
                        j->names[j->n] = strdup(name);
                        j->states[j->n] = domain_state(domains[i]);
                        if (j->names[j->n])
                                j->n++;
                }
                virDomainFree(domains[i]);
        }
        free(domains);
        if (!j->names || !j->states) {
                j->status = -ENOMEM;
                snprintf(j->message, sizeof(j->message), "libvirt list: out of memory");
        }
        virConnectClose(c);
}

static void list_done(uv_work_t *work, int status)
{
        struct virt_list_job *j = work->data;

        if (status == UV_ECANCELED && j->status == 0) {
                j->status = -ECANCELED;
                snprintf(j->message, sizeof(j->message), "libvirt list: cancelled");
        }
        j->done(j->status, j->message, j->names, j->states, j->n, j->n_foreign, j->userdata);
        for (size_t i = 0; i < j->n; i++)
                free(j->names[i]);
        free(j->names);
        free(j->states);
        free(j->prefix);
        free(j);
}

int virt_list(struct virt *v, const char *prefix, const char *owner, virt_list_fn done, void *userdata,
              struct error *err)
{
        struct virt_list_job *j = calloc(1, sizeof(*j));
        int r;

        if (!j || !(j->prefix = strdup(prefix))) {
                free(j);
                return error_set(err, -ENOMEM, "out of memory");
        }
        if (owner && str_copy(j->owner, sizeof(j->owner), owner) < 0) {
                free(j->prefix);
                free(j);
                return error_set(err, -EINVAL, "libvirt list: owner too long");
        }
        j->work.data = j;
        j->virt = v;
        j->done = done;
        j->userdata = userdata;
        r = uv_queue_work(v->loop, &j->work, list_run, list_done);
        if (r < 0) {
                free(j->prefix);
                free(j);
                return error_set(err, r, "queue libvirt list: %s", uv_strerror(r));
        }
        return 0;
}
