
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
    ngx_int_t                  expiration;   /* seconds */
    ngx_int_t                  max;

    void                      *store;       /* Swift SessionStore or NULL */
    ngx_event_t                sweep;
    ngx_event_t                turn;        /* posted: the loop's turn ends */

    /* from SAGEMAKER_TRANSFORMS_{CREATE,CLOSE}_SESSION_DEFAULTS, or NULL */
    void                      *create_defaults;
    void                      *close_defaults;
} ngx_http_sagemaker_sessions_main_conf_t;


typedef struct {
    ngx_flag_t                 time;         /* nginx time syntax */
    ngx_int_t                  max;
    char                      *hint;
} ngx_http_sagemaker_sessions_positive_t;


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


typedef struct {
    ngx_int_t                  status;

    /* an engine session subrequest: SMS_CALL_CREATE or SMS_CALL_CLOSE */
    ngx_int_t                  call;
    ngx_http_request_t        *subrequest;
    ngx_int_t                  sr_rc;

    /* the engine's answer body, kept by our body filter */
    u_char                    *capture;
    size_t                     captured;
    size_t                     capacity;

    unsigned                   done:1;
    unsigned                   last:1;       /* the whole body went by */
    unsigned                   overflow:1;   /* more than capacity */
} ngx_http_sagemaker_sessions_ctx_t;


/* a mapped part of the request body's temp file, unmapped with the pool */
typedef struct {
    void                      *addr;
    size_t                     len;
} ngx_http_sagemaker_sessions_map_t;


static ngx_int_t ngx_http_sagemaker_sessions_handler(ngx_http_request_t *r);
static void ngx_http_sagemaker_sessions_body_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_sagemaker_sessions_preread(ngx_http_request_t *r,
    ngx_http_sagemaker_sessions_loc_conf_t *slcf);
static ngx_int_t ngx_http_sagemaker_sessions_process(ngx_http_request_t *r,
    ngx_uint_t preread);
static ngx_int_t ngx_http_sagemaker_sessions_body(ngx_http_request_t *r,
    sms_request_t *req);
static u_char *ngx_http_sagemaker_sessions_map(ngx_http_request_t *r,
    ngx_file_t *file, off_t offset, size_t size);
static void ngx_http_sagemaker_sessions_unmap(void *data);
static ngx_table_elt_t *ngx_http_sagemaker_sessions_header(
    ngx_http_request_t *r, int *count);
static ngx_chain_t *ngx_http_sagemaker_sessions_chain(ngx_pool_t *pool,
    sms_str_t *body);
static ngx_int_t ngx_http_sagemaker_sessions_replace_body(
    ngx_http_request_t *r, sms_decision_t *d);
static ngx_int_t ngx_http_sagemaker_sessions_call_engine(
    ngx_http_request_t *r, ngx_http_sagemaker_sessions_ctx_t *ctx,
    sms_decision_t *d);
static ngx_int_t ngx_http_sagemaker_sessions_engine_headers(
    ngx_http_request_t *r, ngx_http_request_t *sr);
static ngx_int_t ngx_http_sagemaker_sessions_engine_done(
    ngx_http_request_t *sr, void *data, ngx_int_t rc);
static ngx_int_t ngx_http_sagemaker_sessions_engine_answer(
    ngx_http_request_t *r, ngx_http_sagemaker_sessions_ctx_t *ctx);
static ngx_int_t ngx_http_sagemaker_sessions_carry_out(ngx_http_request_t *r,
    sms_decision_t *d);
static void ngx_http_sagemaker_sessions_request(ngx_http_request_t *r,
    sms_request_t *req);
static ngx_int_t ngx_http_sagemaker_sessions_respond(ngx_http_request_t *r,
    sms_decision_t *d);
static void *ngx_http_sagemaker_sessions_alloc(void *pool, size_t size);
static ngx_int_t ngx_http_sagemaker_sessions_capture_filter(
    ngx_http_request_t *r, ngx_chain_t *in);
static ngx_int_t ngx_http_sagemaker_sessions_capture(ngx_http_request_t *r,
    ngx_http_sagemaker_sessions_ctx_t *ctx, ngx_buf_t *b);
static void ngx_http_sagemaker_sessions_sweep_handler(ngx_event_t *ev);
static void ngx_http_sagemaker_sessions_turn_handler(ngx_event_t *ev);
static void ngx_http_sagemaker_sessions_turn_used(
    ngx_http_sagemaker_sessions_main_conf_t *smcf);

static void *ngx_http_sagemaker_sessions_create_main_conf(ngx_conf_t *cf);
static char *ngx_http_sagemaker_sessions_init_main_conf(ngx_conf_t *cf,
    void *conf);
static void *ngx_http_sagemaker_sessions_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_sagemaker_sessions_merge_loc_conf(ngx_conf_t *cf,
    void *parent, void *child);
