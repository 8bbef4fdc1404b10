
/*
 * Session affinity: sagemaker_session_affinity in an upstream block. A
 * balancer wrapped around round robin, as ngx_http_upstream_hash_module's
 * is: a request of no known session is balanced by round robin; one of a
 * session goes to its home, the replica named by the address on its server
 * line. Which requests have which home, and which replica a new session
 * goes to, the core decides; the live sessions of every home, and how often
 * homes moved or were unavailable, are kept in shared memory, the same for
 * every worker and kept across reloads.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_sagemaker_sessions_module.h"


#define NGX_HTTP_SAGEMAKER_SESSIONS_HOMES      1024
#define NGX_HTTP_SAGEMAKER_SESSIONS_UPSTREAMS  64


/* a home: every server address of every affinity upstream, by name */
typedef struct {
    ngx_atomic_t                        sessions;
    size_t                              len;
    u_char                              name[256];
} ngx_http_sagemaker_sessions_home_t;


/* an affinity upstream, by name */
struct ngx_http_sagemaker_sessions_ups_s {
    ngx_atomic_t                        turn;
    ngx_atomic_t                        moved;
    ngx_atomic_t                        unavailable;
    size_t                              len;
    u_char                              name[256];
};


struct ngx_http_sagemaker_sessions_shm_s {
    ngx_uint_t                          nhomes;
    ngx_uint_t                          nupstreams;
    ngx_http_sagemaker_sessions_home_t  homes[NGX_HTTP_SAGEMAKER_SESSIONS_HOMES];
    ngx_http_sagemaker_sessions_ups_t   upstreams[NGX_HTTP_SAGEMAKER_SESSIONS_UPSTREAMS];
};


typedef struct {
    /* the round robin data must be first */
    ngx_http_upstream_rr_peer_data_t        rrp;
    ngx_http_sagemaker_sessions_srv_conf_t *conf;
    ngx_http_sagemaker_sessions_ctx_t      *ctx;
    ngx_log_t                              *log;
    uintptr_t                              *tried;
    uintptr_t                               data;   /* tried, up to 64 */
} ngx_http_sagemaker_sessions_peer_data_t;


static ngx_int_t ngx_http_sagemaker_sessions_init_upstream(ngx_conf_t *cf,
    ngx_http_upstream_srv_conf_t *us);
static ngx_int_t ngx_http_sagemaker_sessions_init_peer(ngx_http_request_t *r,
    ngx_http_upstream_srv_conf_t *us);
static ngx_int_t ngx_http_sagemaker_sessions_get_peer(ngx_peer_connection_t *pc,
    void *data);
static void ngx_http_sagemaker_sessions_free_peer(ngx_peer_connection_t *pc,
    void *data, ngx_uint_t state);
static ngx_http_upstream_rr_peer_t *ngx_http_sagemaker_sessions_find(
    ngx_http_sagemaker_sessions_peer_data_t *sp, ngx_str_t *home,
    ngx_uint_t *index);
static ngx_http_upstream_rr_peer_t *ngx_http_sagemaker_sessions_pick(
    ngx_http_sagemaker_sessions_peer_data_t *sp, ngx_uint_t *index);
static ngx_uint_t ngx_http_sagemaker_sessions_usable(
    ngx_http_sagemaker_sessions_peer_data_t *sp,
    ngx_http_upstream_rr_peer_t *peer, ngx_uint_t index, time_t now);
static ngx_int_t ngx_http_sagemaker_sessions_connect(ngx_peer_connection_t *pc,
    ngx_http_sagemaker_sessions_peer_data_t *sp,
    ngx_http_upstream_rr_peer_t *peer, ngx_uint_t index);
static ngx_int_t ngx_http_sagemaker_sessions_rehome(ngx_peer_connection_t *pc,
    ngx_http_sagemaker_sessions_peer_data_t *sp);
static ngx_int_t ngx_http_sagemaker_sessions_init_shm(ngx_shm_zone_t *shm_zone,
    void *data);
