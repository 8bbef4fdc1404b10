
/*
 * $sagemaker_session_id, $sagemaker_session_outcome, $sagemaker_session_home:
 * read when used (log_format, map, add_header, ...), from what the core
 * decided for the request. Not found when the request involves no session:
 * empty in map and with escape=json, "-" in a default access log.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_sagemaker_sessions_module.h"


static ngx_int_t ngx_http_sagemaker_session_text_variable(
    ngx_http_request_t *r, ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_sagemaker_session_outcome_variable(
    ngx_http_request_t *r, ngx_http_variable_value_t *v, uintptr_t data);
static void ngx_http_sagemaker_sessions_value(ngx_http_variable_value_t *v,
    u_char *data, size_t len);


/* they change while a request is decided: never cached */

static ngx_http_variable_t  ngx_http_sagemaker_sessions_vars[] = {

    { ngx_string("sagemaker_session_id"), NULL,
      ngx_http_sagemaker_session_text_variable,
      offsetof(ngx_http_sagemaker_sessions_ctx_t, session_id),
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("sagemaker_session_outcome"), NULL,
      ngx_http_sagemaker_session_outcome_variable, 0,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("sagemaker_session_home"), NULL,
      ngx_http_sagemaker_session_text_variable,
      offsetof(ngx_http_sagemaker_sessions_ctx_t, home),
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


ngx_int_t
ngx_http_sagemaker_sessions_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var, *v;

    for (v = ngx_http_sagemaker_sessions_vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return NGX_OK;
}


static void
ngx_http_sagemaker_sessions_value(ngx_http_variable_value_t *v, u_char *data,
    size_t len)
{
    if (len == 0) {
        v->not_found = 1;
        return;
    }

    v->len = len;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;
    v->data = data;
}


/* data: the offset of an ngx_str_t in the request's context */

static ngx_int_t
ngx_http_sagemaker_session_text_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_str_t                          *text;
    ngx_http_sagemaker_sessions_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r->main, ngx_http_sagemaker_sessions_module);

    if (ctx == NULL) {
        v->not_found = 1;
        return NGX_OK;
    }

    text = (ngx_str_t *) ((char *) ctx + data);

    ngx_http_sagemaker_sessions_value(v, text->data, text->len);

    return NGX_OK;
}


static ngx_int_t
ngx_http_sagemaker_session_outcome_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    sms_str_t                           word;
    ngx_http_sagemaker_sessions_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r->main, ngx_http_sagemaker_sessions_module);

    if (ctx == NULL) {
        v->not_found = 1;
        return NGX_OK;
    }

    word = sms_outcome_word((int) ctx->outcome);

    ngx_http_sagemaker_sessions_value(v, (u_char *) word.data, word.len);

    return NGX_OK;
}