static char *ngx_http_sagemaker_sessions_path(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_sagemaker_sessions_positive(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_sagemaker_session_manager(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_sagemaker_session_handler(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_sagemaker_session_defaults(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static void *ngx_http_sagemaker_sessions_path_compile(ngx_conf_t *cf,
    ngx_command_t *cmd, ngx_str_t *path, int kind);
static ngx_int_t ngx_http_sagemaker_sessions_keep(ngx_conf_t *cf,
    void *handle);
static void ngx_http_sagemaker_sessions_release(void *data);
static ngx_int_t ngx_http_sagemaker_sessions_init(ngx_conf_t *cf);
static ngx_int_t ngx_http_sagemaker_sessions_init_module(ngx_cycle_t *cycle);
static ngx_int_t ngx_http_sagemaker_sessions_init_process(
    ngx_cycle_t *cycle);


static ngx_http_sagemaker_sessions_positive_t
    ngx_http_sagemaker_sessions_expiration_kind =
    { 1, 315360000, "a time from 1s to 10 years, such as 1200 or 20m" };

static ngx_http_sagemaker_sessions_positive_t
    ngx_http_sagemaker_sessions_max_kind =
    { 0, NGX_MAX_INT32_VALUE, "a number of sessions from 1 to 2147483647" };


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
      ngx_http_sagemaker_sessions_positive,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_sagemaker_sessions_main_conf_t, expiration),
      &ngx_http_sagemaker_sessions_expiration_kind },

    { ngx_string("sagemaker_sessions_max"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_sagemaker_sessions_positive,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_sagemaker_sessions_main_conf_t, max),
      &ngx_http_sagemaker_sessions_max_kind },

    { ngx_string("sagemaker_session_manager"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS|NGX_CONF_TAKE1,
      ngx_http_sagemaker_session_manager,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("sagemaker_session_create_handler"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE2,
      ngx_http_sagemaker_session_handler,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_sagemaker_sessions_loc_conf_t, create),
      (void *) SMS_PATH_RESPONSE },

    { ngx_string("sagemaker_session_close_handler"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE2,
      ngx_http_sagemaker_session_handler,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_sagemaker_sessions_loc_conf_t, close),
      (void *) SMS_PATH_REQUEST },

    { ngx_string("sagemaker_session_create_defaults"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_sagemaker_session_defaults,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_sagemaker_sessions_loc_conf_t, create_defaults),
      NULL },

    { ngx_string("sagemaker_session_close_defaults"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_sagemaker_session_defaults,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_sagemaker_sessions_loc_conf_t, close_defaults),
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
    ngx_string("x-amzn-sagemaker-session-id");


static ngx_http_output_body_filter_pt  ngx_http_next_body_filter;


static ngx_int_t
ngx_http_sagemaker_sessions_handler(ngx_http_request_t *r)
{
    ngx_int_t                                rc;
    ngx_uint_t                               preread;
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

        if (ctx->call) {
            /* woken when the engine's answer is in */

            if (!ctx->done) {
                return NGX_AGAIN;
            }

            rc = ngx_http_sagemaker_sessions_engine_answer(r, ctx);

            ctx->call = 0;
            ctx->status = NGX_DONE;

            ngx_http_finalize_request(r, rc);
            return NGX_DONE;
        }

        /* the phases run again once the body is read */
        return ctx->status;
    }

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_sagemaker_sessions_ctx_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_set_ctx(r, ctx, ngx_http_sagemaker_sessions_module);

    preread = ngx_http_sagemaker_sessions_preread(r, slcf);

    if ((r->headers_in.content_length_n <= 0 && !r->headers_in.chunked)
        || preread)
    {
        /* the proxy reads the body, as it would without us */
        ctx->status = NGX_DECLINED;

        rc = ngx_http_sagemaker_sessions_process(r, preread);
        if (rc == NGX_DECLINED || rc == NGX_AGAIN) {
            ctx->status = rc;
            return rc;
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

    rc = ngx_http_sagemaker_sessions_process(r, 0);

    if (rc == NGX_AGAIN) {
        /* an engine subrequest is out; the phases wait for it */
        ctx->status = NGX_AGAIN;

    } else if (rc != NGX_DECLINED) {
        ngx_http_finalize_request(r, rc);
        return;

    } else {
        ctx->status = NGX_DECLINED;
    }

    r->preserve_body = 1;
    r->write_event_handler = ngx_http_core_run_phases;
    ngx_http_core_run_phases(r);
}


/*
 * The whole body came in with the header, so the core can look at it where
 * it lies, without nginx reading it into a request body first: a request
 * passed on is then handled as if the module were not there, and one
 * answered here discards the body. Only a body to be replaced (injection)
 * has to be read, as do bodies still on their way, chunked, or in HTTP/2
 * and HTTP/3 frames.
 */

static ngx_int_t
ngx_http_sagemaker_sessions_preread(ngx_http_request_t *r,
    ngx_http_sagemaker_sessions_loc_conf_t *slcf)
{
    return slcf->inject_path == NULL
           && r->http_version < NGX_HTTP_VERSION_20
           && !r->headers_in.chunked
           && r->headers_in.content_length_n > 0
           && r->request_body == NULL
           && r->header_in->last - r->header_in->pos
              >= r->headers_in.content_length_n;
}


/*
 * Asks the core what to do. Returns NGX_DECLINED to let the request go on,
 * NGX_AGAIN when an engine subrequest is out, or what to finalize the
 * request with once it has been answered here. With preread, the body is
 * the request's Content-Length bytes where nginx received them.
 */

static ngx_int_t
ngx_http_sagemaker_sessions_process(ngx_http_request_t *r, ngx_uint_t preread)
{
    sms_str_t                                 body;
    sms_request_t                             req;
    sms_decision_t                            d;
    ngx_http_sagemaker_sessions_ctx_t        *ctx;
    ngx_http_sagemaker_sessions_loc_conf_t   *slcf;
    ngx_http_sagemaker_sessions_main_conf_t  *smcf;

    smcf = ngx_http_get_module_main_conf(r, ngx_http_sagemaker_sessions_module);
    slcf = ngx_http_get_module_loc_conf(r, ngx_http_sagemaker_sessions_module);

    ngx_http_sagemaker_sessions_request(r, &req);

    if (preread) {
        body.data = r->header_in->pos;
        body.len = (size_t) r->headers_in.content_length_n;
        req.body = &body;
        req.nbody = 1;

    } else if (r->request_body
               && ngx_http_sagemaker_sessions_body(r, &req) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_memzero(&d, sizeof(sms_decision_t));

    if (sms_decide(smcf->store, slcf->location, &req,
                   ngx_http_sagemaker_sessions_alloc, r->pool, &d)
        != 0)
    {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "sagemaker sessions: out of memory deciding a request");
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_sagemaker_sessions_turn_used(smcf);

    switch (d.action) {

    case SMS_CALL_CREATE:
    case SMS_CALL_CLOSE:
        ctx = ngx_http_get_module_ctx(r, ngx_http_sagemaker_sessions_module);

        if (ngx_http_sagemaker_sessions_call_engine(r, ctx, &d) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return NGX_AGAIN;

    default:
        return ngx_http_sagemaker_sessions_carry_out(r, &d);
    }
}


/* what the core decided, other than calling the engine */

static ngx_int_t
ngx_http_sagemaker_sessions_carry_out(ngx_http_request_t *r,
    sms_decision_t *d)
{
    if (d->log_level != SMS_LOG_NONE) {
        ngx_log_error((ngx_uint_t) d->log_level, r->connection->log, 0,
                      "sagemaker sessions: %*s",
                      d->log_message.len, d->log_message.data);
    }

    switch (d->action) {

    case SMS_PASS:
        return NGX_DECLINED;

    case SMS_PASS_NEW_BODY:
        if (ngx_http_sagemaker_sessions_replace_body(r, d) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
        return NGX_DECLINED;

    case SMS_RESPOND:
        return ngx_http_sagemaker_sessions_respond(r, d);

    default:
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "sagemaker sessions: unexpected action %d", d->action);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
}


static void
ngx_http_sagemaker_sessions_request(ngx_http_request_t *r, sms_request_t *req)
{
    ngx_table_elt_t  *h;

    ngx_memzero(req, sizeof(sms_request_t));

    h = ngx_http_sagemaker_sessions_header(r, &req->session_ids);
    if (h) {
        req->session_id.data = h->value.len ? h->value.data : (u_char *) "";
        req->session_id.len = h->value.len;
    }
}


/*
 * The request body as the core sees it: nginx's buffers where they lie, not
 * copied; only parts nginx wrote to its temp file are read into memory.
 */

static ngx_int_t
ngx_http_sagemaker_sessions_body(ngx_http_request_t *r, sms_request_t *req)
{
    size_t        n;
    ssize_t       got;
    u_char       *p;
    ngx_buf_t    *b;
    sms_str_t    *seg;
    ngx_chain_t  *cl;

    n = 0;
    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        n++;
    }

    if (n == 0) {
        return NGX_OK;
    }

    seg = ngx_palloc(r->pool, n * sizeof(sms_str_t));
    if (seg == NULL) {
        return NGX_ERROR;
    }

    req->body = seg;
    req->nbody = 0;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        b = cl->buf;

        if (b->in_file && !ngx_buf_in_memory(b)) {
            n = (size_t) (b->file_last - b->file_pos);

            p = ngx_http_sagemaker_sessions_map(r, b->file, b->file_pos, n);

            if (p) {
                seg->data = p;
                seg->len = n;
                seg++;
                req->nbody++;
                continue;
            }

            p = ngx_pnalloc(r->pool, n ? n : 1);
            if (p == NULL) {
                return NGX_ERROR;
            }

            got = ngx_read_file(b->file, p, n, b->file_pos);

            if (got != (ssize_t) n) {
                ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                              "sagemaker sessions: cannot read the request "
                              "body from \"%V\"", &b->file->name);
                return NGX_ERROR;
            }

            seg->data = p;
            seg->len = n;

        } else {
            seg->data = b->pos;
            seg->len = b->last - b->pos;
        }

        seg++;
        req->nbody++;
    }

    return NGX_OK;
}


/*
 * A part of the body that nginx wrote to its temp file, mapped instead of
 * read: the core looks at the first bytes of most bodies only, so a large
 * body that needs no inspection (an image, a tensor) costs no memory, and
 * one that does is paged in from the file's cache. Only nginx's own,
 * already unlinked, temp file is mapped (nothing can truncate it under the
 * mapping); NULL means read it instead.
 */

static u_char *
ngx_http_sagemaker_sessions_map(ngx_http_request_t *r, ngx_file_t *file,
    off_t offset, size_t size)
{
    off_t                                start;
    size_t                               len;
    u_char                              *addr;
    ngx_file_info_t                      fi;
    ngx_pool_cleanup_t                  *cln;
    ngx_http_sagemaker_sessions_map_t   *m;

    if (size == 0
        || r->request_body->temp_file == NULL
        || file != &r->request_body->temp_file->file
        || r->request_body->temp_file->persistent
        || file->fd == NGX_INVALID_FILE
        || ngx_fd_info(file->fd, &fi) == NGX_FILE_ERROR
        || ngx_file_size(&fi) < offset + (off_t) size)
    {
        return NULL;
    }

    start = offset & ~((off_t) ngx_pagesize - 1);
    len = size + (size_t) (offset - start);

    cln = ngx_pool_cleanup_add(r->pool,
                               sizeof(ngx_http_sagemaker_sessions_map_t));
    if (cln == NULL) {
        return NULL;
    }

    addr = mmap(NULL, len, PROT_READ, MAP_PRIVATE, file->fd, start);

    if (addr == MAP_FAILED) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, ngx_errno,
                      "sagemaker sessions: mmap(\"%V\") failed, "
                      "reading the body instead", &file->name);
        return NULL;
    }

    m = cln->data;
    m->addr = addr;
    m->len = len;
    cln->handler = ngx_http_sagemaker_sessions_unmap;

    return addr + (offset - start);
}


static void
ngx_http_sagemaker_sessions_unmap(void *data)
{
    ngx_http_sagemaker_sessions_map_t  *m = data;

    munmap(m->addr, m->len);
}


static ngx_table_elt_t *
ngx_http_sagemaker_sessions_header(ngx_http_request_t *r, int *count)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h, *first;

    first = NULL;
    *count = 0;

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                return first;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        /* nginx has lowercased every request header name already */
        if (h[i].key.len == ngx_http_sagemaker_sessions_header_name.len
            && ngx_strncmp(h[i].lowcase_key,
                           ngx_http_sagemaker_sessions_header_name.data,
                           h[i].key.len)
               == 0)
        {
            if (first == NULL) {
                first = &h[i];
            }

            (*count)++;
        }
    }
}


static ngx_chain_t *
ngx_http_sagemaker_sessions_chain(ngx_pool_t *pool, sms_str_t *body)
{
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    b = ngx_calloc_buf(pool);
    if (b == NULL) {
        return NULL;
    }

    cl = ngx_alloc_chain_link(pool);
    if (cl == NULL) {
        return NULL;
    }

    b->pos = (u_char *) body->data;
    b->last = b->pos + body->len;
    b->start = b->pos;
    b->end = b->last;
    b->memory = 1;
    b->last_buf = 1;

    cl->buf = b;
    cl->next = NULL;

    return cl;
}


/*
 * The engine receives the new body, made of the client's buffers and the
 * pieces spliced in, with its own Content-Length.
 */

static ngx_int_t
ngx_http_sagemaker_sessions_replace_body(ngx_http_request_t *r,
    sms_decision_t *d)
{
    off_t         len;
    u_char       *p;
    ngx_uint_t    i;
    ngx_chain_t  *cl, *out, *last;

    out = NULL;
    last = NULL;
    len = 0;

    for (i = 0; i < d->npieces; i++) {
        if (d->pieces[i].len == 0) {
            continue;
        }

        cl = ngx_http_sagemaker_sessions_chain(r->pool,
                                               (sms_str_t *) &d->pieces[i]);
        if (cl == NULL) {
            return NGX_ERROR;
        }

        cl->buf->last_buf = 0;
        len += d->pieces[i].len;

        if (last) {
            last->next = cl;

        } else {
            out = cl;
        }

        last = cl;
    }

    if (last == NULL) {
        return NGX_ERROR;
    }

    last->buf->last_buf = 1;

    r->request_body->bufs = out;
    r->request_body->buf = NULL;
    r->request_body->temp_file = NULL;

    r->headers_in.content_length_n = len;
    r->headers_in.chunked = 0;

    if (r->headers_in.content_length) {
        p = ngx_pnalloc(r->pool, NGX_OFF_T_LEN);
        if (p == NULL) {
            return NGX_ERROR;
        }

        r->headers_in.content_length->value.data = p;
        r->headers_in.content_length->value.len = ngx_sprintf(p, "%O", len) - p;
    }

    return NGX_OK;
}


/*
 * A session request handed to the engine: POST, application/json, the body
 * the core made, the client's other headers; the answer is kept in memory.
 */

static ngx_int_t
ngx_http_sagemaker_sessions_call_engine(ngx_http_request_t *r,
    ngx_http_sagemaker_sessions_ctx_t *ctx, sms_decision_t *d)
{
    ngx_str_t                                *uri;
    ngx_chain_t                              *cl;
    ngx_http_request_t                       *sr;
    ngx_http_request_body_t                  *rb;
    ngx_http_post_subrequest_t               *ps;
    ngx_http_sagemaker_sessions_loc_conf_t   *slcf;

    slcf = ngx_http_get_module_loc_conf(r, ngx_http_sagemaker_sessions_module);

    uri = (d->action == SMS_CALL_CREATE) ? &slcf->create.uri : &slcf->close.uri;

    ps = ngx_palloc(r->pool, sizeof(ngx_http_post_subrequest_t));
    if (ps == NULL) {
        return NGX_ERROR;
    }

    ps->handler = ngx_http_sagemaker_sessions_engine_done;
    ps->data = ctx;

    ctx->call = d->action;
    ctx->done = 0;

    if (ngx_http_subrequest(r, uri, NULL, &sr, ps,
                            NGX_HTTP_SUBREQUEST_IN_MEMORY
                            |NGX_HTTP_SUBREQUEST_WAITED)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    ctx->subrequest = sr;
    ctx->capture = NULL;
    ctx->captured = 0;
    ctx->last = 0;
    ctx->overflow = 0;

    /* marks the subrequest for the capture filter */
    ngx_http_set_ctx(sr, ctx, ngx_http_sagemaker_sessions_module);

    sr->method = NGX_HTTP_POST;
    ngx_str_set(&sr->method_name, "POST");

    cl = ngx_http_sagemaker_sessions_chain(r->pool, &d->body);
    if (cl == NULL) {
        return NGX_ERROR;
    }

    rb = ngx_pcalloc(r->pool, sizeof(ngx_http_request_body_t));
    if (rb == NULL) {
        return NGX_ERROR;
    }

    rb->bufs = cl;
    rb->buf = cl->buf;

    sr->request_body = rb;
    sr->headers_in.content_length_n = d->body.len;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "sagemaker sessions: engine call \"%V\", %uz bytes",
                   uri, d->body.len);

    return ngx_http_sagemaker_sessions_engine_headers(r, sr);
}


static ngx_str_t  ngx_http_sagemaker_sessions_content_type =
    ngx_string("Content-Type");
static ngx_str_t  ngx_http_sagemaker_sessions_json = ngx_string("application/json");


static ngx_int_t
ngx_http_sagemaker_sessions_engine_headers(ngx_http_request_t *r,
    ngx_http_request_t *sr)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h, *ho;

    if (ngx_list_init(&sr->headers_in.headers, r->pool, 8,
                      sizeof(ngx_table_elt_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].hash == 0
            || (h[i].key.len == sizeof("Content-Type") - 1
                && ngx_strncasecmp(h[i].key.data, (u_char *) "Content-Type",
                                   h[i].key.len) == 0)
            || (h[i].key.len == sizeof("Content-Length") - 1
                && ngx_strncasecmp(h[i].key.data, (u_char *) "Content-Length",
                                   h[i].key.len) == 0)
            || (h[i].key.len == sizeof("Transfer-Encoding") - 1
                && ngx_strncasecmp(h[i].key.data,
                                   (u_char *) "Transfer-Encoding",
                                   h[i].key.len) == 0)
            || (h[i].key.len == sizeof("Expect") - 1
                && ngx_strncasecmp(h[i].key.data, (u_char *) "Expect",
                                   h[i].key.len) == 0))
        {
            continue;
        }

        ho = ngx_list_push(&sr->headers_in.headers);
        if (ho == NULL) {
            return NGX_ERROR;
        }

        *ho = h[i];
    }

    ho = ngx_list_push(&sr->headers_in.headers);
    if (ho == NULL) {
        return NGX_ERROR;
    }

    ho->key = ngx_http_sagemaker_sessions_content_type;
    ho->value = ngx_http_sagemaker_sessions_json;
    ho->lowcase_key = (u_char *) "content-type";
    ho->hash = ngx_hash_key(ho->lowcase_key, ho->key.len);

    sr->headers_in.content_type = ho;
    sr->headers_in.content_length = NULL;
    sr->headers_in.chunked = 0;

    return NGX_OK;
}


/*
 * Called when the engine subrequest finishes, possibly more than once: the
 * first call has the engine's answer. An error (the answer did not fit in
 * subrequest_output_buffer_size, or was cut short) is kept for the client's
 * answer instead of ending the client's request.
 */

static ngx_int_t
ngx_http_sagemaker_sessions_engine_done(ngx_http_request_t *sr, void *data,
    ngx_int_t rc)
{
    ngx_http_sagemaker_sessions_ctx_t *ctx = data;

    if (!ctx->done) {
        ctx->done = 1;
        ctx->sr_rc = rc;

        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, sr->connection->log, 0,
                       "sagemaker sessions: engine answered %i, rc %i",
                       sr->headers_out.status, rc);
    }

    return (rc == NGX_ERROR && !sr->connection->error) ? NGX_OK : rc;
}


