
/*
 * The session store in each worker process: its start, the end of each
 * turn of the event loop, and the expiry sweep on a timer.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_sagemaker_sessions_module.h"


static void ngx_http_sagemaker_sessions_sweep_handler(ngx_event_t *ev);
static void ngx_http_sagemaker_sessions_turn_handler(ngx_event_t *ev);


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

    ngx_http_sagemaker_sessions_graveyard_post(smcf);

    /* expired engine sessions it took away are owed a close now */
    ngx_http_sagemaker_sessions_expire_poke(smcf);

    ngx_http_sagemaker_sessions_turn_used(smcf);

    ngx_add_timer(ev, delay ? delay : 1);
}


/*
 * The store was used in this turn of the event loop: what it read of the
 * disk holds until the turn ends. The turn ends before any event posted in
 * it runs: a posted event may read a request that arrived after the store
 * was used.
 */
void
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

    ngx_http_sagemaker_sessions_warn(smcf, ev->log);
}


/* what the store has to warn of since it was last asked, each line once */

void
ngx_http_sagemaker_sessions_warn(ngx_http_sagemaker_sessions_main_conf_t *smcf,
    ngx_log_t *log)
{
    char  warning[SMS_ERRLEN];

    while (sms_store_warning(smcf->store, warning, sizeof(warning))) {
        ngx_log_error(NGX_LOG_WARN, log, 0, "sagemaker sessions: %s",
                      warning);
    }
}


/*
 * every worker keeps its own inotify-checked cache of sessions, and sweeps
 * its part of the expired sessions (those whose name hashes to its number),
 * in small steps on a timer: the pass keeps its length whatever the number
 * of workers
 */

ngx_int_t
ngx_http_sagemaker_sessions_init_process(ngx_cycle_t *cycle)
{
    char                                      warning[SMS_ERRLEN];
    ngx_core_conf_t                          *ccf;
    ngx_http_sagemaker_sessions_main_conf_t  *smcf;

    if (ngx_process != NGX_PROCESS_WORKER && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    ngx_http_sagemaker_sessions_status_init_process(cycle);

    smcf = ngx_http_cycle_get_module_main_conf(cycle,
                                        ngx_http_sagemaker_sessions_module);

    if (smcf == NULL || smcf->store == NULL) {
        return NGX_OK;
    }

    warning[0] = '\0';

    if (sms_store_worker_init(smcf->store, warning, sizeof(warning))) {
        ngx_log_error(NGX_LOG_WARN, cycle->log, 0,
                      "sagemaker sessions: %s", warning);
    }

    if (ngx_http_sagemaker_sessions_init_affinity(cycle, smcf) != NGX_OK) {
        return NGX_ERROR;
    }

    smcf->turn.handler = ngx_http_sagemaker_sessions_turn_handler;
    smcf->turn.data = smcf;
    smcf->turn.log = cycle->log;

    /* each worker calls the closes it owes: its own request path's tried
     * again, and those its part of the sweep finds */
    ngx_http_sagemaker_sessions_expire_init(cycle, smcf);

    /* a single process (master_process off) is the only one */

    if (ngx_process == NGX_PROCESS_WORKER) {
        ccf = (ngx_core_conf_t *) ngx_get_conf(cycle->conf_ctx,
                                               ngx_core_module);
        sms_sweep_share(smcf->store, (int64_t) ngx_worker,
                        (int64_t) ccf->worker_processes);
    }

    if (ngx_http_sagemaker_sessions_graveyard_init(cycle, smcf) != NGX_OK) {
        return NGX_ERROR;
    }

    smcf->sweep.handler = ngx_http_sagemaker_sessions_sweep_handler;
    smcf->sweep.data = smcf;
    smcf->sweep.log = cycle->log;
    smcf->sweep.cancelable = 1;

    ngx_add_timer(&smcf->sweep, 1000);

    return NGX_OK;
}


/* a worker that ran without its cache is counted as such no more */

void
ngx_http_sagemaker_sessions_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_sagemaker_sessions_main_conf_t  *smcf;

    if (ngx_process != NGX_PROCESS_WORKER && ngx_process != NGX_PROCESS_SINGLE)
    {
        return;
    }

    smcf = ngx_http_cycle_get_module_main_conf(cycle,
                                        ngx_http_sagemaker_sessions_module);

    if (smcf == NULL || smcf->store == NULL) {
        return;
    }

    ngx_http_sagemaker_sessions_graveyard_exit(smcf);

    sms_store_worker_exit(smcf->store);
}
