
/*
 * set_sagemaker_session_value $var KEY: the value an engine stored under
 * KEY in the request's session (the Python library's Session.put), set in
 * the rewrite phase as nginx's set_* directives of the nginx Development
 * Kit (NDK) are, with its ndk_set_var_core().
 *
 * NDK is reached only when the directive is used: its symbols are looked
 * up when the configuration is read, not linked, so that the module loads
 * with or without ndk_http_module.so, and only a configuration that uses
 * set_sagemaker_session_value must load NDK first.
 *
 * Built without NDK's headers (nginx.org's builds carry no NDK), the
 * directive is still known, and says why it cannot be used.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_sagemaker_sessions_module.h"


#if (NGX_HTTP_SAGEMAKER_SESSIONS_NDK)

#include <dlfcn.h>

#include "ndk_set_var.h"


typedef char *(*ngx_http_sagemaker_ndk_set_var_core_pt)(ngx_conf_t *cf,
    ngx_str_t *name, ndk_set_var_t *filter);


static ngx_int_t ngx_http_sagemaker_session_value_get(ngx_http_request_t *r,
    ngx_str_t *val, void *data);


char *
ngx_http_sagemaker_session_value(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    int                                      n;
    u_char                                   err[SMS_ERRLEN];
    ngx_str_t                               *value, *file;
    ndk_set_var_t                           *filter;
    ngx_http_sagemaker_ndk_set_var_core_pt   set_var_core;

    value = cf->args->elts;

    set_var_core = (ngx_http_sagemaker_ndk_set_var_core_pt)
                   dlsym(RTLD_DEFAULT, "ndk_set_var_core");

    if (set_var_core == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" needs the nginx Development Kit: put "
                           "\"load_module modules/ndk_http_module.so;\" "
                           "before this module's load_module", &cmd->name);
        return NGX_CONF_ERROR;
    }

    if (value[1].len < 2 || value[1].data[0] != '$') {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid variable name \"%V\" in \"%V\" directive",
                           &value[1], &cmd->name);
        return NGX_CONF_ERROR;
    }

    if (ngx_strlchr(value[2].data, value[2].data + value[2].len, '$')) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid key \"%V\" in \"%V\" directive: "
                           "the key is literal text, variables are not "
                           "supported in it", &value[2], &cmd->name);
        return NGX_CONF_ERROR;
    }

    file = ngx_palloc(cf->pool, sizeof(ngx_str_t));
    if (file == NULL) {
        return NGX_CONF_ERROR;
    }

    file->data = ngx_pnalloc(cf->pool, value[2].len + 1);
    if (file->data == NULL) {
        return NGX_CONF_ERROR;
    }

    err[0] = '\0';

    n = sms_session_key_check(value[2].data, value[2].len, file->data,
                              (char *) err, sizeof(err));

    if (n < 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid key \"%V\" in \"%V\" directive: %s",
                           &value[2], &cmd->name, err);
        return NGX_CONF_ERROR;
    }

    file->len = (size_t) n;

    filter = ngx_pcalloc(cf->pool, sizeof(ndk_set_var_t));
    if (filter == NULL) {
        return NGX_CONF_ERROR;
    }

    filter->type = NDK_SET_VAR_DATA;
    filter->func = (void *) ngx_http_sagemaker_session_value_get;
    filter->data = file;

    return set_var_core(cf, &value[1], filter);
}


/* empty unless the request has one session header naming a valid session
 * that holds the key */

static ngx_int_t
ngx_http_sagemaker_session_value_get(ngx_http_request_t *r, ngx_str_t *val,
    void *data)
{
    ngx_str_t *file = data;

    sms_str_t                                 name;
    sms_value_t                               out;
    sms_request_t                             req;
    ngx_http_sagemaker_sessions_ctx_t        *ctx;
    ngx_http_sagemaker_sessions_main_conf_t  *smcf;

    val->len = 0;
    val->data = NULL;

    smcf = ngx_http_get_module_main_conf(r, ngx_http_sagemaker_sessions_module);

    if (smcf->store == NULL) {
        return NGX_OK;
    }

    ngx_http_sagemaker_sessions_request(r, &req);

    if (req.session_ids != 1 || req.session_id.len == 0) {
        return NGX_OK;
    }

    /* the request's first look at its session, as a rule: what it finds
     * is kept for the manager, which answers from it */
    ctx = ngx_http_sagemaker_sessions_ctx(r);
    if (ctx == NULL) {
        return NGX_ERROR;
    }

    name.data = file->data;
    name.len = file->len;

    ngx_memzero(&out, sizeof(sms_value_t));

    if (sms_session_value(smcf->store, &req.session_id, &name, &ctx->verdict,
                          ngx_http_sagemaker_sessions_alloc, r->pool, &out)
        != 0)
    {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "sagemaker sessions: out of memory reading a value");
        return NGX_ERROR;
    }

    ngx_http_sagemaker_sessions_turn_used(smcf);

    if (out.log_level != SMS_LOG_NONE) {
        ngx_log_error((ngx_uint_t) out.log_level, r->connection->log, 0,
                      "sagemaker sessions: %*s",
                      out.log_message.len, out.log_message.data);
    }

    val->data = (u_char *) out.value.data;
    val->len = out.value.len;

    return NGX_OK;
}


#else /* !NGX_HTTP_SAGEMAKER_SESSIONS_NDK */


char *
ngx_http_sagemaker_session_value(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "\"%V\" is not available: this sagemaker sessions "
                       "module was built without the nginx Development Kit "
                       "(NDK); build it with NDK_SRC=DIR, or with Debian's "
                       "libnginx-mod-http-ndk-dev installed", &cmd->name);
    return NGX_CONF_ERROR;
}


#endif
