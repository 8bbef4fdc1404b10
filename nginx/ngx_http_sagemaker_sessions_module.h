
/*
 * What the files of the nginx shim share: the module, its configuration,
 * a request's context, and the functions one file calls in another.
 */

#ifndef _NGX_HTTP_SAGEMAKER_SESSIONS_MODULE_H_INCLUDED_
#define _NGX_HTTP_SAGEMAKER_SESSIONS_MODULE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_sagemaker_sessions.h"
#include "ngx_http_sagemaker_sessions_compat.h"



typedef struct ngx_http_sagemaker_sessions_shm_s
    ngx_http_sagemaker_sessions_shm_t;
typedef struct ngx_http_sagemaker_sessions_ups_s
    ngx_http_sagemaker_sessions_ups_t;


typedef struct {
    ngx_flag_t                 enable;
    ngx_str_t                  path;
    ngx_int_t                  expiration;   /* seconds */
    ngx_int_t                  max;

    void                      *store;       /* Swift SessionStore or NULL */
    ngx_event_t                sweep;
    ngx_event_t                turn;        /* posted: the loop's turn ends */

    /* the sweep's graveyard task and its thread pool, in each
     * worker with threads (_graveyard.c), else NULL */
    ngx_thread_task_t         *graveyard;
    void                      *graveyard_pool;

    /* from SAGEMAKER_TRANSFORMS_{CREATE,CLOSE}_SESSION_DEFAULTS, or NULL */
    void                      *create_defaults;
    void                      *close_defaults;

    /* session affinity: the upstreams that have it, and their shared memory */
    ngx_shm_zone_t            *affinity_zone;
    ngx_array_t                affinity_upstreams;
    ngx_http_sagemaker_sessions_shm_t  *shm;

    /* the status page's counters, shared by the workers (_status.c) */
    ngx_shm_zone_t            *status_zone;

    /* closes owed for expired engine sessions (_expire.c): the first
     * manager location with a close handler, its conf, and the timer */
    ngx_http_conf_ctx_t       *expire_ctx;
    void                      *expire_location;
    ngx_event_t                expire;
} ngx_http_sagemaker_sessions_main_conf_t;


/* an upstream block's */
typedef struct {
    ngx_flag_t                 affinity;
    ngx_http_upstream_srv_conf_t             *upstream;
    ngx_http_sagemaker_sessions_main_conf_t  *main;
    ngx_http_sagemaker_sessions_ups_t        *shm;
} ngx_http_sagemaker_sessions_srv_conf_t;



typedef struct {
    ngx_str_t                  uri;
    void                      *path;        /* Swift JSONPath */
} ngx_http_sagemaker_sessions_handler_t;


typedef struct {
    ngx_flag_t                 manager;
    void                      *inject_path;  /* Swift JSONPath or NULL */

    ngx_http_sagemaker_sessions_handler_t  create;
    ngx_http_sagemaker_sessions_handler_t  close;
    void                      *create_defaults;
    void                      *close_defaults;

    void                      *location;     /* Swift SessionManager */
} ngx_http_sagemaker_sessions_loc_conf_t;


/* the main request's, made by the first of the module's readers of the
 * request (ngx_http_sagemaker_sessions_ctx()) */
typedef struct {
    ngx_int_t                  status;

    /* what the request's first reader found of its session, for every
     * later one (the core's; one request, one verdict) */
    sms_verdict_t              verdict;

    /* an engine session subrequest: SMS_CALL_CREATE, _CLOSE or _EXPIRE */
    ngx_int_t                  call;
    ngx_http_request_t        *subrequest;
    ngx_int_t                  sr_rc;

    /* the engine's answer body, kept by our body filter */
    u_char                    *capture;
    size_t                     captured;
    size_t                     capacity;

    /* session affinity: where the session goes (SMS_ROUTE_*), its id */
    ngx_uint_t                 route;
    ngx_str_t                  session;
    ngx_str_t                  home;         /* empty: none yet */
    ngx_http_sagemaker_sessions_ups_t  *ups;
    ngx_str_t                  answer;       /* the 503 for its home */

    unsigned                   done:1;
    unsigned                   last:1;       /* the whole body went by */
    unsigned                   overflow:1;   /* more than capacity */
    unsigned                   unavailable:1;  /* its home did not answer */
    unsigned                   answered:1;
    unsigned                   managed:1;    /* the manager's phase ran */

    /* for the variables (_variables.c), as the core decided */
    ngx_int_t                  outcome;
    ngx_str_t                  session_id;
    int64_t                    engine_started;   /* us, monotonic */
} ngx_http_sagemaker_sessions_ctx_t;


extern ngx_module_t  ngx_http_sagemaker_sessions_module;


/* the request phase (_handler.c) */

ngx_int_t ngx_http_sagemaker_sessions_handler(ngx_http_request_t *r);
ngx_http_sagemaker_sessions_ctx_t *ngx_http_sagemaker_sessions_ctx(
    ngx_http_request_t *r);