static ngx_http_sagemaker_sessions_home_t *ngx_http_sagemaker_sessions_home(
    ngx_http_sagemaker_sessions_shm_t *sh, const u_char *name, size_t len,
    ngx_uint_t add);
static void ngx_http_sagemaker_sessions_count(void *data, const u_char *name,
    size_t len, int64_t delta);
static ngx_int_t ngx_http_sagemaker_sessions_unavailable_header(
    ngx_http_request_t *r);
static ngx_int_t ngx_http_sagemaker_sessions_unavailable_body(
    ngx_http_request_t *r, ngx_chain_t *in);


static ngx_str_t  ngx_http_sagemaker_sessions_shm_name =
    ngx_string("sagemaker_session_affinity");

static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;
static ngx_http_output_body_filter_pt    ngx_http_next_body_filter;


char *
ngx_http_sagemaker_session_affinity(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_sagemaker_sessions_srv_conf_t *sscf = conf;

    ngx_http_upstream_srv_conf_t             *uscf, **up;
    ngx_http_sagemaker_sessions_main_conf_t  *smcf;

    if (sscf->affinity) {
        return "is duplicate";
    }

    uscf = ngx_http_conf_get_module_srv_conf(cf, ngx_http_upstream_module);

    if (uscf->peer.init_upstream) {
        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "load balancing method redefined");
    }

    uscf->peer.init_upstream = ngx_http_sagemaker_sessions_init_upstream;

    uscf->flags = NGX_HTTP_UPSTREAM_CREATE
                  |NGX_HTTP_UPSTREAM_WEIGHT
                  |NGX_HTTP_UPSTREAM_MAX_CONNS
                  |NGX_HTTP_UPSTREAM_MAX_FAILS
                  |NGX_HTTP_UPSTREAM_FAIL_TIMEOUT
                  |NGX_HTTP_UPSTREAM_DOWN
                  |NGX_HTTP_UPSTREAM_BACKUP;

    sscf->affinity = 1;
    sscf->upstream = uscf;

    smcf = ngx_http_conf_get_module_main_conf(cf,
                                        ngx_http_sagemaker_sessions_module);

    if (smcf->affinity_zone == NULL) {
        smcf->affinity_zone = ngx_shared_memory_add(cf,
                              &ngx_http_sagemaker_sessions_shm_name,
                              8 * ngx_pagesize
                              + sizeof(ngx_http_sagemaker_sessions_shm_t),
                              &ngx_http_sagemaker_sessions_module);
        if (smcf->affinity_zone == NULL) {
            return NGX_CONF_ERROR;
        }

        smcf->affinity_zone->init = ngx_http_sagemaker_sessions_init_shm;
        smcf->affinity_zone->data = smcf;

        if (ngx_array_init(&smcf->affinity_upstreams, cf->pool, 4,
                           sizeof(ngx_http_upstream_srv_conf_t *))
            != NGX_OK)
        {
            return NGX_CONF_ERROR;
        }
    }

    up = ngx_array_push(&smcf->affinity_upstreams);
    if (up == NULL) {
        return NGX_CONF_ERROR;
    }

    *up = uscf;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_sagemaker_sessions_init_upstream(ngx_conf_t *cf,
    ngx_http_upstream_srv_conf_t *us)
{
    if (ngx_http_upstream_init_round_robin(cf, us) != NGX_OK) {
        return NGX_ERROR;
    }

    us->peer.init = ngx_http_sagemaker_sessions_init_peer;

    return NGX_OK;
}