static ngx_int_t
ngx_http_sagemaker_sessions_engine_answer(ngx_http_request_t *r,
    ngx_http_sagemaker_sessions_ctx_t *ctx)
{
    ngx_int_t                                 rc;
    ngx_uint_t                                i, n;
    ngx_list_part_t                          *part;
    ngx_table_elt_t                          *h;
    sms_header_t                             *headers;
    sms_request_t                             req;
    sms_decision_t                            d;
    ngx_http_request_t                       *sr;
    sms_engine_response_t                     resp;
    ngx_http_sagemaker_sessions_loc_conf_t   *slcf;

    slcf = ngx_http_get_module_loc_conf(r, ngx_http_sagemaker_sessions_module);
    sr = ctx->subrequest;

    ngx_memzero(&resp, sizeof(sms_engine_response_t));

    resp.status = (int) sr->headers_out.status;
    resp.complete = (ctx->sr_rc == NGX_OK || ctx->sr_rc == NGX_DONE)
                    && sr->headers_out.status > 0
                    && ctx->last && !ctx->overflow
                    && (sr->headers_out.content_length_n < 0
                        || (off_t) ctx->captured
                           == sr->headers_out.content_length_n);

    if (ctx->sr_rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        /* nginx's own answer: the engine is down, too slow, ... */
        resp.status = (int) ctx->sr_rc;
        resp.complete = 1;
    }

    resp.body.data = ctx->capture;
    resp.body.len = ctx->captured;

    n = 1;
    for (part = &sr->headers_out.headers.part; part; part = part->next) {
        n += part->nelts;
    }

    headers = ngx_palloc(r->pool, n * sizeof(sms_header_t));
    if (headers == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    n = 0;

    if (sr->headers_out.content_type.len) {
        headers[n].name.data = ngx_http_sagemaker_sessions_content_type.data;
        headers[n].name.len = ngx_http_sagemaker_sessions_content_type.len;
        headers[n].value.data = sr->headers_out.content_type.data;
        headers[n].value.len = sr->headers_out.content_type.len;
        n++;
    }

    for (part = &sr->headers_out.headers.part; part; part = part->next) {
        h = part->elts;

        for (i = 0; i < part->nelts; i++) {
            if (h[i].hash == 0) {
                continue;
            }

            headers[n].name.data = h[i].key.data;
            headers[n].name.len = h[i].key.len;
            headers[n].value.data = h[i].value.data;
            headers[n].value.len = h[i].value.len;
            n++;
        }
    }

    resp.headers = headers;
    resp.nheaders = n;

    ngx_http_sagemaker_sessions_request(r, &req);
    ngx_memzero(&d, sizeof(sms_decision_t));

    if (sms_engine_answer(slcf->location, (int) ctx->call, &req, &resp,
                          ngx_http_sagemaker_sessions_alloc, r->pool, &d)
        != 0)
    {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "sagemaker sessions: out of memory answering a request");
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (d.action != SMS_RELAY) {
        return ngx_http_sagemaker_sessions_carry_out(r, &d);
    }

    if (ctx->sr_rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return ctx->sr_rc;
    }

    /* the engine's answer, as it is */

    d.status = resp.status;
    d.content_type.data = sr->headers_out.content_type.data;
    d.content_type.len = sr->headers_out.content_type.len;
    d.body = resp.body;

    rc = ngx_http_sagemaker_sessions_respond(r, &d);

    return rc;
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


/*
 * Keeps the body of our engine subrequests, up to
 * subrequest_output_buffer_size, and passes none of it on: an answer too
 * large is refused by the core with a clear error instead of ending the
 * client's request, and a short one is seen against its Content-Length.
 */

static ngx_int_t
ngx_http_sagemaker_sessions_capture_filter(ngx_http_request_t *r,
    ngx_chain_t *in)
{
    ngx_chain_t                        *cl;
    ngx_http_sagemaker_sessions_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_sagemaker_sessions_module);

    if (ctx == NULL || ctx->subrequest != r) {
        return ngx_http_next_body_filter(r, in);
    }

    for (cl = in; cl; cl = cl->next) {

        if (ngx_http_sagemaker_sessions_capture(r, ctx, cl->buf) != NGX_OK) {
            return NGX_ERROR;
        }

        if (cl->buf->last_buf || cl->buf->last_in_chain) {
            ctx->last = 1;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_sagemaker_sessions_capture(ngx_http_request_t *r,
    ngx_http_sagemaker_sessions_ctx_t *ctx, ngx_buf_t *b)
{
    off_t                      size, total;
    ssize_t                    n;
    ngx_http_core_loc_conf_t  *clcf;

    size = ngx_buf_size(b);

    if (size == 0 || ngx_buf_special(b) || ctx->overflow) {
        goto consumed;
    }

    if (ctx->capture == NULL) {
        clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);
        ctx->capacity = clcf->subrequest_output_buffer_size;
    }

    total = ngx_max(r->headers_out.content_length_n,
                    (off_t) ctx->captured + size);

    if (total > (off_t) ctx->capacity) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "sagemaker sessions: the engine's answer to \"%V\" "
                      "is larger than subrequest_output_buffer_size "
                      "(%O > %uz bytes)", &r->uri, total, ctx->capacity);
        ctx->overflow = 1;
        goto consumed;
    }

    if (ctx->capture == NULL) {
        ctx->capture = ngx_pnalloc(r->pool, ctx->capacity);
        if (ctx->capture == NULL) {
            return NGX_ERROR;
        }
    }

    if (b->in_file && !ngx_buf_in_memory(b)) {
        n = ngx_read_file(b->file, ctx->capture + ctx->captured,
                          (size_t) size, b->file_pos);

        if (n != size) {
            return NGX_ERROR;
        }

    } else {
        ngx_memcpy(ctx->capture + ctx->captured, b->pos, (size_t) size);
    }

    ctx->captured += size;

consumed:

    if (b->in_file) {
        b->file_pos = b->file_last;
    }

    b->pos = b->last;

    return NGX_OK;
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

    ngx_http_sagemaker_sessions_turn_used(smcf);

    ngx_add_timer(ev, delay ? delay : 1);
}


/*
 * The store was used in this turn of the event loop: what it read of the
 * disk holds until the turn ends. The turn ends before any event posted in
 * it runs: a posted event may read a request that arrived after the store
 * was used.
 */
static void
ngx_http_sagemaker_sessions_turn_used(
    ngx_http_sagemaker_sessions_main_conf_t *smcf)
{
    if (smcf->turn.handler && !smcf->turn.posted) {
        smcf->turn.posted = 1;
        ngx_queue_insert_head(&ngx_posted_events, &smcf->turn.queue);
    }
}


static void
ngx_http_sagemaker_sessions_turn_handler(ngx_event_t *ev)
{
    ngx_http_sagemaker_sessions_main_conf_t  *smcf;

    smcf = ev->data;

    sms_store_end_turn(smcf->store);
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
    smcf->max = NGX_CONF_UNSET;

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
    in.max = (smcf->max == NGX_CONF_UNSET) ? -1 : (int64_t) smcf->max;

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
    smcf->expiration = (ngx_int_t) res->expiration;
    smcf->max = (ngx_int_t) res->max;
    smcf->store = res->store;

    path.data = (u_char *) res->path;
    path.len = ngx_strlen(res->path);

    smcf->path.len = path.len;
    smcf->path.data = ngx_pstrdup(cf->pool, &path);
    if (smcf->path.data == NULL) {
        return NGX_CONF_ERROR;
    }

    if (smcf->store
        && ngx_http_sagemaker_sessions_keep(cf, smcf->store) != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    smcf->create_defaults = sms_defaults_from_env(
                  "SAGEMAKER_TRANSFORMS_CREATE_SESSION_DEFAULTS",
                  res->error, sizeof(res->error));

    if (res->error[0]) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "sagemaker sessions: %s",
                           res->error);
        return NGX_CONF_ERROR;
    }

    smcf->close_defaults = sms_defaults_from_env(
                  "SAGEMAKER_TRANSFORMS_CLOSE_SESSION_DEFAULTS",
                  res->error, sizeof(res->error));

    if (res->error[0]) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "sagemaker sessions: %s",
                           res->error);
        return NGX_CONF_ERROR;
    }

    if ((smcf->create_defaults
         && ngx_http_sagemaker_sessions_keep(cf, smcf->create_defaults)
            != NGX_OK)
        || (smcf->close_defaults
            && ngx_http_sagemaker_sessions_keep(cf, smcf->close_defaults)
               != NGX_OK))
    {
        return NGX_CONF_ERROR;
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
     *     slcf->inject_path = NULL;
     *     slcf->create = { { 0, NULL }, NULL };
     *     slcf->close = { { 0, NULL }, NULL };
     *     slcf->location = NULL;
     */

    slcf->manager = NGX_CONF_UNSET;
    slcf->create_defaults = NGX_CONF_UNSET_PTR;
    slcf->close_defaults = NGX_CONF_UNSET_PTR;

    return slcf;
}