ngx_int_t ngx_http_sagemaker_sessions_screen(ngx_http_request_t *r);
ngx_int_t ngx_http_sagemaker_sessions_carry_out(ngx_http_request_t *r,
    sms_decision_t *d);
void ngx_http_sagemaker_sessions_request(ngx_http_request_t *r,
    sms_request_t *req);
ngx_int_t ngx_http_sagemaker_sessions_respond(ngx_http_request_t *r,
    sms_decision_t *d);
void *ngx_http_sagemaker_sessions_alloc(void *pool, size_t size);

/* the request body (_body.c) */

ngx_int_t ngx_http_sagemaker_sessions_preread(ngx_http_request_t *r,
    ngx_http_sagemaker_sessions_loc_conf_t *slcf);
ngx_int_t ngx_http_sagemaker_sessions_body(ngx_http_request_t *r,
    sms_request_t *req);
ngx_chain_t *ngx_http_sagemaker_sessions_chain(ngx_pool_t *pool,
    sms_str_t *body);
ngx_int_t ngx_http_sagemaker_sessions_replace_body(
    ngx_http_request_t *r, sms_decision_t *d);

/* engine session subrequests (_engine.c) */

ngx_int_t ngx_http_sagemaker_sessions_call_engine(
    ngx_http_request_t *r, ngx_http_sagemaker_sessions_ctx_t *ctx,
    sms_decision_t *d);
ngx_int_t ngx_http_sagemaker_sessions_engine_answer(
    ngx_http_request_t *r, ngx_http_sagemaker_sessions_ctx_t *ctx);
ngx_int_t ngx_http_sagemaker_sessions_engine_response(ngx_http_request_t *r,
    ngx_http_sagemaker_sessions_ctx_t *ctx, sms_engine_response_t *resp);
ngx_int_t ngx_http_sagemaker_sessions_engine_init(ngx_conf_t *cf);

/* closes of expired engine sessions from a fake request (_expire.c) */

void ngx_http_sagemaker_sessions_expire_conf(ngx_conf_t *cf,
    ngx_http_sagemaker_sessions_main_conf_t *smcf,
    ngx_http_sagemaker_sessions_loc_conf_t *slcf);
void ngx_http_sagemaker_sessions_expire_init(ngx_cycle_t *cycle,
    ngx_http_sagemaker_sessions_main_conf_t *smcf);
void ngx_http_sagemaker_sessions_expire_poke(
    ngx_http_sagemaker_sessions_main_conf_t *smcf);

/* session affinity: the upstream balancer (_upstream.c) */

char *ngx_http_sagemaker_session_affinity(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_http_sagemaker_sessions_init_affinity(ngx_cycle_t *cycle,
    ngx_http_sagemaker_sessions_main_conf_t *smcf);
ngx_int_t ngx_http_sagemaker_sessions_affinity_filter_init(ngx_conf_t *cf);

/* the store in each worker (_store.c) */

ngx_int_t ngx_http_sagemaker_sessions_graveyard_conf(ngx_conf_t *cf,
    ngx_http_sagemaker_sessions_main_conf_t *smcf);
ngx_int_t ngx_http_sagemaker_sessions_graveyard_init(ngx_cycle_t *cycle,
    ngx_http_sagemaker_sessions_main_conf_t *smcf);
void ngx_http_sagemaker_sessions_graveyard_post(
    ngx_http_sagemaker_sessions_main_conf_t *smcf);
void ngx_http_sagemaker_sessions_graveyard_exit(
    ngx_http_sagemaker_sessions_main_conf_t *smcf);
void ngx_http_sagemaker_sessions_turn_used(
    ngx_http_sagemaker_sessions_main_conf_t *smcf);
void ngx_http_sagemaker_sessions_warn(
    ngx_http_sagemaker_sessions_main_conf_t *smcf, ngx_log_t *log);
ngx_int_t ngx_http_sagemaker_sessions_init_process(
    ngx_cycle_t *cycle);
void ngx_http_sagemaker_sessions_exit_process(ngx_cycle_t *cycle);

/* the status page and its shared counters (_status.c) */

char *ngx_http_sagemaker_sessions_status(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
void ngx_http_sagemaker_sessions_status_init_process(ngx_cycle_t *cycle);
int64_t ngx_http_sagemaker_sessions_now_us(void);

/* session affinity's rows for the status page (_upstream.c) */

ngx_int_t ngx_http_sagemaker_sessions_affinity_status(ngx_http_request_t *r,
    sms_replica_status_t **replicas, size_t *nreplicas,
    sms_upstream_status_t **upstreams, size_t *nupstreams);

/* variables (_variables.c) */

ngx_int_t ngx_http_sagemaker_sessions_add_variables(ngx_conf_t *cf);

/* set_sagemaker_session_value (_value.c) */

char *ngx_http_sagemaker_session_value(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);



#endif /* _NGX_HTTP_SAGEMAKER_SESSIONS_MODULE_H_INCLUDED_ */
