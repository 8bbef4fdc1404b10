
/*
 * SageMaker stateful sessions for nginx: the C shim.
 *
 * It registers the directives, hooks the precontent phase of locations with
 * sagemaker_session_manager, reads request bodies, and carries out what the
 * Swift core (sms_* in ngx_http_sagemaker_sessions.h) decides: pass the
 * request on, pass it on with a new body, or answer it here.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_sagemaker_sessions.h"


typedef struct {
    ngx_flag_t                 enable;
    ngx_str_t                  path;
    time_t                     expiration;

    void                      *store;       /* Swift SessionStore or NULL */
    ngx_event_t                sweep;
} ngx_http_sagemaker_sessions_main_conf_t;


typedef struct {
    ngx_flag_t                 manager;
    ngx_str_t                  session_id_path;
    void                      *inject_path;  /* Swift JSONPath or NULL */
} ngx_http_sagemaker_sessions_loc_conf_t;


typedef struct {
    ngx_int_t                  status;
} ngx_http_sagemaker_sessions_ctx_t;


static ngx_int_t ngx_http_sagemaker_sessions_handler(ngx_http_request_t *r);
static void ngx_http_sagemaker_sessions_body_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_sagemaker_sessions_process(ngx_http_request_t *r);
static ngx_int_t ngx_http_sagemaker_sessions_body(ngx_http_request_t *r,
    sms_str_t *body);
static ngx_table_elt_t *ngx_http_sagemaker_sessions_header(
    ngx_http_request_t *r);
static ngx_int_t ngx_http_sagemaker_sessions_replace_body(
    ngx_http_request_t *r, sms_str_t *body);
static ngx_int_t ngx_http_sagemaker_sessions_respond(ngx_http_request_t *r,
    sms_decision_t *d);
static void *ngx_http_sagemaker_sessions_alloc(void *pool, size_t size);
static void ngx_http_sagemaker_sessions_sweep_handler(ngx_event_t *ev);

static void *ngx_http_sagemaker_sessions_create_main_conf(ngx_conf_t *cf);
static char *ngx_http_sagemaker_sessions_init_main_conf(ngx_conf_t *cf,
    void *conf);
static void *ngx_http_sagemaker_sessions_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_sagemaker_sessions_merge_loc_conf(ngx_conf_t *cf,
    void *parent, void *child);
