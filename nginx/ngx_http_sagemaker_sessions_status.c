
/*
 * sagemaker_sessions_status: the status page, in Prometheus' text format,
 * and the shared memory its counters live in. The core decides what is
 * counted and writes the text; here the counters get their memory, shared
 * by every worker and kept across reloads (a zone of the same name and
 * size is taken over by the new cycle), as ngx_http_stub_status_module's
 * are: a worker adds to them with an atomic add, never a lock.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_sagemaker_sessions_module.h"


static ngx_int_t ngx_http_sagemaker_sessions_status_handler(
    ngx_http_request_t *r);
static ngx_int_t ngx_http_sagemaker_sessions_init_zone(
    ngx_shm_zone_t *shm_zone, void *data);


static ngx_str_t  ngx_http_sagemaker_sessions_zone_name =
    ngx_string("sagemaker_sessions_status");


char *
ngx_http_sagemaker_sessions_status(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    size_t                                    size;
    ngx_shm_zone_t                           *zone;
    ngx_http_core_loc_conf_t                 *clcf;
    ngx_http_sagemaker_sessions_main_conf_t  *smcf;

    smcf = ngx_http_conf_get_module_main_conf(cf,
                                        ngx_http_sagemaker_sessions_module);

    if (smcf->status_zone == NULL) {

        /* the size follows the core's layout: a build with another layout
         * gets a new zone on reload instead of reading the old one */

        size = ngx_align(sms_metrics_slots() * sizeof(int64_t), ngx_pagesize)
               + 8 * ngx_pagesize;

        zone = ngx_shared_memory_add(cf, &ngx_http_sagemaker_sessions_zone_name,
                                     size, &ngx_http_sagemaker_sessions_module);
        if (zone == NULL) {
            return NGX_CONF_ERROR;
        }

        zone->init = ngx_http_sagemaker_sessions_init_zone;
        zone->data = NULL;

        smcf->status_zone = zone;
    }

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_sagemaker_sessions_status_handler;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_sagemaker_sessions_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    int64_t          *counters;
    ngx_slab_pool_t  *shpool;

    if (data) {
        /* reload: the old cycle's counters go on */
        shm_zone->data = data;
        return NGX_OK;
    }

    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        shm_zone->data = shpool->data;
        return NGX_OK;
    }

    counters = ngx_slab_calloc(shpool, sms_metrics_slots() * sizeof(int64_t));
    if (counters == NULL) {
        return NGX_ERROR;
    }

    shpool->data = counters;
    shm_zone->data = counters;

    return NGX_OK;
}


/* each worker counts into the zone, if the configuration has one */

void
ngx_http_sagemaker_sessions_status_init_process(ngx_cycle_t *cycle)
{
    ngx_http_sagemaker_sessions_main_conf_t  *smcf;

    smcf = ngx_http_cycle_get_module_main_conf(cycle,
                                        ngx_http_sagemaker_sessions_module);

    sms_metrics_attach((smcf && smcf->status_zone)
                       ? smcf->status_zone->data : NULL);
}


static ngx_int_t
ngx_http_sagemaker_sessions_status_handler(ngx_http_request_t *r)
{
    size_t                                    nreplicas, nupstreams;
    ngx_int_t                                 rc;
    sms_str_t                                 type, text;
    sms_status_t                              status;
    sms_decision_t                            d;
    sms_replica_status_t                     *replicas;
    sms_upstream_status_t                    *upstreams;
    ngx_http_sagemaker_sessions_main_conf_t  *smcf;

    rc = ngx_http_sagemaker_sessions_screen(r);

    if (rc != NGX_DECLINED) {
        return rc;
    }

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_discard_request_body(r);

    if (rc != NGX_OK) {
        return rc;
    }

    smcf = ngx_http_get_module_main_conf(r, ngx_http_sagemaker_sessions_module);

    replicas = NULL;
    upstreams = NULL;
    nreplicas = 0;
    nupstreams = 0;

    if (ngx_http_sagemaker_sessions_affinity_status(r, &replicas, &nreplicas,
                                                    &upstreams, &nupstreams)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_memzero(&status, sizeof(sms_status_t));

    status.counters = smcf->status_zone ? smcf->status_zone->data : NULL;
    status.ncounters = status.counters ? sms_metrics_slots() : 0;
    status.replicas = replicas;
    status.nreplicas = nreplicas;
    status.upstreams = upstreams;
    status.nupstreams = nupstreams;
    status.version.data = (u_char *) NGX_HTTP_SAGEMAKER_SESSIONS_VERSION;
    status.version.len = sizeof(NGX_HTTP_SAGEMAKER_SESSIONS_VERSION) - 1;

    if (sms_status_text(smcf->store, &status, ngx_http_sagemaker_sessions_alloc,
                        r->pool, &type, &text)
        != 0)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (smcf->store) {
        ngx_http_sagemaker_sessions_turn_used(smcf);
    }

    ngx_memzero(&d, sizeof(sms_decision_t));

    d.status = NGX_HTTP_OK;
    d.content_type = type;
    d.body = text;

    return ngx_http_sagemaker_sessions_respond(r, &d);
}


int64_t
ngx_http_sagemaker_sessions_now_us(void)
{
    struct timespec  ts;

    (void) clock_gettime(CLOCK_MONOTONIC, &ts);

    return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}
