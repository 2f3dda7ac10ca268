/* fcgi_io.h - the web-server side: FastCGI connections (libfcgi) and plain CGI, as struct http_io.
 *
 * This is the only module that knows libfcgi. A FastCGI responder has one listening socket (fd 0
 * when lighttpd or mod_fcgid spawned it); each worker thread owns one struct fcgi_conn for its
 * whole life and loops fcgi_conn_accept / handle / fcgi_conn_finish. Accepts are serialised by a
 * process-wide mutex, as in libfcgi's threaded example.
 */
#ifndef ROUTER_FCGI_IO_H
#define ROUTER_FCGI_IO_H

#include "http.h"

/* Initialises libfcgi; call once before any thread starts. Returns 0 or -1. */
int fcgi_io_init(void);
/* True when fd 0 is a listening socket, i.e. a web server spawned us as a FastCGI responder. */
int fcgi_io_is_fastcgi(void);
/* Opens a listening socket ("/path/to.sock" or "127.0.0.1:9000"); returns the fd or -1. */
int fcgi_io_listen(const char *spec, int backlog);
/* Before the workers start: gives the listening socket the receive timeout its connections
 * inherit, so that one that never sends its request's head cannot hold the others off accept. */
void fcgi_io_prepare_listener(int fd);
/* Asks libfcgi to stop accepting (after SIGTERM/SIGUSR1). */
void fcgi_io_shutdown_pending(void);

struct fcgi_conn;
struct fcgi_conn *fcgi_conn_new(int listen_fd);
void fcgi_conn_free(struct fcgi_conn *c);
/* Waits for the next request. Returns 0, or -1 when the process should stop accepting. */
int fcgi_conn_accept(struct fcgi_conn *c);
/* The accepted request's I/O; valid until fcgi_conn_finish. */
const struct http_io *fcgi_conn_io(struct fcgi_conn *c);
void fcgi_conn_finish(struct fcgi_conn *c);

/* Plain CGI: parameters from the environment, body on stdin, response on stdout. */
const struct http_io *cgi_io(void);
/* Reads and discards what the handler left of the request body (call after the response). */
void cgi_drain_body(void);
/* Ends the response: flushes stdout, then puts /dev/null in place of stdin and stdout (one
 * socket under mod_cgid), so the web server sees the end of the response while the process goes
 * on with its background work. */
void cgi_close_response(void);

#endif
