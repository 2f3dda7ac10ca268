/* server.h - responder process lifecycle: worker threads, signals, reload.
 *
 * Process state, built once: the configuration (reloadable, see config.h), the libcurl global
 * state and the store's writer and WAL checkpointer. Each worker thread owns a struct worker and
 * runs one struct request_ctx (reqctx.h) per accepted request through the route table (routes.h).
 * The server is the top of the request path: it calls routes and reqctx, and nothing calls it but
 * main.c.
 */
#ifndef ROUTER_SERVER_H
#define ROUTER_SERVER_H

/* Serves FastCGI requests on listen_fd with the configured number of worker threads until
 * SIGTERM/SIGINT/SIGUSR1; in-flight requests finish first. Returns the process exit code. */
int server_run_fastcgi(int listen_fd);
/* Serves the one request of a plain CGI invocation. Returns the process exit code. */
int server_run_cgi(void);

#endif
