/*
 * The one C interface between the nginx shim (nginx/) and the Swift core
 * (Sources/SageMakerSessionsABI). It uses no nginx type so that Swift can
 * import it without nginx's headers.
 *
 * Ownership: handles returned by Swift (store, paths, defaults, locations)
 * are released with sms_release(), from a cleanup of the cycle pool that
 * holds the configuration. Bytes that Swift returns for a request live in memory that
 * Swift got from the caller's allocator (the request pool).
 */

#ifndef _NGX_HTTP_SAGEMAKER_SESSIONS_H_INCLUDED_
#define _NGX_HTTP_SAGEMAKER_SESSIONS_H_INCLUDED_

#include <stddef.h>
#include <stdint.h>


#define SMS_ERRLEN            512
#define SMS_PATHLEN           4096


typedef struct {
    const unsigned char      *data;
    size_t                    len;
} sms_str_t;


/* returns NULL on failure */
typedef void *(*sms_alloc_pt)(void *pool, size_t size);


/* http-level configuration, as written by directives (unset: -1 / NULL) */
typedef struct {
    int                       enabled;
    sms_str_t                 path;
    int64_t                   expiration;
    int64_t                   max;               /* live sessions */
} sms_main_directives_t;


typedef struct {
    int                       enabled;
    int64_t                   expiration;
    int64_t                   max;
    void                     *store;             /* NULL when disabled */
    char                      path[SMS_PATHLEN]; /* the directory in use */
    char                      warning[SMS_ERRLEN]; /* "" or [warn] text */
    char                      error[SMS_ERRLEN];   /* "" or [emerg] text */
} sms_main_resolved_t;


/*
 * The request's verdict on its session (one request, one verdict): what
 * its first reader found, which every later reader of the request finds
 * too. Room in the request's context, zeroed with it; what it holds is the
 * Swift core's (VerdictRoom), and the shim never reads it.
 */
typedef struct {
    uint64_t                  room[8];
} sms_verdict_t;


/* what the shim knows of a request */
typedef struct {
    sms_str_t                 session_id;        /* data NULL: no header */
    int                       session_ids;       /* how many such headers */
    const sms_str_t          *body;              /* the body, in pieces */
    size_t                    nbody;
    sms_verdict_t            *verdict;           /* NULL: none kept */
} sms_request_t;


/* what the engine answered to a session subrequest */
typedef struct {
    sms_str_t                 name;
    sms_str_t                 value;
} sms_header_t;

typedef struct {
    int                       complete;          /* 0: not read whole */
    int                       status;
    const sms_header_t       *headers;           /* Content-Type included */
    size_t                    nheaders;
    sms_str_t                 body;
    int64_t                   duration_us;       /* from call to answer */
} sms_engine_response_t;


/* what the shim must do with it */
#define SMS_PASS              0   /* hand the request on unchanged */
#define SMS_PASS_NEW_BODY     1   /* hand it on with the body in pieces */
#define SMS_RESPOND           2   /* answer it here */
#define SMS_CALL_CREATE       3   /* POST body to the create handler URI */
#define SMS_CALL_CLOSE        4   /* POST body to the close handler URI */
#define SMS_RELAY             5   /* answer with the engine's response */
#define SMS_CALL_EXPIRE       6   /* POST body to the close handler URI for
                                     an expired session, then answer it */

/* log levels, numerically nginx's */
#define SMS_LOG_NONE          0
#define SMS_LOG_ERR           4
#define SMS_LOG_WARN          5
#define SMS_LOG_NOTICE        6
#define SMS_LOG_INFO          7

typedef struct {
    int                       action;
    int                       status;
    sms_str_t                 content_type;
    sms_str_t                 header_name;       /* len 0: no extra header */
    sms_str_t                 header_value;
    sms_str_t                 body;              /* response body */
    const sms_str_t          *pieces;            /* SMS_PASS_NEW_BODY */
    size_t                    npieces;
    int                       log_level;
    sms_str_t                 log_message;
    int                       route;             /* SMS_ROUTE_* */
    sms_str_t                 home;              /* len 0: none yet */
    int                       outcome;           /* $sagemaker_session_outcome */
    sms_str_t                 session_id;        /* $sagemaker_session_id */
} sms_decision_t;


