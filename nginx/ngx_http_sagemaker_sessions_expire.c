
/*
 * Closes owed for engine sessions the sweep found expired with a home
 * (Sources/SageMakerSessions/ExpireQueue.swift keeps them, as entries in
 * the sessions directory), or whose close a request made and the engine
 * refused. A timer in each worker makes each call it owes from a fake
 * request, as lua-nginx-module runs ngx.timer.at's handlers
 * (ngx_http_lua_create_fake_connection, _fake_request): a connection with
 * no socket (fd -1), its own pool and log, a request on it that is its own
 * main request, with the configuration of the first location that has a
 * session manager and a close handler. The call itself is the request
 * path's: the same in-memory subrequest through the close location
 * (_engine.c), so the user's proxy settings, upstream and the affinity
 * balancer (to the session's home) apply.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_sagemaker_sessions_module.h"


/* the longest pause between two looks at what is due */
#define NGX_HTTP_SAGEMAKER_SESSIONS_EXPIRE_TICK  1000


typedef struct {
    ngx_http_log_ctx_t                        log;   /* first: c->log->data */
    ngx_http_sagemaker_sessions_ctx_t         ctx;
    ngx_http_sagemaker_sessions_main_conf_t  *smcf;
} ngx_http_sagemaker_sessions_expire_t;


static void ngx_http_sagemaker_sessions_expire_handler(ngx_event_t *ev);
static ngx_int_t ngx_http_sagemaker_sessions_expire_call(
    ngx_http_sagemaker_sessions_main_conf_t *smcf);
static ngx_http_request_t *ngx_http_sagemaker_sessions_fake_request(
    ngx_http_sagemaker_sessions_main_conf_t *smcf);
static void ngx_http_sagemaker_sessions_expire_done(ngx_http_request_t *r);
static void ngx_http_sagemaker_sessions_close_fake(ngx_http_request_t *r);
static u_char *ngx_http_sagemaker_sessions_expire_log(ngx_log_t *log,
    u_char *buf, size_t len);


/*
 * The first location (in the order nginx merges them) with a session
 * manager and a close handler, where an upstream has session affinity:
 * its configuration, as the merge sees it, is the fake request's. Several
 * such locations share one sessions directory; the first one's close
 * handler closes the sessions the sweep finds expired.
 */

void
ngx_http_sagemaker_sessions_expire_conf(ngx_conf_t *cf,
    ngx_http_sagemaker_sessions_main_conf_t *smcf,
    ngx_http_sagemaker_sessions_loc_conf_t *slcf)
{
    ngx_http_conf_ctx_t  *ctx;

    if (smcf->expire_ctx || smcf->store == NULL || smcf->affinity_zone == NULL
        || slcf->close.uri.data == NULL || slcf->location == NULL)
    {
        return;
    }

    ctx = ngx_palloc(cf->pool, sizeof(ngx_http_conf_ctx_t));
    if (ctx == NULL) {
        return;
    }

    /* the arrays of this location, merged in place */
    *ctx = *(ngx_http_conf_ctx_t *) cf->ctx;

    smcf->expire_ctx = ctx;
    smcf->expire_location = slcf->location;

    sms_store_close_expired(smcf->store);
}


/* in each worker: its part of the sweep finds entries, this timer calls */

void
ngx_http_sagemaker_sessions_expire_init(ngx_cycle_t *cycle,
    ngx_http_sagemaker_sessions_main_conf_t *smcf)
{
    if (smcf->expire_ctx == NULL) {
        return;
    }

    smcf->expire.handler = ngx_http_sagemaker_sessions_expire_handler;
    smcf->expire.data = smcf;
    smcf->expire.log = cycle->log;
    smcf->expire.cancelable = 1;

    /* the others only once they owe one (_expire_poke) */
    if (ngx_worker == 0) {
        ngx_add_timer(&smcf->expire, NGX_HTTP_SAGEMAKER_SESSIONS_EXPIRE_TICK);
    }
}


/*
 * A close was answered, or the sweep owes new ones: the handler runs in
 * this turn if one is due now (and a call may go out), else the timer is
 * set if a close is owed.
 */