static ngx_int_t
ngx_http_sagemaker_sessions_init_peer(ngx_http_request_t *r,
    ngx_http_upstream_srv_conf_t *us)
{
    ngx_uint_t                                n;
    ngx_http_upstream_rr_peers_t             *peers;
    ngx_http_sagemaker_sessions_ctx_t        *ctx;
    ngx_http_sagemaker_sessions_peer_data_t  *sp;

    sp = ngx_palloc(r->pool, sizeof(ngx_http_sagemaker_sessions_peer_data_t));
    if (sp == NULL) {
        return NGX_ERROR;
    }

    r->upstream->peer.data = &sp->rrp;

    if (ngx_http_upstream_init_round_robin_peer(r, us) != NGX_OK) {
        return NGX_ERROR;
    }

    sp->conf = ngx_http_conf_upstream_srv_conf(us,
                                        ngx_http_sagemaker_sessions_module);
    sp->log = r->connection->log;
    sp->tried = NULL;

    ctx = ngx_http_get_module_ctx(r, ngx_http_sagemaker_sessions_module);

    /* a request of a session, or the subrequest that creates one */
    if (ctx == NULL
        || sp->conf->shm == NULL
        || (ctx->route == SMS_ROUTE_NONE
            && !(ctx->call == SMS_CALL_CREATE && ctx->subrequest == r)))
    {
        sp->ctx = NULL;
        return NGX_OK;
    }

    sp->ctx = ctx;
    ctx->ups = sp->conf->shm;

    peers = sp->rrp.peers;
    n = peers->number + (peers->next ? peers->next->number : 0);

    if (n <= 8 * sizeof(uintptr_t)) {
        sp->data = 0;
        sp->tried = &sp->data;

    } else {
        sp->tried = ngx_pcalloc(r->pool, (n + 8 * sizeof(uintptr_t) - 1)
                                         / (8 * sizeof(uintptr_t))
                                         * sizeof(uintptr_t));
        if (sp->tried == NULL) {
            return NGX_ERROR;
        }
    }

    r->upstream->peer.get = ngx_http_sagemaker_sessions_get_peer;
    r->upstream->peer.free = ngx_http_sagemaker_sessions_free_peer;

    if (ctx->route == SMS_ROUTE_ENGINE) {
        /* the engine holds the session on its home only */
        r->upstream->peer.tries = 1;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_sagemaker_sessions_get_peer(ngx_peer_connection_t *pc, void *data)
{
    ngx_http_sagemaker_sessions_peer_data_t  *sp = data;

    ngx_int_t                           rc;
    ngx_uint_t                          index;
    ngx_http_upstream_rr_peer_t        *peer;
    ngx_http_sagemaker_sessions_ctx_t  *ctx;

    ctx = sp->ctx;

    pc->cached = 0;
    pc->connection = NULL;

    ngx_http_upstream_rr_peers_wlock(sp->rrp.peers);

    if (ctx->route == SMS_ROUTE_NONE) {
        /* the create subrequest: the home is the replica that answers */
        peer = ngx_http_sagemaker_sessions_pick(sp, &index);

        if (peer == NULL) {
            ngx_http_upstream_rr_peers_unlock(sp->rrp.peers);
            return NGX_BUSY;
        }

        ctx->home = peer->server;
        rc = ngx_http_sagemaker_sessions_connect(pc, sp, peer, index);

        ngx_http_upstream_rr_peers_unlock(sp->rrp.peers);
        return rc;
    }

    if (ctx->home.len) {
        peer = ngx_http_sagemaker_sessions_find(sp, &ctx->home, &index);

        if (peer
            && ngx_http_sagemaker_sessions_usable(sp, peer, index,
                                                  ngx_time()))
        {
            rc = ngx_http_sagemaker_sessions_connect(pc, sp, peer, index);

            ngx_http_upstream_rr_peers_unlock(sp->rrp.peers);
            return rc;
        }

        if (ctx->route == SMS_ROUTE_ENGINE) {
            ngx_http_upstream_rr_peers_unlock(sp->rrp.peers);

            ctx->unavailable = 1;
            return NGX_BUSY;
        }
    }

    rc = ngx_http_sagemaker_sessions_rehome(pc, sp);

    ngx_http_upstream_rr_peers_unlock(sp->rrp.peers);

    return rc;
}


/*
 * A built-in session without a usable home gets one: the replica with the
 * fewest sessions, unless another worker gave it one first.
 */

static ngx_int_t
ngx_http_sagemaker_sessions_rehome(ngx_peer_connection_t *pc,
    ngx_http_sagemaker_sessions_peer_data_t *sp)
{
    sms_str_t                           id, home, previous, given;
    ngx_uint_t                          index;
    ngx_str_t                           name;
    ngx_http_upstream_rr_peer_t        *peer, *found;
    ngx_http_sagemaker_sessions_ctx_t  *ctx;
    ngx_http_sagemaker_sessions_main_conf_t  *smcf;

    ctx = sp->ctx;

    peer = ngx_http_sagemaker_sessions_pick(sp, &index);
    if (peer == NULL) {
        return NGX_BUSY;
    }

    smcf = sp->conf->main;

    id.data = ctx->session.data;
    id.len = ctx->session.len;
    home.data = peer->server.data;
    home.len = peer->server.len;
    previous.data = ctx->home.data;
    previous.len = ctx->home.len;

    if (sms_session_home(smcf->store, &id, &home,
                         ctx->home.len ? &previous : NULL, &given)
        != 0)
    {
        /* the session went away meanwhile: the replica is as good as any */
        return ngx_http_sagemaker_sessions_connect(pc, sp, peer, index);
    }

    name.data = (u_char *) given.data;
    name.len = given.len;

    if (ctx->home.len) {
        ngx_log_error(NGX_LOG_INFO, sp->log, 0,
                      "sagemaker sessions: session \"%V\" moved from "
                      "unavailable \"%V\" to \"%V\" in upstream \"%V\"",
                      &ctx->session, &ctx->home, &name,
                      &sp->conf->upstream->host);

        (void) ngx_atomic_fetch_add(&sp->conf->shm->moved, 1);
    }

    ctx->home = name;

    if (name.len != peer->server.len
        || ngx_strncmp(name.data, peer->server.data, name.len) != 0)
    {
        /* another worker was first */
        found = ngx_http_sagemaker_sessions_find(sp, &name, &index);

        if (found
            && ngx_http_sagemaker_sessions_usable(sp, found, index,
                                                  ngx_time()))
        {
            peer = found;

        } else {
            ngx_http_sagemaker_sessions_find(sp, &peer->server, &index);
        }
    }

    return ngx_http_sagemaker_sessions_connect(pc, sp, peer, index);
}


static void
ngx_http_sagemaker_sessions_free_peer(ngx_peer_connection_t *pc, void *data,
    ngx_uint_t state)
{
    ngx_http_sagemaker_sessions_peer_data_t  *sp = data;

    if ((state & NGX_PEER_FAILED) && sp->ctx->route == SMS_ROUTE_ENGINE) {
        sp->ctx->unavailable = 1;
    }

    ngx_http_upstream_free_round_robin_peer(pc, &sp->rrp, state);
}


/* index: in the primary peers, then in the backup peers */

static ngx_http_upstream_rr_peer_t *
ngx_http_sagemaker_sessions_find(ngx_http_sagemaker_sessions_peer_data_t *sp,
    ngx_str_t *home, ngx_uint_t *index)
{
    ngx_uint_t                     i;
    ngx_http_upstream_rr_peer_t   *peer;
    ngx_http_upstream_rr_peers_t  *peers;

    i = 0;

    for (peers = sp->rrp.peers; peers; peers = peers->next) {
        for (peer = peers->peer; peer; peer = peer->next, i++) {
            if (peer->server.len == home->len
                && ngx_strncmp(peer->server.data, home->data, home->len) == 0)
            {
                *index = i;
                return peer;
            }
        }
    }

    return NULL;
}


/*
 * The core chooses among the usable primary peers, or the backup peers when
 * none is usable, by their sessions for their weight.
 */

static ngx_http_upstream_rr_peer_t *
ngx_http_sagemaker_sessions_pick(ngx_http_sagemaker_sessions_peer_data_t *sp,
    ngx_uint_t *index)
{
    int                                  chosen;
    time_t                               now;
    ngx_uint_t                           n, first;
    sms_replica_t                        replicas[64];
    ngx_http_upstream_rr_peer_t         *peer, *list[64];
    ngx_http_upstream_rr_peers_t        *peers;
    ngx_http_sagemaker_sessions_home_t  *home;

    now = ngx_time();
    first = 0;

    for (peers = sp->rrp.peers; peers; peers = peers->next) {

        n = 0;

        for (peer = peers->peer; peer && n < 64; peer = peer->next, n++) {
            list[n] = peer;
            home = ngx_http_sagemaker_sessions_home(sp->conf->main->shm,
                                         peer->server.data, peer->server.len,
                                         0);
            replicas[n].sessions = home ? (int64_t) home->sessions : 0;
            replicas[n].weight = (int64_t) peer->weight;
            replicas[n].usable = (int) ngx_http_sagemaker_sessions_usable(sp,
                                                      peer, first + n, now);
        }

        chosen = sms_affinity_pick(replicas, n,
                       (uint64_t) ngx_atomic_fetch_add(&sp->conf->shm->turn, 1));

        if (chosen >= 0) {
            *index = first + (ngx_uint_t) chosen;
            return list[chosen];
        }

        first += peers->number;
    }

    return NULL;
}


static ngx_uint_t
ngx_http_sagemaker_sessions_usable(ngx_http_sagemaker_sessions_peer_data_t *sp,
    ngx_http_upstream_rr_peer_t *peer, ngx_uint_t index, time_t now)
{
    uintptr_t  m;

    m = (uintptr_t) 1 << index % (8 * sizeof(uintptr_t));

    if (sp->tried[index / (8 * sizeof(uintptr_t))] & m) {
        return 0;
    }

    if (peer->down) {
        return 0;
    }

    if (peer->max_fails
        && peer->fails >= peer->max_fails
        && now - peer->checked <= peer->fail_timeout)
    {
        return 0;
    }

    if (peer->max_conns && peer->conns >= peer->max_conns) {
        return 0;
    }

    return 1;
}


static ngx_int_t
ngx_http_sagemaker_sessions_connect(ngx_peer_connection_t *pc,
    ngx_http_sagemaker_sessions_peer_data_t *sp,
    ngx_http_upstream_rr_peer_t *peer, ngx_uint_t index)
{
    time_t  now;

    now = ngx_time();

    sp->rrp.current = peer;

    pc->sockaddr = peer->sockaddr;
    pc->socklen = peer->socklen;
    pc->name = &peer->name;

    peer->conns++;

    if (now - peer->checked > peer->fail_timeout) {
        peer->checked = now;
    }

    sp->tried[index / (8 * sizeof(uintptr_t))]
        |= (uintptr_t) 1 << index % (8 * sizeof(uintptr_t));

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, pc->log, 0,
                   "sagemaker sessions: session to \"%V\" (%V)",
                   &peer->server, &peer->name);

    return NGX_OK;
}


/* shared memory: the homes' sessions and the upstreams' counters */

static ngx_int_t
ngx_http_sagemaker_sessions_init_shm(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_sagemaker_sessions_main_conf_t  *smcf = shm_zone->data;

    size_t                                   len;
    ngx_uint_t                               i, j, fresh;
    ngx_slab_pool_t                         *shpool;
    ngx_http_upstream_rr_peer_t             *peer;
    ngx_http_upstream_rr_peers_t            *peers;
    ngx_http_upstream_srv_conf_t           **up;
    ngx_http_sagemaker_sessions_shm_t       *sh;
    ngx_http_sagemaker_sessions_ups_t       *ups;
    ngx_http_sagemaker_sessions_srv_conf_t  *sscf;
    ngx_http_sagemaker_sessions_main_conf_t *old = data;

    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;
    fresh = 0;

    if (old && old->shm) {
        sh = old->shm;

    } else {
        sh = ngx_slab_calloc(shpool, sizeof(ngx_http_sagemaker_sessions_shm_t));
        if (sh == NULL) {
            return NGX_ERROR;
        }

        shpool->data = sh;
        fresh = 1;
    }

    smcf->shm = sh;

    up = smcf->affinity_upstreams.elts;

    for (i = 0; i < smcf->affinity_upstreams.nelts; i++) {
        sscf = ngx_http_conf_upstream_srv_conf(up[i],
                                        ngx_http_sagemaker_sessions_module);
        sscf->main = smcf;

        len = ngx_min(up[i]->host.len, 255);
        ups = NULL;

        for (j = 0; j < sh->nupstreams; j++) {
            if (sh->upstreams[j].len == len
                && ngx_strncmp(sh->upstreams[j].name, up[i]->host.data, len)
                   == 0)
            {
                ups = &sh->upstreams[j];
                break;
            }
        }

        if (ups == NULL) {
            if (sh->nupstreams == NGX_HTTP_SAGEMAKER_SESSIONS_UPSTREAMS) {
                ngx_log_error(NGX_LOG_EMERG, shm_zone->shm.log, 0,
                              "sagemaker sessions: more than %d upstreams "
                              "with sagemaker_session_affinity",
                              NGX_HTTP_SAGEMAKER_SESSIONS_UPSTREAMS);
                return NGX_ERROR;
            }

            ups = &sh->upstreams[sh->nupstreams++];
            ups->len = len;
            ngx_memcpy(ups->name, up[i]->host.data, len);
        }

        sscf->shm = ups;

        /* every server of the upstream has its slot from the start */
        for (peers = up[i]->peer.data; peers; peers = peers->next) {
            for (peer = peers->peer; peer; peer = peer->next) {
                if (ngx_http_sagemaker_sessions_home(sh, peer->server.data,
                                                     peer->server.len, 1)
                    == NULL)
                {
                    ngx_log_error(NGX_LOG_EMERG, shm_zone->shm.log, 0,
                                  "sagemaker sessions: more than %d servers "
                                  "in upstreams with "
                                  "sagemaker_session_affinity",
                                  NGX_HTTP_SAGEMAKER_SESSIONS_HOMES);
                    return NGX_ERROR;
                }
            }
        }
    }

    if (fresh && smcf->store) {
        /* nginx starts: the sessions on disk keep their homes */
        sms_store_count_homes(smcf->store, ngx_http_sagemaker_sessions_count,
                              sh);
    }

    return NGX_OK;
}


static ngx_http_sagemaker_sessions_home_t *
ngx_http_sagemaker_sessions_home(ngx_http_sagemaker_sessions_shm_t *sh,
    const u_char *name, size_t len, ngx_uint_t add)
{
    ngx_uint_t                           i;
    ngx_http_sagemaker_sessions_home_t  *home;

    if (sh == NULL || len == 0 || len > 255) {
        return NULL;
    }

    for (i = 0; i < sh->nhomes; i++) {
        home = &sh->homes[i];

        if (home->len == len && ngx_strncmp(home->name, name, len) == 0) {
            return home;
        }
    }

    /* added in the master only, before the workers start */
    if (!add || sh->nhomes == NGX_HTTP_SAGEMAKER_SESSIONS_HOMES) {
        return NULL;
    }

    home = &sh->homes[sh->nhomes];
    home->len = len;
    ngx_memcpy(home->name, name, len);

    sh->nhomes++;

    return home;
}


/* the core tells every session a home gains or loses */

static void
ngx_http_sagemaker_sessions_count(void *data, const u_char *name, size_t len,
    int64_t delta)
{
    ngx_http_sagemaker_sessions_home_t  *home;

    home = ngx_http_sagemaker_sessions_home(data, name, len, 0);

    if (home) {
        (void) ngx_atomic_fetch_add(&home->sessions, (ngx_atomic_int_t) delta);
    }
}


ngx_int_t
ngx_http_sagemaker_sessions_init_affinity(ngx_cycle_t *cycle,
    ngx_http_sagemaker_sessions_main_conf_t *smcf)
{
    if (smcf->shm && smcf->store) {
        sms_store_set_counter(smcf->store, ngx_http_sagemaker_sessions_count,
                              smcf->shm);
    }

    return NGX_OK;
}


/*
 * An engine session whose home did not answer: nginx's 502 or 504 becomes
 * the core's 503 that names the session.
 */

static ngx_int_t
ngx_http_sagemaker_sessions_unavailable_header(ngx_http_request_t *r)
{
    sms_str_t                           id, home;
    sms_decision_t                      d;
    ngx_http_sagemaker_sessions_ctx_t  *ctx;

    if (r != r->main) {
        return ngx_http_next_header_filter(r);
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_sagemaker_sessions_module);

    if (ctx == NULL
        || !ctx->unavailable
        || ctx->answer.data
        || (r->headers_out.status != NGX_HTTP_BAD_GATEWAY
            && r->headers_out.status != NGX_HTTP_GATEWAY_TIME_OUT))
    {
        return ngx_http_next_header_filter(r);
    }

    id.data = ctx->session.data;
    id.len = ctx->session.len;
    home.data = ctx->home.data;
    home.len = ctx->home.len;

    ngx_memzero(&d, sizeof(sms_decision_t));

    if (sms_home_unavailable(&id, &home, ngx_http_sagemaker_sessions_alloc,
                             r->pool, &d)
        != 0)
    {
        return ngx_http_next_header_filter(r);
    }

    if (d.log_level != SMS_LOG_NONE) {
        ngx_log_error((ngx_uint_t) d.log_level, r->connection->log, 0,
                      "sagemaker sessions: %*s",
                      d.log_message.len, d.log_message.data);
    }

    if (ctx->ups) {
        (void) ngx_atomic_fetch_add(&ctx->ups->unavailable, 1);
    }

    ctx->answer.data = (u_char *) d.body.data;
    ctx->answer.len = d.body.len;
    ctx->outcome = d.outcome;

    r->headers_out.status = d.status;
    r->headers_out.status_line.len = 0;
    r->headers_out.content_type.data = (u_char *) d.content_type.data;
    r->headers_out.content_type.len = d.content_type.len;
    r->headers_out.content_type_len = d.content_type.len;
    r->headers_out.content_type_lowcase = NULL;
    r->headers_out.content_length_n = d.body.len;

    if (r->headers_out.content_length) {
        r->headers_out.content_length->hash = 0;
        r->headers_out.content_length = NULL;
    }

    return ngx_http_next_header_filter(r);
}


static ngx_int_t
ngx_http_sagemaker_sessions_unavailable_body(ngx_http_request_t *r,
    ngx_chain_t *in)
{
    sms_str_t                           answer;
    ngx_chain_t                        *cl, *out;
    ngx_http_sagemaker_sessions_ctx_t  *ctx;

    if (r != r->main) {
        return ngx_http_next_body_filter(r, in);
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_sagemaker_sessions_module);

    if (ctx == NULL || ctx->answer.data == NULL) {
        return ngx_http_next_body_filter(r, in);
    }

    /* nginx's own page is not sent */
    for (cl = in; cl; cl = cl->next) {
        cl->buf->pos = cl->buf->last;
        cl->buf->file_pos = cl->buf->file_last;
    }

    if (ctx->answered) {
        return NGX_OK;
    }

    ctx->answered = 1;

    answer.data = ctx->answer.data;
    answer.len = ctx->answer.len;

    out = ngx_http_sagemaker_sessions_chain(r->pool, &answer);
    if (out == NULL) {
        return NGX_ERROR;
    }

    return ngx_http_next_body_filter(r, out);
}


/* only where an upstream has affinity: no other request pays for them */

ngx_int_t
ngx_http_sagemaker_sessions_affinity_filter_init(ngx_conf_t *cf)
{
    ngx_http_sagemaker_sessions_main_conf_t  *smcf;

    smcf = ngx_http_conf_get_module_main_conf(cf,
                                        ngx_http_sagemaker_sessions_module);

    if (smcf->affinity_zone == NULL) {
        return NGX_OK;
    }

    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_http_sagemaker_sessions_unavailable_header;

    ngx_http_next_body_filter = ngx_http_top_body_filter;
    ngx_http_top_body_filter = ngx_http_sagemaker_sessions_unavailable_body;

    return NGX_OK;
}


/* the status page's rows: every server of every affinity upstream */

ngx_int_t
ngx_http_sagemaker_sessions_affinity_status(ngx_http_request_t *r,
    sms_replica_status_t **replicas, size_t *nreplicas,
    sms_upstream_status_t **upstreams, size_t *nupstreams)
{
    size_t                                    n, i, j;
    ngx_uint_t                                k;
    sms_replica_status_t                     *rs;
    sms_upstream_status_t                    *us;
    ngx_http_upstream_rr_peer_t              *peer;
    ngx_http_upstream_rr_peers_t             *peers;
    ngx_http_upstream_srv_conf_t            **up;
    ngx_http_sagemaker_sessions_home_t       *home;
    ngx_http_sagemaker_sessions_srv_conf_t   *sscf;
    ngx_http_sagemaker_sessions_main_conf_t  *smcf;

    *nreplicas = 0;
    *nupstreams = 0;

    smcf = ngx_http_get_module_main_conf(r, ngx_http_sagemaker_sessions_module);

    if (smcf->shm == NULL || smcf->affinity_upstreams.nelts == 0) {
        return NGX_OK;
    }

    up = smcf->affinity_upstreams.elts;

    n = 0;
    for (k = 0; k < smcf->affinity_upstreams.nelts; k++) {
        for (peers = up[k]->peer.data; peers; peers = peers->next) {
            n += peers->number;
        }
    }

    rs = ngx_pcalloc(r->pool, (n ? n : 1) * sizeof(sms_replica_status_t));
    us = ngx_pcalloc(r->pool, smcf->affinity_upstreams.nelts
                              * sizeof(sms_upstream_status_t));
    if (rs == NULL || us == NULL) {
        return NGX_ERROR;
    }

    i = 0;

    for (k = 0; k < smcf->affinity_upstreams.nelts; k++) {
        sscf = ngx_http_conf_upstream_srv_conf(up[k],
                                        ngx_http_sagemaker_sessions_module);

        us[k].upstream.data = up[k]->host.data;
        us[k].upstream.len = up[k]->host.len;

        if (sscf->shm) {
            us[k].moved = (int64_t) sscf->shm->moved;
            us[k].unavailable = (int64_t) sscf->shm->unavailable;
        }

        for (peers = up[k]->peer.data; peers; peers = peers->next) {
            for (peer = peers->peer; peer; peer = peer->next) {

                /* a server line of several addresses is one replica */
                for (j = 0; j < i; j++) {
                    if (rs[j].upstream.data == up[k]->host.data
                        && rs[j].replica.len == peer->server.len
                        && ngx_strncmp(rs[j].replica.data, peer->server.data,
                                       peer->server.len) == 0)
                    {
                        break;
                    }
                }

                if (j < i) {
                    continue;
                }

                home = ngx_http_sagemaker_sessions_home(smcf->shm,
                                                        peer->server.data,
                                                        peer->server.len, 0);

                rs[i].upstream.data = up[k]->host.data;
                rs[i].upstream.len = up[k]->host.len;
                rs[i].replica.data = peer->server.data;
                rs[i].replica.len = peer->server.len;
                rs[i].live = home ? (int64_t) home->sessions : 0;
                i++;
            }
        }
    }

    *replicas = rs;
    *nreplicas = i;
    *upstreams = us;
    *nupstreams = smcf->affinity_upstreams.nelts;

    return NGX_OK;
}
