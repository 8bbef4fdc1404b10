
/*
 * Where nginx's API differs between the versions the module builds for
 * (1.18.0 to 1.30.6): every nginx_version guard of the shim, here only.
 * Checked against each release's headers; what is not here is the same
 * in all of them.
 */

#ifndef _NGX_HTTP_SAGEMAKER_SESSIONS_COMPAT_H_INCLUDED_
#define _NGX_HTTP_SAGEMAKER_SESSIONS_COMPAT_H_INCLUDED_


#include <nginx.h>


/*
 * 1.23.0 links the headers of one name through ngx_table_elt_t.next, and
 * walks that list (proxy, FastCGI, Cache-Control, Set-Cookie...). A header
 * the module makes, or copies out of another list, is one of its kind:
 * its next must be NULL. Before 1.23.0 there is no such field.
 */

#if (nginx_version >= 1023000)
#define ngx_http_sagemaker_sessions_header_alone(h)  (h)->next = NULL
#else
#define ngx_http_sagemaker_sessions_header_alone(h)
#endif


#endif /* _NGX_HTTP_SAGEMAKER_SESSIONS_COMPAT_H_INCLUDED_ */
