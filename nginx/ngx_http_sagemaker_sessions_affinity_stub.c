
/*
 * Until session affinity (ngx_http_sagemaker_sessions_upstream.c) is in
 * the tree: no upstream uses it, so the status page has no rows of it.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_sagemaker_sessions_module.h"


ngx_int_t
ngx_http_sagemaker_sessions_affinity_status(ngx_http_request_t *r,
    sms_replica_status_t **replicas, size_t *nreplicas,
    sms_upstream_status_t **upstreams, size_t *nupstreams)
{
    *replicas = NULL;
    *nreplicas = 0;
    *upstreams = NULL;
    *nupstreams = 0;

    return NGX_OK;
}