static char *ngx_http_sagemaker_sessions_path(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_sagemaker_sessions_expiration(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_sagemaker_session_manager(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static void ngx_http_sagemaker_sessions_release_store(void *data);
static void ngx_http_sagemaker_sessions_release_path(void *data);
static ngx_int_t ngx_http_sagemaker_sessions_init(ngx_conf_t *cf);
static ngx_int_t ngx_http_sagemaker_sessions_init_module(ngx_cycle_t *cycle);
static ngx_int_t ngx_http_sagemaker_sessions_init_process(
    ngx_cycle_t *cycle);


static ngx_command_t  ngx_http_sagemaker_sessions_commands[] = {

    { ngx_string("sagemaker_sessions"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_sagemaker_sessions_main_conf_t, enable),
      NULL },

    { ngx_string("sagemaker_sessions_path"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_sagemaker_sessions_path,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("sagemaker_sessions_expiration"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_sagemaker_sessions_expiration,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("sagemaker_session_manager"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS|NGX_CONF_TAKE1,
      ngx_http_sagemaker_session_manager,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_sagemaker_sessions_module_ctx = {
    NULL,                                  /* preconfiguration */
    ngx_http_sagemaker_sessions_init,      /* postconfiguration */

    ngx_http_sagemaker_sessions_create_main_conf, /* create main conf */
    ngx_http_sagemaker_sessions_init_main_conf,   /* init main conf */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_sagemaker_sessions_create_loc_conf,  /* create location conf */
    ngx_http_sagemaker_sessions_merge_loc_conf    /* merge location conf */
};


ngx_module_t  ngx_http_sagemaker_sessions_module = {
    NGX_MODULE_V1,
    &ngx_http_sagemaker_sessions_module_ctx, /* module context */
    ngx_http_sagemaker_sessions_commands,  /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    ngx_http_sagemaker_sessions_init_module, /* init module */
    ngx_http_sagemaker_sessions_init_process, /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    NULL,                                  /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_str_t  ngx_http_sagemaker_sessions_header_name =
    ngx_string("X-Amzn-SageMaker-Session-Id");


static ngx_int_t
ngx_http_sagemaker_sessions_handler(ngx_http_request_t *r)
{
    ngx_int_t                                rc;
    ngx_http_sagemaker_sessions_ctx_t       *ctx;
    ngx_http_sagemaker_sessions_loc_conf_t  *slcf;

    if (r != r->main) {
        return NGX_DECLINED;
    }

    slcf = ngx_http_get_module_loc_conf(r, ngx_http_sagemaker_sessions_module);

    if (!slcf->manager) {
        return NGX_DECLINED;
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_sagemaker_sessions_module);

    if (ctx) {
        /* the phases run again once the body is read */
        return ctx->status;
    }

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_sagemaker_sessions_ctx_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_set_ctx(r, ctx, ngx_http_sagemaker_sessions_module);

    if (r->headers_in.content_length_n <= 0 && !r->headers_in.chunked) {
        ctx->status = NGX_DECLINED;

        rc = ngx_http_sagemaker_sessions_process(r);
        if (rc == NGX_DECLINED) {
            return NGX_DECLINED;
        }

        ngx_http_finalize_request(r, rc);
        return NGX_DONE;
    }

    ctx->status = NGX_DONE;

    rc = ngx_http_read_client_request_body(r,
                                    ngx_http_sagemaker_sessions_body_handler);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    ngx_http_finalize_request(r, NGX_DONE);
    return NGX_DONE;
}


static void
ngx_http_sagemaker_sessions_body_handler(ngx_http_request_t *r)
{
    ngx_int_t                           rc;
    ngx_http_sagemaker_sessions_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_sagemaker_sessions_module);

    rc = ngx_http_sagemaker_sessions_process(r);

    if (rc != NGX_DECLINED) {
        ngx_http_finalize_request(r, rc);
        return;
    }

    ctx->status = NGX_DECLINED;

    r->preserve_body = 1;
    r->write_event_handler = ngx_http_core_run_phases;
    ngx_http_core_run_phases(r);
}


/*
 * Asks the core what to do. Returns NGX_DECLINED to let the request go on,
 * or what to finalize the request with once it has been answered here.
 */

static ngx_int_t
ngx_http_sagemaker_sessions_process(ngx_http_request_t *r)
{
    ngx_table_elt_t                          *h;
    sms_request_t                             req;
    sms_decision_t                            d;
    ngx_http_sagemaker_sessions_loc_conf_t   *slcf;
    ngx_http_sagemaker_sessions_main_conf_t  *smcf;

    smcf = ngx_http_get_module_main_conf(r, ngx_http_sagemaker_sessions_module);
    slcf = ngx_http_get_module_loc_conf(r, ngx_http_sagemaker_sessions_module);

    ngx_memzero(&req, sizeof(sms_request_t));
    ngx_memzero(&d, sizeof(sms_decision_t));

    h = ngx_http_sagemaker_sessions_header(r);
    if (h) {
        req.session_id.data = h->value.len ? h->value.data : (u_char *) "";
        req.session_id.len = h->value.len;
    }

    if (r->request_body) {
        req.has_body = 1;

        if (ngx_http_sagemaker_sessions_body(r, &req.body) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    if (sms_decide(smcf->store, slcf->inject_path, &req,
                   ngx_http_sagemaker_sessions_alloc, r->pool, &d)
        != 0)
    {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "sagemaker sessions: out of memory deciding a request");
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (d.log_level != SMS_LOG_NONE) {
        ngx_log_error((ngx_uint_t) d.log_level, r->connection->log, 0,
                      "sagemaker sessions: %*s",
                      d.log_message.len, d.log_message.data);
    }

    switch (d.action) {

    case SMS_PASS:
        return NGX_DECLINED;

    case SMS_PASS_NEW_BODY:
        if (ngx_http_sagemaker_sessions_replace_body(r, &d.body) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
        return NGX_DECLINED;

    default: /* SMS_RESPOND */
        return ngx_http_sagemaker_sessions_respond(r, &d);
    }
}


/*
 * The request body as one run of bytes: the buffer itself when nginx holds
 * it in one piece of memory, else one copy, read from the temp file for the
 * parts nginx wrote there.
 */

static ngx_int_t
ngx_http_sagemaker_sessions_body(ngx_http_request_t *r, sms_str_t *body)
{
    u_char       *p;
    off_t         len;
    ssize_t       n;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    cl = r->request_body->bufs;

    if (cl == NULL) {
        return NGX_OK;
    }

    if (cl->next == NULL && !cl->buf->in_file) {
        body->data = cl->buf->pos;
        body->len = cl->buf->last - cl->buf->pos;
        return NGX_OK;
    }

    len = 0;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        len += ngx_buf_size(cl->buf);
    }

    if (len == 0) {
        return NGX_OK;
    }

    p = ngx_pnalloc(r->pool, (size_t) len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    body->data = p;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        b = cl->buf;

        if (b->in_file) {
            n = ngx_read_file(b->file, p, (size_t) (b->file_last - b->file_pos),
                              b->file_pos);

            if (n != b->file_last - b->file_pos) {
                ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                              "sagemaker sessions: cannot read the request "
                              "body from \"%V\"", &b->file->name);
                return NGX_ERROR;
            }

            p += n;
            continue;
        }

        p = ngx_cpymem(p, b->pos, b->last - b->pos);
    }

    body->len = p - body->data;

    return NGX_OK;
}


static ngx_table_elt_t *
ngx_http_sagemaker_sessions_header(ngx_http_request_t *r)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                return NULL;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len == ngx_http_sagemaker_sessions_header_name.len
            && ngx_strncasecmp(h[i].key.data,
                               ngx_http_sagemaker_sessions_header_name.data,
                               h[i].key.len)
               == 0)
        {
            return &h[i];
        }
    }
}


/* the engine receives the new body with its own Content-Length */

static ngx_int_t
ngx_http_sagemaker_sessions_replace_body(ngx_http_request_t *r,
    sms_str_t *body)
{
    u_char       *p;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_ERROR;
    }

    cl = ngx_alloc_chain_link(r->pool);
    if (cl == NULL) {
        return NGX_ERROR;
    }

    b->pos = (u_char *) body->data;
    b->last = b->pos + body->len;
    b->start = b->pos;
    b->end = b->last;
    b->memory = 1;
    b->last_buf = 1;

    cl->buf = b;
    cl->next = NULL;

    r->request_body->bufs = cl;
    r->request_body->buf = b;
    r->request_body->temp_file = NULL;

    r->headers_in.content_length_n = body->len;
    r->headers_in.chunked = 0;

    if (r->headers_in.content_length) {
        p = ngx_pnalloc(r->pool, NGX_OFF_T_LEN);
        if (p == NULL) {
            return NGX_ERROR;
        }

        r->headers_in.content_length->value.data = p;
        r->headers_in.content_length->value.len =
                                  ngx_sprintf(p, "%uz", body->len) - p;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_sagemaker_sessions_respond(ngx_http_request_t *r, sms_decision_t *d)
{
    ngx_int_t         rc;
    ngx_buf_t        *b;
    ngx_chain_t       out;
    ngx_table_elt_t  *h;

    if (ngx_http_discard_request_body(r) != NGX_OK) {
        r->keepalive = 0;
    }

    r->headers_out.status = d->status;
    r->headers_out.content_length_n = d->body.len;

    r->headers_out.content_type.data = (u_char *) d->content_type.data;
    r->headers_out.content_type.len = d->content_type.len;
    r->headers_out.content_type_len = d->content_type.len;
    r->headers_out.content_type_lowcase = NULL;

    if (d->header_name.len) {
        h = ngx_list_push(&r->headers_out.headers);
        if (h == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        h->hash = 1;
        h->key.data = (u_char *) d->header_name.data;
        h->key.len = d->header_name.len;
        h->value.data = (u_char *) d->header_value.data;
        h->value.len = d->header_value.len;
    }

    if (d->body.len == 0 || r->method == NGX_HTTP_HEAD) {
        r->header_only = 1;
        return ngx_http_send_header(r);
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->pos = (u_char *) d->body.data;
    b->last = b->pos + d->body.len;
    b->memory = 1;
    b->last_buf = 1;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    return ngx_http_output_filter(r, &out);
}


static void *
ngx_http_sagemaker_sessions_alloc(void *pool, size_t size)
{
    return ngx_pnalloc(pool, size);
}


static void
ngx_http_sagemaker_sessions_sweep_handler(ngx_event_t *ev)
{
    ngx_msec_t                                delay;
    ngx_http_sagemaker_sessions_main_conf_t  *smcf;

    smcf = ev->data;

    if (ngx_exiting || ngx_quit || ngx_terminate) {
        return;
    }

    delay = (ngx_msec_t) sms_sweep_step(smcf->store);

    ngx_add_timer(ev, delay ? delay : 1);
}


static void *
ngx_http_sagemaker_sessions_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_sagemaker_sessions_main_conf_t  *smcf;

    smcf = ngx_pcalloc(cf->pool,
                       sizeof(ngx_http_sagemaker_sessions_main_conf_t));
    if (smcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     smcf->path = { 0, NULL };
     *     smcf->store = NULL;
     */

    smcf->enable = NGX_CONF_UNSET;
    smcf->expiration = NGX_CONF_UNSET;

    return smcf;
}


/*
 * Directives win over environment variables; the core resolves both, creates
 * the sessions directory and falls back to the temp directory if it must.
 */

static char *
ngx_http_sagemaker_sessions_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_http_sagemaker_sessions_main_conf_t *smcf = conf;

    ngx_str_t               path;
    ngx_pool_cleanup_t     *cln;
    sms_main_resolved_t    *res;
    sms_main_directives_t   in;

    res = ngx_pcalloc(cf->temp_pool, sizeof(sms_main_resolved_t));
    if (res == NULL) {
        return NGX_CONF_ERROR;
    }

    in.enabled = (smcf->enable == NGX_CONF_UNSET) ? -1 : (int) smcf->enable;
    in.path.data = smcf->path.data;
    in.path.len = smcf->path.len;
    in.expiration = (smcf->expiration == NGX_CONF_UNSET)
                    ? -1 : (int64_t) smcf->expiration;

    if (sms_main_conf_resolve(&in, res) != 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "sagemaker sessions: %s",
                           res->error);
        return NGX_CONF_ERROR;
    }

    if (res->warning[0]) {
        ngx_conf_log_error(NGX_LOG_WARN, cf, 0, "sagemaker sessions: %s",
                           res->warning);
    }

    smcf->enable = res->enabled;
    smcf->expiration = (time_t) res->expiration;
    smcf->store = res->store;

    path.data = (u_char *) res->path;
    path.len = ngx_strlen(res->path);

    smcf->path.len = path.len;
    smcf->path.data = ngx_pstrdup(cf->pool, &path);
    if (smcf->path.data == NULL) {
        return NGX_CONF_ERROR;
    }

    if (smcf->store) {
        cln = ngx_pool_cleanup_add(cf->pool, 0);
        if (cln == NULL) {
            return NGX_CONF_ERROR;
        }

        cln->handler = ngx_http_sagemaker_sessions_release_store;
        cln->data = smcf->store;
    }

    return NGX_CONF_OK;
}


static void *
ngx_http_sagemaker_sessions_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_sagemaker_sessions_loc_conf_t  *slcf;

    slcf = ngx_pcalloc(cf->pool,
                       sizeof(ngx_http_sagemaker_sessions_loc_conf_t));
    if (slcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     slcf->session_id_path = { 0, NULL };
     *     slcf->inject_path = NULL;
     */

    slcf->manager = NGX_CONF_UNSET;

    return slcf;
}


static char *
ngx_http_sagemaker_sessions_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child)
{
    ngx_http_sagemaker_sessions_loc_conf_t *prev = parent;
    ngx_http_sagemaker_sessions_loc_conf_t *conf = child;

    if (conf->manager == NGX_CONF_UNSET) {
        conf->manager = (prev->manager == NGX_CONF_UNSET) ? 0 : prev->manager;
        conf->session_id_path = prev->session_id_path;
        conf->inject_path = prev->inject_path;
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_sagemaker_sessions_path(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_sagemaker_sessions_main_conf_t *smcf = conf;

    ngx_str_t  *value;

    if (smcf->path.data) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (value[1].len == 0) {
        return "takes a path, not an empty string";
    }

    if (value[1].data[0] != '/') {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid value \"%V\" in \"%V\" directive, "
                           "an absolute path is required",
                           &value[1], &cmd->name);
        return NGX_CONF_ERROR;
    }

    if (ngx_strlen(value[1].data) != value[1].len
        || value[1].len >= SMS_PATHLEN)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid value \"%V\" in \"%V\" directive",
                           &value[1], &cmd->name);
        return NGX_CONF_ERROR;
    }

    smcf->path = value[1];

    return NGX_CONF_OK;
}


static char *
ngx_http_sagemaker_sessions_expiration(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_sagemaker_sessions_main_conf_t *smcf = conf;

    time_t      sec;
    ngx_str_t  *value;

    if (smcf->expiration != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    value = cf->args->elts;

    sec = ngx_parse_time(&value[1], 1);

    if (sec == (time_t) NGX_ERROR || sec <= 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid value \"%V\" in \"%V\" directive, "
                           "a time greater than zero is required, "
                           "such as 1200 or 20m", &value[1], &cmd->name);
        return NGX_CONF_ERROR;
    }

    smcf->expiration = sec;

    return NGX_CONF_OK;
}


static char *
ngx_http_sagemaker_session_manager(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_sagemaker_sessions_loc_conf_t *slcf = conf;

    u_char               err[SMS_ERRLEN];
    ngx_str_t           *value, path;
    ngx_pool_cleanup_t  *cln;

    if (slcf->manager != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    slcf->manager = 1;

    if (cf->args->nelts == 1) {
        return NGX_CONF_OK;
    }

    value = cf->args->elts;

    if (value[1].len < sizeof("session_id_path=") - 1
        || ngx_strncmp(value[1].data, "session_id_path=",
                       sizeof("session_id_path=") - 1)
           != 0)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\" in \"%V\" directive, "
                           "session_id_path=PATH is expected",
                           &value[1], &cmd->name);
        return NGX_CONF_ERROR;
    }

    path.data = value[1].data + sizeof("session_id_path=") - 1;
    path.len = value[1].len - (sizeof("session_id_path=") - 1);

    err[0] = '\0';

    slcf->inject_path = sms_path_compile(path.data, path.len,
                                         (char *) err, sizeof(err));

    if (slcf->inject_path == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid session_id_path \"%V\" in \"%V\" "
                           "directive: %s", &path, &cmd->name, err);
        return NGX_CONF_ERROR;
    }

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        return NGX_CONF_ERROR;
    }

    cln->handler = ngx_http_sagemaker_sessions_release_path;
    cln->data = slcf->inject_path;

    slcf->session_id_path = path;

    return NGX_CONF_OK;
}


static void
ngx_http_sagemaker_sessions_release_store(void *data)
{
    sms_store_release(data);
}


static void
ngx_http_sagemaker_sessions_release_path(void *data)
{
    sms_path_release(data);
}


static ngx_int_t
ngx_http_sagemaker_sessions_init(ngx_conf_t *cf)
{
    ngx_http_handler_pt        *h;
    ngx_http_core_main_conf_t  *cmcf;

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_PRECONTENT_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_sagemaker_sessions_handler;

    return NGX_OK;
}


/* the worker processes' user must be able to use the sessions directory */

static ngx_int_t
ngx_http_sagemaker_sessions_init_module(ngx_cycle_t *cycle)
{
    u_char                                    err[SMS_ERRLEN];
    ngx_core_conf_t                          *ccf;
    ngx_http_sagemaker_sessions_main_conf_t  *smcf;

    smcf = ngx_http_cycle_get_module_main_conf(cycle,
                                        ngx_http_sagemaker_sessions_module);

    if (smcf == NULL || smcf->store == NULL) {
        return NGX_OK;
    }

    ccf = (ngx_core_conf_t *) ngx_get_conf(cycle->conf_ctx, ngx_core_module);

    if (ccf->user == (ngx_uid_t) NGX_CONF_UNSET_UINT) {
        return NGX_OK;
    }

    err[0] = '\0';

    if (sms_store_grant(smcf->store, (uint32_t) ccf->user,
                        (uint32_t) ccf->group, (char *) err, sizeof(err))
        != 0)
    {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "sagemaker sessions: cannot give \"%V\" to the worker "
                      "user: %s", &smcf->path, err);
        return NGX_ERROR;
    }

    ngx_log_error(NGX_LOG_INFO, cycle->log, 0,
                  "sagemaker sessions: sessions in \"%V\", expiring after %T s",
                  &smcf->path, smcf->expiration);

    return NGX_OK;
}


/* one worker sweeps expired sessions, in small steps on a timer */

static ngx_int_t
ngx_http_sagemaker_sessions_init_process(ngx_cycle_t *cycle)
{
    ngx_http_sagemaker_sessions_main_conf_t  *smcf;

    if (ngx_process != NGX_PROCESS_WORKER && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    if (ngx_worker != 0) {
        return NGX_OK;
    }

    smcf = ngx_http_cycle_get_module_main_conf(cycle,
                                        ngx_http_sagemaker_sessions_module);

    if (smcf == NULL || smcf->store == NULL) {
        return NGX_OK;
    }

    smcf->sweep.handler = ngx_http_sagemaker_sessions_sweep_handler;
    smcf->sweep.data = smcf;
    smcf->sweep.log = cycle->log;
    smcf->sweep.cancelable = 1;

    ngx_add_timer(&smcf->sweep, 1000);

    return NGX_OK;
}