/* where an upstream with sagemaker_session_affinity sends a request */
#define SMS_ROUTE_NONE        0   /* no known session: nginx balances it */
#define SMS_ROUTE_BUILTIN     1   /* its home, or a live replica as new home */
#define SMS_ROUTE_ENGINE      2   /* its home, only */


/* told of every session a home gains (+1) or loses (-1) */
typedef void (*sms_home_counter_pt)(void *data, const unsigned char *name,
    size_t len, int64_t delta);

/* a replica as the choice of a new session's home sees it */
typedef struct {
    int64_t                   sessions;
    int64_t                   weight;
    int                       usable;
} sms_replica_t;


/* kinds of paths in directives */
#define SMS_PATH_BODY         0   /* session_id_path=: inside the body */
#define SMS_PATH_RESPONSE     1   /* create handler: body..., headers... */
#define SMS_PATH_REQUEST      2   /* close handler: body.... */


/*
 * Configuration time (master process). Every handle is a Swift object,
 * released with sms_release().
 */

int sms_main_conf_resolve(const sms_main_directives_t *in,
    sms_main_resolved_t *out);
int sms_store_grant(void *store, uint32_t uid, uint32_t gid,
    char *err, size_t errlen);

void *sms_path_compile(const unsigned char *data, size_t len, int kind,
    char *err, size_t errlen);

void *sms_defaults_compile(const unsigned char *data, size_t len,
    char *err, size_t errlen);
/* NULL with err[0] == '\0' when the variable is not set */
void *sms_defaults_from_env(const char *variable, char *err, size_t errlen);

/* create_path / close_path NULL: no engine handler of that kind */
void *sms_location_create(void *inject_path, void *create_path,
    void *create_defaults, void *close_path, void *close_defaults);

void sms_release(void *handle);


/* worker process start */

/* 1, with warning written, when the worker runs without its inotify
 * cache; until sms_store_worker_exit() it counts as such */
int sms_store_worker_init(void *store, char *warning, size_t len);
void sms_store_worker_exit(void *store);

/* the end of a turn of the worker's event loop in which requests were
 * decided: until then the store reads changes made on disk only once */

void sms_store_end_turn(void *store);
/* 1 with warning written: something new to warn of, once (the cache's
 * limits, the closes owed to engines) */
int sms_store_warning(void *store, char *warning, size_t len);


/* request time (worker processes); return 0, or -1 if out of memory; out
 * is zeroed by the caller, and only the fields of its action are set */

int sms_decide(void *store, void *location, const sms_request_t *req,
    sms_alloc_pt alloc, void *pool, sms_decision_t *out);

/* what a request's line and framing are, for sms_screen() */
typedef struct {
    sms_str_t                 method;            /* as the client sent it */
    int                       content_length;    /* a Content-Length came */
    int                       transfer_encoding; /* a Transfer-Encoding came */
} sms_screen_t;

/* first, in every module location: what nginx 1.21.1 and newer refuse in
 * their core (CL and TE both, CONNECT, TRACE) refused on every nginx.
 * out->action is SMS_PASS to go on, or SMS_RESPOND with the refusal;
 * returns 0, or -1 if out of memory */
int sms_screen(const sms_screen_t *req, sms_alloc_pt alloc, void *pool,
    sms_decision_t *out);

/* call: SMS_CALL_CREATE, _CLOSE or _EXPIRE, as sms_decide() asked; home:
 * the replica that answered a create through an affinity upstream, or NULL */
int sms_engine_answer(void *store, void *location, int call,
    const sms_request_t *req,
    const sms_engine_response_t *resp, const sms_str_t *home,
    sms_alloc_pt alloc, void *pool, sms_decision_t *out);


/*
 * Session affinity. Configuration time: sms_store_affinity() where an
 * upstream has sagemaker_session_affinity; sms_store_count_homes() tells
 * counter how many sessions each home has on disk (a fresh start).
 * Worker start: sms_store_set_counter().
 */

void sms_store_affinity(void *store);
void sms_store_count_homes(void *store, sms_home_counter_pt counter,
    void *data);
void sms_store_set_counter(void *store, sms_home_counter_pt counter,
    void *data);

/* index of the replica a session without a home goes to, -1 if none */
int sms_affinity_pick(const sms_replica_t *replicas, size_t n, uint64_t turn);

/* gives session id the home nginx chose (previous NULL: its first; else
 * the unavailable home it replaces); out: the home now in effect, kept by
 * the store. Returns -1 when the session is gone or cannot have one. */
