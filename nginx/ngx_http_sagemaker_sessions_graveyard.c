
/*
 * The sweep's graveyard: expired sessions are renamed into
 * <sessions>/.graveyard in the event loop (one system call each), and their
 * files are deleted there by a task in nginx's thread pool, as aio threads
 * reads files: the pool "sagemaker_sessions" if nginx.conf defines one, else
 * "default". Without threads (NGX_THREADS unset, or no pool in this worker)
 * the sweep deletes the files itself, as before.
 *
 * In a pool of its own the thread deletes at SCHED_IDLE, unpaced: it runs
 * when the core has nothing else to run, and a worker that wakes takes the
 * core from it at once, so requests do not wait behind the deleting (it
 * was 8.5% of the core the worker shares with the engine in the sweep
 * scenario, and every request there waited its share). A thread cannot
 * leave SCHED_IDLE again without CAP_SYS_NICE, so "default", which
 * aio threads may share, is never made idle: there the thread is paced.
 *
 * One task per worker (every worker sweeps its part), posted again while
 * sessions are buried. Each worker buries in its own part of the
 * graveyard, .graveyard/<pid>, which only its thread empties: no two
 * threads try the same entry. A part whose worker is gone (killed, or a
 * graveyard from before) is any thread's to empty. The thread touches
 * only files, never the Swift store. A worker that exits empties what its
 * thread left.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_sagemaker_sessions_module.h"

#include <dirent.h>
#include <sched.h>


#define NGX_HTTP_SAGEMAKER_SESSIONS_GRAVEYARD  ".graveyard"
#define NGX_HTTP_SAGEMAKER_SESSIONS_DEPTH      8

/* "." and "..": the entries readdir() gives that are not to be removed */
#define ngx_http_sagemaker_sessions_dots(name)                                \
    ((name)[0] == '.'                                                          \
     && ((name)[1] == '\0' || ((name)[1] == '.' && (name)[2] == '\0')))

/*
 * The thread deletes in bursts of this many nanoseconds, then sleeps a
 * millisecond: on a core it shares with the workers it takes about a tenth
 * of it, as a sweep tick does, instead of half (which slowed every request
 * it shared the core with: p99 +33 ms with 100k sessions to delete).
 */
#define NGX_HTTP_SAGEMAKER_SESSIONS_BURST      100000
#define NGX_HTTP_SAGEMAKER_SESSIONS_PAUSE      1000000

/* the module's own pool, if nginx.conf defines it: thread_pool <name> ...; */
#define NGX_HTTP_SAGEMAKER_SESSIONS_POOL       "sagemaker_sessions"


typedef struct {
    u_char                                   *top;      /* .graveyard, NUL- */
    u_char                                   *path;     /* its <pid> part, */
    u_char                                   *pid;      /*   terminated */
    ngx_uint_t                                paced;    /* in the thread */
    ngx_uint_t                                idle;     /* our own pool */
    ngx_uint_t                                thread;   /* run by the pool */
    uint64_t                                  burst;    /* its start, ns */
    ngx_uint_t                                busy;     /* posted, not done */
    ngx_uint_t                                due;      /* buried since */
    ngx_uint_t                                litter;   /* the part is there */
    ngx_uint_t                                tidy;     /* this run removes
                                                           the part */
    ngx_http_sagemaker_sessions_main_conf_t  *smcf;
} ngx_http_sagemaker_sessions_graveyard_t;


static void ngx_http_sagemaker_sessions_empty(
    ngx_http_sagemaker_sessions_graveyard_t *gy);
static void ngx_http_sagemaker_sessions_orphans(
    ngx_http_sagemaker_sessions_graveyard_t *gy);
static void ngx_http_sagemaker_sessions_remove_in(
    ngx_http_sagemaker_sessions_graveyard_t *gy, int fd, ngx_uint_t depth);
static void ngx_http_sagemaker_sessions_pace(
    ngx_http_sagemaker_sessions_graveyard_t *gy);


static uint64_t
ngx_http_sagemaker_sessions_ns(void)
{
    struct timespec  ts;

    (void) clock_gettime(CLOCK_MONOTONIC, &ts);

    return (uint64_t) ts.tv_sec * 1000000000 + (uint64_t) ts.tv_nsec;
}


/* after each session deleted: a pause once the burst is over */