void
ngx_http_sagemaker_sessions_expire_poke(
    ngx_http_sagemaker_sessions_main_conf_t *smcf)
{
    int64_t  wait;

    if (smcf->expire.handler == NULL || ngx_exiting || ngx_quit
        || ngx_terminate)
    {
        return;
    }

    wait = sms_expire_wait(smcf->store);

    if (wait == 0) {
        /* due now (a slot freed, or the sweep just found some): this turn */
        if (!smcf->expire.posted) {
            ngx_post_event(&smcf->expire, &ngx_posted_events);
        }

        return;
    }

    if (wait > 0 && !smcf->expire.timer_set) {
        ngx_add_timer(&smcf->expire,
                      (ngx_msec_t) ngx_min(wait,
                                      NGX_HTTP_SAGEMAKER_SESSIONS_EXPIRE_TICK));
    }
}


static void
ngx_http_sagemaker_sessions_expire_handler(ngx_event_t *ev)
{
    int64_t                                   wait;
    ngx_http_sagemaker_sessions_main_conf_t  *smcf;

    smcf = ev->data;

    /* an exiting worker starts no call; the next cycle's makes them */
    if (ngx_exiting || ngx_quit || ngx_terminate) {
        return;
    }

    while (sms_expire_wait(smcf->store) == 0
           && ngx_http_sagemaker_sessions_expire_call(smcf) == NGX_OK)
    {
        /* void */
    }

    ngx_http_sagemaker_sessions_warn(smcf, ev->log);

    ngx_http_sagemaker_sessions_turn_used(smcf);

    wait = sms_expire_wait(smcf->store);

    if (wait < 0 && ngx_worker != 0) {
        /* nothing owed: poked again when a request's close is refused */
        return;
    }

    if (wait < 0 || wait > NGX_HTTP_SAGEMAKER_SESSIONS_EXPIRE_TICK) {
        wait = NGX_HTTP_SAGEMAKER_SESSIONS_EXPIRE_TICK;
    }

    ngx_add_timer(ev, wait ? (ngx_msec_t) wait : 1);
}


/*
 * One close due, made from its own fake request: NGX_OK when one was
 * started (or failed to start, and was answered so), NGX_DONE when none
 * is due.
 */

static ngx_int_t
ngx_http_sagemaker_sessions_expire_call(
    ngx_http_sagemaker_sessions_main_conf_t *smcf)
{
    int                                    rc;
    ngx_connection_t                      *c;
    ngx_http_request_t                    *r;
    sms_decision_t                         d;
    sms_engine_response_t                  resp;
    ngx_http_sagemaker_sessions_ctx_t     *ctx;
    ngx_http_sagemaker_sessions_expire_t  *ex;

    r = ngx_http_sagemaker_sessions_fake_request(smcf);
    if (r == NULL) {
        return NGX_DONE;
    }

    c = r->connection;
    ex = c->log->data;
    ctx = &ex->ctx;

    ngx_memzero(&d, sizeof(sms_decision_t));

    rc = sms_expire_take(smcf->store, smcf->expire_location,
                         ngx_http_sagemaker_sessions_alloc, r->pool, &d);

    if (rc != 1) {
        if (rc < 0) {
            ngx_log_error(NGX_LOG_ERR, c->log, 0,
                          "sagemaker sessions: out of memory closing an "
                          "expired session");
        }

        ngx_http_sagemaker_sessions_close_fake(r);
        return NGX_DONE;
    }

    /* for the affinity balancer: the session's home, only */
    ctx->route = d.route;
    ctx->session.data = (u_char *) d.session_id.data;
    ctx->session.len = d.session_id.len;
    ctx->home.data = (u_char *) d.home.data;
    ctx->home.len = d.home.len;

    if (ngx_http_sagemaker_sessions_call_engine(r, ctx, &d) != NGX_OK) {
        ngx_memzero(&resp, sizeof(sms_engine_response_t));
        resp.status = NGX_HTTP_INTERNAL_SERVER_ERROR;
        resp.complete = 1;

        (void) sms_expire_answered(smcf->store, &d.session_id, &resp, NULL, 0);

        ngx_log_error(NGX_LOG_ERR, c->log, 0,
                      "sagemaker sessions: the close could not be sent");

        /* a subrequest made is the request's too: ended with it */
        ngx_http_sagemaker_sessions_close_fake(r);
        return NGX_OK;
    }

    /* the subrequest runs now; r may be gone when this returns */
    ngx_http_run_posted_requests(c);

    return NGX_OK;
}