static char *
ngx_http_sagemaker_sessions_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child)
{
    ngx_http_sagemaker_sessions_loc_conf_t *prev = parent;
    ngx_http_sagemaker_sessions_loc_conf_t *conf = child;

    ngx_http_sagemaker_sessions_main_conf_t  *smcf;

    if (conf->manager == NGX_CONF_UNSET) {
        conf->manager = (prev->manager == NGX_CONF_UNSET) ? 0 : prev->manager;
        conf->inject_path = prev->inject_path;
    }

    if (conf->create.uri.data == NULL) {
        conf->create = prev->create;
    }

    if (conf->close.uri.data == NULL) {
        conf->close = prev->close;
    }

    smcf = ngx_http_conf_get_module_main_conf(cf,
                                        ngx_http_sagemaker_sessions_module);

    ngx_conf_merge_ptr_value(conf->create_defaults, prev->create_defaults,
                             smcf->create_defaults);
    ngx_conf_merge_ptr_value(conf->close_defaults, prev->close_defaults,
                             smcf->close_defaults);

    if (!conf->manager) {
        return NGX_CONF_OK;
    }

    conf->location = sms_location_create(conf->inject_path, conf->create.path,
                                         conf->create_defaults,
                                         conf->close.path,
                                         conf->close_defaults);

    if (conf->location == NULL
        || ngx_http_sagemaker_sessions_keep(cf, conf->location) != NGX_OK)
    {
        return NGX_CONF_ERROR;
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


/* sagemaker_sessions_expiration and sagemaker_sessions_max */

static char *
ngx_http_sagemaker_sessions_positive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    char  *p = conf;

    ngx_int_t                                  n, *field;
    ngx_str_t                                 *value;
    ngx_http_sagemaker_sessions_positive_t    *kind;

    field = (ngx_int_t *) (p + cmd->offset);
    kind = cmd->post;

    if (*field != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    value = cf->args->elts;

    n = kind->time ? (ngx_int_t) ngx_parse_time(&value[1], 1)
                   : ngx_atoi(value[1].data, value[1].len);

    if (n == NGX_ERROR || n <= 0 || n > kind->max) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid value \"%V\" in \"%V\" directive, "
                           "%s is required", &value[1], &cmd->name,
                           kind->hint);
        return NGX_CONF_ERROR;
    }

    *field = n;

    return NGX_CONF_OK;
}