static void
ngx_http_sagemaker_sessions_pace(ngx_http_sagemaker_sessions_graveyard_t *gy)
{
    struct timespec  pause;

    if (!gy->paced
        || ngx_http_sagemaker_sessions_ns() - gy->burst
           < NGX_HTTP_SAGEMAKER_SESSIONS_BURST)
    {
        return;
    }

    pause.tv_sec = 0;
    pause.tv_nsec = NGX_HTTP_SAGEMAKER_SESSIONS_PAUSE;
    (void) nanosleep(&pause, NULL);

    gy->burst = ngx_http_sagemaker_sessions_ns();
}


/* unlinks what a directory held open holds, a few levels deep; closes fd */

static void
ngx_http_sagemaker_sessions_remove_in(
    ngx_http_sagemaker_sessions_graveyard_t *gy, int fd, ngx_uint_t depth)
{
    int             child;
    DIR            *dir;
    struct dirent  *de;

    dir = fdopendir(fd);
    if (dir == NULL) {
        (void) close(fd);
        return;
    }

    while ((de = readdir(dir)) != NULL) {
        if (ngx_http_sagemaker_sessions_dots(de->d_name)) {
            continue;
        }

        if (unlinkat(fd, de->d_name, 0) == 0 || errno != EISDIR
            || depth >= NGX_HTTP_SAGEMAKER_SESSIONS_DEPTH)
        {
            continue;
        }

        child = openat(fd, de->d_name,
                       O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (child >= 0) {
            ngx_http_sagemaker_sessions_remove_in(gy, child, depth + 1);
        }

        (void) unlinkat(fd, de->d_name, AT_REMOVEDIR);

        ngx_http_sagemaker_sessions_pace(gy);
    }

    (void) closedir(dir);
}


/*
 * Every session this worker buried, then the parts of workers that are
 * gone; a tidy run (once the pass is over, or at exit) also removes this
 * worker's part and the graveyard itself if nothing is left in it (rmdir
 * fails on a directory that is not empty). Removing the part after every
 * run made the sweep's next burial fail and make it again: two mkdir and
 * a failed rename a tick, 12% of the worker's time in a pass. A session
 * holds .expiration_ts and perhaps a few more files: two system calls for
 * the usual one, a listing for the rest.
 */

static void
ngx_http_sagemaker_sessions_empty(ngx_http_sagemaker_sessions_graveyard_t *gy)
{
    int             fd, child;
    DIR            *dir;
    size_t          n;
    struct dirent  *de;
    char            file[NAME_MAX + sizeof("/.expiration_ts")];

    gy->burst = ngx_http_sagemaker_sessions_ns();

    fd = open((char *) gy->path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW
                                 | O_CLOEXEC);
    if (fd < 0) {
        ngx_http_sagemaker_sessions_orphans(gy);
        return;
    }

    dir = fdopendir(fd);
    if (dir == NULL) {
        (void) close(fd);
        ngx_http_sagemaker_sessions_orphans(gy);
        return;
    }

    while ((de = readdir(dir)) != NULL) {
        if (ngx_http_sagemaker_sessions_dots(de->d_name)) {
            continue;
        }

        /*
         * The worker is leaving: nginx waits for this task before the
         * worker exits, and an idle thread on a busy core may take long;
         * the worker's exit deletes the rest, at its own priority.
         */

        if (gy->thread && (ngx_quit || ngx_terminate || ngx_exiting)) {
            break;
        }

        /* a session's usual one file, then its directory: two calls */

        n = ngx_strlen(de->d_name);

        if (n + sizeof("/.expiration_ts") <= sizeof(file)) {
            ngx_memcpy(ngx_cpymem(file, de->d_name, n), "/.expiration_ts",
                       sizeof("/.expiration_ts"));

            if ((unlinkat(fd, file, 0) == 0 || errno == ENOENT)
                && unlinkat(fd, de->d_name, AT_REMOVEDIR) == 0)
            {
                ngx_http_sagemaker_sessions_pace(gy);
                continue;
            }
        }

        /* more than that, or no directory */

        child = openat(fd, de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW
                                       | O_CLOEXEC);
        if (child < 0) {
            (void) unlinkat(fd, de->d_name, 0);

        } else {
            ngx_http_sagemaker_sessions_remove_in(gy, child, 1);
            (void) unlinkat(fd, de->d_name, AT_REMOVEDIR);
        }

        ngx_http_sagemaker_sessions_pace(gy);
    }

    (void) closedir(dir);

    if (gy->tidy) {
        (void) rmdir((char *) gy->path);
    }

    ngx_http_sagemaker_sessions_orphans(gy);
}


/*
 * The graveyard's other entries: a part named by the pid of a live process
 * is that worker's (kill(pid, 0) does not fail with ESRCH), anything else
 * (a worker killed, an entry of a graveyard from before) is removed here.
 * The graveyard holds one part per worker: a few entries to list.
 */

static void
ngx_http_sagemaker_sessions_orphans(ngx_http_sagemaker_sessions_graveyard_t *gy)
{
    int             fd, child;
    DIR            *dir;
    u_char         *p;
    ngx_int_t       pid;
    struct dirent  *de;

    fd = open((char *) gy->top, O_RDONLY | O_DIRECTORY | O_NOFOLLOW
                                | O_CLOEXEC);
    if (fd < 0) {
        return;
    }

    dir = fdopendir(fd);
    if (dir == NULL) {
        (void) close(fd);
        return;
    }

    while ((de = readdir(dir)) != NULL) {
        if (ngx_http_sagemaker_sessions_dots(de->d_name)
            || ngx_strcmp(de->d_name, gy->pid) == 0)
        {
            continue;
        }

        for (p = (u_char *) de->d_name; *p >= '0' && *p <= '9'; p++) {
            /* void */
        }

        pid = (*p == '\0') ? ngx_atoi((u_char *) de->d_name,
                                      p - (u_char *) de->d_name)
                           : NGX_ERROR;

        if (pid > 0 && (kill((pid_t) pid, 0) == 0 || errno != ESRCH)) {
            continue;
        }

        if (unlinkat(fd, de->d_name, 0) == 0 || errno != EISDIR) {
            continue;
        }

        child = openat(fd, de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW
                                       | O_CLOEXEC);
        if (child >= 0) {
            ngx_http_sagemaker_sessions_remove_in(gy, child, 1);
        }

        (void) unlinkat(fd, de->d_name, AT_REMOVEDIR);
    }

    (void) closedir(dir);

    if (gy->tidy) {
        (void) rmdir((char *) gy->top);
    }
}


#if (NGX_THREADS)

static void
ngx_http_sagemaker_sessions_graveyard_thread(void *data, ngx_log_t *log)
{
    ngx_http_sagemaker_sessions_graveyard_t  *gy = data;

    struct sched_param  sp;

    /*
     * Each of the pool's threads, the first time it runs the task: asking
     * for less never needs a privilege, so this works for workers running
     * as nobody. If it fails, the thread is paced as in "default".
     */

    gy->paced = 1;
    gy->thread = 1;

    if (gy->idle) {
        if (sched_getscheduler(0) == SCHED_IDLE) {
            gy->paced = 0;

        } else {
            ngx_memzero(&sp, sizeof(struct sched_param));

            if (sched_setscheduler(0, SCHED_IDLE, &sp) == 0) {
                gy->paced = 0;

            } else {
                ngx_log_error(NGX_LOG_WARN, log, ngx_errno,
                              "sched_setscheduler(SCHED_IDLE) failed in "
                              "thread pool \"" NGX_HTTP_SAGEMAKER_SESSIONS_POOL
                              "\": the sweep's deleting is paced instead");
                gy->idle = 0;
            }
        }
    }

    ngx_http_sagemaker_sessions_empty(gy);
}


static void
ngx_http_sagemaker_sessions_graveyard_done(ngx_event_t *ev)
{
    ngx_http_sagemaker_sessions_graveyard_t  *gy;

    gy = ev->data;
    gy->busy = 0;

    ngx_http_sagemaker_sessions_graveyard_post(gy->smcf);
}

#endif


/*
 * The default thread pool is made for the sweep, if nothing else made it,
 * unless a "thread_pool sagemaker_sessions" before http { } gave it its own.
 */

ngx_int_t
ngx_http_sagemaker_sessions_graveyard_conf(ngx_conf_t *cf,
    ngx_http_sagemaker_sessions_main_conf_t *smcf)
{
#if (NGX_THREADS)
    ngx_str_t  own = ngx_string(NGX_HTTP_SAGEMAKER_SESSIONS_POOL);

    if (ngx_thread_pool_get(cf->cycle, &own) != NULL) {
        return NGX_OK;
    }

    if (ngx_thread_pool_add(cf, NULL) == NULL) {
        return NGX_ERROR;
    }
#endif

    return NGX_OK;
}


/* in each worker: its task, and the sweep told to bury */

ngx_int_t
ngx_http_sagemaker_sessions_graveyard_init(ngx_cycle_t *cycle,
    ngx_http_sagemaker_sessions_main_conf_t *smcf)
{
#if (NGX_THREADS)
    u_char                                   *p;
    ngx_str_t                                 name = ngx_string("default");
    ngx_str_t                                 own = ngx_string(
                                                NGX_HTTP_SAGEMAKER_SESSIONS_POOL);
    ngx_uint_t                                idle;
    ngx_thread_task_t                        *task;
    ngx_thread_pool_t                        *tp;
    ngx_http_sagemaker_sessions_graveyard_t  *gy;

    tp = ngx_thread_pool_get(cycle, &own);
    idle = (tp != NULL);

    if (tp == NULL) {
        tp = ngx_thread_pool_get(cycle, &name);
    }

    if (tp == NULL) {
        return NGX_OK;
    }

    task = ngx_thread_task_alloc(cycle->pool,
                             sizeof(ngx_http_sagemaker_sessions_graveyard_t));
    if (task == NULL) {
        return NGX_ERROR;
    }

    gy = task->ctx;
    gy->smcf = smcf;
    gy->idle = idle;

    /* <path>/.graveyard and <path>/.graveyard/<pid>, as the store names them */

    gy->top = ngx_pnalloc(cycle->pool, smcf->path.len
                          + sizeof("/" NGX_HTTP_SAGEMAKER_SESSIONS_GRAVEYARD));
    gy->pid = ngx_pnalloc(cycle->pool, NGX_INT64_LEN + 1);
    if (gy->top == NULL || gy->pid == NULL) {
        return NGX_ERROR;
    }

    *ngx_sprintf(gy->pid, "%P", ngx_pid) = '\0';

    p = ngx_cpymem(gy->top, smcf->path.data, smcf->path.len);
    p = ngx_cpymem(p, "/" NGX_HTTP_SAGEMAKER_SESSIONS_GRAVEYARD,
                   sizeof("/" NGX_HTTP_SAGEMAKER_SESSIONS_GRAVEYARD) - 1);
    *p = '\0';

    gy->path = ngx_pnalloc(cycle->pool, p - gy->top + 1 + NGX_INT64_LEN + 1);
    if (gy->path == NULL) {
        return NGX_ERROR;
    }

    *ngx_sprintf(gy->path, "%s/%s", gy->top, gy->pid) = '\0';

    task->handler = ngx_http_sagemaker_sessions_graveyard_thread;
    task->event.handler = ngx_http_sagemaker_sessions_graveyard_done;
    task->event.data = gy;
    task->event.log = cycle->log;

    smcf->graveyard_pool = tp;
    smcf->graveyard = task;

    sms_sweep_use_graveyard(smcf->store);
#endif

    return NGX_OK;
}


/* after a sweep tick: the task posted if sessions were buried */

void
ngx_http_sagemaker_sessions_graveyard_post(
    ngx_http_sagemaker_sessions_main_conf_t *smcf)
{
#if (NGX_THREADS)
    ngx_thread_task_t                        *task;
    ngx_http_sagemaker_sessions_graveyard_t  *gy;

    task = smcf->graveyard;
    if (task == NULL) {
        return;
    }

    gy = task->ctx;

    if (sms_sweep_take_buried(smcf->store) > 0) {
        gy->due = 1;
        gy->litter = 1;
    }

    if (gy->busy || ngx_exiting || ngx_quit || ngx_terminate) {
        return;
    }

    /* while a pass buries, its part stays; once it is over, one tidy run */

    gy->tidy = !gy->due && gy->litter && !sms_sweep_in_pass(smcf->store);

    if (!gy->due && !gy->tidy) {
        return;
    }

    if (ngx_thread_task_post(smcf->graveyard_pool, task) != NGX_OK) {
        return;
    }

    gy->busy = 1;
    gy->due = 0;

    if (gy->tidy) {
        gy->litter = 0;
    }
#endif
}


/*
 * The worker exits: the thread pool has finished its tasks (its module
 * exits first), and what was buried after the last one is deleted here.
 */

void
ngx_http_sagemaker_sessions_graveyard_exit(
    ngx_http_sagemaker_sessions_main_conf_t *smcf)
{
#if (NGX_THREADS)
    ngx_thread_task_t                        *task;
    ngx_http_sagemaker_sessions_graveyard_t  *gy;

    task = smcf->graveyard;
    if (task == NULL) {
        return;
    }

    gy = task->ctx;
    gy->paced = 0;
    gy->thread = 0;
    gy->tidy = 1;
    ngx_http_sagemaker_sessions_empty(gy);
#endif
}