int sms_session_home(void *store, const sms_str_t *id, const sms_str_t *home,
    const sms_str_t *previous, sms_str_t *out);

/* the answer when an engine session's home cannot be reached */
int sms_home_unavailable(const sms_str_t *id, const sms_str_t *home,
    sms_alloc_pt alloc, void *pool, sms_decision_t *out);


/* one bounded step of the expiry sweep; returns ms until the next step */

uint64_t sms_sweep_step(void *store);
/* the sweep buries expired sessions in <path>/.graveyard for the thread pool */
void sms_sweep_use_graveyard(void *store);
/* sessions buried since the last call: the graveyard task is due */
int64_t sms_sweep_take_buried(void *store);
/* 1 while a pass of the sweep is under way, 0 between passes */
int sms_sweep_in_pass(void *store);
/* this worker sweeps the entries whose name hashes to worker of workers */
void sms_sweep_share(void *store, int64_t worker, int64_t workers);


/*
 * Closes owed for engine sessions the sweep found expired with a home
 * (nginx/ngx_http_sagemaker_sessions_expire.c). Configuration time:
 * sms_store_close_expired() once a close location is known.
 */

void sms_store_close_expired(void *store);
/* some location's manager makes built-in sessions: a UUID-named one that
 * expires is not taken for an engine's */
void sms_store_makes_sessions(void *store);
/* ms until a close is due; -1 with none owed */
int64_t sms_expire_wait(void *store);
/* 1: a close due, claimed, written to out as sms_decide() writes an
 * SMS_CALL_EXPIRE (body, route, home) with its id in out->session_id;
 * 0: none due; -1: out of memory. location: the close location's */
int sms_expire_take(void *store, void *location, sms_alloc_pt alloc,
    void *pool, sms_decision_t *out);
/* the answer to the close of id: counted; returns the log level of the
 * line written to message (SMS_LOG_*), 0 for none */
int sms_expire_answered(void *store, const sms_str_t *id,
    const sms_engine_response_t *resp, char *message, size_t len);



/*
 * Observability: the status page's counters and text, the variables'
 * outcome words, and session values (set_sagemaker_session_value).
 */

/* session affinity's rows for the status page */
typedef struct {
    sms_str_t                 upstream;
    sms_str_t                 replica;
    int64_t                   live;
} sms_replica_status_t;

typedef struct {
    sms_str_t                 upstream;
    int64_t                   moved;
    int64_t                   unavailable;
} sms_upstream_status_t;

typedef struct {
    const int64_t            *counters;          /* sms_metrics_slots() */
    size_t                    ncounters;
    const sms_replica_status_t   *replicas;
    size_t                    nreplicas;
    const sms_upstream_status_t  *upstreams;
    size_t                    nupstreams;
    sms_str_t                 version;
} sms_status_t;

/* how many 64-bit counters the shared memory holds */
size_t sms_metrics_slots(void);

/* in each worker: the shared counters to add to, or NULL (nothing counted) */
void sms_metrics_attach(int64_t *counters);

/* the status page, in memory from alloc; returns 0, or -1 if out of memory */
int sms_status_text(void *store, const sms_status_t *in, sms_alloc_pt alloc,
    void *pool, sms_str_t *content_type, sms_str_t *text);

/* an outcome's word, static; len 0 for none */
sms_str_t sms_outcome_word(int outcome);

/* KEY of set_sagemaker_session_value checked by the Python library's rules:
 * its file name (len bytes at most) is written to name; returns the name's
 * length, or -1 with err set */
int sms_session_key_check(const unsigned char *key, size_t len,
    unsigned char *name, char *err, size_t errlen);

typedef struct {
    sms_str_t                 value;             /* len 0: none */
    int                       log_level;
    sms_str_t                 log_message;
} sms_value_t;

/* the value under file in the session of session_id, when valid by the
 * request's verdict (kept there if this is its first look; NULL: none);
 * out is zeroed by the caller; returns 0, or -1 if out of memory */
int sms_session_value(void *store, const sms_str_t *session_id,
    const sms_str_t *file, sms_verdict_t *verdict, sms_alloc_pt alloc,
    void *pool, sms_value_t *out);


#endif /* _NGX_HTTP_SAGEMAKER_SESSIONS_H_INCLUDED_ */