static char *
ngx_http_sagemaker_session_manager(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_sagemaker_sessions_loc_conf_t *slcf = conf;

    ngx_str_t  *value, path;

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

    slcf->inject_path = ngx_http_sagemaker_sessions_path_compile(cf, cmd,
                                                        &path, SMS_PATH_BODY);

    return slcf->inject_path ? NGX_CONF_OK : NGX_CONF_ERROR;
}


/* a path of a directive, compiled by the core and kept with the cycle */

static void *
ngx_http_sagemaker_sessions_path_compile(ngx_conf_t *cf, ngx_command_t *cmd,
    ngx_str_t *path, int kind)
{
    void    *compiled;
    u_char   err[SMS_ERRLEN];

    err[0] = '\0';

    compiled = sms_path_compile(path->data, path->len, kind, (char *) err,
                                sizeof(err));

    if (compiled == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid path \"%V\" in \"%V\" directive: %s",
                           path, &cmd->name, err);
        return NULL;
    }

    if (ngx_http_sagemaker_sessions_keep(cf, compiled) != NGX_OK) {
        return NULL;
    }

    return compiled;
}


static char *
ngx_http_sagemaker_session_handler(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    char  *p = conf;

    ngx_str_t                             *value;
    ngx_http_sagemaker_sessions_handler_t  *h;

    h = (ngx_http_sagemaker_sessions_handler_t *) (p + cmd->offset);

    if (h->uri.data) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (value[1].len == 0 || value[1].data[0] != '/') {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid URI \"%V\" in \"%V\" directive, "
                           "a location such as /engine/create_session "
                           "is required", &value[1], &cmd->name);
        return NGX_CONF_ERROR;
    }

    h->path = ngx_http_sagemaker_sessions_path_compile(cf, cmd, &value[2],
                                                   (int) (intptr_t) cmd->post);
    if (h->path == NULL) {
        return NGX_CONF_ERROR;
    }

    h->uri = value[1];

    return NGX_CONF_OK;
}