/*
 * As ngx_http_lua_create_fake_connection and _fake_request do, with what a
 * subrequest through proxy_pass needs on top: variables, an empty header
 * list, subrequests allowed, and its events marked active: nginx adds
 * a client connection's events to epoll before it proxies (the read one
 * since 1.19.x, to see a client go), and there is no socket to add.
 */

static ngx_http_request_t *
ngx_http_sagemaker_sessions_fake_request(
    ngx_http_sagemaker_sessions_main_conf_t *smcf)
{
    ngx_log_t                             *log;
    ngx_pool_t                            *pool;
    ngx_listening_t                       *ls;
    ngx_connection_t                      *c, *saved;
    ngx_http_request_t                    *r;
    ngx_http_core_main_conf_t             *cmcf;
    ngx_http_sagemaker_sessions_expire_t  *ex;

    pool = ngx_create_pool(NGX_DEFAULT_POOL_SIZE, ngx_cycle->log);
    if (pool == NULL) {
        return NULL;
    }

    ex = ngx_pcalloc(pool, sizeof(ngx_http_sagemaker_sessions_expire_t));
    log = ngx_pcalloc(pool, sizeof(ngx_log_t));
    r = ngx_pcalloc(pool, sizeof(ngx_http_request_t));

    if (ex == NULL || log == NULL || r == NULL) {
        ngx_destroy_pool(pool);
        return NULL;
    }

    /* fd 0 for ngx_get_connection(), as lua-nginx-module does */
    saved = ngx_cycle->files ? ngx_cycle->files[0] : NULL;

    c = ngx_get_connection(0, ngx_cycle->log);

    if (ngx_cycle->files) {
        ngx_cycle->files[0] = saved;
    }

    if (c == NULL) {
        ngx_destroy_pool(pool);
        return NULL;
    }

    c->fd = (ngx_socket_t) -1;
    c->number = ngx_atomic_fetch_add(ngx_connection_counter, 1);
    c->pool = pool;

    *log = *ngx_cycle->log;
    log->connection = c->number;
    log->action = NULL;
    log->handler = ngx_http_sagemaker_sessions_expire_log;
    log->data = ex;

    /* $server_addr and $server_port: nginx's first listening socket, as
     * no socket of its own can say (getsockname() of fd -1 fails) */
    if (ngx_cycle->listening.nelts) {
        ls = ngx_cycle->listening.elts;
        c->listening = ls;
        c->local_sockaddr = ls->sockaddr;
        c->local_socklen = ls->socklen;
    }

    c->log = log;
    c->log_error = NGX_ERROR_INFO;
    c->read->log = log;
    c->write->log = log;
    c->read->active = 1;
    c->write->active = 1;
    c->requests++;
    c->data = r;

    ex->smcf = smcf;
    ex->log.connection = c;
    ex->log.request = r;
    ex->log.current_request = r;

    r->pool = pool;
    r->connection = c;
    r->signature = NGX_HTTP_MODULE;
    r->main = r;
    r->count = 1;

    r->main_conf = smcf->expire_ctx->main_conf;
    r->srv_conf = smcf->expire_ctx->srv_conf;
    r->loc_conf = smcf->expire_ctx->loc_conf;

    r->ctx = ngx_pcalloc(pool, sizeof(void *) * ngx_http_max_module);
    if (r->ctx == NULL) {
        goto failed;
    }

    cmcf = ngx_http_get_module_main_conf(r, ngx_http_core_module);

    r->variables = ngx_pcalloc(pool, cmcf->variables.nelts
                                     * sizeof(ngx_http_variable_value_t));
    if (r->variables == NULL) {
        goto failed;
    }

    if (ngx_list_init(&r->headers_in.headers, pool, 1, sizeof(ngx_table_elt_t))
        != NGX_OK
        || ngx_list_init(&r->headers_out.headers, pool, 1,
                         sizeof(ngx_table_elt_t))
           != NGX_OK)
    {
        goto failed;
    }

    r->method = NGX_HTTP_POST;
    ngx_str_set(&r->method_name, "POST");
    r->http_version = NGX_HTTP_VERSION_11;
    ngx_str_set(&r->http_protocol, "HTTP/1.1");
    ngx_str_set(&r->schema, "http");
    ngx_str_set(&r->request_line, "expire");

    r->headers_in.content_length_n = -1;
    r->headers_in.keep_alive_n = -1;
    r->headers_out.content_length_n = -1;
    r->headers_out.last_modified_time = -1;

    r->subrequests = NGX_HTTP_MAX_SUBREQUESTS + 1;
    r->uri_changes = NGX_HTTP_MAX_URI_CHANGES + 1;
    r->start_sec = ngx_time();
    r->start_msec = ngx_current_msec;

    r->read_event_handler = ngx_http_request_empty_handler;
    r->write_event_handler = ngx_http_sagemaker_sessions_expire_done;

    ngx_http_set_ctx(r, &ex->ctx, ngx_http_sagemaker_sessions_module);

    return r;

failed:

    ngx_http_sagemaker_sessions_close_fake(r);
    return NULL;
}


