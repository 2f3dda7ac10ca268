/* routes.h - the route table: method + path -> handler (api.h), with 404 and 405 answers.
 *
 * Called by server.c once per request; every handler answers through rc->resp. routes knows the
 * handlers, not the other way round.
 */
#ifndef ROUTER_ROUTES_H
#define ROUTER_ROUTES_H

#include "reqctx.h"

void routes_dispatch(struct request_ctx *rc);

#endif