static char *
ngx_http_sagemaker_session_defaults(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    char  *p = conf;

    void       **defaults;
    u_char       err[SMS_ERRLEN];
    ngx_str_t   *value;

    defaults = (void **) (p + cmd->offset);

    if (*defaults != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    err[0] = '\0';

    *defaults = sms_defaults_compile(value[1].data, value[1].len,
                                     (char *) err, sizeof(err));

    if (*defaults == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid value in \"%V\" directive: %s",
                           &cmd->name, err);
        return NGX_CONF_ERROR;
    }

    if (ngx_http_sagemaker_sessions_keep(cf, *defaults) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* Swift objects live as long as the configuration that holds them */

static ngx_int_t
ngx_http_sagemaker_sessions_keep(ngx_conf_t *cf, void *handle)
{
    ngx_pool_cleanup_t  *cln;

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        sms_release(handle);
        return NGX_ERROR;
    }

    cln->handler = ngx_http_sagemaker_sessions_release;
    cln->data = handle;

    return NGX_OK;
}


static void
ngx_http_sagemaker_sessions_release(void *data)
{
    sms_release(data);
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

    ngx_http_next_body_filter = ngx_http_top_body_filter;
    ngx_http_top_body_filter = ngx_http_sagemaker_sessions_capture_filter;

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

    ngx_log_error(NGX_LOG_NOTICE, cycle->log, 0,
                  "sagemaker sessions module " NGX_HTTP_SAGEMAKER_SESSIONS_VERSION);

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
                  "sagemaker sessions: sessions in \"%V\", expiring after %i s, "
                  "at most %i", &smcf->path, smcf->expiration, smcf->max);

    return NGX_OK;
}


/*
 * every worker keeps its own inotify-checked cache of sessions; one worker
 * sweeps expired sessions, in small steps on a timer
 */

static ngx_int_t
ngx_http_sagemaker_sessions_init_process(ngx_cycle_t *cycle)
{
    ngx_http_sagemaker_sessions_main_conf_t  *smcf;

    if (ngx_process != NGX_PROCESS_WORKER && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    smcf = ngx_http_cycle_get_module_main_conf(cycle,
                                        ngx_http_sagemaker_sessions_module);

    if (smcf == NULL || smcf->store == NULL) {
        return NGX_OK;
    }

    sms_store_worker_init(smcf->store);

    smcf->turn.handler = ngx_http_sagemaker_sessions_turn_handler;
    smcf->turn.data = smcf;
    smcf->turn.log = cycle->log;

    if (ngx_worker != 0) {
        return NGX_OK;
    }

    smcf->sweep.handler = ngx_http_sagemaker_sessions_sweep_handler;
    smcf->sweep.data = smcf;
    smcf->sweep.log = cycle->log;
    smcf->sweep.cancelable = 1;

    ngx_add_timer(&smcf->sweep, 1000);

    return NGX_OK;
}