/* woken when the subrequest is done: its answer goes to the queue */

static void
ngx_http_sagemaker_sessions_expire_done(ngx_http_request_t *r)
{
    int                                    level;
    char                                   message[SMS_ERRLEN];
    ngx_str_t                              id;
    sms_str_t                              sid;
    ngx_connection_t                      *c;
    sms_engine_response_t                  resp;
    ngx_http_sagemaker_sessions_ctx_t     *ctx;
    ngx_http_sagemaker_sessions_expire_t  *ex;

    c = r->connection;
    ex = c->log->data;
    ctx = &ex->ctx;

    if (!ctx->done || r->count > 1) {
        /* woken early: the subrequest is not finished yet */
        return;
    }

    if (ngx_http_sagemaker_sessions_engine_response(r, ctx, &resp) != NGX_OK) {
        ngx_memzero(&resp, sizeof(sms_engine_response_t));
        resp.status = NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    id = ctx->session;
    sid.data = id.data;
    sid.len = id.len;

    message[0] = '\0';
    level = sms_expire_answered(ex->smcf->store, &sid, &resp, message,
                                sizeof(message));

    if (level != SMS_LOG_NONE) {
        ngx_log_error((ngx_uint_t) level, ngx_cycle->log, 0,
                      "sagemaker sessions: %s", message);
    }

    ngx_http_sagemaker_sessions_expire_poke(ex->smcf);

    ngx_http_sagemaker_sessions_close_fake(r);
}


/*
 * As ngx_http_lua_free_fake_request and _close_fake_connection: the
 * request's cleanups run, the connection goes back (fd 0 again for
 * ngx_free_connection()), the pool with everything else.
 */

static void
ngx_http_sagemaker_sessions_close_fake(ngx_http_request_t *r)
{
    ngx_pool_t          *pool;
    ngx_connection_t    *c, *saved;
    ngx_http_cleanup_t  *cln;

    c = r->connection;

    for (cln = r->cleanup; cln; cln = cln->next) {
        if (cln->handler) {
            cln->handler(cln->data);
        }
    }

    r->cleanup = NULL;

    c->destroyed = 1;
    pool = c->pool;

    if (c->read->timer_set) {
        ngx_del_timer(c->read);
    }

    if (c->write->timer_set) {
        ngx_del_timer(c->write);
    }

    if (c->read->posted) {
        ngx_delete_posted_event(c->read);
    }

    if (c->write->posted) {
        ngx_delete_posted_event(c->write);
    }

    c->read->closed = 1;
    c->write->closed = 1;
    c->read->active = 0;
    c->write->active = 0;

    c->fd = 0;
    saved = ngx_cycle->files ? ngx_cycle->files[0] : NULL;

    ngx_free_connection(c);

    c->fd = (ngx_socket_t) -1;

    if (ngx_cycle->files) {
        ngx_cycle->files[0] = saved;
    }

    ngx_destroy_pool(pool);
}


/* what an error of the call is about, as nginx says it of a request */

static u_char *
ngx_http_sagemaker_sessions_expire_log(ngx_log_t *log, u_char *buf,
    size_t len)
{
    u_char                                *p;
    ngx_http_sagemaker_sessions_expire_t  *ex;

    p = buf;

    if (log->action) {
        p = ngx_snprintf(p, len, " while %s", log->action);
        len -= p - buf;
        buf = p;
    }

    ex = log->data;

    p = ngx_snprintf(p, len, ", closing expired session \"%V\" at \"%V\"",
                     &ex->ctx.session, &ex->ctx.home);

    return p;
}
