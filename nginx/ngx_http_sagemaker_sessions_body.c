
/*
 * The request body as the core sees it, and as the engine receives it
 * once the core spliced a session id into it.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_sagemaker_sessions_module.h"



/* a mapped part of the request body's temp file, unmapped with the pool */
typedef struct {
    void                      *addr;
    size_t                     len;
} ngx_http_sagemaker_sessions_map_t;


static u_char *ngx_http_sagemaker_sessions_map(ngx_http_request_t *r,
    ngx_file_t *file, off_t offset, size_t size);
static void ngx_http_sagemaker_sessions_unmap(void *data);
static u_char *ngx_http_sagemaker_sessions_length(u_char *p, off_t n);


/*
 * The whole body came in with the header, so the core can look at it where
 * it lies, without nginx reading it into a request body first: a request
 * passed on is then handled as if the module were not there, one answered
 * here discards the body, and a body replaced (injection) is taken out of
 * the header buffer as nginx's reading would take it. Bodies still on their
 * way, chunked, in HTTP/2 and HTTP/3 frames, or bound for a file
 * (client_body_in_file_only) are read first.
 */

ngx_int_t
ngx_http_sagemaker_sessions_preread(ngx_http_request_t *r,
    ngx_http_sagemaker_sessions_loc_conf_t *slcf)
{
    return (slcf->inject_path == NULL || !r->request_body_in_file_only)
           && r->http_version < NGX_HTTP_VERSION_20
           && !r->headers_in.chunked
           && r->headers_in.content_length_n > 0
           && r->request_body == NULL
           && r->header_in->last - r->header_in->pos
              >= r->headers_in.content_length_n;
}


/*
 * The request body as the core sees it: nginx's buffers where they lie, not
 * copied; only parts nginx wrote to its temp file are read into memory.
 */

ngx_int_t
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


ngx_chain_t *
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

ngx_int_t
ngx_http_sagemaker_sessions_replace_body(ngx_http_request_t *r,
    sms_decision_t *d)
{
    off_t                     len;
    size_t                    size;
    u_char                   *p;
    ngx_buf_t                *b;
    ngx_uint_t                i, n;
    ngx_chain_t              *cl, *out, *last;
    ngx_http_request_body_t  *rb;

    if (d->npieces == 0) {
        return NGX_ERROR;
    }

    /*
     * the buffers, their links, the request body if there is none yet, and
     * the new Content-Length's digits in one allocation, not one a piece
     */

    size = d->npieces * (sizeof(ngx_buf_t) + sizeof(ngx_chain_t))
           + (r->request_body ? 0 : sizeof(ngx_http_request_body_t))
           + NGX_OFF_T_LEN;

    b = ngx_pcalloc(r->pool, size);
    if (b == NULL) {
        return NGX_ERROR;
    }

    cl = (ngx_chain_t *) (b + d->npieces);
    p = (u_char *) (cl + d->npieces);

    if (r->request_body == NULL) {
        /*
         * decided on where it lies (preread): the body is taken out of the
         * header buffer, as reading it would, so that neither nginx reads
         * it again nor a next request on the connection begins inside it
         */

        rb = (ngx_http_request_body_t *) p;
        p += sizeof(ngx_http_request_body_t);

        r->request_body = rb;
        r->header_in->pos += (size_t) r->headers_in.content_length_n;
        r->request_length += r->headers_in.content_length_n;
    }

    out = NULL;
    last = NULL;
    len = 0;
    n = 0;

    for (i = 0; i < d->npieces; i++) {
        if (d->pieces[i].len == 0) {
            continue;
        }

        b[n].pos = (u_char *) d->pieces[i].data;
        b[n].last = b[n].pos + d->pieces[i].len;
        b[n].start = b[n].pos;
        b[n].end = b[n].last;
        b[n].memory = 1;

        cl[n].buf = &b[n];
        cl[n].next = NULL;

        len += d->pieces[i].len;

        if (last) {
            last->next = &cl[n];

        } else {
            out = &cl[n];
        }

        last = &cl[n];
        n++;
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
        r->headers_in.content_length->value.data = p;
        r->headers_in.content_length->value.len =
                          ngx_http_sagemaker_sessions_length(p, len) - p;
    }

    return NGX_OK;
}


/*
 * A length in decimal, as ngx_sprintf(p, "%O") writes it, for about a
 * tenth of its instructions (it parses its format on every call)
 */

static u_char *
ngx_http_sagemaker_sessions_length(u_char *p, off_t n)
{
    u_char   digits[NGX_OFF_T_LEN], *d;

    d = digits + NGX_OFF_T_LEN;

    do {
        *--d = (u_char) ('0' + n % 10);
        n /= 10;
    } while (n > 0);

    return ngx_cpymem(p, d, digits + NGX_OFF_T_LEN - d);
}
