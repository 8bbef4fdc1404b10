
/*
 * SageMaker stateful sessions for nginx: the module, its directives and
 * their configuration.
 *
 * The Swift core (sms_* in ngx_http_sagemaker_sessions.h) makes every
 * decision; the shim carries them out. Its other files: _handler.c (the
 * request phase), _body.c (the request body), _engine.c (engine session
 * subrequests), _store.c (the store in each worker).
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_sagemaker_sessions_module.h"


static void *ngx_http_sagemaker_sessions_create_main_conf(ngx_conf_t *cf);
static char *ngx_http_sagemaker_sessions_init_main_conf(ngx_conf_t *cf,
    void *conf);
static void *ngx_http_sagemaker_sessions_create_srv_conf(ngx_conf_t *cf);
static void *ngx_http_sagemaker_sessions_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_sagemaker_sessions_merge_loc_conf(ngx_conf_t *cf,
    void *parent, void *child);
static char *ngx_http_sagemaker_sessions_path(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_sagemaker_sessions_positive(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_sagemaker_session_manager(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static void *ngx_http_sagemaker_sessions_path_compile(ngx_conf_t *cf,
    ngx_command_t *cmd, ngx_str_t *path, int kind);
static char *ngx_http_sagemaker_session_handler(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_sagemaker_session_defaults(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static ngx_int_t ngx_http_sagemaker_sessions_keep(ngx_conf_t *cf,
    void *handle);
static void ngx_http_sagemaker_sessions_release(void *data);
static ngx_int_t ngx_http_sagemaker_sessions_init(ngx_conf_t *cf);
static ngx_int_t ngx_http_sagemaker_sessions_init_module(ngx_cycle_t *cycle);


typedef struct {
    ngx_flag_t                 time;         /* nginx time syntax */
    ngx_int_t                  max;
    char                      *hint;
} ngx_http_sagemaker_sessions_positive_t;


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

    { ngx_string("sagemaker_session_affinity"),
      NGX_HTTP_UPS_CONF|NGX_CONF_NOARGS,
      ngx_http_sagemaker_session_affinity,
      NGX_HTTP_SRV_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("sagemaker_sessions_status"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_sagemaker_sessions_status,
      0,
      0,
      NULL },

    { ngx_string("set_sagemaker_session_value"),
      NGX_HTTP_SRV_CONF|NGX_HTTP_SIF_CONF|NGX_HTTP_LOC_CONF|NGX_HTTP_LIF_CONF
                        |NGX_CONF_TAKE2,
      ngx_http_sagemaker_session_value,
      0,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_sagemaker_sessions_module_ctx = {
    ngx_http_sagemaker_sessions_add_variables, /* preconfiguration */
    ngx_http_sagemaker_sessions_init,      /* postconfiguration */

    ngx_http_sagemaker_sessions_create_main_conf, /* create main conf */
    ngx_http_sagemaker_sessions_init_main_conf,   /* init main conf */

    ngx_http_sagemaker_sessions_create_srv_conf, /* create server conf */
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
    ngx_http_sagemaker_sessions_exit_process, /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


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

    if (smcf->affinity_zone) {
        if (smcf->store == NULL) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "sagemaker_session_affinity needs "
                               "\"sagemaker_sessions on\" (or "
                               "SAGEMAKER_ENABLE_STATEFUL_SESSIONS=true): "
                               "sessions' homes are kept with the sessions");
            return NGX_CONF_ERROR;
        }

        sms_store_affinity(smcf->store);
    }

    path.data = (u_char *) res->path;
    path.len = ngx_strlen(res->path);

    smcf->path.len = path.len;
    smcf->path.data = ngx_pstrdup(cf->pool, &path);
    if (smcf->path.data == NULL) {
        return NGX_CONF_ERROR;
    }

    if (smcf->store
        && (ngx_http_sagemaker_sessions_keep(cf, smcf->store) != NGX_OK
            || ngx_http_sagemaker_sessions_graveyard_conf(cf, smcf) != NGX_OK))
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


/* an upstream block's: sagemaker_session_affinity */

static void *
ngx_http_sagemaker_sessions_create_srv_conf(ngx_conf_t *cf)
{
    ngx_http_sagemaker_sessions_srv_conf_t  *sscf;

    sscf = ngx_pcalloc(cf->pool, sizeof(ngx_http_sagemaker_sessions_srv_conf_t));
    if (sscf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     sscf->affinity = 0;
     *     sscf->upstream = NULL;
     *     sscf->main = NULL;
     *     sscf->shm = NULL;
     */

    return sscf;
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

    if (smcf->store && conf->create.uri.data == NULL
        && conf->close.uri.data == NULL)
    {
        /* a built-in manager: a UUID-named session may be its, not an
         * engine's, so the sweep owes no close for one */
        sms_store_makes_sessions(smcf->store);
    }

    ngx_http_sagemaker_sessions_expire_conf(cf, smcf, conf);

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

    if (ngx_http_sagemaker_sessions_affinity_filter_init(cf) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_http_sagemaker_sessions_engine_init(cf);
}


/* the start-up notice says whether set_sagemaker_session_value is there */

#if (NGX_HTTP_SAGEMAKER_SESSIONS_NDK)
#define NGX_HTTP_SAGEMAKER_SESSIONS_NDK_TEXT  ""
#else
#define NGX_HTTP_SAGEMAKER_SESSIONS_NDK_TEXT  \
    ", without NDK (no set_sagemaker_session_value)"
#endif


/* the worker processes' user must be able to use the sessions directory */

static ngx_int_t
ngx_http_sagemaker_sessions_init_module(ngx_cycle_t *cycle)
{
    u_char                                    err[SMS_ERRLEN];
    ngx_core_conf_t                          *ccf;
    ngx_http_sagemaker_sessions_main_conf_t  *smcf;

    smcf = ngx_http_cycle_get_module_main_conf(cycle,
                                        ngx_http_sagemaker_sessions_module);

    /* which nginx the file was built for: nginx refuses another version,
     * but says so only for load_module, not when a reload keeps the old */
    ngx_log_error(NGX_LOG_NOTICE, cycle->log, 0,
                  "sagemaker sessions module "
                  NGX_HTTP_SAGEMAKER_SESSIONS_VERSION
                  ", built for nginx " NGINX_VERSION
                  NGX_HTTP_SAGEMAKER_SESSIONS_NDK_TEXT);

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
