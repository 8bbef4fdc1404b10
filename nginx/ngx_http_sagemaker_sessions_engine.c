
/*
 * Engine session handlers: NEW_SESSION and CLOSE handed to the engine as
 * an in-memory subrequest, and its answer given to the core.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_sagemaker_sessions_module.h"


static ngx_int_t ngx_http_sagemaker_sessions_engine_headers(
    ngx_http_request_t *r, ngx_http_request_t *sr);
static ngx_int_t ngx_http_sagemaker_sessions_engine_done(
    ngx_http_request_t *sr, void *data, ngx_int_t rc);
static ngx_int_t ngx_http_sagemaker_sessions_capture_filter(
    ngx_http_request_t *r, ngx_chain_t *in);
static ngx_int_t ngx_http_sagemaker_sessions_capture(ngx_http_request_t *r,
    ngx_http_sagemaker_sessions_ctx_t *ctx, ngx_buf_t *b);


static ngx_http_output_body_filter_pt  ngx_http_next_body_filter;


/*
 * A session request handed to the engine: POST, application/json, the body
 * the core made, the client's other headers; the answer is kept in memory.
 */

ngx_int_t
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

    /* SMS_CALL_CLOSE and SMS_CALL_EXPIRE: the close handler */
    uri = (d->action == SMS_CALL_CREATE) ? &slcf->create.uri : &slcf->close.uri;

    ps = ngx_palloc(r->pool, sizeof(ngx_http_post_subrequest_t));
    if (ps == NULL) {
        return NGX_ERROR;
    }

    ps->handler = ngx_http_sagemaker_sessions_engine_done;
    ps->data = ctx;

    ctx->call = d->action;
    ctx->done = 0;
    ctx->engine_started = ngx_http_sagemaker_sessions_now_us();

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
        ngx_http_sagemaker_sessions_header_alone(ho);
    }

    ho = ngx_list_push(&sr->headers_in.headers);
    if (ho == NULL) {
        return NGX_ERROR;
    }

    ho->key = ngx_http_sagemaker_sessions_content_type;
    ho->value = ngx_http_sagemaker_sessions_json;
    ho->lowcase_key = (u_char *) "content-type";
    ho->hash = ngx_hash_key(ho->lowcase_key, ho->key.len);
    ngx_http_sagemaker_sessions_header_alone(ho);

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


/*
 * What the engine answered to the subrequest, as the core reads it: the
 * status (nginx's own when the engine could not be reached), whether it
 * was read whole, its headers and body. In r's pool.
 */

ngx_int_t
ngx_http_sagemaker_sessions_engine_response(ngx_http_request_t *r,
    ngx_http_sagemaker_sessions_ctx_t *ctx, sms_engine_response_t *resp)
{
    ngx_uint_t           i, n;
    ngx_list_part_t     *part;
    ngx_table_elt_t     *h;
    sms_header_t        *headers;
    ngx_http_request_t  *sr;

    sr = ctx->subrequest;

    ngx_memzero(resp, sizeof(sms_engine_response_t));

    resp->status = (int) sr->headers_out.status;
    resp->complete = (ctx->sr_rc == NGX_OK || ctx->sr_rc == NGX_DONE)
                     && sr->headers_out.status > 0
                     && ctx->last && !ctx->overflow
                     && (sr->headers_out.content_length_n < 0
                         || (off_t) ctx->captured
                            == sr->headers_out.content_length_n);

    if (ctx->sr_rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        /* nginx's own answer: the engine is down, too slow, ... */
        resp->status = (int) ctx->sr_rc;
        resp->complete = 1;
    }

    resp->body.data = ctx->capture;
    resp->body.len = ctx->captured;
    resp->duration_us = ngx_http_sagemaker_sessions_now_us()
                        - ctx->engine_started;

    n = 1;
    for (part = &sr->headers_out.headers.part; part; part = part->next) {
        n += part->nelts;
    }

    headers = ngx_palloc(r->pool, n * sizeof(sms_header_t));
    if (headers == NULL) {
        return NGX_ERROR;
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

    resp->headers = headers;
    resp->nheaders = n;

    return NGX_OK;
}


ngx_int_t
ngx_http_sagemaker_sessions_engine_answer(ngx_http_request_t *r,
    ngx_http_sagemaker_sessions_ctx_t *ctx)
{
    ngx_int_t                                 rc;
    sms_str_t                                 home;
    sms_request_t                             req;
    sms_decision_t                            d;
    ngx_http_request_t                       *sr;
    sms_engine_response_t                     resp;
    ngx_http_sagemaker_sessions_loc_conf_t   *slcf;
    ngx_http_sagemaker_sessions_main_conf_t  *smcf;

    smcf = ngx_http_get_module_main_conf(r, ngx_http_sagemaker_sessions_module);
    slcf = ngx_http_get_module_loc_conf(r, ngx_http_sagemaker_sessions_module);
    sr = ctx->subrequest;

    if (ngx_http_sagemaker_sessions_engine_response(r, ctx, &resp) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_sagemaker_sessions_request(r, &req);
    ngx_memzero(&d, sizeof(sms_decision_t));

    /* the replica that answered a create through an affinity upstream */
    home.data = ctx->home.data;
    home.len = ctx->home.len;

    if (sms_engine_answer(smcf->store, slcf->location, (int) ctx->call, &req,
                          &resp,
                          (ctx->call == SMS_CALL_CREATE && home.len)
                          ? &home : NULL,
                          ngx_http_sagemaker_sessions_alloc, r->pool, &d)
        != 0)
    {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "sagemaker sessions: out of memory answering a request");
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->outcome = d.outcome;
    ctx->session_id.data = (u_char *) d.session_id.data;
    ctx->session_id.len = d.session_id.len;

    if (ctx->call == SMS_CALL_EXPIRE) {
        /* refused: tried again from this worker's timer */
        ngx_http_sagemaker_sessions_expire_poke(smcf);
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


ngx_int_t
ngx_http_sagemaker_sessions_engine_init(ngx_conf_t *cf)
{
    ngx_http_next_body_filter = ngx_http_top_body_filter;
    ngx_http_top_body_filter = ngx_http_sagemaker_sessions_capture_filter;

    return NGX_OK;
}
