
/*
 * The precontent phase of sagemaker_session_manager locations: asks the
 * core what to do with a request and does it: pass the request on, pass it
 * on with a new body, call the engine, or answer it here.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_sagemaker_sessions_module.h"


static void ngx_http_sagemaker_sessions_body_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_sagemaker_sessions_process(ngx_http_request_t *r,
    ngx_uint_t preread);
static ngx_table_elt_t *ngx_http_sagemaker_sessions_header(
    ngx_http_request_t *r, ngx_str_t *name, int *count);


static ngx_str_t  ngx_http_sagemaker_sessions_header_name =
    ngx_string("x-amzn-sagemaker-session-id");
static ngx_str_t  ngx_http_sagemaker_sessions_content_length =
    ngx_string("content-length");



ngx_int_t
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

    if (ctx && ctx->managed) {

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

    if (ctx == NULL) {
        ctx = ngx_http_sagemaker_sessions_ctx(r);
        if (ctx == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    ctx->managed = 1;

    rc = ngx_http_sagemaker_sessions_screen(r);

    if (rc != NGX_DECLINED) {
        ctx->status = NGX_DONE;
        ngx_http_finalize_request(r, rc);
        return NGX_DONE;
    }

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


/*
 * The main request's context, made by whichever of the module's readers
 * comes first (a session value read in the rewrite phase, or the manager):
 * the request's verdict on its session lives there. NULL: out of memory.
 */

ngx_http_sagemaker_sessions_ctx_t *
ngx_http_sagemaker_sessions_ctx(ngx_http_request_t *r)
{
    ngx_http_sagemaker_sessions_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r->main, ngx_http_sagemaker_sessions_module);

    if (ctx == NULL) {
        ctx = ngx_pcalloc(r->main->pool,
                          sizeof(ngx_http_sagemaker_sessions_ctx_t));
        if (ctx == NULL) {
            return NULL;
        }

        ngx_http_set_ctx(r->main, ctx, ngx_http_sagemaker_sessions_module);
    }

    return ctx;
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

    ctx = ngx_http_get_module_ctx(r, ngx_http_sagemaker_sessions_module);

    ngx_http_sagemaker_sessions_request(r, &req);
    req.verdict = &ctx->verdict;

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

    ctx->outcome = d.outcome;
    ctx->session_id.data = (u_char *) d.session_id.data;
    ctx->session_id.len = d.session_id.len;

    if (d.route != SMS_ROUTE_NONE) {
        /* for the balancer of an upstream with session affinity */
        ctx->route = d.route;
        ctx->session.data = (u_char *) req.session_id.data;
        ctx->session.len = req.session_id.len;
        ctx->home.data = (u_char *) d.home.data;
        ctx->home.len = d.home.len;
    }

    switch (d.action) {

    case SMS_CALL_CREATE:
    case SMS_CALL_CLOSE:
    case SMS_CALL_EXPIRE:
        if (ngx_http_sagemaker_sessions_call_engine(r, ctx, &d) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return NGX_AGAIN;

    default:
        return ngx_http_sagemaker_sessions_carry_out(r, &d);
    }
}


/* what the core decided, other than calling the engine */

ngx_int_t
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


void
ngx_http_sagemaker_sessions_request(ngx_http_request_t *r, sms_request_t *req)
{
    ngx_table_elt_t  *h;

    ngx_memzero(req, sizeof(sms_request_t));

    h = ngx_http_sagemaker_sessions_header(r,
                            &ngx_http_sagemaker_sessions_header_name,
                            &req->session_ids);
    if (h) {
        req->session_id.data = h->value.len ? h->value.data : (u_char *) "";
        req->session_id.len = h->value.len;
    }
}


/*
 * Before anything else in a module location: what the core says of the
 * request's method and framing. Content-Length is looked for in the list
 * too: nginx 1.18.0 forgets it when Transfer-Encoding is chunked. Returns NGX_DECLINED to go on, or what to
 * finalize the request with. A refused request's connection is closed,
 * as nginx's core closes it: what follows the headers is not trusted.
 */

ngx_int_t
ngx_http_sagemaker_sessions_screen(ngx_http_request_t *r)
{
    int             count;
    sms_screen_t    req;
    sms_decision_t  d;

    req.method.data = r->method_name.data;
    req.method.len = r->method_name.len;

    /* the core keeps both when they come alone: the list is read only
     * for a Content-Length next to a Transfer-Encoding */
    req.transfer_encoding = r->headers_in.transfer_encoding != NULL;
    req.content_length = r->headers_in.content_length != NULL
                         || (req.transfer_encoding
                             && ngx_http_sagemaker_sessions_header(r,
                                  &ngx_http_sagemaker_sessions_content_length,
                                  &count)
                                != NULL);

    ngx_memzero(&d, sizeof(sms_decision_t));

    if (sms_screen(&req, ngx_http_sagemaker_sessions_alloc, r->pool, &d)
        != 0)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (d.action == SMS_PASS) {
        return NGX_DECLINED;
    }

    r->keepalive = 0;

    return ngx_http_sagemaker_sessions_carry_out(r, &d);
}


/* the first header of that (lowercase) name, and how many came */

static ngx_table_elt_t *
ngx_http_sagemaker_sessions_header(ngx_http_request_t *r, ngx_str_t *name,
    int *count)
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
        if (h[i].key.len == name->len
            && ngx_strncmp(h[i].lowcase_key, name->data, name->len) == 0)
        {
            if (first == NULL) {
                first = &h[i];
            }

            (*count)++;
        }
    }
}


ngx_int_t
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
        ngx_http_sagemaker_sessions_header_alone(h);
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


void *
ngx_http_sagemaker_sessions_alloc(void *pool, size_t size)
{
    return ngx_pnalloc(pool, size);
}
